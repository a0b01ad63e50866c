# The one topic that drives the function: Cloud Scheduler publishes ticks to it,
# operators publish full_resync to it, and the function publishes its own
# continuation messages to it (SYNC_TOPIC).
resource "google_pubsub_topic" "sync" {
  #checkov:skip=CKV_GCP_83:Messages carry only {"type":...} control payloads and a cursor, no customer data; Google-managed encryption is sufficient.
  name = var.name

  # Lets an operator replay a lost tick window with `gcloud pubsub subscriptions seek`.
  message_retention_duration = "86400s"
}

# Delivery: a push subscription Terraform owns, instead of an Eventarc trigger, because
# only a subscription we own can carry a dead-letter policy (provider issue #25069).
#
#   * The function returns (HTTP 200, ack) on success and on permanent errors, which
#     it logs as page_failed retryable=false; those are never redelivered.
#   * It raises (HTTP 500) on retryable errors; Pub/Sub redelivers with exponential
#     backoff between retry_policy's bounds.
#   * After var.max_delivery_attempts failed deliveries the message moves to the
#     dead-letter topic, where `python -m sync dead-letters` lists it and `--replay`
#     republishes it here. A dropped tick or continuation loses no data either way:
#     the cursor lives in Postgres and the next tick resumes from it.
resource "google_pubsub_subscription" "push" {
  name  = "${var.name}-push"
  topic = google_pubsub_topic.sync.id

  # Pub/Sub waits this long for the push response before it counts a failed attempt;
  # shorter than the function timeout would redeliver a page that is still running.
  ack_deadline_seconds = min(var.function_timeout_seconds + 60, 600)

  push_config {
    push_endpoint = google_cloudfunctions2_function.sync.service_config[0].uri

    oidc_token {
      service_account_email = google_service_account.invoker.email
      # Cloud Run accepts its own URL as the audience.
      audience = google_cloudfunctions2_function.sync.service_config[0].uri
    }
  }

  retry_policy {
    minimum_backoff = "10s"
    maximum_backoff = "600s"
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.dead_letter.id
    max_delivery_attempts = var.max_delivery_attempts
  }

  # A subscription with no activity for 31 days is deleted by default; this one must live
  # as long as the deployment.
  expiration_policy {
    ttl = ""
  }

  depends_on = [
    # Deliveries before these exist would be refused (403) or could not be dead-lettered.
    google_cloud_run_v2_service_iam_member.invoker,
    google_service_account_iam_member.pubsub_agent_token_creator,
    google_pubsub_topic_iam_member.dead_letter_pubsub_agent,
  ]
}

# Forwarding to the dead-letter topic acks the message on the source subscription as the
# Pub/Sub service agent, which therefore needs subscriber on it (and publisher on the topic).
resource "google_pubsub_subscription_iam_member" "push_pubsub_agent" {
  subscription = google_pubsub_subscription.push.id
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_service_agent
}

resource "google_pubsub_topic" "dead_letter" {
  #checkov:skip=CKV_GCP_83:Dead letters are copies of the control messages above; Google-managed encryption is sufficient.
  name = "${var.name}-dead-letter"

  message_retention_duration = var.dead_letter_retention
}

# Messages published to a topic with no subscription are dropped, so this one exists
# before the first dead letter can arrive. Read by `python -m sync dead-letters`.
resource "google_pubsub_subscription" "dead_letter_inspect" {
  name  = "${var.name}-dead-letter-inspect"
  topic = google_pubsub_topic.dead_letter.id

  # Never expires, and keeps acked messages so that a replay (which acks) can be undone
  # with `gcloud pubsub subscriptions seek`.
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
  member = local.pubsub_service_agent
}
