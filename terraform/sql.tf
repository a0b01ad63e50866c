# The Cloud SQL for PostgreSQL instance is normally an existing one, read here;
# create_sql_instance = true creates it instead. Either way Terraform owns the
# database and the function's user, not the schema: the function applies its own
# migrations at cold start (README: "First run").

data "google_sql_database_instance" "existing" {
  count = var.create_sql_instance ? 0 : 1

  name    = var.sql_instance_name
  project = local.sql_project
}

resource "google_sql_database_instance" "created" {
  count = var.create_sql_instance ? 1 : 0
  #checkov:skip=CKV_GCP_60:ipv4_enabled follows sql_connectivity. public (the default, for projects without constraints/sql.restrictPublicIp) is reached only through the connector's IAM-authorised mTLS with no authorized networks; private and psc have no public IP.
  #checkov:skip=CKV2_GCP_13:log_duration=on logs every statement's duration; a sync issues thousands per run, which floods Cloud Logging. Use Query Insights for slow statements.

  name                = var.sql_instance_name
  project             = local.sql_project
  region              = var.region
  database_version    = var.postgres_version
  deletion_protection = var.sql_deletion_protection

  # The peering must exist before an instance can take an address from its range.
  depends_on = [google_service_networking_connection.private_services]

  settings {
    tier              = var.sql_instance_tier
    availability_type = "ZONAL"

    ip_configuration {
      # Exactly the path sql_connectivity chooses (network.tf): no public IP unless it is "public".
      ipv4_enabled       = var.sql_connectivity == "public"
      private_network    = var.sql_connectivity == "private" ? local.vpc_network : null
      allocated_ip_range = var.sql_connectivity == "private" ? local.private_services_range : null
      # The connector authenticates with client certificates; refuse anything else.
      ssl_mode = "TRUSTED_CLIENT_CERTIFICATE_REQUIRED"

      dynamic "psc_config" {
        for_each = var.sql_connectivity == "psc" ? [1] : []
        content {
          psc_enabled               = true
          allowed_consumer_projects = [var.project_id]
        }
      }
    }

    backup_configuration {
      enabled                        = true
      point_in_time_recovery_enabled = true
    }

    # IAM database authentication (db_auth_mode = "iam").
    database_flags {
      name  = "cloudsql.iam_authentication"
      value = "on"
    }
    database_flags {
      name  = "log_checkpoints"
      value = "on"
    }
    database_flags {
      name  = "log_connections"
      value = "on"
    }
    database_flags {
      name  = "log_disconnections"
      value = "on"
    }
    database_flags {
      name  = "log_lock_waits"
      value = "on"
    }
    database_flags {
      name  = "log_min_messages"
      value = "error"
    }
    database_flags {
      name  = "log_temp_files"
      value = "0"
    }
    database_flags {
      name  = "log_min_duration_statement"
      value = "-1"
    }
    database_flags {
      name  = "log_statement"
      value = "ddl"
    }
    database_flags {
      name  = "cloudsql.enable_pgaudit"
      value = "on"
    }
    database_flags {
      name  = "log_min_error_statement"
      value = "error"
    }
  }
}

locals {
  sql_instance_connection_name = var.create_sql_instance ? google_sql_database_instance.created[0].connection_name : data.google_sql_database_instance.existing[0].connection_name

  # IAM condition that narrows the project-level Cloud SQL roles to this instance.
  sql_instance_condition = "resource.name == \"projects/${local.sql_project}/instances/${var.sql_instance_name}\" && resource.service == \"sqladmin.googleapis.com\""

  # What the code gets in DB_USER. In IAM mode Postgres user names for service
  # accounts drop the ".gserviceaccount.com" suffix (63-char identifier limit).
  db_user = local.iam_auth ? trimsuffix(google_service_account.runtime.email, ".gserviceaccount.com") : var.db_user_name

  # Whether the existing instance has the address kind sql_connectivity dials (checked on the function).
  existing_ip = var.create_sql_instance ? null : try(data.google_sql_database_instance.existing[0].settings[0].ip_configuration[0], null)
  existing_instance_reachable = local.existing_ip == null ? false : (
    var.sql_connectivity == "public" ? local.existing_ip.ipv4_enabled :
    var.sql_connectivity == "private" ? try(local.existing_ip.private_network, "") != "" :
    anytrue([for p in try(local.existing_ip.psc_config, []) : p.psc_enabled])
  )

  existing_instance_flags = var.create_sql_instance ? {} : {
    for f in data.google_sql_database_instance.existing[0].settings[0].database_flags : f.name => f.value
  }
}

resource "google_sql_database" "sync" {
  name     = var.database_name
  project  = local.sql_project
  instance = var.sql_instance_name

  # Dropping it would drop the synced data; make that a deliberate act.
  deletion_policy = "ABANDON"

  depends_on = [google_sql_database_instance.created]
}

resource "google_sql_user" "iam" {
  count = local.iam_auth ? 1 : 0

  name     = local.db_user
  project  = local.sql_project
  instance = var.sql_instance_name
  type     = "CLOUD_IAM_SERVICE_ACCOUNT"

  # A Postgres user that owns objects or holds grants cannot be deleted through the API,
  # so a destroy or a switch of db_auth_mode would fail; Terraform forgets it instead.
  deletion_policy = "ABANDON"

  depends_on = [google_sql_database_instance.created]

  lifecycle {
    precondition {
      condition     = var.create_sql_instance || lookup(local.existing_instance_flags, "cloudsql.iam_authentication", "off") == "on"
      error_message = "db_auth_mode = \"iam\" needs the database flag cloudsql.iam_authentication=on on instance ${var.sql_instance_name}. Set it (gcloud sql instances patch ... --database-flags; note this replaces the whole flag list) or use db_auth_mode = \"password\"."
    }
  }
}

resource "google_sql_user" "password" {
  count = local.iam_auth ? 0 : 1

  name     = local.db_user
  project  = local.sql_project
  instance = var.sql_instance_name
  type     = "BUILT_IN"

  # Same ephemeral value as the secret version (secrets.tf), never in state. The secret
  # version takes its version key from here and is replaced with every change here.
  password_wo         = ephemeral.random_password.db[0].result
  password_wo_version = var.db_password_version

  # As above: the tables the function created belong to this user.
  deletion_policy = "ABANDON"

  depends_on = [google_sql_database_instance.created]
}
