# Shared values. Each topical file (pubsub.tf, function.tf, ...) owns its resources;
# what more than one of them needs lives here.

data "google_project" "this" {
  project_id = var.project_id
}

locals {
  bigquery_project = coalesce(var.bigquery_project, var.project_id)
  sql_project      = coalesce(var.sql_instance_project, var.project_id)
  scheduler_region = coalesce(var.scheduler_region, var.region)

  # One deadline per invocation (sync/core/deadline.py): the work budget, then a fixed reserve for
  # the commit and the continuation publish, all inside the function timeout. The default also
  # keeps a minute of margin for what the platform does before the code runs (a cold start).
  commit_reserve_seconds = 60 # sync/core/deadline.py RESERVE_SECONDS
  time_budget_seconds    = coalesce(var.time_budget_seconds, var.function_timeout_seconds - local.commit_reserve_seconds - 60)
  lease_seconds          = coalesce(var.lease_seconds, var.function_timeout_seconds + 60)

  # What a page costs in memory (sync/core/memory.py, measured by bench/page_memory.py). The
  # function refuses to start when a page's modelled peak, with headroom, exceeds its memory;
  # the precondition on the function refuses the same at plan time.
  memory_base_mib     = 140   # sync/core/memory.py BASE_MIB
  memory_mib_per_row  = 0.015 # sync/core/memory.py MIB_PER_ROW
  memory_headroom     = 1.25  # sync/core/memory.py HEADROOM
  memory_unit_bytes   = { M = 1000000, Mi = 1048576, G = 1000000000, Gi = 1073741824 }
  function_memory_mib = tonumber(regex("^[0-9]+", var.function_memory)) * local.memory_unit_bytes[regex("[A-Za-z]+$", var.function_memory)] / 1048576
  page_peak_mib       = local.memory_base_mib + local.memory_mib_per_row * var.page_size

  # Messages on the trigger topic. The scheduler sends tick; operators send
  # full_resync by hand (see outputs.full_resync_command).
  tick_message        = { type = "tick" }
  full_resync_message = { type = "full_resync" }

  # Log-based metric names: underscores only, so their PromQL names
  # (logging_googleapis_com:user_<name>) need no escaping.
  metric_prefix = replace(var.name, "-", "_")

  # Every log line a 2nd-gen function writes is attributed to its Cloud Run service.
  function_log_filter = "resource.type=\"cloud_run_revision\" AND resource.labels.service_name=\"${var.name}\""
}
