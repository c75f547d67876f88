output "function_urls" {
  description = "Every function's URL."
  value       = { for name, f in google_cloudfunctions2_function.fn : name => f.service_config[0].uri }
}

output "relay_url" {
  description = "The relay's Cloud Run URL (internal ingress; /healthz and /metrics)."
  value       = google_cloud_run_v2_service.relay.uri
}

output "broker_address" {
  description = "The RabbitMQ load balancer's internal address (empty with a bring-your-own AMQP URL)."
  value       = local.use_vm_broker ? google_compute_forwarding_rule.amqp[0].ip_address : ""
}

output "amqp_url_secret" {
  description = "The Secret Manager secret holding the AMQP URL."
  value       = google_secret_manager_secret.amqp_url.id
}
