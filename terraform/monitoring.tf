# What an operator gets with `terraform apply`: alerts on the signals that
# mean a timer was lost, late or stuck, and one dashboard. The functions and
# the relay export their OpenTelemetry metrics to Cloud Monitoring
# (TRACE_EXPORTER=gcp) as workload.googleapis.com/<name>; the names are the
# code's (shared/telemetry/metrics.go, shared/relay/metrics.go), and a test
# holds these filters to them.

locals {
  metric = {
    sweeper_finds   = "workload.googleapis.com/sweeper.finds"
    dead_lettered   = "workload.googleapis.com/relay.dead_lettered"
    delivered       = "workload.googleapis.com/relay.delivered"
    retried         = "workload.googleapis.com/relay.retried"
    refusals        = "workload.googleapis.com/relay.target_refusals"
    connected       = "workload.googleapis.com/relay.connected"
    queue_depth     = "workload.googleapis.com/relay.queue_depth"
    relay_lateness  = "workload.googleapis.com/relay.lateness"
    orders_created  = "workload.googleapis.com/orders.created"
    orders_paid     = "workload.googleapis.com/orders.paid"
    orders_cancel   = "workload.googleapis.com/orders.cancelled"
    timeout_latency = "workload.googleapis.com/orders.timeout.lateness"
    orders_refused  = "workload.googleapis.com/orders.refused"
    events_sent     = "workload.googleapis.com/orders.events.published"
    outbox_age      = "workload.googleapis.com/orders.events.outbox_age"
  }
  # The same metrics in Cloud Monitoring's PromQL: the domain's dots become
  # underscores, its "/" a colon, the name's dots underscores.
  promql     = { for k, m in local.metric : k => "workload_googleapis_com:${replace(trimprefix(m, "workload.googleapis.com/"), ".", "_")}" }
  alert_docs = "Runbook: docs/operating.md, \"Runbook: timers were dead-lettered\" (otctl dead list / redrive)."
}

resource "google_monitoring_alert_policy" "sweeper_finds" {
  display_name          = "ordertimeout: the sweeper found orders its timers missed"
  combiner              = "OR"
  severity              = "WARNING"
  notification_channels = var.alert_notification_channels
  documentation {
    content   = "The sweeper decided an overdue order or released an orphaned reservation: a timer was lost or late. Check the relay (connected, delivering) and ot.dead. ${local.alert_docs}"
    mime_type = "text/markdown"
  }
  conditions {
    display_name = "sweeper.finds > 0 in 5 min"
    # PromQL with metric validation off: the policy is created before the
    # code has ever exported the metric (a fresh project), and fires once
    # it does.
    condition_prometheus_query_language {
      query                     = "sum(increase(${local.promql.sweeper_finds}[5m])) > 0"
      duration                  = "0s"
      evaluation_interval       = "60s"
      disable_metric_validation = true
    }
  }
  depends_on = [google_project_service.apis]
}

resource "google_monitoring_alert_policy" "dead_letters" {
  display_name          = "ordertimeout: messages were dead-lettered"
  combiner              = "OR"
  severity              = "ERROR"
  notification_channels = var.alert_notification_channels
  documentation {
    content   = "The relay put messages in ot.dead (the target said 400/422, or 20 attempts failed). ${local.alert_docs}"
    mime_type = "text/markdown"
  }
  conditions {
    display_name = "relay.dead_lettered > 0 in 5 min"
    # PromQL with metric validation off: the policy is created before the
    # code has ever exported the metric (a fresh project), and fires once
    # it does.
    condition_prometheus_query_language {
      query                     = "sum(increase(${local.promql.dead_lettered}[5m])) > 0"
      duration                  = "0s"
      evaluation_interval       = "60s"
      disable_metric_validation = true
    }
  }
  depends_on = [google_project_service.apis]
}

