# Log-based metrics and alerts built on the one JSON line the code logs per run:
#   jsonPayload.event="run_finished", jsonPayload.status="success"|"failed",
#   numeric rows_read, rows_skipped, ... (rows_skipped = rows rejected by validation),
# plus one alert for each way the sync can stop without a failed run: dead letters waiting,
# a configuration error (logged at CRITICAL and acked), push deliveries answered non-2xx,
# memory near the instance's limit; and one for deletes the guard held (deletes_held), which
# wait for an operator while every run keeps succeeding. The dashboard on the same series is in dashboard.tf.
# Cloud Logging parses stdout JSON into jsonPayload; a 2nd-gen function's logs
# are attributed to its Cloud Run service (local.function_log_filter).

locals {
  run_finished_filter = "${local.function_log_filter} AND jsonPayload.event=\"run_finished\""

  runs_metric = "${local.metric_prefix}_runs"

  # One distribution per numeric field of the run_finished line: per-run values and their
  # sums are both available (PromQL _sum/_count/_bucket). A line without the field (a failed
  # run's) is not counted.
  run_value_metrics = {
    rows_read             = { what = "rows read", unit = "1", growth = 2 }
    rows_inserted         = { what = "rows inserted", unit = "1", growth = 2 }
    rows_updated          = { what = "rows updated", unit = "1", growth = 2 }
    rows_deleted          = { what = "rows soft-deleted", unit = "1", growth = 2 }
    rows_skipped          = { what = "rows rejected by validation (skipped)", unit = "1", growth = 2 }
    rows_degraded         = { what = "rows kept with a field nulled (degraded)", unit = "1", growth = 2 }
    lag_seconds           = { what = "seconds from the newest source change to the run's end", unit = "s", growth = 2 }
    bigquery_bytes_billed = { what = "BigQuery bytes billed", unit = "By", growth = 4 }
  }

  # Every line the function logs at CRITICAL is a configuration error (main.py): the message
  # names the variable at fault, and it was acked because every retry would fail the same way.
  config_errors_filter = "${local.function_log_filter} AND severity=CRITICAL"

  # The ERROR line a run logs when it holds deletes (sync/postgres/guard.py): a held purge, or
  # rows the source flags deleted. Rows a hold already keeps log deletes_still_held instead.
  deletes_held_filter = "${local.function_log_filter} AND jsonPayload.event=\"deletes_held\""

  # Metrics GCP itself writes, in the filter form and in PromQL (dots and slashes become
  # underscores, the first slash a colon). tests/system/test_terraform.py pins these names.
  dead_letter_series  = "metric.type=\"pubsub.googleapis.com/subscription/num_undelivered_messages\" AND resource.type=\"pubsub_subscription\" AND resource.label.subscription_id=\"${google_pubsub_subscription.dead_letter_inspect.name}\""
  push_failure_series = "metric.type=\"pubsub.googleapis.com/subscription/push_request_count\" AND resource.type=\"pubsub_subscription\" AND resource.label.subscription_id=\"${google_pubsub_subscription.push.name}\" AND metric.label.response_class!=\"ack\""
  memory_series       = "metric.type=\"run.googleapis.com/container/memory/utilizations\" AND resource.type=\"cloud_run_revision\" AND resource.label.service_name=\"${google_cloudfunctions2_function.sync.name}\""

  # Monitoring's PromQL names for log-based metrics: logging_googleapis_com:user_<name>;
  # distributions add _sum/_count/_bucket. Resource labels are plain labels.
  promql_selector = "monitored_resource=\"cloud_run_revision\",service_name=\"${var.name}\""
}

# --- Log-based metrics -----------------------------------------------------------

