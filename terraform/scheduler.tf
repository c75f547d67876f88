# The sweeper runs every minute, called with an OIDC token of the
# scheduler's own service account (the only invoker Sweep accepts).
resource "google_cloud_scheduler_job" "sweep" {
  name             = "ordertimeout-sweep"
  region           = var.region
  schedule         = "* * * * *"
  time_zone        = "Etc/UTC"
  attempt_deadline = "120s"

  http_target {
    http_method = "POST"
    uri         = "${local.fn_url["Sweep"]}/"
    oidc_token {
      service_account_email = google_service_account.scheduler.email
      audience              = local.fn_url["Sweep"]
    }
  }

  depends_on = [google_project_service.apis]
}
