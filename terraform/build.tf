# Builds run as a service account this module controls. In organisations
# created since 2024 the default compute service account gets no roles
# automatically, so Cloud Build (behind Cloud Functions' builds and the
# relay image) fails for want of a permission; a build account with
# exactly what a build needs removes that dependency on the project's
# defaults.
resource "google_service_account" "build" {
  account_id   = "ot-build"
  display_name = "ordertimeout builds (functions and the relay image)"
  depends_on   = [google_project_service.apis]
}

locals {
  # What a build does: read its source, write its logs, push the image to
  # Artifact Registry (Cloud Functions keeps function images there too).
  build_roles = ["roles/logging.logWriter", "roles/artifactregistry.writer", "roles/storage.objectViewer"]
}

resource "google_project_iam_member" "build" {
  for_each = toset(local.build_roles)
  project  = var.project_id
  role     = each.value
  member   = "serviceAccount:${google_service_account.build.email}"
}

# Whoever runs terraform starts the builds as the build account.
data "google_client_openid_userinfo" "me" {}

resource "google_service_account_iam_member" "build_user" {
  service_account_id = google_service_account.build.name
  role               = "roles/iam.serviceAccountUser"
  member             = "${endswith(data.google_client_openid_userinfo.me.email, "gserviceaccount.com") ? "serviceAccount" : "user"}:${data.google_client_openid_userinfo.me.email}"
}

# The relay image is built with terraform's own credentials (not whatever
# account the operator's gcloud is logged in as), as the build account.
data "google_client_config" "me" {}
