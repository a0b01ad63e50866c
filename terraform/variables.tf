# ---------------------------------------------------------------------------
# Where it runs
# ---------------------------------------------------------------------------

variable "project_id" {
  type        = string
  description = "Project that hosts the function, topics, scheduler job, secret and alerts."

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a GCP project id (6-30 chars, lowercase letters, digits, hyphens)."
  }
}

variable "region" {
  type        = string
  description = "Region for the function, scheduler job (unless scheduler_region is set), source bucket and Artifact Registry repository, e.g. europe-west1."

  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]{1,2}$", var.region))
    error_message = "region must look like europe-west1 or us-central1 (a single region, not a multi-region)."
  }
}

variable "name" {
  type        = string
  description = "Base name for every resource (function, topics, service accounts, metrics). Short, because service account ids are limited to 30 characters and get a suffix."
  default     = "opportunity-sync"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,20}[a-z0-9]$", var.name))
    error_message = "name must be 6-22 chars of lowercase letters, digits and hyphens, starting with a letter (\"<name>-invoker\" must fit a 30-char service account id)."
  }
}

variable "labels" {
  type        = map(string)
  description = "Extra labels applied to every resource that supports them (provider default_labels)."
  default     = {}
}

# ---------------------------------------------------------------------------
# BigQuery (the Fivetran landing zone the function reads)
# ---------------------------------------------------------------------------

variable "bigquery_project" {
  type        = string
  description = "Project that holds the Fivetran datasets and runs the query jobs (BIGQUERY_PROJECT). Null means project_id."
  default     = null

  validation {
    condition     = var.bigquery_project == null || can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.bigquery_project))
    error_message = "bigquery_project must be null or a GCP project id."
  }
}

variable "bigquery_location" {
  type        = string
  description = "BigQuery location of the datasets (BIGQUERY_LOCATION), e.g. US or EU. Null leaves it unset so BigQuery infers it."
  default     = null
}

variable "salesforce_dataset" {
  type        = string
  description = "Dataset Fivetran writes the Salesforce connector to (SALESFORCE_DATASET). The function's service account gets dataViewer on this dataset only."
  default     = "salesforce"

  validation {
    condition     = can(regex("^[A-Za-z_][A-Za-z0-9_]{0,1023}$", var.salesforce_dataset))
    error_message = "salesforce_dataset must be a BigQuery dataset name (letters, digits, underscores)."
  }
}

variable "gong_dataset" {
  type        = string
  description = "Dataset Fivetran writes the Gong connector to (GONG_DATASET). The function's service account gets dataViewer on this dataset only."
  default     = "gongio_ft"

  validation {
    condition     = can(regex("^[A-Za-z_][A-Za-z0-9_]{0,1023}$", var.gong_dataset))
    error_message = "gong_dataset must be a BigQuery dataset name (letters, digits, underscores)."
  }
}

# ---------------------------------------------------------------------------
# Cloud SQL
# ---------------------------------------------------------------------------

variable "create_sql_instance" {
  type        = bool
  description = "Create a new Cloud SQL for PostgreSQL instance (postgres_version) named sql_instance_name, reachable as sql_connectivity says. False (the default) uses an existing instance of that name."
  default     = false
}

variable "sql_instance_name" {
  type        = string
  description = "Name (not connection name) of the Cloud SQL for PostgreSQL instance, existing or to be created."

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,96}[a-z0-9]$", var.sql_instance_name))
    error_message = "sql_instance_name must be a Cloud SQL instance id (lowercase letters, digits, hyphens)."
  }
}

variable "sql_instance_project" {
  type        = string
  description = "Project of an existing Cloud SQL instance, when it is not project_id. Null means project_id."
  default     = null

  validation {
    condition     = var.sql_instance_project == null || can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.sql_instance_project))
    error_message = "sql_instance_project must be null or a GCP project id."
  }
}

variable "sql_instance_tier" {
  type        = string
  description = "Machine tier, used only when create_sql_instance = true."
  default     = "db-custom-1-3840"
}

variable "sql_deletion_protection" {
  type        = bool
  description = "Deletion protection on a created instance (create_sql_instance = true). Keep true outside throwaway environments."
  default     = true
}

variable "database_name" {
  type        = string
  description = "Postgres database the function writes to (DB_NAME). Terraform creates it on the instance."
  default     = "opportunity_sync"

  validation {
    condition     = can(regex("^[a-z_][a-z0-9_]{0,62}$", var.database_name))
    error_message = "database_name must be a lowercase Postgres identifier (letters, digits, underscores; max 63)."
  }
}