resource "google_logging_metric" "runs" {
  name        = local.runs_metric
  description = "Finished ${var.name} runs, by status (success|failed) and trigger."
  filter      = local.run_finished_filter

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "INT64"
    unit         = "1"
    display_name = "${var.name} finished runs"

    labels {
      key         = "status"
      value_type  = "STRING"
      description = "success or failed"
    }
    labels {
      key         = "trigger"
      value_type  = "STRING"
      description = "What started the run (tick, full_resync, continuation)"
    }
  }

  label_extractors = {
    status  = "EXTRACT(jsonPayload.status)"
    trigger = "EXTRACT(jsonPayload.trigger)"
  }
}

resource "google_logging_metric" "run_value" {
  for_each = local.run_value_metrics

  name            = "${local.metric_prefix}_${each.key}"
  description     = "${each.value.what} per finished ${var.name} run (run_finished ${each.key})."
  filter          = local.run_finished_filter
  value_extractor = "EXTRACT(jsonPayload.${each.key})"

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "DISTRIBUTION"
    unit         = each.value.unit
    display_name = "${var.name} ${each.value.what} per run"
  }

  bucket_options {
    exponential_buckets {
      num_finite_buckets = 24
      growth_factor      = each.value.growth
      scale              = 1
    }
  }
}

resource "google_logging_metric" "config_errors" {
  name        = "${local.metric_prefix}_config_errors"
  description = "Lines the ${var.name} function logged at CRITICAL: bad configuration, named in the message; the message was acked, so nothing retries it."
  filter      = local.config_errors_filter

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "INT64"
    unit         = "1"
    display_name = "${var.name} configuration errors"
  }
}

# A recorded source table or column missing or unreadable (sync/run/shape_check.py): every
# invocation fails by name and writes nothing until it returns.
resource "google_logging_metric" "source_unavailable" {
  name        = "${local.metric_prefix}_source_unavailable"
  description = "Invocations of ${var.name} that found a table or column the replica was built from missing or unreadable in BigQuery (jsonPayload.event=\"source_unavailable\"); nothing was written."
  filter      = "${local.function_log_filter} AND jsonPayload.event=\"source_unavailable\""

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "INT64"
    unit         = "1"
    display_name = "${var.name} source unavailable"
  }
}

resource "google_logging_metric" "deletes_held" {
  name        = "${local.metric_prefix}_deletes_held"
  description = "Times a ${var.name} run held deletes for an operator (deletes_held), by kind (purge|source_deletes)."
  filter      = local.deletes_held_filter

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "INT64"
    unit         = "1"
    display_name = "${var.name} deletes held"

    labels {
      key         = "kind"
      value_type  = "STRING"
      description = "purge (a full resync's) or source_deletes (rows the source flags deleted)"
    }
  }

  label_extractors = {
    kind = "EXTRACT(jsonPayload.kind)"
  }
}

# An alert policy created in the same apply as its log-based metric fails with 404
# "Cannot find metric(s) that match type = ... If a metric was created recently, it could
# take up to 10 minutes to become available" (provider issue #11102, still open). No
# resource reports that a metric has become visible, so the policies on log-based metrics
# wait the documented 10 minutes. The wait starts when the metrics exist and runs alongside
# the function's build (itself behind a 7-minute wait, iam.tf), so a first apply grows by a
# few minutes at most. A new or renamed metric waits again; an unchanged one never does.
resource "time_sleep" "log_metrics" {
  create_duration = "600s"

  triggers = {
    metrics = join(",", concat(
      [google_logging_metric.runs.id, google_logging_metric.config_errors.id, google_logging_metric.source_unavailable.id, google_logging_metric.error_events.id, google_logging_metric.deletes_held.id],
      [for m in google_logging_metric.run_value : m.id],
    ))
  }
}

# --- Alert policies --------------------------------------------------------------

