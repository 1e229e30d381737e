"""Engine.IO session ids that name their replica, so a balancer can route long-polling to it.

A long-polling Socket.IO session is many HTTP requests, each carrying `sid=...`; all of them,
and the websocket upgrade, must reach the replica that holds the session. With a prefix set
(`SOCKETIO_SID_PREFIX`), every sid this replica issues reads `<prefix>.<random>`, and a balancer
routes a request by the prefix of its `sid` (server/dev/balancer.py does; nginx can with a `map`).
'.' never occurs in Engine.IO's own url-safe base64 ids, so the split is unambiguous.
"""

from __future__ import annotations

from typing import Any

import engineio

from server.realtime.transport.socketio_adapter import SocketServerBase

SEPARATOR = "."


class ReplicaEngineIOServer(engineio.AsyncServer):
    sid_prefix = ""

    def generate_id(self) -> str:
        sid: str = super().generate_id()
        return f"{self.sid_prefix}{SEPARATOR}{sid}" if self.sid_prefix else sid


class ReplicaSidServer(SocketServerBase):
    """socketio.AsyncServer whose Engine.IO (and namespace) sids start with `sid_prefix.`."""

    engineio_class: type[engineio.AsyncServer] = ReplicaEngineIOServer

    def __init__(self, *args: Any, sid_prefix: str = "", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.eio.sid_prefix = sid_prefix


def sid_prefix_of(sid: str) -> str | None:
    """The replica prefix of a sid issued by a ReplicaSidServer; None for unprefixed sids."""
    prefix, sep, _ = sid.partition(SEPARATOR)
    return prefix if sep and prefix else None