variable "db_user_name" {
  type        = string
  description = "The owner login: a built-in Postgres user that owns the sync's tables and applies the migrations, in the migration job only (migrate.tf). Its generated password lives only in Secret Manager, readable by the job's account. The function logs in as its own IAM database login instead (its service account's email without .gserviceaccount.com)."
  default     = "opportunity_sync"

  validation {
    condition     = can(regex("^[a-z_][a-z0-9_]{0,62}$", var.db_user_name))
    error_message = "db_user_name must be a lowercase Postgres identifier."
  }

  # Terraform sets this user's password and owns it; the instance's admin user is someone else's.
  validation {
    condition     = !contains(["postgres", "cloudsqlsuperuser", "cloudsqladmin"], var.db_user_name)
    error_message = "db_user_name must be a user of its own, not the instance's postgres user (Terraform generates and rotates this user's password)."
  }
}

variable "db_password_version" {
  type        = number
  description = "Bump to generate a new password for the owner login (db_user_name) and write it to both Secret Manager and the Cloud SQL user in one apply (rotation)."
  default     = 1

  validation {
    condition     = var.db_password_version >= 1 && floor(var.db_password_version) == var.db_password_version
    error_message = "db_password_version must be a positive integer."
  }
}

# ---------------------------------------------------------------------------
# Trigger and schedule
# ---------------------------------------------------------------------------

variable "schedule" {
  type        = string
  description = "Cron schedule (5 fields, unix-cron) on which Cloud Scheduler publishes {\"type\":\"tick\"}."
  default     = "*/15 * * * *"

  validation {
    condition     = length(regexall("^\\S+(\\s+\\S+){4}$", trimspace(var.schedule))) == 1
    error_message = "schedule must be a 5-field unix-cron expression, e.g. \"*/15 * * * *\"."
  }
}

variable "scheduler_region" {
  type        = string
  description = "Region of the Cloud Scheduler job. Null means region. Cloud Scheduler runs in fewer regions than Cloud Functions (see its locations page); set this when region has none. The job publishes to a global topic, so any region works."
  default     = null

  validation {
    condition     = var.scheduler_region == null || can(regex("^[a-z]+-[a-z]+[0-9]{1,2}$", var.scheduler_region))
    error_message = "scheduler_region must be null or a single region such as europe-west1."
  }
}

variable "max_delivery_attempts" {
  type        = number
  description = "Failed push deliveries after which a message moves to the dead-letter topic (Pub/Sub allows 5-100). With the 10-600 s exponential backoff, 10 attempts span about 40 minutes: long enough for a full_resync to wait out a run in flight (lease), short enough that a poison message stops within the hour."
  default     = 10

  validation {
    condition     = var.max_delivery_attempts >= 5 && var.max_delivery_attempts <= 100 && floor(var.max_delivery_attempts) == var.max_delivery_attempts
    error_message = "max_delivery_attempts must be an integer between 5 and 100 (the Pub/Sub limits)."
  }
}

variable "schedule_time_zone" {
  type        = string
  description = "IANA time zone the schedule is interpreted in."
  default     = "Etc/UTC"
}

variable "dead_letter_retention" {
  type        = string
  description = "How long messages stay on the dead-letter topic and in its inspection subscription, in seconds with an s suffix (max 7 days)."
  default     = "604800s"

  validation {
    condition     = can(regex("^[0-9]+s$", var.dead_letter_retention)) && try(tonumber(trimsuffix(var.dead_letter_retention, "s")) >= 600 && tonumber(trimsuffix(var.dead_letter_retention, "s")) <= 604800, false)
    error_message = "dead_letter_retention must be between 600s and 604800s."
  }
}

# ---------------------------------------------------------------------------
# Function runtime
# ---------------------------------------------------------------------------

variable "function_timeout_seconds" {
  type        = number
  description = "Function timeout. At most 540: the push subscription's ack deadline (timeout + 60 s) cannot exceed Pub/Sub's 600 s maximum."
  default     = 540

  validation {
    condition     = var.function_timeout_seconds >= 180 && var.function_timeout_seconds <= 540
    error_message = "function_timeout_seconds must be between 180 and 540 (the push ack deadline, timeout + 60 s, is capped at 600 s)."
  }
}

variable "function_memory" {
  type        = string
  description = "Memory per instance, e.g. 256M, 512M, 1Gi."
  default     = "256M"

  validation {
    condition     = can(regex("^[0-9]+(M|Mi|G|Gi)$", var.function_memory))
    error_message = "function_memory must be a number with unit M, Mi, G or Gi, e.g. 256M."
  }
}