# (1) A run finished with status=failed.
resource "google_monitoring_alert_policy" "run_failed" {
  display_name          = "${var.name}: run failed"
  combiner              = "OR"
  severity              = "ERROR"
  notification_channels = var.notification_channels

  conditions {
    display_name = "run_finished with status=failed"

    condition_threshold {
      filter          = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.runs.name}\" AND resource.type=\"cloud_run_revision\" AND metric.label.status=\"failed\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"

      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
      }

      trigger {
        count = 1
      }
    }
  }

  alert_strategy {
    auto_close = "3600s"
  }

  depends_on = [time_sleep.log_metrics]

  documentation {
    mime_type = "text/markdown"
    subject   = "${var.name}: a sync run failed"
    content   = <<-EOT
      A ${var.name} run logged `run_finished` with `status="failed"`.

      Logs Explorer: `${local.run_finished_filter} AND jsonPayload.status="failed"`,
      then follow its `jsonPayload.run_id` to the `page_failed` line
      (`jsonPayload.retryable` says whether Pub/Sub will redeliver).
      Runbook: terraform/README.md, "Where to look".
    EOT
  }
}

# (2) No successful run for var.alert_stale_after_minutes. PromQL rather than a
# metric-absence condition: absence windows are capped below 24 h, and the
# success series may be written as zeros rather than go missing.
resource "google_monitoring_alert_policy" "sync_stale" {
  display_name          = "${var.name}: no successful sync for ${var.alert_stale_after_minutes}m"
  combiner              = "OR"
  severity              = "ERROR"
  notification_channels = var.notification_channels

  conditions {
    display_name = "no run_finished status=success in ${var.alert_stale_after_minutes}m"

    condition_prometheus_query_language {
      query               = <<-EOT
        (sum(increase(logging_googleapis_com:user_${google_logging_metric.runs.name}{${local.promql_selector},status="success"}[${var.alert_stale_after_minutes}m])) < 1)
        or
        absent_over_time(logging_googleapis_com:user_${google_logging_metric.runs.name}{${local.promql_selector},status="success"}[${var.alert_stale_after_minutes}m])
      EOT
      duration            = "0s"
      evaluation_interval = "300s"
    }
  }

  alert_strategy {
    auto_close = "3600s"
  }

  depends_on = [time_sleep.log_metrics]

  documentation {
    mime_type = "text/markdown"
    subject   = "${var.name}: no successful sync for ${var.alert_stale_after_minutes} minutes"
    content   = <<-EOT
      No ${var.name} run has finished with `status="success"` for ${var.alert_stale_after_minutes} minutes.
      Also fires after the first deploy until the first run succeeds.

      Check in order: the scheduler job `${google_cloud_scheduler_job.tick.name}` ran
      (`gcloud scheduler jobs describe ${google_cloud_scheduler_job.tick.name} --location=${var.region}`);
      the function received messages (Logs Explorer: `${local.function_log_filter}`);
      failed runs (alert "${var.name}: run failed"); a stuck lease (many `jsonPayload.event="run_busy"` lines).
      Runbook: terraform/README.md, "Where to look".
    EOT
  }
}

# (3) Rejected-row rate: sum(rows_skipped) / sum(rows_read) over the window.
resource "google_monitoring_alert_policy" "rejected_rate" {
  display_name          = "${var.name}: rejected-row rate above ${var.alert_rejected_rate_threshold}"
  combiner              = "OR"
  severity              = "WARNING"
  notification_channels = var.notification_channels

  conditions {
    display_name = "rows_skipped / rows_read > ${var.alert_rejected_rate_threshold} over ${var.alert_rejected_rate_window_minutes}m"

    condition_prometheus_query_language {
      # No rows read gives 0/0 = NaN, which compares false: quiet periods never fire.
      query               = <<-EOT
        sum(increase(logging_googleapis_com:user_${google_logging_metric.run_value["rows_skipped"].name}_sum{${local.promql_selector}}[${var.alert_rejected_rate_window_minutes}m]))
        /
        sum(increase(logging_googleapis_com:user_${google_logging_metric.run_value["rows_read"].name}_sum{${local.promql_selector}}[${var.alert_rejected_rate_window_minutes}m]))
        > ${var.alert_rejected_rate_threshold}
      EOT
      duration            = "0s"
      evaluation_interval = "300s"
    }
  }

  alert_strategy {
    auto_close = "3600s"
  }

  depends_on = [time_sleep.log_metrics]

  documentation {
    mime_type = "text/markdown"
    subject   = "${var.name}: rejected-row rate above ${var.alert_rejected_rate_threshold}"
    content   = <<-EOT
      More than a fraction ${var.alert_rejected_rate_threshold} of the rows read in the last
      ${var.alert_rejected_rate_window_minutes} minutes were rejected by validation (`rows_skipped`).
      Usually a source schema change in Fivetran. Rejected rows are kept in the
      database for ${var.rejection_retention_days} days with the reason; see terraform/README.md, "Where to look".
    EOT
  }
}

