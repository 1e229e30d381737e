"""locust load test of ReplyHQ: SDK users on Socket.IO `/client`, agents on `/admin`, REST traffic.

    locust -f loadtests/locustfile.py --host http://127.0.0.1:8000 --headless -u 50 -r 10 -t 60s
    make loadtest                     # starts a local cluster itself; TARGET=http://... to aim elsewhere

Workspace: REPLYHQ_SDK_KEY + REPLYHQ_ADMIN_EMAIL + REPLYHQ_ADMIN_PASSWORD name an existing one
(REPLYHQ_IDENTITY_SECRET when it requires identity verification); without them each locust
process signs up a throwaway workspace (`POST /admin/auth/signup`) and makes a publishable key.
REPLYHQ_TRANSPORTS (default `websocket`) sets the SDK sockets' transports, e.g. `polling,websocket`.

Besides locust's HTTP rows, socket work is reported with request type `socketio`:
- `connect /client`, `connect /admin`: handshake until the namespace is connected;
- `ack <event>`: emit until the server's ack (a send is acked only once committed);
- `delivery user->agent`, `delivery agent->user`: a message's send (time stamped in its body) until
  `message:new` reaches the other side (each agent counts every user message of the workspace);
- `delivery user->own devices`: send until the sender's own socket gets `message:new`; one that
  never arrives (after a reconnect's sync, within DELIVERY_TIMEOUT) is a failure;
- `reconnect+sync`: disconnect, connect again and page through `sync` from the last cursor.
"""

from __future__ import annotations

import collections
import hashlib
import hmac
import logging
import os
import random
import re
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import gevent.lock
import requests
from locust import HttpUser, between, events, task
from locust.runners import WorkerRunner

from loadtests.sdk_client import SyncSocket

log = logging.getLogger("replyhq.locust")
T = TypeVar("T")
DELIVERY_TIMEOUT = 15.0  # seconds a sent message may take to reach the sender's own socket
ADMIN_TOKEN_MAX_AGE = 600.0  # log in again before the access token (15 min by default) expires
MAX_CONVERSATIONS = 5  # per SDK user
_STAMP = re.compile(r"^\[lt (\d+\.\d+)\]")
TRANSPORTS = [t.strip() for t in os.environ.get("REPLYHQ_TRANSPORTS", "websocket").split(",") if t.strip()]
DEVICES = [
    {"platform": "ios", "model": "iPhone15,2", "os_version": "17.5", "app_version": "3.2.1", "sdk_version": "1.4.0"},
    {"platform": "android", "model": "Pixel 8", "os_version": "14", "app_version": "3.2.0", "sdk_version": "1.4.0"},
    {"platform": "web", "model": "Chrome 126", "os_version": "macOS 14.5", "app_version": "3.2.1",
     "sdk_version": "1.4.0"},
]


# ---- reporting ---------------------------------------------------------------------------------
def report(name: str, elapsed_ms: float, length: int = 0, exception: BaseException | None = None) -> None:
    events.request.fire(request_type="socketio", name=name, response_time=elapsed_ms,
                        response_length=length, exception=exception, context={})


def timed(name: str, fn: Callable[..., T], *args: Any) -> T | None:
    """Run a socket call and report it under `name`; None (reported as a failure) when it failed."""
    started = time.perf_counter()
    try:
        result = fn(*args)
    except Exception as exc:
        report(name, (time.perf_counter() - started) * 1000, exception=exc)
        return None
    report(name, (time.perf_counter() - started) * 1000)
    return result


def stamped(text: str) -> str:
    """A message body carrying its send time, so whoever receives it can report the delivery."""
    return f"[lt {time.time():.6f}] {text}"


def report_delivery(name: str, body: str) -> None:
    match = _STAMP.match(body)
    if match:
        report(name, max(0.0, (time.time() - float(match.group(1))) * 1000), len(body))


class DeliveryTimeout(Exception):
    """A sent message did not reach the sender's own socket in time."""


# ---- the workspace under test ------------------------------------------------------------------
@dataclass(frozen=True)
class Workspace:
    sdk_key: str
    admin_email: str
    admin_password: str
    identity_secret: str | None = None

    def user_hash(self, user_id: str) -> str | None:
        if not self.identity_secret:
            return None
        return hmac.new(self.identity_secret.encode(), user_id.encode(), hashlib.sha256).hexdigest()


_workspace: Workspace | None = None
_workspace_lock = gevent.lock.Semaphore()


def workspace(host: str) -> Workspace:
    """The workspace every user of this process works in: from the environment, or signed up once."""
    global _workspace
    with _workspace_lock:
        if _workspace is None:
            _workspace = _workspace_from_env(host) or _signup(host)
        return _workspace


