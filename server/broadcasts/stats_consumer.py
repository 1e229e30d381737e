"""The `broadcast-stats` consumer group: per-recipient broadcast events -> broadcast_stats and
broadcast_stats_minutes.

Runs inside the transaction that moves the group's checkpoint (workers/runtime/consumer_groups.py):
a batch's counts and the progress past it commit together, so a redelivered batch adds nothing and
each counter equals a recount of broadcast_recipients. `sent` and `targeted` are the actor's (its
batch transaction counts them); this group counts the rest:

  broadcast.message_delivered   delivered
  broadcast.message_read        read, and delivered too when the recipient skipped delivered
                                (`from_state` below 2): delivered counts who reached at least it
  broadcast.message_clicked     clicked
  broadcast.message_replied     replied
  broadcast.message_failed      failed
"""

from __future__ import annotations

from uuid import UUID

import asyncpg
import msgspec

from server.events.catalog import DomainEvent

COLUMNS = ("delivered", "read", "replied", "clicked", "failed")
_COUNTED = {"broadcast.message_delivered": "delivered", "broadcast.message_read": "read",
            "broadcast.message_clicked": "clicked", "broadcast.message_replied": "replied",
            "broadcast.message_failed": "failed"}
_DELIVERED = 2


class _Data(msgspec.Struct):
    run_id: str
    from_state: int | None = None


_decode = msgspec.json.Decoder(_Data).decode
_VALUES = ", ".join(f"${n}::bigint[]" for n in range(3, 3 + len(COLUMNS)))
_ADDED = ", ".join(f"{c} = s.{c} + EXCLUDED.{c}" for c in COLUMNS)
_NAMES = ", ".join(COLUMNS)
_X_NAMES = ", ".join(f"x.{c}" for c in COLUMNS)
# Runs deleted since (with their broadcast) are skipped by the join: nothing left to count for.
_ADD_TOTALS = f"""
INSERT INTO broadcast_stats AS s (run_id, broadcast_id, app_id, {_NAMES})
SELECT x.run_id, r.broadcast_id, r.app_id, {_X_NAMES}
FROM unnest($1::uuid[], $2::text[], {_VALUES}) AS x(run_id, unused, {_NAMES})
JOIN broadcast_runs r ON r.id = x.run_id
ORDER BY x.run_id
ON CONFLICT (run_id) DO UPDATE SET {_ADDED}
"""
_ADD_MINUTES = f"""
INSERT INTO broadcast_stats_minutes AS s (run_id, minute, {_NAMES})
SELECT x.run_id, (x.minute || ':00Z')::timestamptz, {_X_NAMES}
FROM unnest($1::uuid[], $2::text[], {_VALUES}) AS x(run_id, minute, {_NAMES})
JOIN broadcast_runs r ON r.id = x.run_id
ORDER BY 1, 2
ON CONFLICT (run_id, minute) DO UPDATE SET {_ADDED}
"""


class BroadcastStats:
    name = "broadcast-stats"
    types = frozenset(_COUNTED)  # batches without these (most: messages) cost no transaction
    interval_s = 0.5  # the funnel may trail by half a second: fewer, larger batches during a send
    by_reference = True  # it reads only its own types' data: no message is built for it

    async def apply(self, conn: asyncpg.Connection, events: list[DomainEvent]) -> None:
        totals: dict[str, dict[str, int]] = {}
        minutes: dict[tuple[str, str], dict[str, int]] = {}
        for e in events:
            column = _COUNTED.get(e.type)
            if column is None:
                continue
            try:
                data = _decode(e.data)
                UUID(data.run_id)
            except (msgspec.ValidationError, msgspec.DecodeError, ValueError):
                continue  # not an event this group can count (never recorded so): skip, do not stall
            added = [column]
            if column == "read" and data.from_state is not None and data.from_state < _DELIVERED:
                added.append("delivered")
            minute = e.occurred_at[:16]  # "YYYY-MM-DDTHH:MM" (UTC)
            for counts in (totals.setdefault(data.run_id, {}), minutes.setdefault((data.run_id, minute), {})):
                for c in added:
                    counts[c] = counts.get(c, 0) + 1
        if not totals:
            return
        # Sorted: two transactions adding to the same rows lock them in the same order.
        runs = sorted(totals)
        await conn.execute(_ADD_TOTALS, runs, [""] * len(runs),
                           *([totals[r].get(c, 0) for r in runs] for c in COLUMNS))
        keys = sorted(minutes)
        await conn.execute(_ADD_MINUTES, [k[0] for k in keys], [k[1] for k in keys],
                           *([minutes[k].get(c, 0) for k in keys] for c in COLUMNS))
