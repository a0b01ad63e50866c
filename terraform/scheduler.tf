resource "google_cloud_scheduler_job" "tick" {
  name        = "${var.name}-tick"
  region      = local.scheduler_region
  description = "Publishes {\"type\":\"tick\"} to ${google_pubsub_topic.sync.name}; the function resumes from its stored cursor."
  schedule    = var.schedule
  time_zone   = var.schedule_time_zone

  pubsub_target {
    # Must be the topic the push subscription delivers from (tests/system/test_terraform.py checks it).
    topic_name = google_pubsub_topic.sync.id
    data       = base64encode(jsonencode(local.tick_message))
  }

  retry_config {
    # A missed publish is harmless (the next tick resumes the cursor), so retry briefly.
    retry_count = 2
  }
}