resource "google_monitoring_alert_policy" "relay_stuck" {
  display_name          = "ordertimeout: the relay is not connected, not delivering, or refused by its target"
  combiner              = "OR"
  severity              = "CRITICAL"
  notification_channels = var.alert_notification_channels
  documentation {
    content   = "Timers are not being delivered. Check the relay's logs (ERROR lines name the status its target answered), its credential and RELAY_TARGET_URL, and the broker. ${local.alert_docs}"
    mime_type = "text/markdown"
  }
  conditions {
    display_name = "relay.connected < 1, or no relay exports anything, for 2 min"
    # PromQL with metric validation off: the policy is created before the
    # code has ever exported the metric (a fresh project), and fires once
    # it does.
    condition_prometheus_query_language {
      query                     = "(max(max_over_time(${local.promql.connected}[2m])) < 1) or absent_over_time(${local.promql.connected}[5m])"
      duration                  = "120s"
      evaluation_interval       = "60s"
      disable_metric_validation = true
    }
  }
  conditions {
    display_name = "messages waiting in ot.due for 5 min"
    # PromQL with metric validation off: the policy is created before the
    # code has ever exported the metric (a fresh project), and fires once
    # it does.
    condition_prometheus_query_language {
      query                     = "sum(min_over_time(${local.promql.queue_depth}{queue=\"due\"}[5m])) > ${var.alert_due_backlog}"
      duration                  = "300s"
      evaluation_interval       = "60s"
      disable_metric_validation = true
    }
  }
  conditions {
    display_name = "the target refuses the relay (401/403/404/405/415)"
    # PromQL with metric validation off: the policy is created before the
    # code has ever exported the metric (a fresh project), and fires once
    # it does.
    condition_prometheus_query_language {
      query                     = "sum(increase(${local.promql.refusals}[5m])) > 0"
      duration                  = "0s"
      evaluation_interval       = "60s"
      disable_metric_validation = true
    }
  }
  depends_on = [google_project_service.apis]
}

resource "google_monitoring_alert_policy" "handletimeout_5xx" {
  display_name          = "ordertimeout: HandleTimeout answers 5xx"
  combiner              = "OR"
  severity              = "WARNING"
  notification_channels = var.alert_notification_channels
  documentation {
    content   = "HandleTimeout cannot decide orders (Pay or DeductStock unreachable, Firestore errors); the relay retries, and after 20 attempts dead-letters. ${local.alert_docs}"
    mime_type = "text/markdown"
  }
  conditions {
    display_name = "5xx answers > ${var.alert_5xx_per_second}/s for 5 min"
    condition_threshold {
      filter          = "resource.type = \"cloud_run_revision\" AND resource.label.service_name = \"${google_cloudfunctions2_function.fn["HandleTimeout"].name}\" AND metric.type = \"run.googleapis.com/request_count\" AND metric.label.response_code_class = \"5xx\""
      comparison      = "COMPARISON_GT"
      threshold_value = var.alert_5xx_per_second
      duration        = "300s"
      aggregations {
        alignment_period     = "60s"
        per_series_aligner   = "ALIGN_RATE"
        cross_series_reducer = "REDUCE_SUM"
      }
    }
  }
  depends_on = [google_project_service.apis]
}

resource "google_monitoring_alert_policy" "timeout_lateness" {
  display_name          = "ordertimeout: orders are cancelled late"
  combiner              = "OR"
  severity              = "WARNING"
  notification_channels = var.alert_notification_channels
  documentation {
    content   = "The p99 of deadline → CANCELLED is over ${var.alert_lateness_p99_seconds} s: the relay or HandleTimeout is slow or retrying. ${local.alert_docs}"
    mime_type = "text/markdown"
  }
  conditions {
    display_name = "orders.timeout.lateness p99 > ${var.alert_lateness_p99_seconds} s for 10 min"
    # PromQL with metric validation off: the policy is created before the
    # code has ever exported the metric (a fresh project), and fires once
    # it does.
    condition_prometheus_query_language {
      query                     = "histogram_quantile(0.99, sum by (le) (rate(${local.promql.timeout_latency}_bucket[5m]))) > ${var.alert_lateness_p99_seconds}"
      duration                  = "600s"
      evaluation_interval       = "60s"
      disable_metric_validation = true
    }
  }
  depends_on = [google_project_service.apis]
}

