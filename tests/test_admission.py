"""Connection admission: in a connect storm a replica runs a bounded number of handshakes at
once, every client still gets in, and connections that never finish their handshake give
their slot back."""

from __future__ import annotations

import asyncio
import http.client
import socket
from collections.abc import Callable

from prometheus_client.parser import text_string_to_metric_families

from loadtests.sdk_client import ReplyHQClient
from server.realtime.transport.admission import Admission
from tests.metrics_helpers import metric
from tests.support import ServerProcess


def _admitted(log: list[int], n: int) -> Callable[[bool], None]:
    return lambda admitted: log.append(n if admitted else -n)


async def test_slots_are_handed_out_in_arrival_order_and_skip_connections_that_left() -> None:
    admission = Admission(limit=2, hold_s=30)
    log: list[int] = []
    slots = [admission.enter(_admitted(log, n)) for n in range(5)]
    assert log == [0, 1] and admission.active == 2 and admission.waiting == 3
    slots[2].release()  # the third connection closed while it waited
    slots[0].release()
    slots[0].release()  # released twice (socket closed after its connect was answered): counted once
    assert log == [0, 1, 3] and admission.active == 2 and admission.waiting == 1
    slots[1].release()
    slots[3].release()
    assert log == [0, 1, 3, 4] and admission.active == 1 and admission.waiting == 0


async def test_at_shutdown_waiting_connections_are_turned_away_and_no_one_is_admitted() -> None:
    admission = Admission(limit=1, hold_s=30)
    log: list[int] = []
    first = admission.enter(_admitted(log, 1))
    admission.enter(_admitted(log, 2))
    admission.close()
    assert log == [1, -2]  # the waiting one is told at once, so its client reconnects elsewhere
    admission.enter(_admitted(log, 3))
    first.release()
    assert log == [1, -2, -3] and admission.active == 0 and admission.waiting == 0


async def test_a_slot_held_too_long_is_given_back() -> None:
    admission = Admission(limit=1, hold_s=0.05)
    log: list[int] = []
    admission.enter(_admitted(log, 0))  # never released: a client that connects and says nothing
    admission.enter(_admitted(log, 1))
    assert log == [0]
    for _ in range(100):
        if log == [0, 1]:
            break
        await asyncio.sleep(0.01)
    assert log == [0, 1]


def _metrics_over(conn: http.client.HTTPConnection) -> dict[str, float]:
    """Scrape on an already admitted keep-alive connection (a new one would queue too)."""
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    return {s.name + "".join(f".{v}" for v in s.labels.values()): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


async def test_a_storm_past_the_limit_waits_and_every_client_connects_and_sends(
        start_server: Callable[..., ServerProcess], workspace) -> None:
    server = start_server(CONNECT_CONCURRENCY="2")
    clients = [ReplyHQClient(server.url, workspace.publishable_key, f"storm-{i}",
                             transports=["polling"] if i % 4 == 0 else ["websocket"]) for i in range(24)]
    try:
        await asyncio.gather(*(client.connect(timeout=30) for client in clients))
        for client in (clients[0], clients[1]):  # long-polling and websocket both work afterwards
            created = await client.create_conversation(body="hello after the storm")
            assert created["conversation"]["id"]
        assert metric(server.url, "replyhq_socket_connects_total", namespace="/client", result="ok") == 24
        assert (metric(server.url, "replyhq_connection_handshake_waits_total") or 0) > 0
        scrape = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        await asyncio.to_thread(_metrics_over, scrape)
        figures = await asyncio.to_thread(_metrics_over, scrape)  # not itself in a handshake now
        scrape.close()
        assert figures["replyhq_connection_handshakes.active"] == 0
        assert figures["replyhq_connection_handshakes.waiting"] == 0
    finally:
        # A long-polling client's pending GET is answered when it disconnects: its close does
        # not hang until the poll times out (30 s with stock python-engineio).
        await asyncio.wait_for(asyncio.gather(*(client.close() for client in clients)), 10)


async def test_a_silent_connection_does_not_lock_others_out(
        start_server: Callable[..., ServerProcess], workspace) -> None:
    server = start_server(CONNECT_CONCURRENCY="1")
    scrape = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    await asyncio.to_thread(_metrics_over, scrape)  # admitted once; its later requests do not queue
    silent = socket.create_connection(("127.0.0.1", server.port))  # takes the only slot, sends nothing
    client = ReplyHQClient(server.url, workspace.publishable_key, "patient", transports=["websocket"])
    try:
        connecting = asyncio.create_task(client.connect(timeout=20))
        for _ in range(100):
            figures = await asyncio.to_thread(_metrics_over, scrape)
            if figures.get("replyhq_connection_handshakes.waiting") == 1:
                break
            await asyncio.sleep(0.05)
        assert figures["replyhq_connection_handshakes.active"] == 1
        assert figures["replyhq_connection_handshakes.waiting"] == 1
        assert not connecting.done()
        await connecting  # the silent connection's slot times out and the client gets in
        created = await client.create_conversation(body="got in")
        assert created["conversation"]["id"]
    finally:
        silent.close()
        scrape.close()
        await client.close()
