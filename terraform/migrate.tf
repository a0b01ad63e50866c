# The migration job: the one place the schema changes, run by `terraform apply` itself.
#
# A Cloud Run job runs `python -m sync migrate --grant-to <the function's login>` as the owner
# login (sql.tf), from the image Cloud Build made for the function, so the job's code and
# migrations are exactly the function's. run_execution_token makes apply start an execution
# whenever the token changes and wait until it has completed; a failed migration, or a function
# login that holds more than its data (sync/postgres/grants.py), fails the apply.
#
# Order within one apply: the function is built and updated first (the job needs its image),
# then the job runs. A new revision that meets a schema still missing its migrations answers
# "retry" (SchemaBehindError) and Pub/Sub redelivers the message after the job is done.

# The function's Cloud Run service, read after the function is updated (the reference defers
# the read to apply whenever the function changes), for the image of the current build.
data "google_cloud_run_v2_service" "function" {
  name     = google_cloudfunctions2_function.sync.name
  location = var.region
}

locals {
  migrate_image = data.google_cloud_run_v2_service.function.template[0].containers[0].image
  # The image's entry point serves the function; the buildpacks launcher runs another command
  # with the same environment (the installed dependencies) in the same working directory.
  migrate_command = ["/cnb/lifecycle/launcher"]
  migrate_args    = ["python", "-m", "sync", "migrate", "--grant-to", local.db_user]

  migrate_env = {
    INSTANCE_CONNECTION_NAME = local.sql_instance_connection_name
    DB_USER                  = google_sql_user.owner.name
    DB_NAME                  = google_sql_database.sync.name
    DB_PASSWORD_SECRET       = "${google_secret_manager_secret.db_password.id}/versions/latest"
    DB_IP_TYPE               = var.sql_connectivity
    LOG_LEVEL                = var.log_level
  }
}

resource "google_cloud_run_v2_job" "migrate" {
  name     = "${var.name}-migrate"
  location = var.region

  # It holds no data; a destroy may delete it.
  deletion_protection = false

  # A new execution, awaited, whenever the build or what the job is asked to do changes. The
  # execution is named job name + "-" + token, which must stay under 63 characters.
  run_execution_token = substr(sha256(jsonencode([local.migrate_image, local.migrate_args, local.migrate_env])), 0, 16)

  template {
    task_count = 1

    template {
      service_account = google_service_account.migrate.email
      # Migrations are idempotent and serialised by an advisory lock, so a retry is safe.
      max_retries = 1
      timeout     = "600s"

      # The instance's private address or PSC endpoint is reached the way the functions reach
      # it (network.tf): private ranges through the VPC, Google APIs on their usual path.
      dynamic "vpc_access" {
        for_each = local.private_connectivity ? [1] : []
        content {
          egress = "PRIVATE_RANGES_ONLY"
          network_interfaces {
            network    = local.vpc_network
            subnetwork = local.vpc_subnetwork
          }
        }
      }

      containers {
        image   = local.migrate_image
        command = local.migrate_command
        args    = local.migrate_args

        dynamic "env" {
          for_each = local.migrate_env
          content {
            name  = env.key
            value = env.value
          }
        }

        resources {
          limits = {
            cpu    = "1"
            memory = "512Mi"
          }
        }
      }
    }
  }

  depends_on = [
    # The job must be able to log in as the owner, and the function's login must exist to be granted.
    google_project_iam_member.migrate_cloudsql_client,
    google_secret_manager_secret_iam_member.migrate_db_password_accessor,
    google_secret_manager_secret_version.db_password,
    google_sql_user.owner,
    google_sql_user.runtime,
  ]
}
