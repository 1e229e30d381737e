"""`/metrics` of a real replica tells an SRE what is going on: partitions owned, commands processed,
commit batch sizes, stream lag, socket connections (up on connect, down on disconnect, refusals
counted apart) and emits, HTTP requests."""

from __future__ import annotations

from contextlib import AsyncExitStack

from loadtests.sdk_client import ReplyHQClient
from server.settings import Settings
from tests.inbox_helpers import owner_token
from tests.metrics_helpers import eventually, metric, partitions_owned, sample, scrape
from tests.sockets import admin_socket, refused_handshake
from tests.support import ServerProcess, http

PARTITIONS = Settings().actor_partitions  # the servers under test run with the default
MESSAGES_PER_CLIENT = 5


async def test_metrics_follow_partitions_commands_commits_sockets_and_emits(server: ServerProcess, workspace) -> None:
    await eventually(lambda: partitions_owned(server.url) == PARTITIONS, "a lone replica owns every partition")
    before = scrape(server.url)
    assert sample(before, "replyhq_actor_stream_lag", kind="conversation") in (None, 0.0)

    clients = [ReplyHQClient(server.url, workspace.publishable_key, user_id=f"metrics-{i}") for i in range(3)]
    sockets = AsyncExitStack()
    try:
        for client in clients:
            await client.connect()
        agent = await sockets.enter_async_context(admin_socket(server, owner_token(server, workspace)))
        await eventually(lambda: metric(server.url, "replyhq_socket_connections", namespace="/client") == 3,
                         "the /client gauge counts the three SDK sockets")
        assert metric(server.url, "replyhq_socket_connections", namespace="/admin") == 1

        sent = 0
        for client in clients:
            conv = (await client.create_conversation(subject="metrics"))["conversation"]
            for i in range(MESSAGES_PER_CLIENT):
                await client.send(conv["id"], f"message {i}")
                sent += 1
        await agent.wait_for("message:new", lambda d: d["seq"] == MESSAGES_PER_CLIENT, timeout=10)

        after = scrape(server.url)
        # Every message is a command processed by a conversation actor, committed in some batch.
        assert sample(after, "replyhq_actor_commands_total", kind="conversation", result="ok") >= sent
        batches = sample(after, "replyhq_commit_batch_size_count")
        committed = sample(after, "replyhq_commit_batch_size_sum")
        assert batches is not None and committed is not None
        assert 1 <= batches <= committed and committed >= sent
        # Fan-out: each message goes to the user's devices and to the app's agents.
        assert sample(after, "replyhq_socket_emits_total", event="message:new") >= 2 * sent
        assert sample(after, "replyhq_socket_emits_total", event="conversation:created") >= len(clients)
        assert sample(after, "replyhq_socket_connects_total", namespace="/client", result="ok") >= 3
        # Idle again: nothing waits in the owned partitions.
        assert sample(after, "replyhq_actor_stream_lag", kind="conversation") == 0
        assert sample(after, "replyhq_actor_partitions_owned", kind="conversation") == PARTITIONS

        # Disconnects bring the gauge down; a refused handshake is counted but never connected.
        for client in clients[1:]:
            await client.close()
        await eventually(lambda: metric(server.url, "replyhq_socket_connections", namespace="/client") == 1,
                         "the /client gauge drops with each disconnect")
        refused_before = metric(server.url, "replyhq_socket_connects_total", namespace="/client",
                                result="refused") or 0
        await refused_handshake(server.url, "/client", auth={"api_key": "rhq_pk_not-a-key", "user_id": "x"},
                                transports=None)
        await eventually(lambda: (metric(server.url, "replyhq_socket_connects_total", namespace="/client",
                                         result="refused") or 0) == refused_before + 1,
                         "the refused handshake is counted")
        assert metric(server.url, "replyhq_socket_connections", namespace="/client") == 1
    finally:
        for client in clients:
            await client.close()
        await sockets.aclose()
        await agent.sio.disconnect()
    await eventually(lambda: metric(server.url, "replyhq_socket_connections", namespace="/client") == 0
                     and metric(server.url, "replyhq_socket_connections", namespace="/admin") == 0,
                     "every gauge back to zero once everyone left")


async def test_http_requests_are_counted_per_route_and_status(server: ServerProcess) -> None:
    def count(route: str, status: str) -> float:
        return metric(server.url, "replyhq_http_requests_total", method="GET", route=route, status=status) or 0

    ok_before = count("healthz", "200")  # routes are labelled by their pattern, without the leading slash
    for _ in range(3):
        assert http("GET", server.url + "/healthz")[0] == 200
    assert http("GET", server.url + "/v1/conversations")[0] == 401  # no API key
    assert count("healthz", "200") == ok_before + 3
    assert count("v1/conversations", "401") == 1
    text = http("GET", server.url + "/metrics")[1]
    assert "replyhq_http_request_duration_seconds_bucket" in text
