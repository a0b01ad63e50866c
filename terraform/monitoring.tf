# Log-based metrics and alerts built on the one JSON line the code logs per run:
#   jsonPayload.event="run_finished", jsonPayload.status="success"|"failed",
#   numeric rows_read, rows_skipped, ... (rows_skipped = rows rejected by validation).
# The dashboard on the same metrics is in dashboard.tf.
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

# An alert policy created in the same apply as its log-based metric fails with 404
# "Cannot find metric(s) ... could take up to 10 minutes" (provider issue #11102). The
# policies wait for this instead; it runs alongside the function's build, which takes
# minutes anyway, so a first apply is barely longer. A new or renamed metric waits again.
resource "time_sleep" "log_metrics" {
  create_duration = "300s"

  triggers = {
    metrics = join(",", concat([google_logging_metric.runs.id], [for m in google_logging_metric.run_value : m.id]))
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
