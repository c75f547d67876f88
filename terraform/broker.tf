# The private network: the broker lives here; functions reach it through a
# Serverless VPC Access connector, the relay through Direct VPC egress.
resource "google_compute_network" "ot" {
  name                    = "ordertimeout"
  auto_create_subnetworks = false
  depends_on              = [google_project_service.apis]
}

resource "google_compute_subnetwork" "ot" {
  name                     = "ordertimeout-${var.region}"
  network                  = google_compute_network.ot.id
  region                   = var.region
  ip_cidr_range            = "10.20.0.0/24"
  private_ip_google_access = true
}

resource "google_vpc_access_connector" "ot" {
  name          = "ot-connector"
  region        = var.region
  network       = google_compute_network.ot.name
  ip_cidr_range = "10.20.8.0/28"
  min_instances = 2
  max_instances = 3
  depends_on    = [google_project_service.apis]
}

# Nodes pull the RabbitMQ image through Cloud NAT (no public IPs).
resource "google_compute_router" "ot" {
  name    = "ordertimeout"
  region  = var.region
  network = google_compute_network.ot.id
}

resource "google_compute_router_nat" "ot" {
  name                               = "ordertimeout"
  router                             = google_compute_router.ot.name
  region                             = var.region
  nat_ip_allocate_option             = "AUTO_ONLY"
  source_subnetwork_ip_ranges_to_nat = "ALL_SUBNETWORKS_ALL_IP_RANGES"
}

resource "google_compute_firewall" "amqp" {
  name          = "ordertimeout-amqp"
  network       = google_compute_network.ot.name
  source_ranges = ["10.20.0.0/16"]
  target_tags   = ["ot-broker"]
  allow {
    protocol = "tcp"
    ports    = ["5672", "4369", "25672", "35672-35682"]
  }
}

resource "google_compute_firewall" "health" {
  name          = "ordertimeout-broker-health"
  network       = google_compute_network.ot.name
  source_ranges = ["35.191.0.0/16", "130.211.0.0/22"]
  target_tags   = ["ot-broker"]
  allow {
    protocol = "tcp"
    ports    = ["8080"]
  }
}

resource "random_password" "rabbit" {
  length  = 32
  special = false
}

resource "random_password" "erlang_cookie" {
  length  = 40
  special = false
  upper   = true
}

# The nodes' zones come from the region (regions differ: us-central1 has
# a, b, c, f; europe-west2 a, b, c), one node per zone in turn.
data "google_compute_zones" "up" {
  region = var.region
  status = "UP"
}

locals {
  broker_nodes = local.use_vm_broker ? var.rabbitmq_nodes : 0
  node_names   = [for i in range(local.broker_nodes) : "ot-rabbit-${i}"]
  node_zones   = [for i in range(local.broker_nodes) : sort(data.google_compute_zones.up.names)[i % length(data.google_compute_zones.up.names)]]
  # Names that resolve across zones: Compute Engine's zonal DNS names
  # (a short name may resolve only within its own zone).
  node_fqdns = [for i in range(local.broker_nodes) : "${local.node_names[i]}.${local.node_zones[i]}.c.${var.project_id}.internal"]
}

# The Erlang cookie and the broker password live in Secret Manager; a node
# reads them at boot with its own service account. Instance metadata,
# which anyone with compute viewer rights can read, holds only their names.
resource "google_secret_manager_secret" "broker" {
  for_each  = toset(local.use_vm_broker ? ["ordertimeout-rabbitmq-password", "ordertimeout-erlang-cookie"] : [])
  secret_id = each.value
  replication {
    auto {}
  }
  depends_on = [google_project_service.apis]
}

resource "google_secret_manager_secret_version" "broker" {
  for_each    = google_secret_manager_secret.broker
  secret      = each.value.id
  secret_data = each.key == "ordertimeout-erlang-cookie" ? random_password.erlang_cookie.result : random_password.rabbit.result
}

resource "google_secret_manager_secret_iam_member" "broker" {
  for_each  = google_secret_manager_secret.broker
  secret_id = each.value.id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.broker.email}"
}

