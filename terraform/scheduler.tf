# The sweeper runs every minute, called with an OIDC token of the
# scheduler's own service account (the only invoker Sweep accepts).
locals {
  # Sweep's function timeout and the scheduler's attempt deadline: equal,
  # so the scheduler never gives up on a sweep that is still working.
  sweep_timeout_seconds = 180
}

resource "google_cloud_scheduler_job" "sweep" {
  name             = "ordertimeout-sweep"
  region           = var.region
  schedule         = "* * * * *"
  time_zone        = "Etc/UTC"
  attempt_deadline = "${local.sweep_timeout_seconds}s"

  http_target {
    http_method = "POST"
    uri         = "${local.fn_url["Sweep"]}/"
    oidc_token {
      service_account_email = google_service_account.scheduler.email
      audience              = local.fn_url["Sweep"]
    }
  }

  # Its first call finds Sweep deployed, with the database and the
  # indexes its queries use.
  depends_on = [google_project_service.apis, google_cloudfunctions2_function.fn, google_cloud_run_service_iam_member.callers]
}
