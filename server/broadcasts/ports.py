"""What the broadcast routes and the scheduler ask of the per-broadcast actor (actors/broadcast.py).

The routes check who may do what and answer 409 for a command the broadcast's status does not allow
before asking; the actor changes the run's and the broadcast's status itself, so a command and the
send loop never race on them.
"""

from __future__ import annotations

from typing import Any, Protocol
from uuid import UUID


class BroadcastCommands(Protocol):
    async def start(self, app_id: UUID, broadcast_id: UUID, run_id: UUID) -> None:
        """Begin (or carry on) the run: snapshot its audience, then send. Idempotent."""
        ...

    async def pause(self, app_id: UUID, broadcast_id: UUID) -> str:
        """Stop sending after the batch in flight; returns the broadcast's new status."""
        ...

    async def resume(self, app_id: UUID, broadcast_id: UUID) -> str:
        ...

    async def cancel(self, app_id: UUID, broadcast_id: UUID) -> str:
        """No more sends and no further occurrences."""
        ...


class BroadcastFanout(Protocol):
    """The realtime side the broadcast actor emits through (server/realtime/fanout.py's Fanout)."""

    async def online_users(self, app_id: str) -> dict[str, bool]:
        """The app's users with a live SDK socket: user id -> whether one is on another replica."""
        ...

    async def broadcast_message(self, user_id: str, payload: dict[str, Any], *, remote: bool) -> None:
        """`broadcast:message` to the user's sockets here; also to other replicas' when `remote`."""
        ...

    async def broadcast_progress(self, app_id: str, progress: dict[str, Any]) -> None:
        """`broadcast:progress` to the workspace's admins."""
        ...
