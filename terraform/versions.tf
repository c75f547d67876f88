terraform {
  required_version = ">= 1.5"
  required_providers {
    google = {
      source = "hashicorp/google"
      # 7.45: alert conditions may name metrics that do not exist yet
      # (disable_metric_validation), so a first apply on a new project
      # creates the alerts before the code has exported anything.
      version = ">= 7.45, < 8.0"
    }
    external = {
      source  = "hashicorp/external"
      version = ">= 2.3"
    }
    random = {
      source  = "hashicorp/random"
      version = ">= 3.6"
    }
  }
}

provider "google" {
  project = var.project_id
  region  = var.region
}
