# Database password, password mode only (db_auth_mode = "password").
#
# IAM mode (the default) has no password at all: the function's service account
# logs in as its own Postgres user with a short-lived OAuth token, so there is no
# secret to store, rotate or leak, in state or anywhere else.
#
# Password mode generates the password with an *ephemeral* random_password and
# hands it to two write-only arguments (secret_data_wo, password_wo). Ephemeral
# values and write-only arguments are never persisted to the plan or the state,
# so the password exists only in Secret Manager and in Cloud SQL. This beats both
# alternatives: a plain random_password lands in state in clear text, and an
# out-of-band `gcloud secrets versions add` needs a second manual step that must
# also set the Cloud SQL user's password, and can drift from it.
#
# Rotation: bump var.db_password_version. The same apply generates a new value and
# writes it to a new secret version and to the user; running instances pick it up
# at their next cold start (README: "Rotate the database password").
#
# The function reads the secret itself at runtime (DB_PASSWORD_SECRET names the
# version), rather than through secret_environment_variables, so the value never
# appears in the function's configuration either.

ephemeral "random_password" "db" {
  count = local.iam_auth ? 0 : 1

  length = 32
  # Connector and pg8000 take the password as a parameter, never in a URL, but
  # avoiding quoting hazards costs nothing at this length.
  special = false
}

resource "google_secret_manager_secret" "db_password" {
  count = local.iam_auth ? 0 : 1

  secret_id = "${var.name}-db-password"

  replication {
    auto {}
  }
}

resource "google_secret_manager_secret_version" "db_password" {
  count = local.iam_auth ? 0 : 1

  secret                 = google_secret_manager_secret.db_password[0].id
  secret_data_wo         = ephemeral.random_password.db[0].result
  secret_data_wo_version = var.db_password_version
}
