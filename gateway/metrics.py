"""Prometheus metrics. Labels are bounded and never carry personal data or ids."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

WEBHOOKS = Counter("gateway_webhooks_total", "Webhook requests by plugin and status code",
                   ["plugin", "status"], registry=REGISTRY)
EVENTS = Counter("gateway_events_total", "Canonical events accepted, by state", ["state"],
                 registry=REGISTRY)
IGNORED = Counter("gateway_notifications_ignored_total",
                  "Valid notifications that carried nothing to deliver", ["plugin"], registry=REGISTRY)
INSECURE = Counter("gateway_insecure_webhooks_total",
                   "Unsigned webhooks accepted because the operator allowed it", ["plugin"],
                   registry=REGISTRY)
DELIVERIES = Counter("gateway_deliveries_total", "Delivery attempts by sink and outcome",
                     ["sink", "outcome"], registry=REGISTRY)
DELIVERY_LATENCY = Histogram(
    "gateway_delivery_latency_seconds", "Event received to CRM acknowledged", ["sink"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600),
    registry=REGISTRY)
QUEUE_DEPTH = Gauge("gateway_queue_depth", "Deliveries waiting in memory", registry=REGISTRY)
RETRIES = Counter("gateway_delivery_retries_total", "Deliveries scheduled for another try", ["sink"],
                  registry=REGISTRY)
DEAD_LETTERS = Counter("gateway_dead_letters_total", "Deliveries given up on", ["sink"],
                       registry=REGISTRY)
RATE_LIMIT_WAITS = Counter("gateway_rate_limit_waits_total",
                           "Times a delivery waited for its destination's rate limit", ["sink"],
                           registry=REGISTRY)
TOKEN_REFRESHES = Counter("gateway_token_refreshes_total", "OAuth token refreshes", ["plugin", "outcome"],
                          registry=REGISTRY)
PURGED = Counter("gateway_purged_records_total", "Records deleted by retention", ["kind"],
                 registry=REGISTRY)
WEBHOOK_REACTIVATIONS = Counter("gateway_webhook_reactivations_total",
                                "Vendor webhooks re-activated after being disabled", ["plugin"],
                                registry=REGISTRY)
ADMIN_REFUSED = Counter("gateway_admin_refused_total",
                        "Admin API requests refused for want of a valid bearer token", registry=REGISTRY)
SLOW_BODIES = Counter("gateway_slow_bodies_total",
                      "Requests cut off because their body did not arrive within GATEWAY_BODY_TIMEOUT",
                      registry=REGISTRY)
PLUGIN_EVENTS = Counter("gateway_plugin_events_total",
                        "Plugin-specific happenings (bounded names only)", ["plugin", "what"],
                        registry=REGISTRY)

JOURNAL_BACKLOG = Gauge("gateway_journal_backlog", "Acknowledged webhooks waiting to be interpreted",
                        registry=REGISTRY)
JOURNAL_FULL = Counter("gateway_journal_full_total",
                       "Webhooks that waited for room because the journal backlog was full", registry=REGISTRY)
JOURNAL_UNINTERPRETABLE = Counter("gateway_journal_uninterpretable_total",
                                  "Acknowledged webhooks the source could no longer interpret", ["plugin"],
                                  registry=REGISTRY)

RECONCILED = Counter("gateway_reconciled_calls_total",
                     "Calls written by reconciliation (listed by the telephone system, never received)",
                     ["plugin"], registry=REGISTRY)
RECONCILIATIONS = Counter("gateway_reconciliations_total", "Reconciliation runs by plugin and outcome",
                          ["plugin", "outcome"], registry=REGISTRY)
# Per plugin, not per connection: connection ids are unbounded. The oldest last success
# across a plugin's connections is what an alert needs (one stuck connection shows); which
# one it is, the admin API and the CRM app's status page say.
RECONCILE_OLDEST = Gauge("gateway_reconcile_oldest_success_timestamp_seconds",
                         "Oldest last successful reconciliation among a plugin's connections (Unix time)",
                         ["plugin"], registry=REGISTRY)
RECONCILE_FAILING = Gauge("gateway_reconcile_failing_connections",
                          "Connections whose last reconciliation failed (retried with back-off)", ["plugin"],
                          registry=REGISTRY)

_NAMED = {"webhook_reactivated": WEBHOOK_REACTIVATIONS, "insecure_webhook": INSECURE,
          "ignored_notification": IGNORED}


def count_plugin(plugin: str, what: str, outcome: str = "ok") -> None:
    """Count a plugin's happening: the core's own counters for the names it knows, else
    ``gateway_plugin_events_total{plugin, what}`` (names are cut to 64 characters)."""
    if what == "token_refresh":
        TOKEN_REFRESHES.labels(plugin, outcome if outcome in ("ok", "failed") else "other").inc()
    elif what in _NAMED:
        _NAMED[what].labels(plugin).inc()
    else:
        PLUGIN_EVENTS.labels(plugin, what[:64]).inc()
