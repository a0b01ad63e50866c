terraform {
  # 1.11 is the first release with write-only arguments (`*_wo`), which keep the
  # generated database password out of state and plan files (see secrets.tf).
  required_version = ">= 1.11.0, < 2.0.0"

  # Each floor is a release the offline provider-schema check verifies
  # (scripts/check_provider_schema.py, "lowest" set); the check also runs against
  # the newest google 7.x. Keep the two in step when moving a floor.
  required_providers {
    google = {
      source = "hashicorp/google"
      # google_sql_user.password_wo and google_secret_manager_secret_version.secret_data_wo
      # arrived in 6.23.0; the floor stays at 6.27.0, the oldest release checked here.
      # 8.x is untested.
      version = ">= 6.27.0, < 8.0.0"
    }
    archive = {
      source = "hashicorp/archive"
      # archive_file with `source` blocks and output_md5 (2.x).
      version = ">= 2.4.1, < 3.0.0"
    }
    random = {
      source = "hashicorp/random"
      # 3.7 added the ephemeral random_password used in password mode; 3.7.1 is the
      # oldest 3.7 release with a published schema package.
      version = ">= 3.7.1, < 4.0.0"
    }
    time = {
      source = "hashicorp/time"
      # time_sleep: waits for IAM grants and log-based metrics to propagate (iam.tf, monitoring.tf).
      version = ">= 0.12.0, < 1.0.0"
    }
    fivetran = {
      source = "fivetran/fivetran"
      # fivetran_webhook (webhook.tf, opt-in). No offline schema exists for it, so
      # scripts/check_provider_schema.py cannot verify its arguments.
      version = ">= 1.0.0, < 2.0.0"
    }
  }
}

provider "google" {
  project = var.project_id
  region  = var.region

  default_labels = merge({ app = var.name, managed-by = "terraform" }, var.labels)
}
