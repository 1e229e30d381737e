"""Prometheus metrics of one replica, kept on one registry per app.

The event log's families (relay, consumer groups) are on a registry of their own: they are
counted where the event workers run, in the replica or in its event worker process, and /metrics
shows them from there (server/events/worker_process.py).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.http_requests = Counter("replyhq_http_requests_total", "HTTP requests",
                                     ["method", "route", "status"], registry=r)
        self.http_latency = Histogram("replyhq_http_request_duration_seconds", "HTTP request latency",
                                      ["method", "route"], registry=r,
                                      buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))
        self.socket_connections = Gauge("replyhq_socket_connections", "Connected Socket.IO clients",
                                        ["namespace"], registry=r)
        self.socket_connects = Counter("replyhq_socket_connects_total", "Socket.IO connects",
                                       ["namespace", "result"], registry=r)
        self.socket_emits = Counter("replyhq_socket_emits_total", "Socket.IO events emitted",
                                    ["event"], registry=r)
        self.actor_partitions_owned = Gauge("replyhq_actor_partitions_owned",
                                            "Actor partitions owned by this replica", ["kind"], registry=r)
        self.actor_commands = Counter("replyhq_actor_commands_total", "Actor commands processed",
                                      ["kind", "result"], registry=r)
        self.actor_stream_lag = Gauge("replyhq_actor_stream_lag", "Commands waiting in owned partitions",
                                      ["kind"], registry=r)
        self.conversation_states_cached = Gauge("replyhq_conversation_states_cached",
                                                "Conversation states the actor keeps in memory", registry=r)
        self.commit_batch_size = Histogram("replyhq_commit_batch_size", "Messages per group commit",
                                           registry=r, buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500))
        self.commit_duration = Histogram("replyhq_commit_duration_seconds", "Time of one group commit in Postgres",
                                         registry=r, buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1))
        self.handshakes = Gauge("replyhq_connection_handshakes",
                                "New connections in their handshake (active) or waiting to start it (waiting)",
                                ["state"], registry=r)
        self.handshake_waits = Counter("replyhq_connection_handshake_waits_total",
                                       "New connections that waited for a handshake slot", registry=r)
        self.event_worker_restarts = Counter(
            "replyhq_event_worker_restarts_total",
            "Times the replica restarted its event worker process after it exited on its own", registry=r)
        self.event_registry = CollectorRegistry()
        r = self.event_registry
        self.events_relayed = Counter("replyhq_events_relayed_total",
                                      "Domain events copied from Postgres to the Redis Stream", registry=r)
        self.events_relay_delay = Histogram("replyhq_events_relay_delay_seconds",
                                            "From an event's commit-time clock to its append to the stream "
                                            "(each entry's oldest)",
                                            registry=r,
                                            buckets=(0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1, 5))
        self.event_consumer_applied = Counter("replyhq_event_consumer_applied_total",
                                              "Domain events a consumer group applied (once each)", ["group"],
                                              registry=r)
        self.event_consumer_delay = Histogram(
            "replyhq_event_consumer_delay_seconds",
            "From an event's transaction to the commit of its effect by the group (one event in 32)", ["group"],
            registry=r, buckets=(0.005, 0.01, 0.02, 0.03, 0.04, 0.05, 0.075, 0.1, 0.125, 0.15, 0.2, 0.25, 0.5, 1,
                                 2.5, 5, 10, 60))
        self.event_consumer_lag = Gauge("replyhq_event_consumer_lag_events",
                                        "Events relayed but not yet applied by the group"
                                        " (counted at most once a second, up to 100,000)",
                                        ["group"], registry=r)
        self.event_consumer_behind_retention = Gauge(
            "replyhq_event_consumer_behind_retention",
            "1 when the group's checkpoint is older than what retention has deleted: it missed events",
            ["group"], registry=r)
        r = self.registry
        self.identity_unverified = Counter(
            "replyhq_identity_unverified_total",
            "SDK users accepted without a valid user_hash because the app's identity verification is "
            "log_only, by reason: missing or wrong", ["reason"], registry=r)
        self.webhook_deliveries = Counter(
            "replyhq_webhook_deliveries_total",
            "Webhook delivery attempts by what followed: delivered, retrying (another attempt is scheduled), "
            "failed (attempts exhausted, a 410, or a ping that failed)", ["outcome"], registry=r)
        self.webhook_attempts = Counter("replyhq_webhook_attempts_total",
                                        "Webhook delivery attempts by answer: 2xx, 3xx, 4xx, 5xx, timeout, error",
                                        ["result"], registry=r)
        self.webhook_attempt_duration = Histogram(
            "replyhq_webhook_attempt_duration_seconds", "Time of one webhook delivery attempt", registry=r,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 30))
        self.webhook_first_attempt_delay = Histogram(
            "replyhq_webhook_first_attempt_delay_seconds",
            "From an event's transaction to the start of the first attempt of its delivery", registry=r,
            buckets=(0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1, 2, 5, 10, 60))
