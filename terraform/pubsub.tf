# The one topic that drives the function: Cloud Scheduler publishes ticks to it,
# operators publish full_resync to it, and the function publishes its own
# continuation messages to it (SYNC_TOPIC).
resource "google_pubsub_topic" "sync" {
  #checkov:skip=CKV_GCP_83:Messages carry only {"type":...} control payloads and a cursor, no customer data; Google-managed encryption is sufficient.
  name = var.name

  # Lets an operator replay a lost tick window with `gcloud pubsub subscriptions seek`.
  message_retention_duration = "86400s"
}

# Dead letters.
#
# A 2nd-gen function's event_trigger cannot set a dead-letter policy: Eventarc
# creates and owns the push subscription (hashicorp/terraform-provider-google
# issue #25069). What happens to a message that keeps failing instead:
#   * The code acks permanent errors itself (returns normally after logging
#     event=page_failed retryable=false), so they are never redelivered.
#   * Retryable errors raise; with RETRY_POLICY_RETRY Eventarc redelivers with
#     10-600 s exponential backoff for up to 24 h, then drops the message.
#   * A dropped tick or continuation loses nothing: the cursor lives in Postgres,
#     so the next scheduled tick resumes from it. The stale-sync alert
#     (monitoring.tf) fires if that keeps failing.
#
# This topic + subscription exist so an operator can attach them to the
# Eventarc-managed subscription out of band (README: "Undeliverable messages")
# and inspect what landed here. The Pub/Sub service agent needs publisher on
# this topic for that, which is granted below.
resource "google_pubsub_topic" "dead_letter" {
  #checkov:skip=CKV_GCP_83:Dead letters are copies of the control messages above; Google-managed encryption is sufficient.
  name = "${var.name}-dead-letter"

  message_retention_duration = var.dead_letter_retention
}

resource "google_pubsub_subscription" "dead_letter_inspect" {
  name  = "${var.name}-dead-letter-inspect"
  topic = google_pubsub_topic.dead_letter.id

  # Pull subscription read by people (`gcloud pubsub subscriptions pull`); never
  # expires, keeps acked messages so a pull-and-ack is not destructive.
  message_retention_duration = var.dead_letter_retention
  retain_acked_messages      = true
  ack_deadline_seconds       = 60

  expiration_policy {
    ttl = ""
  }
}

resource "google_pubsub_topic_iam_member" "dead_letter_pubsub_agent" {
  topic  = google_pubsub_topic.dead_letter.id
  role   = "roles/pubsub.publisher"
  member = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"
}
