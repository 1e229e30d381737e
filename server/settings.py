"""One typed settings object, built from the environment and passed in everywhere."""

from __future__ import annotations

import json
import os
import secrets
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

# Environment variable -> settings field. The one place names are mapped.
ENV_VARS: dict[str, str] = {
    "REPLYHQ_ENV": "env",
    "HOST": "host",
    "PORT": "port",
    "DATABASE_URL": "database_url",
    "REDIS_URL": "redis_url",
    "DATA_DIR": "data_dir",
    "JWT_SECRET": "jwt_secret",
    "LOG_LEVEL": "log_level",
    "REPLICA_ID": "replica_id",
    "ACTOR_PARTITIONS": "actor_partitions",
    "DB_POOL_MIN": "db_pool_min",
    "DB_POOL_MAX": "db_pool_max",
    "GRACEFUL_SHUTDOWN_TIMEOUT": "graceful_shutdown_timeout",
    "PUBLIC_URL": "public_url",
    "ACCESS_TOKEN_TTL": "access_token_ttl",
    "REFRESH_TOKEN_TTL": "refresh_token_ttl",
    "STRIPE_SECRET_KEY": "stripe_secret_key",
    "STRIPE_WEBHOOK_SECRET": "stripe_webhook_secret",
    "STRIPE_API_BASE": "stripe_api_base",
    "BOOTSTRAP_DEMO": "bootstrap_demo",
    "SOCKETIO_CHANNEL": "socketio_channel",
    "SOCKETIO_SID_PREFIX": "socketio_sid_prefix",
    "SOCKETIO_PING_INTERVAL": "socketio_ping_interval",
    "SOCKETIO_PING_TIMEOUT": "socketio_ping_timeout",
    "MAX_MESSAGE_BYTES": "max_message_bytes",
    "SNOOZE_CHECK_INTERVAL": "snooze_check_interval",
    "ADMIN_SOCKET_RECHECK_INTERVAL": "admin_socket_recheck_interval",
    "COMMIT_WORKERS": "commit_workers",
    "CONNECT_CONCURRENCY": "connect_concurrency",
    "CONVERSATION_STATE_CACHE_SIZE": "conversation_state_cache_size",
    "EVENT_RETENTION_DAYS": "event_retention_days",
    "EVENT_RELAY_INTERVAL": "event_relay_interval",
    "EVENT_WORKERS": "event_workers",
    "SDK_KEY_RATE_LIMIT": "sdk_key_rate_limit",
    "SDK_USER_RATE_LIMIT": "sdk_user_rate_limit",
    "SDK_HANDSHAKE_RATE_LIMIT": "sdk_handshake_rate_limit",
    "SDK_RATE_WINDOW": "sdk_rate_window",
    "WEBHOOKS_ALLOW_PRIVATE": "webhooks_allow_private",
    "WEBHOOK_TIMEOUT": "webhook_timeout",
    "WEBHOOK_RETRY_SCALE": "webhook_retry_scale",
    "WEBHOOK_CONCURRENCY": "webhook_concurrency",
    "WEBHOOK_ENDPOINT_CONCURRENCY": "webhook_endpoint_concurrency",
    "USAGE_FLUSH_INTERVAL": "usage_flush_interval",
    "LEGACY_AUTH": "legacy_auth",
    "BROADCAST_DEFAULT_RATE": "broadcast_default_rate",
    "BROADCAST_MAX_RATE": "broadcast_max_rate",
    "BROADCAST_MIN_INTERVAL": "broadcast_min_interval",
    "BROADCAST_SCHEDULER_INTERVAL": "broadcast_scheduler_interval",
    "BROADCAST_BATCH_SIZE": "broadcast_batch_size",
}
_BOOLEANS = {"bootstrap_demo", "webhooks_allow_private", "legacy_auth"}
FIELD_TO_ENV = {v: k for k, v in ENV_VARS.items()}


class SettingsError(Exception):
    """A configuration value is missing or wrong; the message names the variable."""


