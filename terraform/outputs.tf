output "topic_name" {
  description = "Pub/Sub topic that triggers the function (short name)."
  value       = google_pubsub_topic.sync.name
}

output "topic_id" {
  description = "Full topic resource name; the function's SYNC_TOPIC."
  value       = google_pubsub_topic.sync.id
}

output "function_name" {
  description = "Cloud Function (2nd gen) name; also its Cloud Run service name."
  value       = google_cloudfunctions2_function.sync.name
}

output "dead_letter_topic" {
  description = "Dead-letter topic (attach it to the Eventarc subscription out of band; see README)."
  value       = google_pubsub_topic.dead_letter.id
}

output "dead_letter_subscription" {
  description = "Pull subscription on the dead-letter topic, for inspection."
  value       = google_pubsub_subscription.dead_letter_inspect.id
}

output "service_account_email" {
  description = "The function's runtime service account."
  value       = google_service_account.runtime.email
}

output "trigger_service_account_email" {
  description = "Service account Eventarc uses to invoke the function."
  value       = google_service_account.trigger.email
}

output "instance_connection_name" {
  description = "Cloud SQL instance connection name (PROJECT:REGION:INSTANCE)."
  value       = local.sql_instance_connection_name
}

output "database_user" {
  description = "Postgres user the function logs in as (DB_USER)."
  value       = local.db_user
}

output "db_password_secret" {
  description = "Secret holding the database password (password mode), else null."
  value       = try(google_secret_manager_secret.db_password[0].id, null)
}

output "tick_command" {
  description = "Publish one tick by hand (same message the scheduler sends)."
  value       = "gcloud pubsub topics publish ${google_pubsub_topic.sync.name} --project=${var.project_id} --message='${jsonencode(local.tick_message)}'"
}

output "full_resync_command" {
  description = "Start a full resync."
  value       = "gcloud pubsub topics publish ${google_pubsub_topic.sync.name} --project=${var.project_id} --message='${jsonencode(local.full_resync_message)}'"
}

output "logs_query" {
  description = "Logs Explorer query for the per-run summary lines."
  value       = local.run_finished_filter
}

output "eventarc_trigger" {
  description = "Eventarc trigger that owns the push subscription (used to attach the dead-letter topic out of band)."
  value       = google_cloudfunctions2_function.sync.event_trigger[0].trigger
}

output "pubsub_service_agent" {
  description = "Pub/Sub service agent; needs subscriber on the Eventarc subscription if you attach the dead-letter topic."
  value       = "service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"
}