resource "google_monitoring_alert_policy" "events_waiting" {
  display_name          = "ordertimeout: order events wait in the outbox"
  combiner              = "OR"
  severity              = "WARNING"
  notification_channels = var.alert_notification_channels
  documentation {
    content   = "A sweep found order events recorded more than ${var.alert_outbox_age_seconds} s ago and not yet on the ${var.events_topic} topic: the functions could not publish them (Pub/Sub permissions, the topic, an outage). The sweeper keeps sending them; subscribers get them late, never lost. Check the functions' WARN lines \"order events not published\". ${local.alert_docs}"
    mime_type = "text/markdown"
  }
  conditions {
    display_name = "an event waited over ${var.alert_outbox_age_seconds} s in the last 10 min"
    condition_prometheus_query_language {
      query                     = "sum(increase(${local.promql.outbox_age}_count[10m])) - sum(increase(${local.promql.outbox_age}_bucket{le=\"${var.alert_outbox_age_seconds}\"}[10m])) > 0"
      duration                  = "0s"
      evaluation_interval       = "60s"
      disable_metric_validation = true
    }
  }
  depends_on = [google_project_service.apis]
}

resource "google_monitoring_dashboard" "ordertimeout" {
  dashboard_json = jsonencode({
    displayName = "ordertimeout"
    mosaicLayout = {
      columns = 12
      tiles = [
        for i, w in [
          { title = "Orders created / paid / cancelled per second", metrics = [local.metric.orders_created, local.metric.orders_paid, local.metric.orders_cancel], aligner = "ALIGN_RATE", reducer = "REDUCE_SUM" },
          { title = "Deadline → CANCELLED lateness p50 / p99 (s)", metrics = [local.metric.timeout_latency, local.metric.timeout_latency], aligner = "ALIGN_DELTA", reducers = ["REDUCE_PERCENTILE_50", "REDUCE_PERCENTILE_99"] },
          { title = "Relay: delivered / retried / dead-lettered per second", metrics = [local.metric.delivered, local.metric.retried, local.metric.dead_lettered], aligner = "ALIGN_RATE", reducer = "REDUCE_SUM" },
          { title = "Relay: due → first attempt p99 (s)", metrics = [local.metric.relay_lateness], aligner = "ALIGN_DELTA", reducer = "REDUCE_PERCENTILE_99" },
          { title = "Queue depths: ot.due / ot.retry / ot.dead", metrics = [local.metric.queue_depth], aligner = "ALIGN_MAX", reducer = "REDUCE_SUM", group_by = ["metric.label.queue"] },
          { title = "Sweeper finds (lost or late timers) and target refusals", metrics = [local.metric.sweeper_finds, local.metric.refusals], aligner = "ALIGN_DELTA", reducer = "REDUCE_SUM" },
          { title = "Creates refused by shopper limits (by reason)", metrics = [local.metric.orders_refused], aligner = "ALIGN_DELTA", reducer = "REDUCE_SUM", group_by = ["metric.label.reason"] },
          { title = "Order events published per second (commit / sweeper)", metrics = [local.metric.events_sent], aligner = "ALIGN_RATE", reducer = "REDUCE_SUM", group_by = ["metric.label.path"] },
          ] : {
          xPos   = (i % 2) * 6
          yPos   = floor(i / 2) * 4
          width  = 6
          height = 4
          widget = {
            title = w.title
            xyChart = {
              dataSets = [
                for j, m in w.metrics : {
                  plotType = "LINE"
                  timeSeriesQuery = {
                    timeSeriesFilter = {
                      filter = "metric.type = \"${m}\""
                      aggregation = {
                        alignmentPeriod    = "60s"
                        perSeriesAligner   = w.aligner
                        crossSeriesReducer = try(w.reducers[j], w.reducer)
                        groupByFields      = try(w.group_by, [])
                      }
                    }
                  }
                }
              ]
            }
          }
        }
      ]
    }
  })
  depends_on = [google_project_service.apis]
}
