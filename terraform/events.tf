# Order events: every state change of an order as a CloudEvent on one topic
# (orderevents). The functions that change orders publish; nobody else may.
# Subscribers attach their own subscriptions (README "Order events"); the
# example below shows the shape, with a dead-letter topic for messages a
# subscriber cannot take.
locals {
  # The functions whose code changes orders and so publishes their events.
  event_publishers = ["CreateOrder", "HandleTimeout", "Sweep"]
}

resource "google_pubsub_topic" "order_events" {
  name                       = var.events_topic
  message_retention_duration = "604800s" # 7 days: a subscriber that was down can catch up
  depends_on                 = [google_project_service.apis]
}

resource "google_pubsub_topic" "order_events_dead" {
  name       = "${var.events_topic}-dead"
  depends_on = [google_project_service.apis]
}

resource "google_pubsub_topic_iam_member" "publishers" {
  for_each = toset(local.event_publishers)
  topic    = google_pubsub_topic.order_events.name
  role     = "roles/pubsub.publisher"
  member   = "serviceAccount:${google_service_account.fn[each.key].email}"
}

# A pull subscription for a first subscriber (or for looking at the events:
# gcloud pubsub subscriptions pull order-events-audit --auto-ack).
resource "google_pubsub_subscription" "audit" {
  count                      = var.events_audit_subscription ? 1 : 0
  name                       = "${var.events_topic}-audit"
  topic                      = google_pubsub_topic.order_events.id
  ack_deadline_seconds       = 60
  message_retention_duration = "604800s"
  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.order_events_dead.id
    max_delivery_attempts = 10
  }
  retry_policy {
    minimum_backoff = "10s"
    maximum_backoff = "600s"
  }
}

# Pub/Sub's service agent moves undeliverable messages to the dead-letter
# topic: it must publish there and acknowledge on the subscription.
resource "google_pubsub_topic_iam_member" "dead_letter_publisher" {
  topic  = google_pubsub_topic.order_events_dead.name
  role   = "roles/pubsub.publisher"
  member = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"
}

resource "google_pubsub_subscription_iam_member" "dead_letter_subscriber" {
  count        = var.events_audit_subscription ? 1 : 0
  subscription = google_pubsub_subscription.audit[0].name
  role         = "roles/pubsub.subscriber"
  member       = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"
}