def _create_sdk_key(host: str, token: str) -> str:
    resp = requests.post(f"{host}/admin/api/api-keys", json={"kind": "publishable", "name": "locust"},
                         headers={"authorization": f"Bearer {token}"}, timeout=30)
    resp.raise_for_status()
    return str(resp.json()["key"])


def _workspace_from_env(host: str) -> Workspace | None:
    email, password = os.environ.get("REPLYHQ_ADMIN_EMAIL"), os.environ.get("REPLYHQ_ADMIN_PASSWORD")
    if not email or not password:
        return None
    sdk_key = os.environ.get("REPLYHQ_SDK_KEY")
    if not sdk_key:
        resp = requests.post(f"{host}/admin/auth/login", json={"email": email, "password": password}, timeout=30)
        resp.raise_for_status()
        sdk_key = _create_sdk_key(host, resp.json()["access_token"])
    return Workspace(sdk_key, email, password, os.environ.get("REPLYHQ_IDENTITY_SECRET"))


def _signup(host: str) -> Workspace:
    email = f"loadtest-{uuid.uuid4().hex[:12]}@loadtest.example.com"
    password = secrets.token_urlsafe(16)
    resp = requests.post(f"{host}/admin/auth/signup", timeout=30, json={
        "email": email, "password": password, "name": "Locust Owner", "app_name": "locust load test"})
    resp.raise_for_status()
    ws = Workspace(_create_sdk_key(host, resp.json()["access_token"]), email, password)
    log.info("load test workspace %s (owner %s)", resp.json()["app"]["id"], email)
    return ws


@events.test_start.add_listener
def _prepare_workspace(environment: Any, **_: Any) -> None:
    """Create the workspace before users spawn (workers of a distributed run make their own)."""
    if isinstance(environment.runner, WorkerRunner) or not environment.host:
        return
    try:
        workspace(environment.host)
    except requests.RequestException as exc:
        log.error("cannot prepare a workspace on %s: %s", environment.host, exc)
        environment.runner.quit()


class AdminSession:
    """An admin's access token, renewed by logging in again before it expires."""

    def __init__(self, user: HttpUser, ws: Workspace) -> None:
        self.user = user
        self.ws = ws
        self.token = ""
        self.since = 0.0

    def fresh_token(self) -> str:
        if not self.token or time.monotonic() - self.since > ADMIN_TOKEN_MAX_AGE:
            resp = self.user.client.post("/admin/auth/login", name="/admin/auth/login",
                                         json={"email": self.ws.admin_email, "password": self.ws.admin_password})
            resp.raise_for_status()
            self.token, self.since = resp.json()["access_token"], time.monotonic()
        return self.token

    @property
    def headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.fresh_token()}"}


def sdk_headers(ws: Workspace, user_id: str) -> dict[str, str]:
    headers = {"X-API-Key": ws.sdk_key, "X-User-Id": user_id}
    user_hash = ws.user_hash(user_id)
    if user_hash:
        headers["X-User-Hash"] = user_hash
    return headers


class ReplyHQUser(HttpUser):
    abstract = True

    @property
    def base_url(self) -> str:
        return (self.host or "").rstrip("/")


