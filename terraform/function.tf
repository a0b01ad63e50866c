# --- Source ---------------------------------------------------------------------

locals {
  repo_root = abspath("${path.module}/..")

  # An allowlist, not an exclude list: the zip holds exactly the entry point, its
  # requirements and the sync package (code + migrations). Anything else in the
  # repo (tests, bench, terraform, virtualenvs, __pycache__, .git) cannot leak in.
  # tests/system/test_terraform.py evaluates these same patterns against the repo.
  function_source_patterns = ["main.py", "requirements.txt", "sync/**/*.py", "sync/**/*.sql"]

  function_source_files = sort(distinct(flatten([
    for pattern in local.function_source_patterns : tolist(fileset(local.repo_root, pattern))
  ])))
}

data "archive_file" "source" {
  type        = "zip"
  output_path = "${path.module}/.build/${var.name}-source.zip"

  dynamic "source" {
    for_each = local.function_source_files
    content {
      filename = source.value
      content  = file("${local.repo_root}/${source.value}")
    }
  }

  lifecycle {
    # fileset() silently matches nothing for a missing file; a zip without the
    # entry point or its requirements would only fail later, in Cloud Build.
    precondition {
      condition     = contains(local.function_source_files, "main.py") && contains(local.function_source_files, "requirements.txt")
      error_message = "main.py and requirements.txt must exist at the repository root; the function source zip is built from them and sync/."
    }
  }
}

