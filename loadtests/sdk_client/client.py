"""The Python SDK client of ReplyHQ (used by the tests, the bench and locust).

    client = ReplyHQClient(url, api_key, user_id="u-1", user_hash=..., device={"platform": "ios"})
    await client.connect()
    conv = (await client.create_conversation(subject="Hi"))["conversation"]
    msg = await client.send(conv["id"], "hello")          # retried on the same client_id
    event, data = await client.receive("message:new")     # from any of the user's devices or agents
    await client.close()

Guarantees it adds on top of the socket: a send is retried with the same client_id when the ack
is a retryable error (503, timeout) or the socket drops, so it lands exactly once; after every
reconnect it syncs from its last cursor, so nothing sent while it was away is missed; incoming
messages are delivered to `receive` once each, in seq order per conversation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import socketio

log = logging.getLogger("replyhq.sdk")
NAMESPACE = "/client"
SOCKETIO_PATH = "/v1/socket.io"
SERVER_EVENTS = ("message:new", "conversation:created", "conversation:updated", "receipt:updated", "typing",
                 "broadcast:message")
RETRYABLE_STATUS = {408, 429, 500, 502, 503, 504}

Callback = Callable[[dict[str, Any]], Awaitable[None] | None]


class ReplyHQError(Exception):
    """An error ack / response: `code`, `status` and `details` as the server sent them."""

    def __init__(self, body: Any) -> None:
        err = (body or {}).get("error") or {} if isinstance(body, dict) else {}
        self.code: str = err.get("code", "error")
        self.status: int = int(body.get("status", 0)) if isinstance(body, dict) else 0
        self.details: Any = err.get("details")
        self.body = body
        super().__init__(f"{self.code}: {err.get('message', body)}")


def retry_delay(exc: BaseException, attempt: int) -> float:
    """Seconds before retry number `attempt` after `exc`: a rate limit says when its window reopens
    (`retry_after`), as the docs tell SDKs to wait; anything else (a drop, a time-out, a 503) backs
    off exponentially."""
    details = exc.details if isinstance(exc, ReplyHQError) and exc.status == 429 else None
    after = details.get("retry_after") if isinstance(details, dict) else None
    if isinstance(after, int | float) and after >= 0:
        return float(after)
    return min(0.1 * 2**attempt, 2.0)


class _Dropped(Exception):
    """The socket dropped while an ack was awaited."""


class ReplyHQClient:
    def __init__(self, url: str, api_key: str, user_id: str | None = None, anonymous_id: str | None = None,
                 user_hash: str | None = None, device: dict[str, Any] | None = None, *,
                 transports: list[str] | None = None, ack_timeout: float = 10.0, send_attempts: int = 8,
                 sync_on_connect: bool = True, cursor: str = "0") -> None:
        if not user_id and not anonymous_id:
            raise ValueError("user_id or anonymous_id is required")
        self.url = url.rstrip("/")
        self.api_key = api_key
        self.user_id = user_id
        self.anonymous_id = anonymous_id
        self.user_hash = user_hash
        self.device = device
        self.transports = transports
        self.ack_timeout = ack_timeout
        self.send_attempts = send_attempts
        self.sync_on_connect = sync_on_connect
        self.cursor = cursor  # sync cursor: everything up to here has been seen
        self.events: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
        self.last_seq: dict[str, int] = {}  # conversation id -> highest seq handed to receive()
        self.connects = 0
        self._callbacks: dict[str, list[Callback]] = {}
        self._connected = asyncio.Event()
        self._dropped: asyncio.Future[None] | None = None
        self._sync_lock = asyncio.Lock()
        self._sync_task: asyncio.Future[None] | None = None
        self._sync_again = False
        self._held: dict[str, dict[int, dict[str, Any]]] = {}  # messages that arrived after a gap
        self._tasks: set[asyncio.Task[Any]] = set()
        self._http: aiohttp.ClientSession | None = None
        self.sio = socketio.AsyncClient(reconnection=True, reconnection_delay=0.2, reconnection_delay_max=2,
                                        randomization_factor=0.2, handle_sigint=False)
        self.sio.on("connect", self._on_connect, namespace=NAMESPACE)
        self.sio.on("disconnect", self._on_disconnect, namespace=NAMESPACE)
        for event in SERVER_EVENTS:
            self.sio.on(event, self._handler(event), namespace=NAMESPACE)

    # ---- connection ------------------------------------------------------------------------
    @property
    def auth(self) -> dict[str, Any]:
        auth: dict[str, Any] = {"api_key": self.api_key}
        for name in ("user_id", "anonymous_id", "user_hash", "device"):
            if getattr(self, name):
                auth[name] = getattr(self, name)
        return auth

    @property
    def headers(self) -> dict[str, str]:
        h = {"X-API-Key": self.api_key}
        if self.user_id:
            h["X-User-Id"] = self.user_id
        if self.anonymous_id:
            h["X-Anonymous-Id"] = self.anonymous_id
        if self.user_hash:
            h["X-User-Hash"] = self.user_hash
        return h

    async def connect(self, timeout: float = 10.0) -> None:
        await self.sio.connect(self.url, socketio_path=SOCKETIO_PATH, namespaces=[NAMESPACE], auth=self.auth,
                               transports=self.transports, wait_timeout=timeout)
        await asyncio.wait_for(self._connected.wait(), timeout)
        if self.sync_on_connect:
            await self.catch_up()

    async def _on_connect(self) -> None:
        self.connects += 1
        self._dropped = asyncio.get_running_loop().create_future()
        self._connected.set()
        if self.connects > 1:  # a reconnect: fetch what was sent while away
            self._request_sync()

    async def _on_disconnect(self, reason: Any = None) -> None:
        self._connected.clear()
        if self._dropped is not None and not self._dropped.done():
            self._dropped.set_result(None)

    async def wait_connected(self, timeout: float = 30.0) -> None:
        await asyncio.wait_for(self._connected.wait(), timeout)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self.sio.disconnect()
        if self._http is not None:
            await self._http.close()

    # ---- calls -----------------------------------------------------------------------------
    async def _call_once(self, event: str, payload: Any) -> Any:
        """Emit with an ack; a drop while waiting ends the wait at once (the ack will never come)."""
        await self.wait_connected(self.ack_timeout)
        dropped = self._dropped
        loop = asyncio.get_running_loop()
        acked: asyncio.Future[Any] = loop.create_future()

        def on_ack(*args: Any) -> None:
            if not acked.done():
                acked.set_result(args[0] if args else None)

        try:
            await self.sio.emit(event, payload, namespace=NAMESPACE, callback=on_ack)
        except socketio.exceptions.SocketIOError as exc:
            raise _Dropped(str(exc)) from None
        waiters: list[asyncio.Future[Any]] = [acked] + ([dropped] if dropped is not None else [])
        done, _ = await asyncio.wait(waiters, timeout=self.ack_timeout, return_when=asyncio.FIRST_COMPLETED)
        if acked in done:
            return acked.result()
        if not done:
            raise TimeoutError(f"no ack for {event} in {self.ack_timeout}s")
        raise _Dropped("socket dropped while waiting for the ack")

    async def call(self, event: str, payload: Any = None, *, retry: bool = True) -> dict[str, Any]:
        """Call an event; retry (same payload) on drops, timeouts and retryable error acks."""
        attempts = self.send_attempts if retry else 1
        last: Any = None
        for attempt in range(attempts):
            try:
                ack = await self._call_once(event, payload)
            except (_Dropped, TimeoutError) as exc:
                last = exc
                await asyncio.sleep(retry_delay(exc, attempt))
                continue
            if isinstance(ack, dict) and ack.get("ok"):
                return ack
            err = ReplyHQError(ack)
            if err.status not in RETRYABLE_STATUS:
                raise err
            last = err
            await asyncio.sleep(retry_delay(err, attempt))
        if isinstance(last, ReplyHQError):
            raise last
        raise ReplyHQError({"ok": False, "status": 503, "error": {"code": "unavailable", "message": str(last)}})

    async def send(self, conversation_id: str, body: str, client_id: str | None = None,
                   attachments: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """Send a message; the returned message carries its id and seq. Resending the same
        client_id (as the retries do) returns the original, never a duplicate."""
        payload: dict[str, Any] = {"conversation_id": conversation_id, "client_id": client_id or uuid.uuid4().hex,
                                   "body": body}
        if attachments:
            payload["attachments"] = attachments
        ack = await self.call("message:send", payload)
        return ack["message"]  # type: ignore[no-any-return]

    async def create_conversation(self, subject: str | None = None, body: str | None = None,
                                  client_id: str | None = None) -> dict[str, Any]:
        """{"conversation": ..., "message": ... | None}. Not retried: a conversation has no client id."""
        payload: dict[str, Any] = {}
        if subject is not None:
            payload["subject"] = subject
        if body is not None:
            payload["message"] = {"client_id": client_id or uuid.uuid4().hex, "body": body}
        ack = await self.call("conversation:create", payload, retry=False)
        return {"conversation": ack["conversation"], "message": ack.get("message")}

    async def mark_delivered(self, conversation_id: str, seq: int) -> dict[str, Any]:
        ack = await self.call("message:delivered", {"conversation_id": conversation_id, "seq": seq})
        return ack["receipt"]  # type: ignore[no-any-return]

    async def mark_read(self, conversation_id: str, seq: int) -> dict[str, Any]:
        ack = await self.call("message:read", {"conversation_id": conversation_id, "seq": seq})
        return ack["receipt"]  # type: ignore[no-any-return]

    async def mark_broadcast(self, delivery_id: str, state: str) -> str:
        """`broadcast:delivered` or `broadcast:read` ("delivered"/"read"): the delivery's state after it."""
        ack = await self.call(f"broadcast:{state}", {"delivery_id": delivery_id})
        return ack["state"]  # type: ignore[no-any-return]

    async def reply_to_broadcast(self, delivery_id: str, body: str, client_id: str | None = None
                                 ) -> tuple[int, dict[str, Any]]:
        """REST reply: (201 or 200, {"delivery_id", "conversation", "message"}); retry with the same
        client_id, it never starts a second conversation."""
        return await self.rest("POST", f"/v1/broadcasts/{delivery_id}/reply",
                               {"body": body, "client_id": client_id or uuid.uuid4().hex})

    async def typing(self, conversation_id: str, typing: bool = True) -> None:
        await self.call("typing:start" if typing else "typing:stop", {"conversation_id": conversation_id},
                        retry=False)

    # ---- sync --------------------------------------------------------------------------------
    async def sync_page(self, cursor: str | None = None, limit: int = 200) -> dict[str, Any]:
        return await self.call("sync", {"cursor": self.cursor if cursor is None else cursor, "limit": limit})

    async def catch_up(self) -> int:
        """Page through sync from the last cursor; hand every message not seen yet to receive().
        Returns how many new messages it found."""
        found = 0
        async with self._sync_lock:
            while True:
                page = await self.sync_page()
                for message in page["messages"]:
                    found += await self._deliver("message:new", message)
                self.cursor = page["cursor"]
                if not page["has_more"]:
                    break
        await self._release_held()
        return found

    def _request_sync(self) -> None:
        self._sync_again = True
        if self._sync_task is None or self._sync_task.done():
            self._sync_task = asyncio.ensure_future(self._sync_loop())
            self._tasks.add(self._sync_task)
            self._sync_task.add_done_callback(self._tasks.discard)

    async def _sync_loop(self) -> None:
        while self._sync_again:
            self._sync_again = False
            try:
                await self.catch_up()
            except Exception as exc:  # the next gap or reconnect tries again
                log.warning("sync failed: %s", exc)
                return

    # ---- receiving ------------------------------------------------------------------------------
    def on(self, event: str, callback: Callback) -> None:
        """Also call `callback(data)` for each event (messages once each, in seq order)."""
        self._callbacks.setdefault(event, []).append(callback)

    def _handler(self, event: str) -> Callable[[Any], Awaitable[None]]:
        async def handle(data: Any) -> None:
            if event == "message:new" and isinstance(data, dict):
                conv, seq = data["conversation_id"], int(data["seq"])
                if seq > self.last_seq.get(conv, 0) + 1:
                    # A gap: something was missed (a drop) or came before our cursor. Hold this one
                    # until a sync has filled in what precedes it.
                    self._held.setdefault(conv, {})[seq] = data
                    self._request_sync()
                    return
            await self._deliver(event, data)
            if event == "message:new" and self._held.get(data["conversation_id"]):
                await self._release_held(data["conversation_id"], only_consecutive=True)
        return handle

    async def _release_held(self, conversation_id: str | None = None, only_consecutive: bool = False) -> None:
        for conv in [conversation_id] if conversation_id else list(self._held):
            held = self._held.get(conv) or {}
            for seq in sorted(held):
                if only_consecutive and seq > self.last_seq.get(conv, 0) + 1:
                    break
                await self._deliver("message:new", held.pop(seq))
            if not held:
                self._held.pop(conv, None)

    async def _deliver(self, event: str, data: dict[str, Any]) -> int:
        if event == "message:new":
            conv, seq = data["conversation_id"], int(data["seq"])
            if seq <= self.last_seq.get(conv, 0):
                return 0  # already delivered (live and again by sync)
            self.last_seq[conv] = seq
        self.events.put_nowait((event, data))
        for callback in self._callbacks.get(event, []):
            result = callback(data)
            if asyncio.iscoroutine(result):
                await result
        return 1

    async def receive(self, event: str | None = None, timeout: float = 10.0) -> tuple[str, dict[str, Any]]:
        """The next event (of the given name, skipping others) within `timeout` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            name, data = await asyncio.wait_for(self.events.get(), max(0.0, deadline - loop.time()))
            if event is None or name == event:
                return name, data

    # ---- REST ------------------------------------------------------------------------------------
    async def rest(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        if self._http is None:
            self._http = aiohttp.ClientSession()
        async with self._http.request(method, self.url + path, json=body, headers=self.headers) as resp:
            return resp.status, await resp.json(content_type=None)

    async def identify(self, name: str | None = None, email: str | None = None,
                       attributes: dict[str, Any] | None = None,
                       device: dict[str, Any] | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {k: v for k, v in (("user_id", self.user_id), ("anonymous_id", self.anonymous_id),
                                                  ("name", name), ("email", email), ("attributes", attributes),
                                                  ("device", device or self.device)) if v}
        status, data = await self.rest("POST", "/v1/users/identify", body)
        if status != 200:
            raise ReplyHQError({**(data or {}), "status": status})
        return data  # type: ignore[no-any-return]