# RabbitMQ 4 on each node: its official container image on
# Container-Optimized OS (why not Debian's package: Debian 12 ships 3.10,
# end of life; why not Team RabbitMQ's apt repositories: the image pins
# RabbitMQ and its matching Erlang in one reference, and COS keeps the
# host minimal and patched). Every queue the system declares is a quorum
# queue, so with 3 nodes pending timers survive the loss of one.
resource "google_compute_instance" "rabbit" {
  count        = local.broker_nodes
  name         = local.node_names[count.index]
  machine_type = var.rabbitmq_machine_type
  zone         = local.node_zones[count.index]
  tags         = ["ot-broker"]

  boot_disk {
    initialize_params {
      image = "cos-cloud/cos-stable"
      size  = 20
      type  = "pd-balanced"
    }
  }

  network_interface {
    subnetwork = google_compute_subnetwork.ot.id
  }

  service_account {
    email  = google_service_account.broker.email
    scopes = ["cloud-platform"]
  }

  metadata = {
    enable-oslogin = "TRUE"
    startup-script = templatefile("${path.module}/rabbitmq-startup.sh.tftpl", {
      project         = var.project_id
      cookie_secret   = google_secret_manager_secret.broker["ordertimeout-erlang-cookie"].secret_id
      password_secret = google_secret_manager_secret.broker["ordertimeout-rabbitmq-password"].secret_id
      image           = var.rabbitmq_image
      nodes           = local.node_fqdns
      self            = local.node_fqdns[count.index]
    })
  }

  depends_on = [google_compute_router_nat.ot, google_secret_manager_secret_version.broker, google_secret_manager_secret_iam_member.broker]
}

# One stable address for the cluster: an internal passthrough load balancer.
resource "google_compute_instance_group" "rabbit" {
  count     = local.broker_nodes
  name      = "ot-rabbit-${count.index}"
  zone      = google_compute_instance.rabbit[count.index].zone
  instances = [google_compute_instance.rabbit[count.index].self_link]
}

# Healthy only when the node is ready for the project's user: running,
# in a cluster with a majority of the nodes, the user and its
# permissions in place (the node's readiness check, startup script). A
# node that could not join its peers never serves alone.
resource "google_compute_health_check" "amqp" {
  count = local.use_vm_broker ? 1 : 0
  name  = "ot-amqp"
  http_health_check {
    port         = 8080
    request_path = "/ready"
  }
}

resource "google_compute_region_backend_service" "amqp" {
  count                 = local.use_vm_broker ? 1 : 0
  name                  = "ot-amqp"
  region                = var.region
  protocol              = "TCP"
  load_balancing_scheme = "INTERNAL"
  health_checks         = [google_compute_health_check.amqp[0].id]
  dynamic "backend" {
    for_each = google_compute_instance_group.rabbit
    content {
      group          = backend.value.id
      balancing_mode = "CONNECTION"
    }
  }
}

resource "google_compute_forwarding_rule" "amqp" {
  count                 = local.use_vm_broker ? 1 : 0
  name                  = "ot-amqp"
  region                = var.region
  load_balancing_scheme = "INTERNAL"
  backend_service       = google_compute_region_backend_service.amqp[0].id
  ports                 = ["5672"]
  network               = google_compute_network.ot.id
  subnetwork            = google_compute_subnetwork.ot.id
}

# The AMQP URL lives in Secret Manager; functions and the relay read it as
# the AMQP_URL variable.
resource "google_secret_manager_secret" "amqp_url" {
  secret_id = "ordertimeout-amqp-url"
  replication {
    auto {}
  }
  depends_on = [google_project_service.apis]
}

resource "google_secret_manager_secret_version" "amqp_url" {
  secret      = google_secret_manager_secret.amqp_url.id
  secret_data = local.use_vm_broker ? "amqp://ordertimeout:${random_password.rabbit.result}@${google_compute_forwarding_rule.amqp[0].ip_address}:5672/" : var.amqp_url
}

# The internal shared secret is not used in production (google mode checks
# ID tokens); the functions still require the variable to be non-empty.
resource "random_password" "internal" {
  length  = 40
  special = false
}

resource "google_secret_manager_secret_iam_member" "amqp_url" {
  for_each  = toset(concat(keys(local.functions), ["relay"]))
  secret_id = google_secret_manager_secret.amqp_url.id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${local.caller_emails[each.key]}"
}