resource "google_storage_bucket" "source" {
  #checkov:skip=CKV_GCP_62:Holds build inputs only (source zips); object access is already in Cloud Audit Logs, a separate access-log bucket adds cost without a reader.
  name     = "${var.project_id}-${var.name}-source"
  location = var.region

  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false

  # Every deployed zip stays retrievable for rollback (README: "Roll back").
  versioning {
    enabled = true
  }

  lifecycle_rule {
    condition {
      num_newer_versions = 20
      with_state         = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }
}

resource "google_storage_bucket_object" "source" {
  # Content-addressed: a code change is a new object, which makes the function
  # rebuild; an unchanged tree plans no change.
  name   = "${var.name}/${data.archive_file.source.output_md5}.zip"
  bucket = google_storage_bucket.source.name
  source = data.archive_file.source.output_path
}

resource "google_artifact_registry_repository" "images" {
  #checkov:skip=CKV_GCP_84:Images are rebuilt from the versioned source zip on every deploy and hold no data; Google-managed encryption is sufficient.
  repository_id = "${var.name}-images"
  location      = var.region
  format        = "DOCKER"
  description   = "Container images Cloud Build produces for the ${var.name} function."

  cleanup_policies {
    id     = "keep-recent"
    action = "KEEP"
    most_recent_versions {
      keep_count = 10
    }
  }
}

# --- Function -------------------------------------------------------------------

locals {
  # Exactly the variables sync/core/config.py reads (KNOWN_ENV_VARS); checked by
  # tests/system/test_terraform.py. DATABASE_URL and BIGQUERY_API_ENDPOINT are local-only
  # and must never be set here.
  function_env_common = {
    BIGQUERY_PROJECT              = local.bigquery_project
    SALESFORCE_DATASET            = var.salesforce_dataset
    GONG_DATASET                  = var.gong_dataset
    INSTANCE_CONNECTION_NAME      = local.sql_instance_connection_name
    DB_USER                       = local.db_user
    DB_NAME                       = google_sql_database.sync.name
    DB_IP_TYPE                    = var.sql_connectivity
    SYNC_TOPIC                    = google_pubsub_topic.sync.id
    SYNC_PAGE_SIZE                = tostring(var.page_size)
    SYNC_TIME_BUDGET_SECONDS      = tostring(local.time_budget_seconds)
    SYNC_FUNCTION_TIMEOUT_SECONDS = tostring(var.function_timeout_seconds)
    SYNC_FUNCTION_MEMORY          = var.function_memory
    SYNC_LOOKBACK_SECONDS         = tostring(var.lookback_seconds)
    SYNC_LEASE_SECONDS            = tostring(local.lease_seconds)
    SYNC_MAX_PAGES                = tostring(var.max_pages)
    # The function's login may not alter the schema; the migration job does (migrate.tf).
    SYNC_AUTO_MIGRATE = "false"
    # IAM database login as the runtime account: the function has no password at all.
    DB_IAM_AUTH                   = "true"
    SYNC_REJECTION_RETENTION_DAYS = tostring(var.rejection_retention_days)
    SYNC_DELETE_GUARD_PERCENT     = var.delete_guard_percent
    SYNC_DELETE_GUARD_MIN_ROWS    = tostring(var.delete_guard_min_rows)
    LOG_LEVEL                     = var.log_level
  }

  # Set only when configured; unset lets BigQuery infer the location.
  function_env_optional = {
    BIGQUERY_LOCATION = var.bigquery_location
  }

  function_env = merge(
    local.function_env_common,
    { for k, v in local.function_env_optional : k => v if v != null },
  )
}

resource "google_cloudfunctions2_function" "sync" {
  name        = var.name
  location    = var.region
  description = "Syncs Salesforce/Gong opportunities from the Fivetran BigQuery datasets to Cloud SQL."

  build_config {
    # The newest runtime every pinned dependency supports and the suite runs on (terraform/README.md,
    # "Runtime"); scripts/setup.sh builds the local virtualenv on the same Python.
    runtime           = "python313"
    entry_point       = "sync_opportunities"
    service_account   = google_service_account.build.id
    docker_repository = google_artifact_registry_repository.images.id

    source {
      storage_source {
        bucket = google_storage_bucket.source.name
        object = google_storage_bucket_object.source.name
      }
    }
  }

  service_config {
    # Single flight is enforced in the database (lease row); one instance and one
    # request per instance make overlapping runs rare in the first place.
    max_instance_count               = 1
    min_instance_count               = 0
    max_instance_request_concurrency = 1
    available_memory                 = var.function_memory
    timeout_seconds                  = var.function_timeout_seconds
    environment_variables            = local.function_env
    # Only the push subscription (pubsub.tf) calls it. Cloud Run's ingress "internal"
    # admits Pub/Sub push from a subscription in the same project (or VPC Service
    # Controls perimeter), which ours is; see README "Dead letters".
    ingress_settings               = "ALLOW_INTERNAL_ONLY"
    all_traffic_on_latest_revision = true
    service_account_email          = google_service_account.runtime.email

    # private/psc (network.tf): traffic for private ranges (the instance's private address or its
    # PSC endpoint) leaves through the VPC; Google APIs keep the default path, so no Cloud NAT.
    direct_vpc_egress = local.private_connectivity ? "VPC_EGRESS_PRIVATE_RANGES_ONLY" : null
    dynamic "direct_vpc_network_interface" {
      for_each = local.private_connectivity ? [1] : []
      content {
        network    = local.vpc_network
        subnetwork = local.vpc_subnetwork
      }
    }
  }

  lifecycle {
    # A new VPC is peered with nothing: an existing private instance is reached through its own network.
    precondition {
      condition     = !local.private_connectivity || var.create_sql_instance || var.vpc_network != null
      error_message = "sql_connectivity = \"${var.sql_connectivity}\" with an existing instance needs vpc_network: the network peered with it (private) or holding its Private Service Connect endpoint (psc)."
    }
    # The connector dials the address DB_IP_TYPE names and fails at every invocation if the instance has none.
    precondition {
      condition     = var.create_sql_instance || local.existing_instance_reachable
      error_message = "Instance ${var.sql_instance_name} has no ${var.sql_connectivity == "public" ? "public IP" : var.sql_connectivity == "private" ? "private IP (private_network)" : "Private Service Connect (psc_config.psc_enabled)"}, which sql_connectivity = \"${var.sql_connectivity}\" dials. Set sql_connectivity to what the instance has (terraform/README.md, \"Private connectivity\")."
    }
    # An instance over its memory is killed mid-page; the function would refuse this page size
    # at start (sync/core/config.py), so plan refuses it first.
    precondition {
      condition     = local.page_peak_mib * local.memory_headroom <= local.function_memory_mib
      error_message = "page_size needs more memory than function_memory holds with 25 % headroom (about 140 MiB + 0.015 MiB a row, sync/core/memory.py): lower page_size or raise function_memory."
    }
  }

  # No event_trigger: an Eventarc trigger owns its push subscription and cannot take
  # a dead-letter policy (hashicorp/terraform-provider-google#25069). Without one the
  # function is HTTP-triggered; the push subscription in pubsub.tf delivers to its
  # URI and functions-framework turns the raw Pub/Sub push into the CloudEvent the
  # @cloud_event entry point expects (the decorator, not the deploy, fixes the signature).

  depends_on = [
    # A private path must be complete before the first cold start connects through it.
    google_service_networking_connection.private_services,
    google_dns_record_set.psc,
    google_compute_forwarding_rule.psc,
    # The build identity's grants, given time to propagate (iam.tf).
    time_sleep.build_grants,
    # The first cold start must be able to log in; until the migration job (which runs
    # after the function, from its image) has migrated, messages are redelivered.
    google_project_iam_member.runtime_cloudsql_client,
    google_project_iam_member.runtime_cloudsql_instance_user,
    google_sql_user.runtime,
  ]
}
