"""What the conversation domain needs from the rest of the house, as Protocols passed in: the
actor router (actors/runtime/host.py's ActorHost) and the realtime fan-out
(server/realtime/fanout.py's Fanout). Both satisfy them structurally; server/app.py wires them.
The domain never imports the transport."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Protocol
from uuid import UUID

from server.conversations.models import Conversation, ConversationCommand, Message, Receipt


class CommandRouter(Protocol):
    """The actor host: runs a command on the conversation's owner, returns its result."""

    async def call(self, command: ConversationCommand) -> Any: ...


class ConversationFanout(Protocol):
    """The realtime events the conversation actor emits after each commit, in seq order."""

    async def message_new(self, app_id: str, user_id: str, message: Message) -> None: ...

    async def conversation(self, event: str, conversation: Conversation) -> None: ...

    async def receipt(self, app_id: str, user_id: str, receipt: Receipt) -> None: ...

    def published(self) -> asyncio.Future[None] | None:
        """What to wait on before acknowledging: the emits made so far reached the other replicas."""
        ...


class PendingBroadcasts(Protocol):
    """The user's broadcast deliveries sent and not yet delivered (server/broadcasts/deliveries.py),
    handed over on every sync page."""

    async def for_user(self, user_id: UUID) -> Sequence[Any]: ...
