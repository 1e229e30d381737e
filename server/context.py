"""The application context: every long-lived service of one replica, typed, on `app.ctx`.

Built by `create_app` with what exists before the server starts; the rest is opened by the
capabilities' lifecycle steps (server/lifecycle.py) in order, and closed in reverse.
Routes reach it with `context_of(request)`; domain functions take it as their first argument.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, cast
from uuid import UUID

from server.lifecycle import Lifecycle

if TYPE_CHECKING:
    import asyncpg
    import redis.asyncio as aioredis
    from sanic import Request

    from actors.broadcast import BroadcastHandler
    from actors.conversation import ConversationHandler
    from actors.runtime.host import ActorHost
    from server.auth.activity import AdminActivity
    from server.auth.roles import Role
    from server.broadcasts.ports import BroadcastCommands
    from server.conversations.service import MessagingService
    from server.http.sdk_limits import SdkLimits
    from server.platform.metrics import Metrics
    from server.platform.redis.writer import RedisWriter
    from server.realtime.fanout import Fanout
    from server.realtime.presence import Presence
    from server.realtime.transport.admission import Admission
    from server.realtime.transport.socket_server import SocketServer
    from server.settings import Settings
    from server.tenancy.key_checks import KeyChanges, KeyVerifier
    from server.tenancy.key_usage import KeyUsage
    from server.usage.api_calls import ApiCallMeter
    from server.users.identity import SdkIdentity
    from workers.broadcast_scheduler import BroadcastScheduler
    from workers.snoozes import SnoozeWorker
    from workers.webhook_dispatch import WebhookDispatcher


class LiveSession(Protocol):
    @property
    def user_id(self) -> str: ...


class LiveSessions(Protocol):
    """Who is connected over the SDK right now, across replicas: realtime keeps it, domains read it."""

    async def of_app(self, app_id: UUID) -> Sequence[LiveSession]: ...

    async def online_user_ids(self, app_id: UUID) -> set[str]: ...


@dataclass(eq=False)
class AppContext:
    settings: Settings
    metrics: Metrics
    lifecycle: Lifecycle = field(default_factory=Lifecycle)
    # Opened at start, in this order (an attribute read before its step ran is an AttributeError).
    pool: asyncpg.Pool = field(init=False)
    redis: aioredis.Redis = field(init=False)
    redis_writer: RedisWriter = field(init=False)
    admission: Admission = field(init=False)
    sio: SocketServer = field(init=False)
    fanout: Fanout = field(init=False)
    conversation_handler: ConversationHandler = field(init=False)
    conversation_actors: ActorHost = field(init=False)
    messaging: MessagingService = field(init=False)
    broadcast_handler: BroadcastHandler = field(init=False)
    broadcast_actors: ActorHost = field(init=False)
    snoozes: SnoozeWorker = field(init=False)
    presence: Presence = field(init=False)
    online: LiveSessions = field(init=False)
    sdk_limits: SdkLimits = field(init=False)
    key_usage: KeyUsage = field(init=False)
    key_verifier: KeyVerifier = field(init=False)
    key_changes: KeyChanges = field(init=False)
    admin_activity: AdminActivity = field(init=False)
    sdk_identity: SdkIdentity = field(init=False)
    # The event log's consumers, of every capability (server/app.py), and its running workers
    # when they run in this process (settings.event_workers == "inline").
    event_consumers: list[Any] = field(default_factory=list)
    event_workers: list[Any] = field(default_factory=list)
    # More Prometheus exposition text for /metrics, from families this registry does not hold.
    metrics_sources: list[Callable[[], Awaitable[bytes]]] = field(default_factory=list)
    webhooks: WebhookDispatcher = field(init=False)
    usage: ApiCallMeter = field(init=False)  # counts secret-key API calls (server/usage/api_calls.py)
    broadcast_commands: BroadcastCommands = field(init=False)  # the per-broadcast actors (actors/broadcast.py)
    broadcast_scheduler: BroadcastScheduler = field(init=False)
    roles: dict[str, Role] | None = None  # read once per process (server/auth/roles.py)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        """A background task that lives as long as the replica; cancelled when the platform closes."""
        task = asyncio.create_task(coro, name=name)
        self.tasks.add(task)
        return task


def context_of(request: Request) -> AppContext:
    return cast("AppContext", request.app.ctx)
