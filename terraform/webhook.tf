# --- Fivetran webhook -------------------------------------------------------------
#
# A second function from the same source zip, entry point main.py::fivetran_webhook:
# Fivetran's signed sync_end publishes a tick on the sync topic, so a change is in
# Postgres seconds after Fivetran lands it instead of at the next scheduled tick
# (docs/design.md, "Fivetran webhook"). The scheduler stays: it is the backstop.
#
# Fivetran cannot send a Google identity token, so the function admits anyone
# (ingress ALLOW_ALL, allUsers may invoke) and trusts only the HMAC-SHA256 signature
# over the body, keyed by the generated secret below. It runs as the sync's service
# account because it logs into Postgres as the same database user (IAM or password
# mode alike) to coordinate ticks in sync_wakeups; it reads no BigQuery data, but
# holds the right to. It must reach Cloud SQL the way the sync function does: keep
# its network settings in step with google_cloudfunctions2_function.sync.

locals {
  webhook_enabled          = var.webhook_enabled
  fivetran_webhook_enabled = var.webhook_enabled && var.fivetran_webhook_enabled

  webhook_env = merge(
    local.function_env,
    {
      FIVETRAN_WEBHOOK_SECRET          = "${try(google_secret_manager_secret.webhook[0].id, "")}/versions/latest"
      FIVETRAN_WEBHOOK_MAX_AGE_SECONDS = tostring(var.fivetran_webhook_max_age_seconds)
    },
    length(var.fivetran_webhook_connectors) > 0 ? { FIVETRAN_WEBHOOK_CONNECTORS = join(",", var.fivetran_webhook_connectors) } : {},
    length(var.fivetran_webhook_groups) > 0 ? { FIVETRAN_WEBHOOK_GROUPS = join(",", var.fivetran_webhook_groups) } : {},
  )
}

# The signing key. Managed (so in state, which must be protected like any secret
# store) rather than ephemeral: fivetran_webhook.secret is an ordinary argument and
# would put it in state anyway. Rotate with `terraform apply -replace=random_password.webhook[0]`
# (terraform/README.md, "Fivetran webhook").
resource "random_password" "webhook" {
  count = local.webhook_enabled ? 1 : 0

  length  = 48
  special = false
}

resource "google_secret_manager_secret" "webhook" {
  count = local.webhook_enabled ? 1 : 0

  secret_id = "${var.name}-fivetran-webhook"

  replication {
    auto {}
  }
}

resource "google_secret_manager_secret_version" "webhook" {
  count = local.webhook_enabled ? 1 : 0

  secret         = google_secret_manager_secret.webhook[0].id
  secret_data_wo = random_password.webhook[0].result
  # A new key is a new version; the function reads versions/latest at its next cold start.
  secret_data_wo_version = parseint(substr(sha256(random_password.webhook[0].result), 0, 7), 16)
}

resource "google_secret_manager_secret_iam_member" "runtime_webhook_secret_accessor" {
  count = local.webhook_enabled ? 1 : 0

  secret_id = google_secret_manager_secret.webhook[0].id
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.runtime.member
}

resource "google_cloudfunctions2_function" "webhook" {
  #checkov:skip=CKV_GCP_124:Fivetran delivers from the internet and publishes no source range to admit; the function answers 401 to anything without a valid HMAC-SHA256 signature of its body before it touches Postgres or Pub/Sub.
  count = local.webhook_enabled ? 1 : 0

  name        = "${var.name}-fivetran-webhook"
  location    = var.region
  description = "Receives Fivetran's signed sync_end webhook and publishes a tick for ${var.name}."

  build_config {
    runtime           = "python311"
    entry_point       = "fivetran_webhook"
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
    # Each request holds one Postgres connection; bursts serialise on the sync_wakeups
    # row anyway, so two instances are plenty and bound the connections it can take.
    max_instance_count               = 2
    min_instance_count               = 0
    max_instance_request_concurrency = 1
    available_memory                 = "256M"
    timeout_seconds                  = 60
    environment_variables            = local.webhook_env
    ingress_settings                 = "ALLOW_ALL"
    all_traffic_on_latest_revision   = true
    service_account_email            = google_service_account.runtime.email

    # It logs into the same Cloud SQL instance as the sync, so it takes the same path there
    # (network.tf): private ranges through the VPC when the instance has no public IP.
    direct_vpc_egress = local.private_connectivity ? "VPC_EGRESS_PRIVATE_RANGES_ONLY" : null
    dynamic "direct_vpc_network_interface" {
      for_each = local.private_connectivity ? [1] : []
      content {
        network    = local.vpc_network
        subnetwork = local.vpc_subnetwork
      }
    }
  }

  depends_on = [
    time_sleep.build_grants,
    google_project_iam_member.runtime_cloudsql_client,
    google_project_iam_member.runtime_cloudsql_instance_user,
    google_secret_manager_secret_iam_member.runtime_db_password_accessor,
    google_secret_manager_secret_iam_member.runtime_webhook_secret_accessor,
    google_secret_manager_secret_version.webhook,
    google_pubsub_topic_iam_member.runtime_publisher,
  ]
}

resource "google_cloud_run_v2_service_iam_member" "webhook_public" {
  #checkov:skip=CKV_GCP_102:Fivetran cannot present a Google identity token; every request is authenticated by the HMAC-SHA256 signature of its body instead, and anything unsigned is answered 401 before any other work.
  count = local.webhook_enabled ? 1 : 0

  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.webhook[0].name
  role     = "roles/run.invoker"
  member   = "allUsers"
}

# Opt-in: the webhook on Fivetran's side. Needs FIVETRAN_APIKEY and FIVETRAN_APISECRET
# in the environment of `terraform apply`. Fivetran sends a test_event on creation
# (run_tests) and refuses to create a webhook whose endpoint does not answer it.
resource "fivetran_webhook" "sync_end" {
  count = local.fivetran_webhook_enabled ? 1 : 0

  type      = var.fivetran_webhook_type
  group_id  = var.fivetran_webhook_type == "group" ? var.fivetran_group_id : null
  url       = google_cloudfunctions2_function.webhook[0].url
  secret    = random_password.webhook[0].result
  events    = ["sync_end"]
  active    = true
  run_tests = true

  lifecycle {
    precondition {
      condition     = var.fivetran_webhook_type != "group" || var.fivetran_group_id != null
      error_message = "fivetran_webhook_type = \"group\" needs fivetran_group_id (the group's id in Fivetran)."
    }
  }

  depends_on = [google_cloud_run_v2_service_iam_member.webhook_public]
}
