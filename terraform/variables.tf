variable "project_id" {
  description = "The Google Cloud project to deploy into."
  type        = string
}

variable "region" {
  description = "Region of the functions, the relay, the broker and Firestore."
  type        = string
  default     = "europe-west1"
}

variable "amqp_url" {
  description = "Bring your own broker: an AMQP URL reachable from the VPC. Empty (the default) runs RabbitMQ on Compute Engine."
  type        = string
  default     = ""
  sensitive   = true
}

variable "rabbitmq_nodes" {
  description = "RabbitMQ nodes on Compute Engine: 1, or 3 for a cluster whose quorum queues survive the loss of a node."
  type        = number
  default     = 1
  validation {
    condition     = contains([1, 3], var.rabbitmq_nodes)
    error_message = "rabbitmq_nodes must be 1 or 3."
  }
}

variable "rabbitmq_machine_type" {
  description = "Machine type of each RabbitMQ node."
  type        = string
  default     = "e2-small"
}

variable "firebase_project" {
  description = "Project whose Firebase Auth / Identity Platform issues the shoppers' ID tokens (default: project_id)."
  type        = string
  default     = ""
}

variable "payment_timeout_default" {
  description = "Payment deadline when a request names none (Go duration or seconds)."
  type        = string
  default     = "15m"
}

variable "max_unpaid_orders_per_shopper" {
  description = "How many UNPAID orders one shopper may hold at once (0: no cap)."
  type        = number
  default     = 10
  validation {
    condition     = var.max_unpaid_orders_per_shopper >= 0 && floor(var.max_unpaid_orders_per_shopper) == var.max_unpaid_orders_per_shopper
    error_message = "max_unpaid_orders_per_shopper must be a whole number, 0 or more."
  }
}

variable "events_topic" {
  description = "The Pub/Sub topic of the order events (EVENTS_TOPIC)."
  type        = string
  default     = "order-events"
}

variable "events_audit_subscription" {
  description = "Create a pull subscription <events_topic>-audit (with a dead-letter topic) to read the events."
  type        = bool
  default     = true
}

variable "remind_before" {
  description = "An orders.deadline.approaching.v1 event this long before each unpaid order's deadline (Go duration; \"0\": off)."
  type        = string
  default     = "0"
}

variable "order_retention" {
  description = "How long a decided order is kept before Firestore's TTL policy deletes it (Go duration; \"0\": forever)."
  type        = string
  default     = "2160h"
}

variable "broker_mode" {
  description = "How timers wait: \"ladder\" (TTL tier queues, no plugin, quorum queues that survive a node; any RabbitMQ line), \"native\" (the due quorum queue holds each message until its x-opt-delivery-time; RabbitMQ 4.4 or later only: set rabbitmq_image to a 4.4 tag; the relay and functions refuse an older broker) or \"plugin\" (an x-delayed-message exchange; only with amqp_url naming a broker that has rabbitmq_delayed_message_exchange enabled, which the Compute Engine broker here does not, and never on RabbitMQ 4.3+)."
  type        = string
  default     = "ladder"
  validation {
    condition     = contains(["ladder", "native", "plugin"], var.broker_mode)
    error_message = "broker_mode must be ladder, native or plugin."
  }
}

variable "alert_notification_channels" {
  description = "Cloud Monitoring notification channel ids (projects/P/notificationChannels/N) the alerts notify; empty: the alerts show in the console only."
  type        = list(string)
  default     = []
}

variable "alert_due_backlog" {
  description = "Alert when more than this many messages wait in ot.due for 5 minutes (the relay holds what comes due within 4.5 s; a backlog means it is not keeping up or not delivering)."
  type        = number
  default     = 1000
}

variable "alert_5xx_per_second" {
  description = "Alert when HandleTimeout answers more than this many 5xx a second for 5 minutes."
  type        = number
  default     = 0.1
}

variable "alert_lateness_p99_seconds" {
  description = "Alert when the p99 of deadline → CANCELLED is over this many seconds for 10 minutes."
  type        = number
  default     = 30
}

variable "alert_outbox_age_seconds" {
  description = "Alert when a sweep finds an order event waiting longer than this in the outbox (a bucket bound of orders.events.outbox_age: 10, 30, 60, 120, 300, 900 or 3600)."
  type        = number
  default     = 60
  validation {
    condition     = contains([10, 30, 60, 120, 300, 900, 3600], var.alert_outbox_age_seconds)
    error_message = "alert_outbox_age_seconds must be one of 10, 30, 60, 120, 300, 900, 3600."
  }
}

variable "relay_instances" {
  description = "How many relay instances consume the queues (always on). Several are safe: each message goes to one consumer, every step a delivery triggers is idempotent, and a held or unacked message returns to the queue if its instance dies (TestTwoRelaysShareTheQueues)."
  type        = number
  default     = 1
  validation {
    condition     = var.relay_instances >= 1 && var.relay_instances <= 10
    error_message = "relay_instances must be between 1 and 10."
  }
}

variable "rabbitmq_image" {
  description = "The RabbitMQ image the Compute Engine nodes run (RabbitMQ 4.x with its Erlang). The default is the line the tests run on (4.3, make test-rabbitmq43). A minor line takes its patch releases when a node restarts; pin a digest (rabbitmq:4.3@sha256:…) to fix the exact build."
  type        = string
  default     = "rabbitmq:4.3"
  validation {
    condition     = can(regex("^([a-z0-9.-]+/)*rabbitmq:4\\.", var.rabbitmq_image))
    error_message = "rabbitmq_image must be a RabbitMQ 4.x image (rabbitmq:4.<minor>…): the ladder's quorum queues and delivery limits are set for it."
  }
}
