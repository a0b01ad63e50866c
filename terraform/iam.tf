# Four identities, each with only what its job needs:
#   runtime : what the function's code does (read BigQuery, read and write rows in Cloud SQL as
#             its own IAM database login, publish continuations)
#   migrate : the migration job (migrate.tf): logs in as the owner login with its password
#   invoker : whose OIDC token the push subscription presents to the function
#   build   : what Cloud Build uses to turn the source zip into a container
# plus the grants the Pub/Sub service agent needs for push and dead-lettering.
# tests/system/test_terraform.py pins the runtime, migrate, invoker and build accounts' complete role sets.

resource "google_service_account" "runtime" {
  account_id   = var.name
  display_name = "${var.name} function runtime"
  description  = "Runs the ${var.name} Cloud Function: reads the Fivetran datasets, writes Cloud SQL, publishes continuations."
}

resource "google_service_account" "migrate" {
  account_id   = "${var.name}-migrate"
  display_name = "${var.name} migration job"
  description  = "Runs the ${var.name} migration job: applies the schema migrations as the owner login and grants the function's login its data."
}

resource "google_service_account" "invoker" {
  account_id   = "${var.name}-invoker"
  display_name = "${var.name} push invoker"
  description  = "Identity whose OIDC token the ${var.name} push subscription presents to the function."
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
  project = local.sql_project
  role    = "roles/cloudsql.instanceUser"
  member  = google_service_account.runtime.member

  condition {
    title       = "only-${var.sql_instance_name}"
    description = "Log in to the ${var.sql_instance_name} instance only."
    expression  = local.sql_instance_condition
  }
}

moved {
  from = google_project_iam_member.runtime_cloudsql_instance_user[0]
  to   = google_project_iam_member.runtime_cloudsql_instance_user
}

# --- runtime: Pub/Sub -----------------------------------------------------------

# Continuations are published to the trigger topic itself.
resource "google_pubsub_topic_iam_member" "runtime_publisher" {
  topic  = google_pubsub_topic.sync.id
  role   = "roles/pubsub.publisher"
  member = google_service_account.runtime.member
}

# --- migrate: Cloud SQL and the owner's password ---------------------------------

# The runtime account has no grant on the secret: the function cannot log in as the owner.
resource "google_secret_manager_secret_iam_member" "migrate_db_password_accessor" {
  secret_id = google_secret_manager_secret.db_password.id
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.migrate.member
}

resource "google_project_iam_member" "migrate_cloudsql_client" {
  project = local.sql_project
  role    = "roles/cloudsql.client"
  member  = google_service_account.migrate.member

  condition {
    title       = "only-${var.sql_instance_name}"
    description = "Connect to the ${var.sql_instance_name} instance only."
    expression  = local.sql_instance_condition
  }
}

# --- invoker and the Pub/Sub service agent ----------------------------------

locals {
  pubsub_service_agent = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"
}

# The push subscription authenticates as the invoker account, which may call the
# function's Cloud Run service (a 2nd-gen function's service has its name) and nothing else.
resource "google_cloud_run_v2_service_iam_member" "invoker" {
  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.sync.name
  role     = "roles/run.invoker"
  member   = google_service_account.invoker.member
}

# Pub/Sub mints the push OIDC tokens as its service agent. A service agent enabled on
# or before 8 April 2021 lacks the permission to do so; granting it on this one account
# (not the project) covers those projects and gives newer ones nothing they lack.
resource "google_service_account_iam_member" "pubsub_agent_token_creator" {
  service_account_id = google_service_account.invoker.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.pubsub_service_agent
}

# --- build --------------------------------------------------------------------

# New projects give the default compute account no roles, so builds fail unless
# the build identity is set and granted explicitly.
resource "google_project_iam_member" "build_log_writer" {
  project = var.project_id
  role    = "roles/logging.logWriter"
  member  = google_service_account.build.member
}

# Cloud Functions copies the source zip from our bucket into the Google-managed bucket
# gcf-v2-sources-<project number>-<region>, and Cloud Build reads it from there. That
# bucket only appears during the first deploy, so a bucket-level grant cannot be made
# beforehand; a project-level role narrowed to that bucket name prefix can. No grant on
# our own source bucket is needed: the copy is made by the Cloud Functions service agent.
resource "google_project_iam_member" "build_gcf_sources_reader" {
  project = var.project_id
  role    = "roles/storage.objectViewer"
  member  = google_service_account.build.member

  condition {
    title       = "gcf-v2-sources-only"
    description = "Read the Cloud Functions-managed source buckets (gcf-v2-sources-*) only."
    expression  = "resource.service == \"storage.googleapis.com\" && resource.name.startsWith(\"projects/_/buckets/gcf-v2-sources-\")"
  }
}

resource "google_artifact_registry_repository_iam_member" "build_image_writer" {
  project    = var.project_id
  location   = google_artifact_registry_repository.images.location
  repository = google_artifact_registry_repository.images.name
  role       = "roles/artifactregistry.writer"
  member     = google_service_account.build.member
}

# IAM changes take a while to reach every service: Google documents that a policy change
# "typically" propagates in 2 minutes and "could potentially take 7 minutes or longer" (IAM,
# "Access change propagation"). A build started before the grants arrive fails with "Build
# failed ... Access to bucket gcf-v2-sources-... denied. You must grant Storage Object Viewer
# permission to ..."; the provider's own cloudfunctions2_basic_builder test waits 60 s and
# fails about half the time that way (provider issue #20571). So the wait is the documented
# 7 minutes. It runs once, when the grants are created (or replaced); later applies skip it.
# The function depends on this, not on the grants directly.
resource "time_sleep" "build_grants" {
  create_duration = "420s"

  triggers = {
    log_writer   = google_project_iam_member.build_log_writer.id
    source_read  = google_project_iam_member.build_gcf_sources_reader.id
    image_writer = google_artifact_registry_repository_iam_member.build_image_writer.id
  }
}
