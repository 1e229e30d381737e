"""Connection admission: how many new connections may be in their handshake at once.

In a connect storm (every client of a region reconnecting after a network blip) a replica
would otherwise accept thousands of connections at once and run every HTTP parse, Engine.IO
upgrade and Socket.IO connect (a database and a Redis round trip) side by side. Each of those
in-flight handshakes holds a few kilobytes of transient objects, so the peak sets the
replica's memory high-water mark, and the allocator keeps that memory after the storm
(measured in docs/benchmarks.md: the same sockets held cost half the RSS when they arrive
in waves). The storm takes no longer when handshakes queue: the CPU is the limit either way.

A connection holds a slot from accept until its first HTTP request is parsed or, for a
websocket, until its first Socket.IO namespace connect is answered. Connections over the
limit wait with reading paused, costing the kernel's socket buffer, a protocol object and
the first bytes they sent.
A slot is given back after `hold_s` whatever the connection does, so slow or silent clients
cannot stop others from connecting.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable
from typing import Any

from server.http.sanic_adapter import FirstRequestProtocol

ENVIRON_KEY = "replyhq.admission"  # where the websocket path keeps its slot (Engine.IO environ)


class Slot:
    """One connection's place in the handshake window. release() is idempotent."""

    __slots__ = ("_admission", "_on_admit", "deadline", "done", "held")

    def __init__(self, admission: Admission, on_admit: Callable[[bool], None]) -> None:
        self._admission = admission
        self._on_admit: Callable[[bool], None] | None = on_admit
        self.deadline = 0.0
        self.held = False  # admitted (stays True after release)
        self.done = False

    def release(self) -> None:
        if not self.done:
            self.done = True
            self._on_admit = None
            if self.held:
                self._admission._freed()

    def _refuse(self) -> None:
        """Never admitted: `on_admit(False)` (the protocol then closes its connection)."""
        if not self.done:
            self.done = True
            self._call(False)

    def _admit(self, deadline: float) -> None:
        self.held = True
        self.deadline = deadline
        self._call(True)

    def _call(self, admitted: bool) -> None:
        on_admit, self._on_admit = self._on_admit, None
        if on_admit is not None:
            on_admit(admitted)


class Admission:
    def __init__(self, limit: int, hold_s: float = 2.0, on_wait: Callable[[], None] | None = None) -> None:
        self.limit = limit
        self.hold_s = hold_s
        self.on_wait = on_wait  # a connection had to wait (metrics: storms that reach the limit)
        self.active = 0
        self.closed = False
        self._waiting: collections.deque[Slot] = collections.deque()
        self._held: collections.deque[Slot] = collections.deque()  # admission order = deadline order
        self._timer: asyncio.TimerHandle | None = None

    @property
    def waiting(self) -> int:
        return sum(1 for slot in self._waiting if not slot.done)

    def enter(self, on_admit: Callable[[bool], None]) -> Slot:
        """A slot for a new connection; `on_admit` runs now if there is room, else when one frees
        (or at once, never admitted, once the server is closing: see `close`)."""
        slot = Slot(self, on_admit)
        if self.closed:
            slot._refuse()
        elif self.active < self.limit:
            self._hold(slot)
        else:
            self._waiting.append(slot)
            if self.on_wait is not None:
                self.on_wait()
        return slot

    def close(self) -> None:
        """Shutdown: admit no one more. Connections still waiting are told at once (their
        protocol closes them, so their clients reconnect to another replica now rather than
        when this process exits)."""
        self.closed = True
        waiting, self._waiting = self._waiting, collections.deque()
        for slot in waiting:
            slot._refuse()

    def _hold(self, slot: Slot) -> None:
        self.active += 1
        self._held.append(slot)
        slot._admit(time.monotonic() + self.hold_s)
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.hold_s, self._expire)

    def _freed(self) -> None:
        self.active -= 1
        while self._waiting and self.active < self.limit:
            slot = self._waiting.popleft()
            if not slot.done:
                self._hold(slot)

    def _expire(self) -> None:
        self._timer = None
        now = time.monotonic()
        held = self._held
        while held and (held[0].done or held[0].deadline <= now):
            held.popleft().release()
        if held:
            self._timer = asyncio.get_running_loop().call_later(held[0].deadline - now, self._expire)


class AdmittedProtocol(FirstRequestProtocol):
    """Sanic's HTTP protocol, admitted through the server's Admission before it reads."""

    __slots__ = ("_parked", "admission_slot")

    def connection_made(self, transport: Any) -> None:
        admission: Admission = self.app.ctx.admission
        self.admission_slot: Slot | None = None
        self._parked: bytes | None = None
        self.transport = transport
        # uvloop starts reading only after connection_made returns, so a connection that has
        # to wait pauses on its first data (data_received) rather than here.
        self.admission_slot = admission.enter(lambda admitted: self._admitted(transport, admitted))

    def data_received(self, data: bytes) -> None:
        slot = self.admission_slot
        if slot is not None and not slot.held:
            self._parked = data if self._parked is None else self._parked + data
            transport = self.transport
            if transport is not None:
                transport.pause_reading()
            return
        super().data_received(data)

    def _admitted(self, transport: Any, admitted: bool) -> None:
        if not admitted:  # the server is shutting down: the client reconnects elsewhere
            transport.close()
            return
        super().connection_made(transport)
        parked, self._parked = self._parked, None
        if parked is not None:
            transport.resume_reading()
            super().data_received(parked)

    def connection_lost(self, exc: Exception | None) -> None:
        slot = self.admission_slot
        if slot is not None:
            self.admission_slot = None
            slot.release()
            if not slot.held:
                return  # never admitted: Sanic never saw this connection
        super().connection_lost(exc)

    async def first_request(self, request: Any) -> None:
        if request.headers.get("upgrade", "").lower() != "websocket":
            # Plain HTTP (REST, a long-poll that may wait 25 s) is admitted once parsed.
            self._release_slot()
        try:
            await self.app.handle_request(request)
        finally:
            self._release_slot()  # unless the websocket path took it over (see eio_websocket)

    def _release_slot(self) -> None:
        slot, self.admission_slot = self.admission_slot, None
        if slot is not None:
            slot.release()