variable "page_size" {
  type        = number
  description = "Rows per page (SYNC_PAGE_SIZE). Must fit function_memory with 25 % headroom (about 140 MiB + 15 KiB a row, sync/core/memory.py): 256M holds up to 3687, 512Mi 16708, 1Gi 45280; plan refuses more."
  default     = 2000

  validation {
    condition     = var.page_size >= 1 && var.page_size <= 50000 && floor(var.page_size) == var.page_size
    error_message = "page_size must be an integer between 1 and 50000 (the range sync/core/config.py accepts)."
  }
}

variable "time_budget_seconds" {
  type        = number
  description = "Seconds one invocation may spend on its page (lease, read, isolation of refused rows, write) before it commits and publishes a continuation (SYNC_TIME_BUDGET_SECONDS). 60 s more are reserved for the commit and the publish, all inside function_timeout_seconds. Null means function_timeout_seconds - 120 (the reserve and a minute for a cold start)."
  default     = null

  validation {
    # The reserve for the commit and the continuation publish (sync/core/deadline.py RESERVE_SECONDS);
    # sync/core/config.py refuses the same budget at start-up.
    condition     = var.time_budget_seconds == null || try(var.time_budget_seconds >= 30 && var.time_budget_seconds <= var.function_timeout_seconds - 60, false)
    error_message = "time_budget_seconds must be between 30 and function_timeout_seconds - 60."
  }
}

variable "lookback_seconds" {
  type        = number
  description = "Overlap re-read behind the stored cursor to catch late-landing rows (SYNC_LOOKBACK_SECONDS)."
  default     = 3600

  validation {
    condition     = var.lookback_seconds >= 0 && var.lookback_seconds <= 2592000
    error_message = "lookback_seconds must be between 0 and 2592000 (30 days)."
  }
}

variable "lease_seconds" {
  type        = number
  description = "Single-flight lease length in the database (SYNC_LEASE_SECONDS). Null means function_timeout_seconds + 60, so a crashed run's lease expires only after it surely stopped."
  default     = null

  validation {
    condition     = var.lease_seconds == null || try(var.lease_seconds >= var.function_timeout_seconds && var.lease_seconds <= 7200, false)
    error_message = "lease_seconds must be between function_timeout_seconds and 7200."
  }
}

variable "max_pages" {
  type        = number
  description = "Upper bound on continuation hops per run (SYNC_MAX_PAGES), so a bug cannot loop forever."
  default     = 10000

  validation {
    condition     = var.max_pages >= 1 && var.max_pages <= 1000000
    error_message = "max_pages must be between 1 and 1000000."
  }
}

variable "delete_guard_percent" {
  type        = string
  description = "A run that would soft-delete more than this percentage of the live replica holds those deletes for an operator (SYNC_DELETE_GUARD_PERCENT); \"off\" disables the guard. See docs/operations.md, \"Deletes are guarded\"."
  default     = "10"

  validation {
    condition     = var.delete_guard_percent == "off" || try(tonumber(var.delete_guard_percent) > 0 && tonumber(var.delete_guard_percent) <= 100, false)
    error_message = "delete_guard_percent must be a number above 0 and at most 100, or \"off\"."
  }
}

variable "delete_guard_min_rows" {
  type        = number
  description = "Fewer deletes than this in one run are never held, whatever share of a small replica they are (SYNC_DELETE_GUARD_MIN_ROWS)."
  default     = 100

  validation {
    condition     = var.delete_guard_min_rows >= 1 && var.delete_guard_min_rows <= 100000000 && floor(var.delete_guard_min_rows) == var.delete_guard_min_rows
    error_message = "delete_guard_min_rows must be an integer between 1 and 100000000."
  }
}

variable "rejection_retention_days" {
  type        = number
  description = "Days rejected rows are kept for inspection (SYNC_REJECTION_RETENTION_DAYS)."
  default     = 30

  validation {
    condition     = var.rejection_retention_days >= 1 && var.rejection_retention_days <= 3650
    error_message = "rejection_retention_days must be between 1 and 3650."
  }
}

variable "log_level" {
  type        = string
  description = "LOG_LEVEL for the function."
  default     = "INFO"

  validation {
    condition     = contains(["DEBUG", "INFO", "WARNING", "ERROR"], var.log_level)
    error_message = "log_level must be one of DEBUG, INFO, WARNING, ERROR."
  }
}

# ---------------------------------------------------------------------------
# Alerts
# ---------------------------------------------------------------------------