# ---- SDK users on Socket.IO /client ------------------------------------------------------------
class SdkSocketUser(ReplyHQUser):
    """An app's end user: identify over REST, then chat over the socket; now and then the app goes
    to the background and comes back (reconnect, sync from the last cursor)."""

    weight = 8
    wait_time = between(1, 3)

    def on_start(self) -> None:
        self.ws = workspace(self.base_url)
        self.user_id = f"lt-{uuid.uuid4().hex[:12]}"
        self.device = random.choice(DEVICES)
        self.client.headers.update(sdk_headers(self.ws, self.user_id))
        self.client.post("/v1/users/identify", name="/v1/users/identify", json={
            "user_id": self.user_id, "name": f"Load {self.user_id}", "device": self.device,
            "attributes": {"plan": "free", "loadtest": True}})
        auth: dict[str, Any] = {"api_key": self.ws.sdk_key, "user_id": self.user_id, "device": self.device}
        if self.ws.user_hash(self.user_id):
            auth["user_hash"] = self.ws.user_hash(self.user_id)
        self.socket = SyncSocket(self.base_url, "/client", auth, transports=TRANSPORTS)
        self.socket.on("message:new", lambda data: self._on_message(data, live=True))
        self.socket.on("connect", self._on_connect)
        self.conversations: list[str] = []
        self.last_seq: dict[str, int] = {}
        self.pending: dict[str, float] = {}  # client_id -> perf_counter at send
        self.cursor = "0"
        self.connects = 0
        self.needs_sync = False
        self._ensure_ready()

    def on_stop(self) -> None:
        self.socket.disconnect()

    def _on_connect(self) -> None:
        self.connects += 1
        if self.connects > 1:  # reconnected on its own: fetch what was sent meanwhile
            self.needs_sync = True

    def _on_message(self, data: dict[str, Any], live: bool) -> None:
        conv, seq = data["conversation_id"], int(data["seq"])
        self.last_seq[conv] = max(seq, self.last_seq.get(conv, 0))
        sent = self.pending.pop(data.get("client_id") or "", None)
        if not live:
            return  # caught up by sync: delivered, but not a live delivery to time
        if sent is not None:
            report("delivery user->own devices", (time.perf_counter() - sent) * 1000, len(data["body"]))
        elif data.get("sender_kind") == "admin":
            report_delivery("delivery agent->user", data["body"])

    def _ensure_ready(self) -> bool:
        """Connected, caught up and with a conversation; False when that failed (already reported)."""
        if not self.socket.connected:
            if timed("connect /client", self.socket.connect) is None:
                return False
            self.needs_sync = self.connects > 1
        if self.needs_sync:
            self.needs_sync = False
            if timed("ack sync", self._sync) is None:
                return False
        if not self.conversations:
            return self._new_conversation()
        return True

    def _sync(self) -> None:
        while True:
            page = self.socket.call("sync", {"cursor": self.cursor, "limit": 200})
            for message in page["messages"]:
                self._on_message(message, live=False)
            self.cursor = page["cursor"]
            if not page["has_more"]:
                return

    def _new_conversation(self) -> bool:
        ack = timed("ack conversation:create", self.socket.call, "conversation:create",
                    {"subject": f"Load test {len(self.conversations) + 1}"})
        if ack is None:
            return False
        self.conversations.append(ack["conversation"]["id"])
        return True

    def _expire_pending(self) -> None:
        now = time.perf_counter()
        for client_id, sent in list(self.pending.items()):
            if now - sent > DELIVERY_TIMEOUT:
                del self.pending[client_id]
                report("delivery user->own devices", (now - sent) * 1000,
                       exception=DeliveryTimeout(f"message {client_id} not received in {DELIVERY_TIMEOUT:.0f}s"))

    @task(10)
    def send_message(self) -> None:
        if not self._ensure_ready():
            return
        self._expire_pending()
        conv = random.choice(self.conversations)
        client_id = uuid.uuid4().hex
        self.pending[client_id] = time.perf_counter()
        if timed("ack message:send", self.socket.send, conv, stamped("where is my order?"), client_id) is None:
            self.pending.pop(client_id, None)

    @task(2)
    def mark_read(self) -> None:
        if not self._ensure_ready():
            return
        conv = self.conversations[-1]
        if self.last_seq.get(conv):
            timed("ack message:read", self.socket.call, "message:read",
                  {"conversation_id": conv, "seq": self.last_seq[conv]})

    @task(1)
    def typing(self) -> None:
        if self._ensure_ready():
            timed("ack typing:start", self.socket.call, "typing:start", {"conversation_id": self.conversations[-1]})
            timed("ack typing:stop", self.socket.call, "typing:stop", {"conversation_id": self.conversations[-1]})

    @task(1)
    def new_conversation(self) -> None:
        if self._ensure_ready() and len(self.conversations) < MAX_CONVERSATIONS:
            self._new_conversation()

    @task(1)
    def reconnect_and_sync(self) -> None:
        """The app went to the background: the socket closes; coming back it reconnects and syncs."""
        if not self._ensure_ready():
            return
        self.socket.disconnect()

        def come_back() -> None:
            self.socket.connect()
            self._sync()
            self.needs_sync = False  # just done

        timed("reconnect+sync", come_back)


# ---- agents on Socket.IO /admin -----------------------------------------------------------------
class AgentUser(ReplyHQUser):
    """A support agent in the dashboard: receives every message of the workspace, joins waiting
    conversations and replies."""

    weight = 1
    wait_time = between(1, 2)

    def on_start(self) -> None:
        self.ws = workspace(self.base_url)
        self.session = AdminSession(self, self.ws)
        self.session.fresh_token()
        self.waiting: collections.deque[str] = collections.deque(maxlen=50)
        self.joined: set[str] = set()
        self.last_seq: dict[str, int] = {}
        self.socket = SyncSocket(self.base_url, "/admin", lambda: {"admin_token": self.session.fresh_token()})
        self.socket.on("message:new", self._on_message)
        timed("connect /admin", self.socket.connect)

    def on_stop(self) -> None:
        self.socket.disconnect()

    def _on_message(self, data: dict[str, Any]) -> None:
        conv = data["conversation_id"]
        self.last_seq[conv] = max(int(data["seq"]), self.last_seq.get(conv, 0))
        if data.get("sender_kind") == "user" and not data.get("is_note"):
            report_delivery("delivery user->agent", data["body"])
            self.waiting.append(conv)

    def _connected(self) -> bool:
        return self.socket.connected or timed("connect /admin", self.socket.connect) is not None

    @task(5)
    def reply(self) -> None:
        if not self.waiting or not self._connected():
            return
        conv = self.waiting.pop()  # the newest waiting conversation
        if conv not in self.joined:
            if timed("ack conversation:join", self.socket.call, "conversation:join", conv) is None:
                return
            self.joined.add(conv)
        timed("ack admin message:send", self.socket.send, conv, stamped("thanks, looking into it"))

    @task(1)
    def read(self) -> None:
        if self.joined and self._connected():
            conv = next(iter(self.joined))
            if self.last_seq.get(conv):
                timed("ack admin message:read", self.socket.call, "message:read",
                      {"conversation_id": conv, "seq": self.last_seq[conv]})

    @task(1)
    def sessions(self) -> None:
        if self._connected():
            timed("ack sessions:list", self.socket.call, "sessions:list", None)