# (4) Messages waiting in the dead-letter subscription: the push subscription gave up on them
# after max_delivery_attempts, so the run they carried stopped and nothing retries it.
resource "google_monitoring_alert_policy" "dead_letters" {
  display_name          = "${var.name}: messages waiting in the dead-letter subscription"
  combiner              = "OR"
  severity              = "ERROR"
  notification_channels = var.notification_channels

  conditions {
    display_name = "num_undelivered_messages > 0 on ${google_pubsub_subscription.dead_letter_inspect.name}"

    condition_threshold {
      filter          = local.dead_letter_series
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"

      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_MAX"
        cross_series_reducer = "REDUCE_SUM"
      }

      trigger {
        count = 1
      }
    }
  }

  alert_strategy {
    auto_close = "86400s"
  }

  documentation {
    mime_type = "text/markdown"
    subject   = "${var.name}: messages in the dead-letter subscription"
    content   = <<-EOT
      Pub/Sub gave up delivering at least one message to ${var.name} after ${var.max_delivery_attempts}
      attempts and moved it to `${google_pubsub_topic.dead_letter.name}`. The run it carried has stopped:
      no continuation follows a dead letter. No data is lost (the cursor is in Postgres), but a full
      resync or a long run waits until someone replays it; the next tick starts a new run.

      First command: `eval "$(terraform output -raw dead_letters_command)"` lists them with their
      attempts; find why they failed (`jsonPayload.event="page_failed"`), fix it, then replay with
      `--replay`. The alert clears when the subscription is empty again.
      Runbook: terraform/README.md, "Dead letters".
    EOT
  }
}

# (5) A configuration error: logged at CRITICAL and acked, so Pub/Sub never retries and no run
# is recorded as failed; only this alert says the deployment is broken.
resource "google_monitoring_alert_policy" "config_error" {
  display_name          = "${var.name}: configuration error"
  combiner              = "OR"
  severity              = "CRITICAL"
  notification_channels = var.notification_channels

  conditions {
    display_name = "a line at CRITICAL from ${var.name}"

    condition_threshold {
      filter          = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.config_errors.name}\" AND resource.type=\"cloud_run_revision\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"

      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
      }

      trigger {
        count = 1
      }
    }
  }

  alert_strategy {
    auto_close = "3600s"
  }

  depends_on = [time_sleep.log_metrics]

  documentation {
    mime_type = "text/markdown"
    subject   = "${var.name}: configuration error (the sync is not running)"
    content   = <<-EOT
      ${var.name} logged a configuration error at CRITICAL: a setting is wrong (the message names
      the variable: `INSTANCE_CONNECTION_NAME`, `DB_PASSWORD_SECRET`, `DB_USER`, credentials, a
      malformed value) or the database refused the login. The message was acknowledged, since
      every retry would fail the same way, so until the deployment is fixed every tick fails alike.

      First command: `gcloud logging read '${local.config_errors_filter}' --project=${var.project_id} --limit=5 --format='value(jsonPayload.message)'`.
      Fix the variable in terraform.tfvars (or the secret / database user) and `terraform apply`.
      Runbook: terraform/README.md, "Log lines: working as designed, or look now".
    EOT
  }
}

