# Three identities, each with only what its job needs:
#   runtime : what the function's code does (read BigQuery, write Cloud SQL, publish continuations)
#   trigger : what Eventarc uses to push messages to the function
#   build   : what Cloud Build uses to turn the source zip into a container
# tests/test_terraform.py pins the runtime account's complete role set.

resource "google_service_account" "runtime" {
  account_id   = var.name
  display_name = "${var.name} function runtime"
  description  = "Runs the ${var.name} Cloud Function: reads the Fivetran datasets, writes Cloud SQL, publishes continuations."
}

resource "google_service_account" "trigger" {
  account_id   = "${var.name}-trigger"
  display_name = "${var.name} Eventarc trigger"
  description  = "Identity Eventarc uses to push Pub/Sub messages to the ${var.name} function."
}

resource "google_service_account" "build" {
  account_id   = "${var.name}-build"
  display_name = "${var.name} Cloud Build"
  description  = "Builds the ${var.name} function image from the source zip."
}

# --- runtime: BigQuery --------------------------------------------------------

# Read access on the two Fivetran datasets only, not on the project.
resource "google_bigquery_dataset_iam_member" "runtime_salesforce_viewer" {
  project    = local.bigquery_project
  dataset_id = var.salesforce_dataset
  role       = "roles/bigquery.dataViewer"
  member     = google_service_account.runtime.member
}

resource "google_bigquery_dataset_iam_member" "runtime_gong_viewer" {
  project    = local.bigquery_project
  dataset_id = var.gong_dataset
  role       = "roles/bigquery.dataViewer"
  member     = google_service_account.runtime.member
}

# Running a query job is a project-level permission (bigquery.jobs.create); the
# role grants no data access by itself.
resource "google_project_iam_member" "runtime_bigquery_job_user" {
  project = local.bigquery_project
  role    = "roles/bigquery.jobUser"
  member  = google_service_account.runtime.member
}

# --- runtime: Cloud SQL -------------------------------------------------------

# Cloud SQL has no instance-level IAM, so the grant is project-level, narrowed by
# an IAM condition to the one instance.
resource "google_project_iam_member" "runtime_cloudsql_client" {
  project = local.sql_project
  role    = "roles/cloudsql.client"
  member  = google_service_account.runtime.member

  condition {
    title       = "only-${var.sql_instance_name}"
    description = "Connect to the ${var.sql_instance_name} instance only."
    expression  = local.sql_instance_condition
  }
}

# IAM database authentication: lets the account log in as its own Postgres user.
resource "google_project_iam_member" "runtime_cloudsql_instance_user" {
  count = local.iam_auth ? 1 : 0

  project = local.sql_project
  role    = "roles/cloudsql.instanceUser"
  member  = google_service_account.runtime.member

  condition {
    title       = "only-${var.sql_instance_name}"
    description = "Log in to the ${var.sql_instance_name} instance only."
    expression  = local.sql_instance_condition
  }
}

# --- runtime: Secret Manager and Pub/Sub --------------------------------------

resource "google_secret_manager_secret_iam_member" "runtime_db_password_accessor" {
  count = local.iam_auth ? 0 : 1

  secret_id = google_secret_manager_secret.db_password[0].id
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.runtime.member
}

# Continuations are published to the trigger topic itself.
resource "google_pubsub_topic_iam_member" "runtime_publisher" {
  topic  = google_pubsub_topic.sync.id
  role   = "roles/pubsub.publisher"
  member = google_service_account.runtime.member
}

# --- trigger ------------------------------------------------------------------

# Eventarc's push subscription authenticates as the trigger account, which must
# be allowed to invoke the function's Cloud Run service (a 2nd-gen function's
# service has the function's name). roles/eventarc.eventReceiver is not granted:
# it is needed for direct Google-source events (Cloud Storage, audit logs), not
# for Pub/Sub-transport triggers.
resource "google_cloud_run_v2_service_iam_member" "trigger_invoker" {
  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.sync.name
  role     = "roles/run.invoker"
  member   = google_service_account.trigger.member
}

# --- build --------------------------------------------------------------------

# New projects give the default compute account no roles, so builds fail unless
# the build identity is set and granted explicitly.
resource "google_project_iam_member" "build_log_writer" {
  project = var.project_id
  role    = "roles/logging.logWriter"
  member  = google_service_account.build.member
}

resource "google_storage_bucket_iam_member" "build_source_reader" {
  bucket = google_storage_bucket.source.name
  role   = "roles/storage.objectViewer"
  member = google_service_account.build.member
}

resource "google_artifact_registry_repository_iam_member" "build_image_writer" {
  project    = var.project_id
  location   = google_artifact_registry_repository.images.location
  repository = google_artifact_registry_repository.images.name
  role       = "roles/artifactregistry.writer"
  member     = google_service_account.build.member
}
