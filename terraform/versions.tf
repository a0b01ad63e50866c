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
      # google_cloudfunctions2_function's Direct VPC egress (direct_vpc_egress,
      # direct_vpc_network_interface; network.tf) arrived in 7.21.0. The floor is 7.31.0, the
      # oldest release after it with a published schema package (cdktn-provider-google 19.0.0;
      # 18.0.0 is still 6.50.0), so the check verifies the floor itself. 8.x is untested.
      version = ">= 7.31.0, < 8.0.0"
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