variable "notification_channels" {
  type        = list(string)
  description = "Monitoring notification channel ids (projects/P/notificationChannels/N) the alert policies notify. Empty: alerts open incidents without notifying."
  default     = []

  validation {
    condition     = alltrue([for c in var.notification_channels : can(regex("^projects/[^/]+/notificationChannels/[0-9]+$", c))])
    error_message = "Each notification channel must be a full id: projects/PROJECT/notificationChannels/NUMBER."
  }
}

variable "alert_stale_after_minutes" {
  type        = number
  description = "Alert when no run has finished with status=success for this many minutes. Make it a few schedule intervals long."
  default     = 120

  validation {
    condition     = var.alert_stale_after_minutes >= 15 && var.alert_stale_after_minutes <= 10080
    error_message = "alert_stale_after_minutes must be between 15 and 10080 (7 days)."
  }
}

variable "alert_rejected_rate_threshold" {
  type        = number
  description = "Alert when rows_skipped / rows_read over alert_rejected_rate_window_minutes exceeds this fraction (0.05 = 5%)."
  default     = 0.05

  validation {
    condition     = var.alert_rejected_rate_threshold > 0 && var.alert_rejected_rate_threshold <= 1
    error_message = "alert_rejected_rate_threshold must be a fraction in (0, 1]."
  }
}

variable "alert_rejected_rate_window_minutes" {
  type        = number
  description = "Window over which the rejected-row rate is computed."
  default     = 60

  validation {
    condition     = var.alert_rejected_rate_window_minutes >= 5 && var.alert_rejected_rate_window_minutes <= 1440
    error_message = "alert_rejected_rate_window_minutes must be between 5 and 1440."
  }
}

variable "alert_push_failure_minutes" {
  type        = number
  description = "Alert when push deliveries to the function are answered non-2xx in every 5-minute window for this many minutes. Longer than a run's normal contention (a full_resync waits out a lease with 429s), shorter than the dead-letter budget."
  default     = 30

  validation {
    condition     = var.alert_push_failure_minutes >= 5 && var.alert_push_failure_minutes <= 1440 && var.alert_push_failure_minutes % 5 == 0
    error_message = "alert_push_failure_minutes must be a multiple of 5 between 5 and 1440 (the alert aligns on 5-minute windows)."
  }
}

variable "alert_memory_utilization" {
  type        = number
  description = "Alert when an instance's memory use (99th percentile over 5 minutes) exceeds this fraction of function_memory."
  default     = 0.9

  validation {
    condition     = var.alert_memory_utilization > 0 && var.alert_memory_utilization < 1
    error_message = "alert_memory_utilization must be a fraction in (0, 1)."
  }
}

variable "alert_source_unavailable_minutes" {
  type        = number
  default     = 60
  description = "Minutes a recorded source table or column may stay missing or unreadable before the alert fires (a Fivetran re-sync or a permission change usually passes sooner)."

  validation {
    condition     = var.alert_source_unavailable_minutes >= 15 && var.alert_source_unavailable_minutes <= 1440
    error_message = "alert_source_unavailable_minutes must be between 15 and 1440."
  }
}

# --- Fivetran webhook (webhook.tf) ---------------------------------------------------

variable "webhook_enabled" {
  type        = bool
  description = "Deploy the Fivetran webhook function (public URL, signature-checked) and its signing key."
  default     = true
}

variable "fivetran_webhook_enabled" {
  type        = bool
  description = "Also create the webhook on Fivetran's side (fivetran/fivetran provider; needs FIVETRAN_APIKEY and FIVETRAN_APISECRET)."
  default     = false
}

variable "fivetran_webhook_type" {
  type        = string
  description = "Fivetran webhook scope: \"group\" (one destination group, fivetran_group_id) or \"account\" (every group)."
  default     = "group"

  validation {
    condition     = contains(["group", "account"], var.fivetran_webhook_type)
    error_message = "fivetran_webhook_type must be \"group\" or \"account\"."
  }
}

variable "fivetran_group_id" {
  type        = string
  description = "Fivetran destination group id for a group webhook."
  default     = null
}

variable "fivetran_webhook_connectors" {
  type        = list(string)
  description = "Connector ids whose sync_end starts the sync (FIVETRAN_WEBHOOK_CONNECTORS); empty: any."
  default     = []
}

variable "fivetran_webhook_groups" {
  type        = list(string)
  description = "Group ids whose sync_end starts the sync (FIVETRAN_WEBHOOK_GROUPS); empty: any."
  default     = []
}