# (5b) The source has lacked what the replica was built from for var.alert_source_unavailable_minutes:
# a connector re-sync or a lost permission that did not pass on its own.
resource "google_monitoring_alert_policy" "source_unavailable" {
  display_name          = "${var.name}: source table missing"
  combiner              = "OR"
  severity              = "ERROR"
  notification_channels = var.notification_channels

  conditions {
    display_name = "source_unavailable logged in every window for ${var.alert_source_unavailable_minutes} minutes"

    condition_threshold {
      filter          = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.source_unavailable.name}\" AND resource.type=\"cloud_run_revision\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "${var.alert_source_unavailable_minutes * 60}s"

      aggregations {
        alignment_period     = "900s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
      }

      trigger {
        count = 1
      }
    }
  }

  alert_strategy {
    auto_close = "3600s"
  }

  depends_on = [time_sleep.log_metrics]

  documentation {
    mime_type = "text/markdown"
    subject   = "${var.name}: a source table the replica was built from is missing"
    content   = <<-EOT
      ${var.name} has found a BigQuery table or column that the replica was built from missing or
      unreadable for ${var.alert_source_unavailable_minutes} minutes (a Fivetran re-sync that dropped
      the table, a permission taken away). Nothing is written meanwhile; rows keep their last good values.

      First command: `gcloud logging read '${local.function_log_filter} AND jsonPayload.event="source_unavailable"' --project=${var.project_id} --limit=5 --format='value(jsonPayload.message)'`.
      Then `python -m sync source` shows what was recorded beside what the source has now. If the
      table is gone for good and that is intended, `python -m sync source --accept` records the
      source as it is (the next run re-reads every row); `--switch salesforce|gong` changes the
      opportunity table (the next run is a full resync).
      Runbook: terraform/README.md, "Log lines: working as designed, or look now".
    EOT
  }
}

# (6) Push deliveries answered non-2xx for var.alert_push_failure_minutes: every 5-minute window
# has at least one. One failing message retries with backoff up to max_delivery_attempts;
# this fires when failures keep coming, before they end as dead letters.
resource "google_monitoring_alert_policy" "push_failures" {
  display_name          = "${var.name}: push deliveries failing for ${var.alert_push_failure_minutes}m"
  combiner              = "OR"
  severity              = "WARNING"
  notification_channels = var.notification_channels

  conditions {
    display_name = "push_request_count with response_class != ack, every 5 minutes for ${var.alert_push_failure_minutes}m"

    condition_threshold {
      filter          = local.push_failure_series
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "${var.alert_push_failure_minutes * 60}s"

      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
      }

      trigger {
        count = 1
      }
    }
  }

  alert_strategy {
    auto_close = "3600s"
  }

  documentation {
    mime_type = "text/markdown"
    subject   = "${var.name}: push deliveries answered non-2xx for ${var.alert_push_failure_minutes} minutes"
    content   = <<-EOT
      For ${var.alert_push_failure_minutes} minutes Pub/Sub's pushes to ${var.name} have been answered with
      something other than a 2xx: 429 (another invocation holds the run), 503 (a transient failure),
      500 (an error the code does not recognise), or no answer in time (`deadline_exceeded`: the
      instance was killed or ran past its timeout). Each message is retried with backoff and
      dead-lettered after ${var.max_delivery_attempts} attempts.

      First command: `gcloud logging read '${local.function_log_filter} AND jsonPayload.event="page_failed"' --project=${var.project_id} --limit=10 --format='table(timestamp,severity,jsonPayload.message)'`.
      Steady 429s with no `page_committed` mean a stuck lease; see terraform/README.md,
      "Log lines: working as designed, or look now" for each status.
    EOT
  }
}