# ---- REST ---------------------------------------------------------------------------------------
class SdkRestUser(ReplyHQUser):
    """An SDK (or the customer's backend) on REST /v1: conversations, messages, receipts, sync."""

    weight = 2
    wait_time = between(1, 3)

    def on_start(self) -> None:
        self.ws = workspace(self.base_url)
        self.user_id = f"lt-rest-{uuid.uuid4().hex[:12]}"
        self.client.headers.update(sdk_headers(self.ws, self.user_id))
        self.client.post("/v1/users/identify", name="/v1/users/identify",
                         json={"user_id": self.user_id, "device": DEVICES[0]})
        self.conversation: str | None = None
        self.last_seq = 0
        self.cursor = "0"

    def _conversation(self) -> str | None:
        if self.conversation is None:
            resp = self.client.post("/v1/conversations", name="/v1/conversations", json={
                "subject": "REST load", "message": {"client_id": uuid.uuid4().hex, "body": stamped("hello")}})
            if resp.status_code == 201:
                self.conversation = resp.json()["conversation"]["id"]
        return self.conversation

    @task(4)
    def send(self) -> None:
        conv = self._conversation()
        if conv:
            resp = self.client.post(f"/v1/conversations/{conv}/messages", name="/v1/conversations/:id/messages",
                                    json={"client_id": uuid.uuid4().hex, "body": stamped("over REST")})
            if resp.status_code == 201:
                self.last_seq = resp.json()["seq"]

    @task(2)
    def messages(self) -> None:
        conv = self._conversation()
        if conv:
            self.client.get(f"/v1/conversations/{conv}/messages?limit=50", name="/v1/conversations/:id/messages")

    @task(2)
    def conversations(self) -> None:
        self.client.get("/v1/conversations?limit=20", name="/v1/conversations")

    @task(1)
    def read(self) -> None:
        conv = self._conversation()
        if conv and self.last_seq:
            self.client.post(f"/v1/conversations/{conv}/read", name="/v1/conversations/:id/read",
                             json={"seq": self.last_seq})

    @task(2)
    def sync(self) -> None:
        resp = self.client.get(f"/v1/sync?cursor={self.cursor}&limit=200", name="/v1/sync")
        if resp.status_code == 200:
            self.cursor = resp.json()["cursor"]

    @task(1)
    def me(self) -> None:
        self.client.get("/v1/users/me", name="/v1/users/me")


class AdminRestUser(ReplyHQUser):
    """The dashboard's REST calls: inbox, a conversation, users, stats."""

    weight = 1
    wait_time = between(1, 3)

    def on_start(self) -> None:
        self.session = AdminSession(self, workspace(self.base_url))
        self.seen: list[str] = []

    @task(3)
    def inbox(self) -> None:
        resp = self.client.get("/admin/api/conversations?limit=20", name="/admin/api/conversations",
                               headers=self.session.headers)
        if resp.status_code == 200:
            self.seen = [c["id"] for c in resp.json().get("conversations", [])][:20]

    @task(2)
    def conversation(self) -> None:
        if self.seen:
            conv = random.choice(self.seen)
            self.client.get(f"/admin/api/conversations/{conv}", name="/admin/api/conversations/:id",
                            headers=self.session.headers)

    @task(1)
    def users(self) -> None:
        self.client.get("/admin/api/users?limit=20", name="/admin/api/users", headers=self.session.headers)

    @task(1)
    def stats(self) -> None:
        self.client.get("/admin/api/dashboard/stats", name="/admin/api/dashboard/stats", headers=self.session.headers)

    @task(1)
    def me(self) -> None:
        self.client.get("/admin/auth/me", name="/admin/auth/me", headers=self.session.headers)