variable "fivetran_webhook_max_age_seconds" {
  type        = number
  description = "A sync_end whose created time is older than this starts nothing (replay protection)."
  default     = 3600

  validation {
    condition     = var.fivetran_webhook_max_age_seconds >= 60 && var.fivetran_webhook_max_age_seconds <= 86400
    error_message = "fivetran_webhook_max_age_seconds must be between 60 and 86400."
  }
}

# ---------------------------------------------------------------------------
# Private connectivity and the created instance's version (network.tf, sql.tf)
# ---------------------------------------------------------------------------

variable "sql_connectivity" {
  type        = string
  description = "How the function reaches Cloud SQL (DB_IP_TYPE): \"public\" (the instance's public IP through the connector's mTLS), \"private\" (its private IP through private services access) or \"psc\" (a Private Service Connect endpoint). private and psc send the function's traffic for private ranges into vpc_network through Direct VPC egress; they are what an organisation enforcing constraints/sql.restrictPublicIp needs. A created instance gets exactly this connectivity; an existing one must already have it."
  default     = "public"

  validation {
    condition     = contains(["public", "private", "psc"], var.sql_connectivity)
    error_message = "sql_connectivity must be one of public, private, psc."
  }
}

variable "vpc_network" {
  type        = string
  description = "private/psc only: an existing VPC network (projects/P/global/networks/N) to reach the instance through; for an existing private instance, the network it is peered with. Null creates <name>-vpc."
  default     = null

  validation {
    condition     = var.vpc_network == null || can(regex("^projects/[a-z][a-z0-9-]{4,28}[a-z0-9]/global/networks/[a-z]([-a-z0-9]*[a-z0-9])?$", var.vpc_network))
    error_message = "vpc_network must be null or projects/PROJECT/global/networks/NAME."
  }
}

variable "vpc_subnetwork" {
  type        = string
  description = "private/psc only: an existing subnetwork of vpc_network in region (projects/P/regions/R/subnetworks/S) for the function's Direct VPC egress addresses (Google asks for a /26 or larger). Null creates <name>-egress from egress_subnet_cidr."
  default     = null

  validation {
    condition     = var.vpc_subnetwork == null || (var.vpc_network != null && can(regex("^projects/[a-z][a-z0-9-]{4,28}[a-z0-9]/regions/[a-z]+-[a-z]+[0-9]{1,2}/subnetworks/[a-z]([-a-z0-9]*[a-z0-9])?$", var.vpc_subnetwork)))
    error_message = "vpc_subnetwork must be null or projects/PROJECT/regions/REGION/subnetworks/NAME, and needs vpc_network (the network it belongs to)."
  }
}

variable "egress_subnet_cidr" {
  type        = string
  description = "private/psc with vpc_subnetwork = null: the range of the subnet Terraform creates for Direct VPC egress. Direct VPC egress takes two addresses per instance, and Google asks for at least a /26."
  default     = "10.8.0.0/26"

  validation {
    condition     = can(cidrhost(var.egress_subnet_cidr, 0)) && try(tonumber(split("/", var.egress_subnet_cidr)[1]) <= 26, false)
    error_message = "egress_subnet_cidr must be an IPv4 CIDR range of /26 or larger, e.g. 10.8.0.0/26."
  }
}

variable "private_services_range" {
  type        = string
  description = "private only: the name of a range vpc_network already allocates to private services access (its google_service_networking_connection exists). Null: a created instance gets a new range and connection (private_services_prefix_length)."
  default     = null
}

variable "private_services_prefix_length" {
  type        = number
  description = "private only, with private_services_range = null: the prefix length of the range reserved for private services access. Cloud SQL needs at least a /24; a /20 leaves room for more instances and other Google services on the same peering."
  default     = 20

  validation {
    condition     = var.private_services_prefix_length >= 8 && var.private_services_prefix_length <= 24 && floor(var.private_services_prefix_length) == var.private_services_prefix_length
    error_message = "private_services_prefix_length must be an integer between 8 and 24."
  }
}

variable "postgres_version" {
  type        = string
  description = "database_version of a created instance (create_sql_instance = true). The default is the newest major Cloud SQL offers as generally available (see terraform/README.md, \"Postgres version\"); the sync is tested on 15 to 18. Changing it on an existing instance is an in-place major upgrade: take a backup first."
  default     = "POSTGRES_18"

  validation {
    condition     = contains(["POSTGRES_15", "POSTGRES_16", "POSTGRES_17", "POSTGRES_18"], var.postgres_version)
    error_message = "postgres_version must be one of POSTGRES_15, POSTGRES_16, POSTGRES_17, POSTGRES_18 (the majors the sync is tested on)."
  }
}