# (7) Memory near the instance's limit: past it the platform kills the instance mid-page, which
# the push subscription only sees as a delivery that timed out.
resource "google_monitoring_alert_policy" "memory_high" {
  display_name          = "${var.name}: memory above ${var.alert_memory_utilization * 100}% of ${var.function_memory}"
  combiner              = "OR"
  severity              = "WARNING"
  notification_channels = var.notification_channels

  conditions {
    display_name = "container/memory/utilizations p99 > ${var.alert_memory_utilization}"

    condition_threshold {
      filter          = local.memory_series
      comparison      = "COMPARISON_GT"
      threshold_value = var.alert_memory_utilization
      duration        = "0s"

      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_PERCENTILE_99"
        cross_series_reducer = "REDUCE_MAX"
      }

      trigger {
        count = 1
      }
    }
  }

  alert_strategy {
    auto_close = "3600s"
  }

  documentation {
    mime_type = "text/markdown"
    subject   = "${var.name}: memory near the ${var.function_memory} limit"
    content   = <<-EOT
      A ${var.name} instance used more than ${var.alert_memory_utilization * 100}% of its ${var.function_memory}.
      Past the limit Cloud Run kills it in the middle of a page: nothing is committed, the push
      times out, and the same page is delivered again.

      First command: `gcloud logging read '${local.function_log_filter} AND textPayload:"Memory limit"' --project=${var.project_id} --limit=5`
      (an instance killed for memory logs "Memory limit of ... exceeded"). Then raise
      `function_memory` or lower `page_size` in terraform.tfvars and `terraform apply`.
    EOT
  }
}

# --- One alert per ERROR event an operator must act on ------------------------------

# Every event the code logs at ERROR or CRITICAL is either counted by a metric some alert above
# watches (run_finished, every CRITICAL line), listed here, or has a written reason in
# tests/system/test_alerts.py, which fails on one that has none (a new ERROR event is one line here
# or there). Each entry is one alert policy on the error_events metric below; `only` narrows it by
# a label of the line (page_failed: acknowledged without being processed, not the retried ones).
locals {
  error_event_alerts = {
    purge_skipped = {
      severity = "WARNING"
      only     = {}
      subject  = "a full resync finished without purging"
      action   = "A completed full resync removed nothing deleted in the source (jsonPayload.reason says why), so rows deleted without an is_deleted flag stay live. Run another full resync once the reason is fixed (outputs.full_resync_command)."
    }
    publish_failed = {
      severity = "WARNING"
      only     = {}
      subject  = "continuations are not being published"
      action   = "A page committed but its continuation could not be published to the trigger topic, so the run advances one page per tick instead of draining. Check the runtime service account's roles/pubsub.publisher on the topic."
    }
    follow_up_failed = {
      severity = "WARNING"
      only     = {}
      subject  = "Fivetran's sync_end no longer starts the sync at once"
      action   = "A run ended with sync_end requests waiting, and the follow-up tick could not be published, so those changes wait for the next scheduled tick. Check the runtime service account's roles/pubsub.publisher on the topic and the sync_wakeups table (docs/operations.md)."
    }
    webhook_failed = {
      severity = "ERROR"
      only     = {}
      subject  = "the Fivetran webhook is failing"
      action   = "The webhook function answered 500 for a reason it did not expect (jsonPayload.error); Fivetran retries for 24 hours, and meanwhile changes wait for the scheduled tick. Read the line's error and the webhook function's logs (terraform/README.md, Fivetran webhook)."
    }
    page_failed = {
      severity = "ERROR"
      only     = { retryable = "false" }
      subject  = "a message was acknowledged without being processed"
      action   = "A permanent failure: the message cannot succeed on retry, so it was acknowledged and dropped (a run in progress also logs run_finished status=failed). Read jsonPayload.error; a message the function cannot read (jsonPayload.message_type null) came from a publisher other than the scheduler or the function."
    }
  }
}