class Settings(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    env: Literal["development", "production", "test"] = "development"
    host: str = "127.0.0.1"
    port: Annotated[int, Meta(ge=0, le=65535)] = 8000
    database_url: str | None = None
    redis_url: str | None = None
    data_dir: str = ".data"
    jwt_secret: str | None = None
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    replica_id: str = ""
    actor_partitions: Annotated[int, Meta(ge=1, le=4096)] = 16
    db_pool_min: Annotated[int, Meta(ge=1)] = 2
    db_pool_max: Annotated[int, Meta(ge=1)] = 16
    graceful_shutdown_timeout: Annotated[float, Meta(ge=0)] = 10.0
    public_url: str | None = None
    access_token_ttl: Annotated[int, Meta(ge=5)] = 900
    refresh_token_ttl: Annotated[int, Meta(ge=60)] = 30 * 24 * 3600
    stripe_secret_key: str | None = None
    stripe_webhook_secret: str | None = None
    stripe_api_base: str | None = None
    bootstrap_demo: bool = True
    socketio_channel: str = "replyhq-sio"
    # Engine.IO sids start with "<prefix>." so a balancer can route long-polling to this replica.
    socketio_sid_prefix: Annotated[str, Meta(pattern=r"^[A-Za-z0-9_-]*$", max_length=32)] = ""
    # Engine.IO heartbeat, whole seconds (the protocol's open packet carries them so): a socket is
    # pinged this long after its last pong and dropped when the pong is this late. Keep the
    # interval below the balancer's idle timeout.
    socketio_ping_interval: Annotated[int, Meta(ge=1, le=3600)] = 25
    socketio_ping_timeout: Annotated[int, Meta(ge=1, le=3600)] = 20
    max_message_bytes: Annotated[int, Meta(ge=1)] = 16384
    snooze_check_interval: Annotated[float, Meta(gt=0, le=3600)] = 5.0  # seconds between snooze checks
    # Seconds between re-reads of every /admin socket's admin: the longest a signed-out session,
    # a removed admin or a revoked key still receives broadcasts.
    admin_socket_recheck_interval: Annotated[float, Meta(gt=0, le=3600)] = 15.0
    # Group commits one replica keeps in flight. One is fastest when Postgres shares the machine's
    # cores: what arrives during a commit joins the next, so batches grow with load (measured in
    # docs/benchmarks.md); more overlap commits when fsync latency, not CPU, is the limit.
    commit_workers: Annotated[int, Meta(ge=1, le=64)] = 1
    # New connections in their handshake at once (server/realtime/transport/admission.py); more wait, reading paused.
    connect_concurrency: Annotated[int, Meta(ge=1, le=100_000)] = 128
    # Conversations whose state (ids, last seq) one replica keeps in memory, least recently used
    # evicted beyond it: about 0.5 KB each. An evicted one costs one indexed read when next touched.
    conversation_state_cache_size: Annotated[int, Meta(ge=1, le=10_000_000)] = 50_000
    # Days domain events are kept in Postgres (workers/event_retention.py); consumers must keep up.
    event_retention_days: Annotated[int, Meta(ge=1, le=3650)] = 30
    # Seconds from the start of one event relay read to the next (at once when a read filled its
    # batch): the floor of event latency, and what relaying and consuming cost per second (a read and
    # an append per cycle, however few events, and a stream read for each group that follows the
    # relay). 40 ms gave a commit-to-consumer p99 of at most 75 ms at 5,000 msgs/s on two cores;
    # 60 ms cost 1-2 % less (docs/benchmarks.md).
    event_relay_interval: Annotated[float, Meta(gt=0, le=3600)] = 0.04
    # Where the relay, the consumer groups and retention run: "process", a worker process beside
    # the replica (it starts, restarts and stops it), so the message path's event loop carries none
    # of it (docs/benchmarks.md); "inline", in the replica's own event loop.
    event_workers: Literal["process", "inline"] = "process"
    # SDK edge rate limits per SDK_RATE_WINDOW seconds (server/http/sdk_limits.py; 0 turns one off).
    # Per API key: /v1 requests + /client handshakes and events of all the key's users together.
    sdk_key_rate_limit: Annotated[int, Meta(ge=0)] = 200_000
    # Per end user (all their devices): a person sends a few events a second at most.
    sdk_user_rate_limit: Annotated[int, Meta(ge=0)] = 2_000
    # /client handshakes per source address: high, as whole offices and mobile carriers share one.
    sdk_handshake_rate_limit: Annotated[int, Meta(ge=0)] = 6_000
    sdk_rate_window: Annotated[int, Meta(ge=1, le=3600)] = 10
    # Webhooks (server/webhooks, workers/webhook_dispatch.py). URLs that resolve to loopback, private,
    # link-local or cloud-metadata addresses are refused at save and at connect time unless this is on
    # (server/platform/ssrf.py): only for receivers on your own network, or tests.
    webhooks_allow_private: bool = False
    # Seconds one delivery attempt may take (connect, send, first bytes of the answer).
    webhook_timeout: Annotated[float, Meta(gt=0, le=300)] = 15.0
    # Multiplies the retry schedule (5 s ... 24 h, about ten attempts over three days); tests shrink it.
    webhook_retry_scale: Annotated[float, Meta(gt=0, le=100)] = 1.0
    # Attempts one replica keeps in flight, over all endpoints, and to any one endpoint.
    webhook_concurrency: Annotated[int, Meta(ge=1, le=10_000)] = 256
    webhook_endpoint_concurrency: Annotated[int, Meta(ge=1, le=1000)] = 16
    # Seconds between moves of the secret-key API call counters from Redis to usage_daily.
    usage_flush_interval: Annotated[float, Meta(gt=0, le=3600)] = 5.0
    # Legacy authentication paths: plaintext API keys of pre-hash installs (hashed on first use) and a
    # secret API key as the /admin socket's admin_token. LEGACY_AUTH=off refuses them all.
    legacy_auth: bool = True
    # Broadcasts (server/broadcasts, actors/broadcast.py, workers/broadcast_scheduler.py): recipients/s
    # when a broadcast names no rate, and the most one may ask for (the per-app cap).
    broadcast_default_rate: Annotated[int, Meta(ge=1, le=1_000_000)] = 100
    broadcast_max_rate: Annotated[int, Meta(ge=1, le=1_000_000)] = 1_000
    # Seconds a recurring broadcast's occurrences must at least be apart.
    broadcast_min_interval: Annotated[int, Meta(ge=1, le=31 * 86400)] = 3600
    # Seconds between the scheduler's ticks (every replica ticks; each occurrence runs once).
    broadcast_scheduler_interval: Annotated[float, Meta(gt=0, le=3600)] = 0.5
    # Recipients the actor moves to sent in one transaction (at most; the token bucket may ask fewer).
    broadcast_batch_size: Annotated[int, Meta(ge=1, le=50_000)] = 2_000

    @property
    def embedded(self) -> bool:
        return self.database_url is None or self.redis_url is None

    @property
    def base_url(self) -> str:
        return self.public_url or f"http://{self.host}:{self.port}"

    @property
    def signing_key(self) -> str:
        """The HS256 key of admin tokens (the CLI fills `jwt_secret` in before the app is built)."""
        if not self.jwt_secret:
            raise ValueError("JWT_SECRET is not set")
        return self.jwt_secret


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment `load_settings` turns back into these settings (for a child process)."""
    env: dict[str, str] = {}
    for var, name in ENV_VARS.items():
        value = getattr(settings, name)
        if value is None:
            continue
        env[var] = ("true" if value else "false") if isinstance(value, bool) else str(value)
    return env


def _field_from_error(err: msgspec.ValidationError) -> str | None:
    text = str(err)
    marker = "at `$."
    if marker in text:
        return text.split(marker, 1)[1].split("`", 1)[0].split("[", 1)[0]
    if "missing required field `" in text:
        return text.split("missing required field `", 1)[1].split("`", 1)[0]
    return None


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Build settings from the environment; raise SettingsError naming the variable."""
    environ = os.environ if environ is None else environ
    raw: dict[str, object] = {}
    for var, field in ENV_VARS.items():
        value = environ.get(var)
        if value is None or value == "":
            continue
        if field in _BOOLEANS:
            raw[field] = value.lower() in ("1", "true", "yes", "on")
        else:
            raw[field] = value
    try:
        settings = msgspec.convert(raw, Settings, strict=False)
    except msgspec.ValidationError as err:
        bad = _field_from_error(err)
        var = FIELD_TO_ENV.get(bad or "", bad or "?")
        detail = str(err).split(" - at ", 1)[0]
        raise SettingsError(f"{var}: invalid value ({detail})") from None
    if not settings.replica_id:
        settings = msgspec.structs.replace(settings, replica_id=f"{socket.gethostname()}-{os.getpid()}")
    if settings.env == "production":
        missing = [v for v, f in (("DATABASE_URL", "database_url"), ("REDIS_URL", "redis_url"),
                                  ("JWT_SECRET", "jwt_secret")) if not getattr(settings, f)]
        if missing:
            raise SettingsError(f"{missing[0]}: required when REPLYHQ_ENV=production")
        if len(settings.jwt_secret or "") < 32:  # short HS256 keys are brute-forceable
            raise SettingsError("JWT_SECRET: must be at least 32 characters in production")
    if settings.jwt_secret is None:
        settings = msgspec.structs.replace(settings, jwt_secret=_dev_secret(Path(settings.data_dir)))
    return settings


def _dev_secret(data_dir: Path) -> str:
    """Generate the development JWT key once and keep it in the data folder."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / "secrets.json"
    if path.exists():
        stored = json.loads(path.read_text()).get("jwt_secret")
        if isinstance(stored, str):
            return stored
    secret = secrets.token_urlsafe(48)
    path.write_text(json.dumps({"jwt_secret": secret}))
    path.chmod(0o600)
    return secret
