"""The Socket.IO server ReplyHQ runs: replica-named sids plus the direct websocket transport."""

from __future__ import annotations

from typing import Any

import engineio
from engineio import async_socket

from server.realtime.eio_websocket import DirectSocket, Pinger, SanicWebSocketDriver
from server.replica_sids import ReplicaEngineIOServer, ReplicaSidServer


class EngineServer(ReplicaEngineIOServer):
    """Engine.IO with sockets that write straight onto their websocket and one shared pinger."""

    _async: dict[str, Any]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._async = {**self._async, "websocket": SanicWebSocketDriver}
        self.pinger = Pinger(self.ping_interval)

    async def _trigger_event(self, event: str, *args: Any, **kwargs: Any) -> Any:
        if event == "connect":
            # python-engineio builds its sockets itself; the connect event comes before the
            # socket's first ping or upgrade, and DirectSocket adds behaviour, not state.
            sock = self.sockets.get(args[0])
            if sock is not None and type(sock) is async_socket.AsyncSocket:
                sock.__class__ = DirectSocket
        return await super()._trigger_event(event, *args, **kwargs)


class SocketServer(ReplicaSidServer):
    def _engineio_server_class(self) -> type[engineio.AsyncServer]:
        return EngineServer
