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

# OverdueOrders: status == UNPAID, sweepShard == k (each of store.SweepShards in
# turn), deadline < t, order by deadline. sweepShard before the timestamp splits
# the index's increasing range into 8, each good for ~500 writes/s.
resource "google_firestore_index" "orders_status_deadline" {
  database   = google_firestore_database.default.name
  collection = "orders"
  fields {
    field_path = "status"
    order      = "ASCENDING"
  }
  fields {
    field_path = "sweepShard"
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
    field_path = "sweepShard"
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

# Single-field index exemptions: no query filters or orders on one field
# alone, so every field the code writes is exempt from Firestore's default
# single-field indexes (store.StoredFields; a test holds this list to it).
# Besides saving index writes, this removes the indexes on increasing
# timestamps (createdAt, deadline, paidAt, cancelledAt, ...) that would cap
# each collection near 500 writes/s. Composite indexes do not depend on
# single-field ones. To query a field by hand in the console, remove it here.
locals {
  ttl_fields = ["idempotency.expireAt", "orders.expireAt", "outbox.expireAt"]
  unindexed_fields = {
    carts        = ["lines"]
    idempotency  = ["expireAt", "orderId", "requestHash", "state", "until", "userId"]
    items        = ["maxPerShopper", "name", "priceCents", "shards", "stock"]
    orders       = ["cancelReason", "cancelledAt", "createdAt", "deadline", "expireAt", "items", "paidAt", "remindedFor", "status", "sweepShard", "totalCents", "userId"]
    outbox       = ["createdAt", "expireAt", "order", "orderId", "source", "time", "type"]
    payOrders    = ["amountCents", "closedAt", "createdAt", "paidAt", "payOrderId", "status", "userId"]
    reservations = ["createdAt", "lines", "restoredAt", "state", "sweepShard", "takes"]
    shards       = ["stock"]
    shoppers     = ["holds", "paidUnits"]
    wallets      = ["balanceCents"]
  }
}

resource "google_firestore_field" "unindexed" {
  for_each = merge([
    for collection, fields in local.unindexed_fields : {
      for field in fields : "${collection}.${field}" => { collection = collection, field = field }
    }
  ]...)
  database   = google_firestore_database.default.name
  collection = each.value.collection
  field      = each.value.field
  # An empty index_config removes every single-field index of the field.
  index_config {}
  # Retention: Firestore's TTL policy deletes a document once this field's
  # time has passed (store.TTLFields; decided orders after ORDER_RETENTION,
  # idempotency keys a week after their create, undelivered events after
  # 30 days).
  dynamic "ttl_config" {
    for_each = contains(local.ttl_fields, "${each.value.collection}.${each.value.field}") ? [1] : []
    content {}
  }
}
