# Each function is built by Cloud Functions from its own staged source:
# go.mod and a root package that imports the function's package, no test
# files (shared/cmd/stage). The zip's hash is in the object name, so any
# change to the code forces a redeploy.
data "external" "stage" {
  for_each    = toset(concat(keys(local.functions), ["relay"]))
  program     = ["go", "run", "./shared/cmd/stage", "-target", each.key, "-out", "terraform/.build"]
  working_dir = "${path.module}/.."
}

resource "google_storage_bucket" "source" {
  name                        = "${var.project_id}-ordertimeout-source"
  location                    = var.region
  uniform_bucket_level_access = true
  force_destroy               = true
  depends_on                  = [google_project_service.apis]
}

resource "google_storage_bucket_object" "source" {
  for_each = data.external.stage
  name     = "${each.key}-${each.value.result.sha256}.zip"
  bucket   = google_storage_bucket.source.name
  source   = each.value.result.zip
}

locals {
  # Cloud Run's deterministic URL of each function's service; the functions
  # call each other (and the relay and the scheduler call them) through it.
  fn_url = { for name, _ in local.functions : name => "https://${lower(name)}-${data.google_project.this.number}.${var.region}.run.app" }

  # Every variable in config.FunctionVars, set explicitly (AMQP_URL comes
  # from Secret Manager below).
  function_env = {
    FIRESTORE_PROJECT_ID          = var.project_id
    AUTH_MODE                     = "firebase"
    AUTH_HS256_SECRET             = "" # hs256 mode is for local runs only
    AUTH_FIREBASE_PROJECT         = local.firebase
    INTERNAL_AUTH_MODE            = "google"
    INTERNAL_SHARED_SECRET        = random_password.internal.result # unused in google mode
    DEDUCTSTOCK_URL               = local.fn_url["DeductStock"]
    CLEARCART_URL                 = local.fn_url["ClearCart"]
    PAY_URL                       = local.fn_url["Pay"]
    BROKER_MODE                   = var.broker_mode
    BROKER_PREFIX                 = local.broker_prefix
    PAYMENT_TIMEOUT_DEFAULT       = var.payment_timeout_default
    PAYMENT_TIMEOUT_MIN           = "1s"
    PAYMENT_TIMEOUT_MAX           = "720h"
    CALL_TIMEOUT                  = "10s"
    CHECK_LADDER                  = ""
    SWEEP_GRACE                   = "1m"
    SWEEP_SAGA_BUDGET             = "2m"
    MAX_UNPAID_ORDERS_PER_SHOPPER = tostring(var.max_unpaid_orders_per_shopper)
    EVENTS_TOPIC                  = google_pubsub_topic.order_events.name
    PUBSUB_PROJECT_ID             = var.project_id
    REMIND_BEFORE                 = var.remind_before
    ORDER_RETENTION               = var.order_retention
    LOG_LEVEL                     = "info"
    TRACE_EXPORTER                = "gcp"
  }
}

resource "google_cloudfunctions2_function" "fn" {
  for_each = local.functions
  name     = lower(each.key)
  location = var.region

  build_config {
    runtime         = local.go_runtime
    entry_point     = each.key
    service_account = google_service_account.build.id
    source {
      storage_source {
        bucket = google_storage_bucket.source.name
        object = google_storage_bucket_object.source[each.key].name
      }
    }
  }

  service_config {
    service_account_email = google_service_account.fn[each.key].email
    available_memory      = "256M"
    # Sweep pages through what the timers missed: it may take as long as
    # the scheduler's attempt deadline (scheduler.tf), never less.
    timeout_seconds                  = each.key == "Sweep" ? local.sweep_timeout_seconds : 60
    max_instance_request_concurrency = 40
    available_cpu                    = "1"
    max_instance_count               = 20
    ingress_settings                 = "ALLOW_ALL"
    vpc_connector                    = google_vpc_access_connector.ot.id
    vpc_connector_egress_settings    = "PRIVATE_RANGES_ONLY"
    environment_variables = merge(local.function_env, {
      # Who may call this function's internal routes (ID-token check in code).
      INTERNAL_ALLOWED_CALLERS = join(",", [for c in local.callers_of[each.key] : local.caller_emails[c]])
      # The audience those callers' ID tokens must carry: this function's URL.
      INTERNAL_AUDIENCE = local.fn_url[each.key]
    })
    secret_environment_variables {
      key        = "AMQP_URL"
      project_id = var.project_id
      secret     = google_secret_manager_secret.amqp_url.secret_id
      version    = "latest"
    }
  }

  # The functions query Firestore from their first request: the database
  # and the indexes those queries need exist first; builds need their
  # account's roles.
  depends_on = [google_secret_manager_secret_iam_member.amqp_url, google_secret_manager_secret_version.amqp_url, google_project_iam_member.fn_firestore,
    google_firestore_database.default, google_firestore_index.orders_status_deadline, google_firestore_index.reservations_state_created,
    google_firestore_index.orders_user_created, google_firestore_index.orders_user_status_created,
  google_project_iam_member.build, google_service_account_iam_member.build_user]
}

# Public functions: anyone may invoke; their routes check ID tokens in code.
resource "google_cloud_run_service_iam_member" "public" {
  for_each = { for name, f in local.functions : name => f if f.public }
  location = var.region
  service  = google_cloudfunctions2_function.fn[each.key].name
  role     = "roles/run.invoker"
  member   = "allUsers"
}

# Private functions: only their callers' service accounts may invoke.
resource "google_cloud_run_service_iam_member" "callers" {
  for_each = merge([
    for target, f in local.functions : {
      for caller in local.callers_of[target] : "${target}/${caller}" => { target = target, caller = caller }
    } if !f.public
  ]...)
  location = var.region
  service  = google_cloudfunctions2_function.fn[each.value.target].name
  role     = "roles/run.invoker"
  member   = "serviceAccount:${local.caller_emails[each.value.caller]}"
}
