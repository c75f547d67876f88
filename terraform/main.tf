locals {
  # Cloud Functions runtime; must match go.mod's go line (checked by a test).
  go_runtime = "go126"

  # Every function: its package, who may reach it and whom it calls.
  # public = invokable by allUsers (routes guarded by ID-token checks in code);
  # otherwise only the service accounts in invokers may invoke it (IAM).
  # calls lists the functions it calls over HTTP; the terraform test checks
  # these edges against the code.
  functions = {
    CreateOrder = {
      package = "functions/createorder"
      public  = true
      calls   = ["DeductStock", "ClearCart", "Pay"]
    }
    DeductStock = {
      package = "functions/deductstock"
      public  = true
      calls   = []
    }
    ClearCart = {
      package = "functions/clearcart"
      public  = true
      calls   = []
    }
    Pay = {
      package = "functions/pay"
      public  = true
      calls   = []
    }
    HandleTimeout = {
      package = "functions/handletimeout"
      public  = false
      calls   = ["Pay", "DeductStock"]
    }
    Sweep = {
      package = "functions/sweeper"
      public  = false
      calls   = ["Pay", "DeductStock"]
    }
  }

  # Non-function callers of private functions.
  external_invokers = {
    HandleTimeout = ["relay"]
    Sweep         = ["scheduler"]
  }

  broker_prefix = "ot"
  firebase      = var.firebase_project != "" ? var.firebase_project : var.project_id
  # Whether an AMQP URL was given is no secret (the URL is): without
  # nonsensitive() every count and output that branches on it is refused.
  use_vm_broker = nonsensitive(var.amqp_url == "")

  apis = [
    "artifactregistry.googleapis.com",
    "cloudbuild.googleapis.com",
    "cloudresourcemanager.googleapis.com",
    "cloudfunctions.googleapis.com",
    "cloudscheduler.googleapis.com",
    "cloudtrace.googleapis.com",
    "compute.googleapis.com",
    "firestore.googleapis.com",
    "iam.googleapis.com",
    "logging.googleapis.com",
    "monitoring.googleapis.com",
    "pubsub.googleapis.com",
    "run.googleapis.com",
    "secretmanager.googleapis.com",
    "storage.googleapis.com",
    "telemetry.googleapis.com", # OTLP traces and metrics (shared/telemetry)
    "vpcaccess.googleapis.com",
  ]
}

resource "google_project_service" "apis" {
  for_each           = toset(local.apis)
  service            = each.value
  disable_on_destroy = false
}

data "google_project" "this" {}

# One service account per role.
resource "google_service_account" "fn" {
  for_each     = local.functions
  account_id   = "ot-${lower(each.key)}"
  display_name = "ordertimeout ${each.key} function"
  depends_on   = [google_project_service.apis]
}

resource "google_service_account" "relay" {
  account_id   = "ot-relay"
  display_name = "ordertimeout relay (Cloud Run)"
  depends_on   = [google_project_service.apis]
}

resource "google_service_account" "scheduler" {
  account_id   = "ot-scheduler"
  display_name = "ordertimeout Cloud Scheduler caller of Sweep"
  depends_on   = [google_project_service.apis]
}

resource "google_service_account" "broker" {
  account_id   = "ot-broker"
  display_name = "ordertimeout RabbitMQ nodes"
  depends_on   = [google_project_service.apis]
}

locals {
  caller_emails = merge(
    { for name, sa in google_service_account.fn : name => sa.email },
    { relay = google_service_account.relay.email, scheduler = google_service_account.scheduler.email },
  )
  # Who calls each function: from the calls edges and the external invokers.
  callers_of = {
    for target, _ in local.functions : target => concat(
      [for caller, f in local.functions : caller if contains(f.calls, target)],
      lookup(local.external_invokers, target, []),
    )
  }
}

# Every function reads and writes Firestore.
resource "google_project_iam_member" "fn_firestore" {
  for_each = local.functions
  project  = var.project_id
  role     = "roles/datastore.user"
  member   = "serviceAccount:${google_service_account.fn[each.key].email}"
}

# Logs, traces and metrics.
resource "google_project_iam_member" "telemetry" {
  for_each = {
    for pair in setproduct(concat(keys(local.functions), ["relay"]), ["roles/logging.logWriter", "roles/cloudtrace.agent", "roles/telemetry.tracesWriter", "roles/monitoring.metricWriter"]) :
    "${pair[0]}/${pair[1]}" => { who = pair[0], role = pair[1] }
  }
  project = var.project_id
  role    = each.value.role
  member  = "serviceAccount:${local.caller_emails[each.value.who]}"
}

resource "google_project_iam_member" "broker_logs" {
  project = var.project_id
  role    = "roles/logging.logWriter"
  member  = "serviceAccount:${google_service_account.broker.email}"
}
