"""Many replicas with real processes: `python -m server cluster` behind one address (long-polling
sticks to its replica, a dead replica is logged and restarted, SIGTERM leaves no process), and
actor partitions rebalancing when replicas join, leave and die, with messages flowing throughout."""

from __future__ import annotations

import collections
import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
import redis.asyncio as aioredis

from loadtests.sdk_client import ReplyHQClient
from server.dev.embedded import free_port
from server.realtime.transport.replica_sids import sid_prefix_of
from server.settings import Settings
from tests.inbox_helpers import owner_token
from tests.metrics_helpers import eventually, fanout_listeners, partitions_owned
from tests.sockets import admin_socket
from tests.support import ROOT, ServerProcess, http

PARTITIONS = Settings().actor_partitions  # the servers under test run with the default
HALF = PARTITIONS // 2
_REPLICA_LINE = re.compile(r"^\s+(r\d+)\s+pid (\d+)\s+(http://\S+)$", re.M)


@dataclass
class Endpoint:
    url: str


@dataclass
class RunningCluster:
    proc: subprocess.Popen[bytes]
    url: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def replicas(self) -> dict[str, int]:
        """Replica name -> pid, as the cluster printed them."""
        return {name: int(pid) for name, pid, _ in _REPLICA_LINE.findall(self.log())}

    def replica_urls(self) -> dict[str, str]:
        return {name: url for name, _, url in _REPLICA_LINE.findall(self.log())}

    def replica_behind_balancer(self) -> str | None:
        try:
            status, body = http("GET", self.url + "/healthz", timeout=3)
        except OSError:  # no replica answered (urllib's errors are OSErrors)
            return None
        return body["replica"] if status == 200 else None


@pytest.fixture
def cluster(server_env: dict[str, str], tmp_path: Path) -> Iterator[RunningCluster]:
    port = free_port()
    log_path = tmp_path / "cluster.log"
    # A long-poll left pending by a dropped polling client holds a replica's graceful stop this long.
    env = {**os.environ, **server_env, "PORT": str(port), "GRACEFUL_SHUTDOWN_TIMEOUT": "2"}
    with open(log_path, "wb") as logf:
        proc = subprocess.Popen([sys.executable, "-m", "server", "cluster", "--replicas", "2", "--restart"],
                                cwd=ROOT, env=env, stdout=logf, stderr=subprocess.STDOUT)
    running = RunningCluster(proc, f"http://127.0.0.1:{port}", log_path)
    yield running
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


async def test_a_cluster_serves_one_address_and_messages_cross_replicas(
        cluster: RunningCluster, workspace, server_env: dict[str, str]) -> None:
    await eventually(lambda: len(cluster.replicas()) == 2 and cluster.replica_behind_balancer(),
                     "the cluster prints its replicas and the balancer answers", timeout=60)
    pids = cluster.replicas()
    urls = cluster.replica_urls()
    # Leases settled, half the partitions each. (While partitions still move right after a
    # simultaneous start, the live fan-out of messages in flight was seen to be lost.)
    await eventually(lambda: [partitions_owned(u) for u in urls.values()] == [HALF, HALF],
                     "the replicas' leases settle: half the partitions each")
    # Connections round-robin over both replicas.
    assert {cluster.replica_behind_balancer() for _ in range(6)} == {"r1", "r2"}

    # The SDK user on long-polling (many HTTP requests, each must reach the session's replica) and
    # an agent on a websocket, each through the balancer, on different replicas.
    user = ReplyHQClient(cluster.url, workspace.publishable_key, user_id="through-lb", transports=["polling"])
    await user.connect()
    user_replica = sid_prefix_of(user.sio.eio.sid)
    assert user_replica in ("r1", "r2")
    token = owner_token(Endpoint(cluster.url), workspace)  # type: ignore[arg-type]
    agents = AsyncExitStack()
    try:
        while True:  # round-robin: soon on the other replica
            agent = await agents.enter_async_context(admin_socket(cluster, token, transports=["websocket"]))
            if sid_prefix_of(agent.sio.eio.sid) != user_replica:
                break
        assert sid_prefix_of(agent.sio.eio.sid) in ("r1", "r2")
        await _wait_fanout_listeners(server_env, 2)

        conv = (await user.create_conversation(subject="through the balancer"))["conversation"]
        sent = [await user.send(conv["id"], f"hello {i}") for i in range(5)]
        for msg in sent:
            await agent.wait_for("message:new", lambda d, m=msg: d["id"] == m["id"], timeout=10)
        ack = await agent.call("message:send", {"conversation_id": conv["id"], "client_id": uuid.uuid4().hex,
                                                 "body": "an agent on the other replica"})
        assert ack["ok"], ack
        while True:
            _, got = await user.receive("message:new", timeout=10)
            if got["id"] == ack["message"]["id"]:
                break
        # Every polling request of the session reached its replica: same session, never reconnected.
        assert user.sio.eio.current_transport == "polling"
        assert sid_prefix_of(user.sio.eio.sid) == user_replica and user.connects == 1
    finally:
        # python-engineio's polling client waits for its pending long-poll (up to the 25 s ping
        # interval) on a clean close; drop the session instead.
        await user.sio.eio.disconnect(abort=True)
        await user.close()
        await agents.aclose()

    # Polling first, then the websocket upgrade (a new connection carrying the sid) reaches the same replica.
    laptop = ReplyHQClient(cluster.url, workspace.publishable_key, user_id="through-lb", transports=None)
    await laptop.connect()
    try:
        await eventually(lambda: laptop.sio.eio.current_transport == "websocket", "the upgrade to websocket")
        assert laptop.connects == 1
    finally:
        await laptop.close()

    # A replica that dies is logged, taken out of rotation and (--restart) started again.
    os.kill(pids["r2"], signal.SIGKILL)
    await eventually(lambda: re.search(rf"replica r2 \(pid {pids['r2']}\) exited with -9", cluster.log()),
                     "the supervisor logs the dead replica")
    await eventually(lambda: len(set(re.findall(r"replica r2 started \(pid (\d+)", cluster.log()))) == 2,
                     "the supervisor starts r2 again")
    await eventually(lambda: {cluster.replica_behind_balancer() for _ in range(4)} == {"r1", "r2"},
                     "the restarted replica back behind the balancer", timeout=60)

    # SIGTERM stops the balancer and every replica: nothing is left running.
    replica_pids = [p.pid for p in psutil.Process(cluster.proc.pid).children()]
    assert len(replica_pids) == 2
    cluster.proc.send_signal(signal.SIGTERM)
    assert cluster.proc.wait(timeout=40) == 0
    assert not [pid for pid in replica_pids if _alive(pid)]