resource "google_logging_metric" "error_events" {
  name        = "${local.metric_prefix}_error_events"
  description = "Lines the ${var.name} function logged at ERROR, by event (and retryable, where the line has it)."
  # Both functions: the webhook's own failures (webhook_failed) page like the sync's.
  filter = "resource.type=\"cloud_run_revision\" AND resource.labels.service_name=(\"${var.name}\" OR \"${var.name}-fivetran-webhook\") AND severity=ERROR AND jsonPayload.event:*"

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "INT64"
    unit         = "1"
    display_name = "${var.name} ERROR lines by event"

    labels {
      key         = "event"
      value_type  = "STRING"
      description = "jsonPayload.event of the line"
    }
    labels {
      key         = "retryable"
      value_type  = "STRING"
      description = "jsonPayload.retryable (page_failed): true if Pub/Sub redelivers the message"
    }
  }

  label_extractors = {
    event     = "EXTRACT(jsonPayload.event)"
    retryable = "EXTRACT(jsonPayload.retryable)"
  }
}

resource "google_monitoring_alert_policy" "error_event" {
  for_each = local.error_event_alerts

  display_name          = "${var.name}: ${each.value.subject}"
  combiner              = "OR"
  severity              = each.value.severity
  notification_channels = var.notification_channels

  conditions {
    display_name = "ERROR lines with event=${each.key}"

    condition_threshold {
      filter          = join(" AND ", concat(["metric.type=\"logging.googleapis.com/user/${google_logging_metric.error_events.name}\" AND resource.type=\"cloud_run_revision\" AND metric.label.event=\"${each.key}\""], [for k, v in each.value.only : "metric.label.${k}=\"${v}\""]))
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"

      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
      }

      trigger {
        count = 1
      }
    }
  }

  alert_strategy {
    auto_close = "3600s"
  }

  depends_on = [time_sleep.log_metrics]

  documentation {
    mime_type = "text/markdown"
    subject   = "${var.name}: ${each.value.subject}"
    content   = <<-EOT
      ${each.value.action}

      First command: `gcloud logging read '${local.function_log_filter} AND severity=ERROR AND jsonPayload.event="${each.key}"' --project=${var.project_id} --limit=5 --format=json`.
      Runbook: terraform/README.md, "Log lines: working as designed, or look now".
    EOT
  }
}

# (8) Deletes held: a run would have soft-deleted more of the replica than the delete guard
# allows, so it held them and finished everything else. Runs keep succeeding, so nothing else fires.
resource "google_monitoring_alert_policy" "deletes_held" {
  display_name          = "${var.name}: deletes held for an operator"
  combiner              = "OR"
  severity              = "ERROR"
  notification_channels = var.notification_channels

  conditions {
    display_name = "a deletes_held line from ${var.name}"

    condition_threshold {
      filter          = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.deletes_held.name}\" AND resource.type=\"cloud_run_revision\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"

      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
      }

      trigger {
        count = 1
      }
    }
  }

  alert_strategy {
    auto_close = "86400s"
  }

  depends_on = [time_sleep.log_metrics]

  documentation {
    mime_type = "text/markdown"
    subject   = "${var.name}: deletes held, waiting for an operator"
    content   = <<-EOT
      A ${var.name} run would have soft-deleted more of the replica than the delete guard allows
      (`SYNC_DELETE_GUARD_PERCENT` of the live rows, never fewer than `SYNC_DELETE_GUARD_MIN_ROWS`):
      a full resync's purge, or a wave of rows the source flags deleted. It held them and wrote
      everything else; the held rows stay live until someone looks.

      First command: `python -m sync status` (with the function's database settings) shows what is
      held, by which run, against how many live rows; the log line has a sample of the ids:
      `gcloud logging read '${local.deletes_held_filter}' --project=${var.project_id} --limit=5 --format=json`.
      Check the source (a Fivetran re-sync in flight? a connector pointed elsewhere?). If the deletes are
      real, `python -m sync release-deletes` approves them and the next run re-reads the source and
      applies what it then finds. Runbook: terraform/README.md, "Held deletes".
    EOT
  }
}
