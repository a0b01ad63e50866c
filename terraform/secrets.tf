# The owner login's password (google_sql_user.owner), read by the migration job only.
#
# The function has no password at all: its service account logs in as its own Postgres
# user with a short-lived OAuth token, so it has no secret to store, rotate or leak.
#
# The owner's password is generated with an *ephemeral* random_password and
# hands it to two write-only arguments (secret_data_wo, password_wo). Ephemeral
# values and write-only arguments are never persisted to the plan or the state,
# so the password exists only in Secret Manager and in Cloud SQL. This beats both
# alternatives: a plain random_password lands in state in clear text, and an
# out-of-band `gcloud secrets versions add` needs a second manual step that must
# also set the Cloud SQL user's password, and can drift from it.
#
# The ephemeral value is generated anew on every run, and each write-only argument is
# sent only when its resource is created or its *_wo_version changes. So the secret
# version follows the user: it takes its version key from the user and is replaced
# whenever the user is updated or replaced, which writes the same apply's value to
# both. Rotation is one bump of var.db_password_version (README: "Rotate the database
# password"); sync/postgres/db.py re-reads the secret once when Postgres rejects the cached one.
#
# The job reads the secret itself at runtime (DB_PASSWORD_SECRET names the version),
# rather than through a secret environment variable, so the value never appears in the
# job's configuration either.

ephemeral "random_password" "db" {
  length = 32
  # Connector and pg8000 take the password as a parameter, never in a URL, but
  # avoiding quoting hazards costs nothing at this length.
  special = false
}

resource "google_secret_manager_secret" "db_password" {
  secret_id = "${var.name}-db-password"

  replication {
    auto {}
  }
}

resource "google_secret_manager_secret_version" "db_password" {
  secret                 = google_secret_manager_secret.db_password.id
  secret_data_wo         = ephemeral.random_password.db.result
  secret_data_wo_version = google_sql_user.owner.password_wo_version

  lifecycle {
    # A user recreated (new name or instance, dropped out of band, -replace) or given a
    # new password is written with this run's value; a new version carries it here too.
    replace_triggered_by = [google_sql_user.owner]
  }
}

moved {
  from = google_secret_manager_secret.db_password[0]
  to   = google_secret_manager_secret.db_password
}

moved {
  from = google_secret_manager_secret_version.db_password[0]
  to   = google_secret_manager_secret_version.db_password
}
