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

variable "broker_mode" {
  description = "How timers wait: \"ladder\" (TTL tier queues, no plugin, quorum queues that survive a node) or \"plugin\" (an x-delayed-message exchange; only with amqp_url naming a broker that has rabbitmq_delayed_message_exchange enabled, which the Compute Engine broker here does not)."
  type        = string
  default     = "ladder"
  validation {
    condition     = contains(["ladder", "plugin"], var.broker_mode)
    error_message = "broker_mode must be ladder or plugin."
  }
}
