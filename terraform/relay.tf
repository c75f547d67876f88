# The relay: an always-on Cloud Run service (min 1 instance, CPU always
# allocated), built from the repository's source by Cloud Build with Google's
# buildpacks (no local Docker). The image tag is the staged source's hash.
resource "google_artifact_registry_repository" "ot" {
  location      = var.region
  repository_id = "ordertimeout"
  format        = "DOCKER"
  depends_on    = [google_project_service.apis]
}

locals {
  relay_image = "${var.region}-docker.pkg.dev/${var.project_id}/${google_artifact_registry_repository.ot.repository_id}/relay:${substr(data.external.stage["relay"].result.sha256, 0, 20)}"
}

resource "terraform_data" "relay_image" {
  triggers_replace = [local.relay_image]
  provisioner "local-exec" {
    # gcloud runs with terraform's access token (a file only this command
    # reads), and the build runs as the build account.
    command = <<-EOT
      set -eu
      token=$(mktemp); trap 'rm -f "$token"' EXIT
      printf '%s' "$OT_ACCESS_TOKEN" > "$token"
      gcloud builds submit --access-token-file "$token" --project ${var.project_id} --region ${var.region} \
        --service-account ${google_service_account.build.id} --default-buckets-behavior regional-user-owned-bucket \
        --pack image=${local.relay_image},env=GOOGLE_BUILDABLE=./shared/cmd/relay ${data.external.stage["relay"].result.dir}
    EOT
    environment = {
      OT_ACCESS_TOKEN = data.google_client_config.me.access_token
    }
  }
  depends_on = [google_project_iam_member.build, google_service_account_iam_member.build_user, google_artifact_registry_repository.ot]
}

resource "google_cloud_run_v2_service" "relay" {
  name                = "ot-relay"
  location            = var.region
  ingress             = "INGRESS_TRAFFIC_INTERNAL_ONLY"
  deletion_protection = false

  lifecycle {
    precondition {
      condition     = var.broker_mode != "plugin" || var.amqp_url != ""
      error_message = "broker_mode = \"plugin\" needs amqp_url: the Compute Engine broker this module runs has no rabbitmq_delayed_message_exchange."
    }
    precondition {
      condition     = var.broker_mode != "native" || var.amqp_url != "" || can(regex("^rabbitmq:(4\\.([4-9]|[1-9][0-9])|[5-9])", var.rabbitmq_image))
      error_message = "broker_mode = \"native\" needs RabbitMQ 4.4 or later: set rabbitmq_image to a 4.4 tag (or amqp_url to such a broker)."
    }
  }

  template {
    service_account = google_service_account.relay.email
    scaling {
      min_instance_count = var.relay_instances
      max_instance_count = var.relay_instances
    }
    vpc_access {
      egress = "PRIVATE_RANGES_ONLY"
      network_interfaces {
        network    = google_compute_network.ot.id
        subnetwork = google_compute_subnetwork.ot.id
      }
    }
    containers {
      image = local.relay_image
      resources {
        cpu_idle = false # CPU always allocated: it consumes without requests
        limits = {
          cpu    = "1"
          memory = "512Mi"
        }
      }
      # Every variable in config.RelayVars but PORT, which Cloud Run sets.
      env {
        name = "AMQP_URL"
        value_source {
          secret_key_ref {
            secret  = google_secret_manager_secret.amqp_url.secret_id
            version = "latest"
          }
        }
      }
      env {
        name  = "BROKER_MODE"
        value = var.broker_mode
      }
      env {
        name  = "BROKER_PREFIX"
        value = local.broker_prefix
      }
      env {
        name  = "INTERNAL_AUTH_MODE"
        value = "google"
      }
      env {
        name  = "INTERNAL_SHARED_SECRET"
        value = random_password.internal.result
      }
      env {
        name  = "LOG_LEVEL"
        value = "info"
      }
      env {
        name  = "TRACE_EXPORTER"
        value = "gcp"
      }
      env {
        name  = "RELAY_TARGET_URL"
        value = local.fn_url["HandleTimeout"]
      }
      env {
        name  = "RELAY_CONCURRENCY"
        value = "64"
      }
      env {
        name  = "RELAY_PREFETCH"
        value = "5000"
      }
      env {
        name  = "RELAY_MAX_ATTEMPTS"
        value = "20"
      }
      env {
        name  = "RELAY_IMMEDIATE_RETRIES"
        value = "1"
      }
      env {
        name  = "RELAY_BACKOFF_BASE"
        value = "1s"
      }
      env {
        name  = "RELAY_BACKOFF_MAX"
        value = "5m"
      }
      env {
        name  = "RELAY_HTTP_TIMEOUT"
        value = "30s"
      }
      env {
        name  = "RELAY_DRAIN_TIMEOUT"
        value = "8s"
      }
      startup_probe {
        tcp_socket {}
      }
    }
  }

  # It reads the AMQP URL's "latest" version at start: the version exists first.
  depends_on = [terraform_data.relay_image, google_secret_manager_secret_iam_member.amqp_url, google_secret_manager_secret_version.amqp_url]
}
