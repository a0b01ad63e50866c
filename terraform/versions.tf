terraform {
  # 1.11 is the first release with write-only arguments (`*_wo`), which keep the
  # generated database password out of state and plan files (see secrets.tf).
  required_version = ">= 1.11.0, < 2.0.0"

  required_providers {
    google = {
      source = "hashicorp/google"
      # 6.27 added google_sql_user.password_wo; secret_data_wo and
      # build_config.service_account are older. 8.x is untested.
      version = ">= 6.27.0, < 8.0.0"
    }
    archive = {
      source = "hashicorp/archive"
      # Written against the 2.x docs (archive_file with `source` blocks and
      # output_md5); nothing newer than 2.4 is relied on.
      version = ">= 2.4.0, < 3.0.0"
    }
    random = {
      source = "hashicorp/random"
      # 3.7 added the ephemeral random_password used in password mode.
      version = ">= 3.7.0, < 4.0.0"
    }
  }
}

provider "google" {
  project = var.project_id
  region  = var.region

  default_labels = merge({ app = var.name, managed-by = "terraform" }, var.labels)
}
