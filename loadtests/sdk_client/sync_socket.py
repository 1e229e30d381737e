"""The SDK's socket for gevent (locust): the contract of `sdk.py` on python-socketio's sync Client.

locust runs users as greenlets; the sync Client (requests + websocket-client, threads that
gevent turns into greenlets) cooperates with that, where the asyncio `ReplyHQClient` cannot.
It keeps what load needs of the SDK: acked calls that raise `ReplyHQError` on error acks, retries
of sends on the same `client_id`, handlers for server events and a sync cursor.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import socketio

from loadtests.sdk_client.client import RETRYABLE_STATUS, SOCKETIO_PATH, ReplyHQError, retry_delay

Auth = dict[str, Any] | Callable[[], dict[str, Any]]


class SyncSocket:
    """One Socket.IO connection to one namespace (`/client` or `/admin`)."""

    def __init__(self, url: str, namespace: str, auth: Auth, *, transports: list[str] | None = None,
                 ack_timeout: float = 10.0, send_attempts: int = 5) -> None:
        self.url = url.rstrip("/")
        self.namespace = namespace
        self.auth = auth  # a callable is asked again on every (re)connect: fresh admin tokens
        self.transports = transports or ["websocket"]
        self.ack_timeout = ack_timeout
        self.send_attempts = send_attempts
        self.sio = socketio.Client(reconnection=True, reconnection_delay=0.2, reconnection_delay_max=2,
                                   handle_sigint=False)

    def on(self, event: str, handler: Callable[..., None]) -> None:
        self.sio.on(event, handler, namespace=self.namespace)

    @property
    def connected(self) -> bool:
        return bool(self.sio.connected)

    @property
    def sid(self) -> str | None:
        return self.sio.get_sid(self.namespace)

    def connect(self, timeout: float = 10.0) -> None:
        self.sio.connect(self.url, socketio_path=SOCKETIO_PATH, namespaces=[self.namespace], auth=self.auth,
                         transports=self.transports, wait_timeout=timeout)

    def disconnect(self) -> None:
        self.sio.disconnect()

    def call(self, event: str, payload: Any = None) -> dict[str, Any]:
        """Emit and wait for the ack; an error ack raises ReplyHQError, no ack raises TimeoutError."""
        try:
            ack = self.sio.call(event, payload, namespace=self.namespace, timeout=self.ack_timeout)
        except socketio.exceptions.TimeoutError:
            raise TimeoutError(f"no ack for {event} in {self.ack_timeout:.0f}s") from None
        except socketio.exceptions.BadNamespaceError:
            raise ReplyHQError({"ok": False, "status": 503,
                                "error": {"code": "not_connected", "message": "socket not connected"}}) from None
        if isinstance(ack, dict) and ack.get("ok"):
            return ack
        raise ReplyHQError(ack)

    def call_retrying(self, event: str, payload: Any) -> dict[str, Any]:
        """call(), retried with the same payload (same client_id) on timeouts and retryable errors."""
        for attempt in range(self.send_attempts):
            try:
                return self.call(event, payload)
            except (TimeoutError, ReplyHQError) as exc:
                retryable = isinstance(exc, TimeoutError) or exc.status in RETRYABLE_STATUS
                if not retryable or attempt == self.send_attempts - 1:
                    raise
                time.sleep(retry_delay(exc, attempt))
        raise AssertionError("unreachable")

    def send(self, conversation_id: str, body: str, client_id: str | None = None) -> dict[str, Any]:
        """message:send on either namespace; the ack's message carries its id and seq."""
        payload = {"conversation_id": conversation_id, "client_id": client_id or uuid.uuid4().hex, "body": body}
        return self.call_retrying("message:send", payload)["message"]  # type: ignore[no-any-return]
