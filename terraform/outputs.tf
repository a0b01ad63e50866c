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

output "push_subscription" {
  description = "Push subscription that delivers the trigger topic to the function (with the dead-letter policy)."
  value       = google_pubsub_subscription.push.id
}

output "dead_letter_topic" {
  description = "Dead-letter topic: messages the push subscription gave up on after max_delivery_attempts."
  value       = google_pubsub_topic.dead_letter.id
}

output "dead_letter_subscription" {
  description = "Pull subscription on the dead-letter topic; SYNC_DEAD_LETTER_SUBSCRIPTION for python -m sync dead-letters."
  value       = google_pubsub_subscription.dead_letter_inspect.id
}

output "dead_letters_command" {
  description = "List the dead letters (add --replay to republish them to the trigger topic). Run with eval \"$(terraform output -raw dead_letters_command)\"."
  value       = "SYNC_TOPIC=${google_pubsub_topic.sync.id} SYNC_DEAD_LETTER_SUBSCRIPTION=${google_pubsub_subscription.dead_letter_inspect.id} python -m sync dead-letters"
}

output "dashboard_url" {
  description = "Cloud Monitoring dashboard of the run_finished metrics."
  value       = "https://console.cloud.google.com/monitoring/dashboards/custom/${basename(google_monitoring_dashboard.sync.id)}?project=${var.project_id}"
}

output "service_account_email" {
  description = "The function's runtime service account."
  value       = google_service_account.runtime.email
}

output "invoker_service_account_email" {
  description = "Service account whose OIDC token the push subscription presents to the function."
  value       = google_service_account.invoker.email
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
  description = "Publish one tick by hand (same message the scheduler sends). Run with eval \"$(terraform output -raw tick_command)\": plain $(...) keeps the quotes in the message."
  value       = "gcloud pubsub topics publish ${google_pubsub_topic.sync.name} --project=${var.project_id} --message='${jsonencode(local.tick_message)}'"
}

output "full_resync_command" {
  description = "Start a full resync. Run with eval \"$(terraform output -raw full_resync_command)\"."
  value       = "gcloud pubsub topics publish ${google_pubsub_topic.sync.name} --project=${var.project_id} --message='${jsonencode(local.full_resync_message)}'"
}

output "logs_query" {
  description = "Logs Explorer query for the per-run summary lines."
  value       = local.run_finished_filter
}

output "pubsub_service_agent" {
  description = "Pub/Sub service agent: mints the push tokens and forwards dead letters (granted in iam.tf and pubsub.tf)."
  value       = trimprefix(local.pubsub_service_agent, "serviceAccount:")
}

output "webhook_url" {
  description = "URL of the Fivetran webhook function (give it to Fivetran with the secret in webhook_secret); null when webhook_enabled is false."
  value       = try(google_cloudfunctions2_function.webhook[0].url, null)
}

output "webhook_secret" {
  description = "Secret Manager secret holding the webhook's signing key (read it with gcloud secrets versions access latest --secret=...)."
  value       = try(google_secret_manager_secret.webhook[0].secret_id, null)
}
