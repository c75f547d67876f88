resource "google_firestore_database" "default" {
  name                    = "(default)"
  location_id             = var.region
  type                    = "FIRESTORE_NATIVE"
  delete_protection_state = "DELETE_PROTECTION_ENABLED"
  deletion_policy         = "ABANDON"
  depends_on              = [google_project_service.apis]
}

# One composite index per query the code runs (shared/store/queries.go;
# a test compares them, since the emulator ignores indexes).

# OverdueOrders: status == UNPAID, deadline < t, order by deadline.
resource "google_firestore_index" "orders_status_deadline" {
  database   = google_firestore_database.default.name
  collection = "orders"
  fields {
    field_path = "status"
    order      = "ASCENDING"
  }
  fields {
    field_path = "deadline"
    order      = "ASCENDING"
  }
}

# StaleReservations: state == RESERVED, createdAt < t, order by createdAt.
resource "google_firestore_index" "reservations_state_created" {
  database   = google_firestore_database.default.name
  collection = "reservations"
  fields {
    field_path = "state"
    order      = "ASCENDING"
  }
  fields {
    field_path = "createdAt"
    order      = "ASCENDING"
  }
}

# UserOrders: userId == u, order by createdAt desc (then by id, which the
# index carries). The shopper's user id spreads its writes.
resource "google_firestore_index" "orders_user_created" {
  database   = google_firestore_database.default.name
  collection = "orders"
  fields {
    field_path = "userId"
    order      = "ASCENDING"
  }
  fields {
    field_path = "createdAt"
    order      = "DESCENDING"
  }
}

# UserOrdersByStatus: userId == u, status == s, order by createdAt desc.
resource "google_firestore_index" "orders_user_status_created" {
  database   = google_firestore_database.default.name
  collection = "orders"
  fields {
    field_path = "userId"
    order      = "ASCENDING"
  }
  fields {
    field_path = "status"
    order      = "ASCENDING"
  }
  fields {
    field_path = "createdAt"
    order      = "DESCENDING"
  }
}
