# One dashboard on the run_finished log metrics (monitoring.tf): is it running, is it
# keeping up, what does it write, what does it reject, what does BigQuery bill; and the
# series behind each alert for a silent stop (dead letters, configuration errors, push
# answers, memory), so an incident's chart and the dashboard's agree.
# README "Dashboard" shows what healthy and unhealthy look like.

locals {
  dashboard_window = "1h"

  # Average per run over the window: sum of the per-run values / number of runs.
  per_run = {
    for key in keys(local.run_value_metrics) : key => join("", [
      "sum(increase(logging_googleapis_com:user_${google_logging_metric.run_value[key].name}_sum{${local.promql_selector}}[${local.dashboard_window}]))",
      " / sum(increase(logging_googleapis_com:user_${google_logging_metric.run_value[key].name}_count{${local.promql_selector}}[${local.dashboard_window}]))",
    ])
  }
  runs_by_status = "sum by (status) (increase(logging_googleapis_com:user_${google_logging_metric.runs.name}{${local.promql_selector}}[${local.dashboard_window}]))"

  # The alerts' own series (monitoring.tf, local.*_series), in PromQL.
  silent_stop_queries = {
    dead_letters  = "max(pubsub_googleapis_com:subscription_num_undelivered_messages{monitored_resource=\"pubsub_subscription\",subscription_id=\"${google_pubsub_subscription.dead_letter_inspect.name}\"})"
    config_errors = "sum(increase(logging_googleapis_com:user_${google_logging_metric.config_errors.name}{${local.promql_selector}}[${local.dashboard_window}]))"
    push_answers  = "sum by (response_class) (increase(pubsub_googleapis_com:subscription_push_request_count{monitored_resource=\"pubsub_subscription\",subscription_id=\"${google_pubsub_subscription.push.name}\"}[5m]))"
    memory_p99    = "histogram_quantile(0.99, sum by (le) (increase(run_googleapis_com:container_memory_utilizations_bucket{monitored_resource=\"cloud_run_revision\",service_name=\"${google_cloudfunctions2_function.sync.name}\"}[5m])))"
  }

  dashboard_tiles = [
    { title = "Finished runs per hour, by status (failed > 0 is unhealthy)", queries = { runs = local.runs_by_status } },
    { title = "Hours since the newest source change (lag; per-run average)", queries = { lag_hours = "(${local.per_run["lag_seconds"]}) / 3600" } },
    {
      title = "Rows written per run (average)"
      queries = {
        inserted = local.per_run["rows_inserted"]
        updated  = local.per_run["rows_updated"]
        deleted  = local.per_run["rows_deleted"]
      }
    },
    {
      title = "Rejections per run (average): skipped rows are not written, degraded rows lose a field"
      queries = {
        skipped  = local.per_run["rows_skipped"]
        degraded = local.per_run["rows_degraded"]
      }
    },
    { title = "Rows read per run (average)", queries = { read = local.per_run["rows_read"] } },
    { title = "BigQuery bytes billed per run (average; empty until the code logs bigquery_bytes_billed)", queries = { bytes = local.per_run["bigquery_bytes_billed"] } },
    { title = "Messages waiting in the dead-letter subscription (above 0: replay them)", queries = { waiting = local.silent_stop_queries["dead_letters"] } },
    { title = "Configuration errors per hour (lines at CRITICAL; above 0: the deployment is broken)", queries = { critical = local.silent_stop_queries["config_errors"] } },
    { title = "Push deliveries per 5 minutes, by response class (anything but ack is a failed delivery)", queries = { by_response_class = local.silent_stop_queries["push_answers"] } },
    { title = "Memory used, fraction of function_memory (p99 over 5 minutes; near 1 the instance is killed)", queries = { p99 = local.silent_stop_queries["memory_p99"] } },
  ]
}

resource "google_monitoring_dashboard" "sync" {
  dashboard_json = jsonencode({
    displayName = "${var.name} sync"
    mosaicLayout = {
      columns = 12
      tiles = concat(
        [for i, tile in local.dashboard_tiles : {
          xPos   = (i % 2) * 6
          yPos   = floor(i / 2) * 4
          width  = 6
          height = 4
          widget = {
            title = tile.title
            xyChart = {
              chartOptions = { mode = "COLOR" }
              dataSets = [for label, query in tile.queries : {
                plotType        = "LINE"
                legendTemplate  = label
                targetAxis      = "Y1"
                timeSeriesQuery = { prometheusQuery = query }
              }]
            }
          }
        }],
        [
          {
            xPos   = 0
            yPos   = ceil(length(local.dashboard_tiles) / 2) * 4
            width  = 6
            height = 4
            widget = { title = "Alert: run failed", alertChart = { name = google_monitoring_alert_policy.run_failed.name } }
          },
          {
            xPos   = 6
            yPos   = ceil(length(local.dashboard_tiles) / 2) * 4
            width  = 6
            height = 4
            widget = { title = "Alert: no successful sync", alertChart = { name = google_monitoring_alert_policy.sync_stale.name } }
          },
          {
            xPos   = 0
            yPos   = ceil(length(local.dashboard_tiles) / 2) * 4 + 4
            width  = 12
            height = 5
            widget = {
              title     = "run_finished lines (newest first)"
              logsPanel = { filter = local.run_finished_filter, resourceNames = ["projects/${var.project_id}"] }
            }
          },
        ],
      )
    }
  })
}