async def _wait_fanout_listeners(server_env: dict[str, str], replicas: int) -> None:
    async def listening() -> bool:
        return await fanout_listeners(server_env["REDIS_URL"], server_env["SOCKETIO_CHANNEL"]) == replicas

    await eventually(listening, f"{replicas} replicas listen for each other's fan-out")


async def _messages_flow(sender_url: str, observer_url: str, key: str, server_env: dict[str, str],
                         replicas: int, conversations: int = 6) -> None:
    """A user's two devices (on the given replicas): each new conversation's message reaches the
    other device. Several conversations, so several partitions (and owners) are involved."""
    user_id = f"u-{uuid.uuid4().hex[:8]}"
    sender = ReplyHQClient(sender_url, key, user_id=user_id)
    observer = ReplyHQClient(observer_url, key, user_id=user_id)
    await sender.connect()
    await observer.connect()
    await _wait_fanout_listeners(server_env, replicas)
    try:
        for i in range(conversations):
            conv = (await sender.create_conversation(subject=f"flow {i}"))["conversation"]
            msg = await sender.send(conv["id"], f"message {i}")
            while True:
                _, got = await observer.receive("message:new", timeout=15)
                if got["id"] == msg["id"]:
                    break
    finally:
        await sender.close()
        await observer.close()


async def _lease_holders(redis_url: str) -> collections.Counter[str]:
    r = aioredis.from_url(redis_url)
    try:
        holders = await r.mget([f"actors:conversation:lease:{p}" for p in range(PARTITIONS)])
    finally:
        await r.aclose()
    return collections.Counter(h.decode() if h else "-" for h in holders)


async def test_partitions_split_on_join_and_go_to_the_survivor_on_leave_or_death(
        start_server, workspace, redis_url: str, server_env: dict[str, str]) -> None:
    key = workspace.publishable_key
    one: ServerProcess = start_server()
    await eventually(lambda: partitions_owned(one.url) == PARTITIONS, "a lone replica owns every partition")

    two: ServerProcess = start_server()
    await eventually(lambda: (partitions_owned(one.url), partitions_owned(two.url)) == (HALF, HALF),
                     "two replicas share the partitions fairly")
    assert await _lease_holders(redis_url) == {"replica-1": HALF, "replica-2": HALF}
    await _messages_flow(two.url, one.url, key, server_env, 2)

    two.stop()  # SIGTERM: its leases are handed back at once
    await eventually(lambda: partitions_owned(one.url) == PARTITIONS, "the survivor takes every partition")
    await _messages_flow(one.url, one.url, key, server_env, 1)

    three: ServerProcess = start_server()
    await eventually(lambda: (partitions_owned(one.url), partitions_owned(three.url)) == (HALF, HALF),
                     "a new replica gets its fair share")
    await _messages_flow(one.url, three.url, key, server_env, 2)

    three.kill()  # SIGKILL: nothing handed back; its leases expire and the survivor claims them
    await eventually(lambda: partitions_owned(one.url) == PARTITIONS, "the survivor takes the dead one's partitions")
    assert await _lease_holders(redis_url) == {"replica-1": PARTITIONS}
    await _messages_flow(one.url, one.url, key, server_env, 1)
