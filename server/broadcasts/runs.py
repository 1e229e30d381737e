"""The SQL of a broadcast run as the actor drives it (actors/broadcast.py): begin, snapshot pages,
send batches, complete or fail; and the status commands (pause, resume, cancel).

Every step is one transaction guarded by the state it expects (the run's status, `snapshot_after`,
`sent_through`): a step that finds the run moved on changes nothing and answers None, so two
owners overlapping for a moment (a replica that lost its lease finishing a batch) do each step
once between them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from server.broadcasts import store
from server.broadcasts.audience import audience_filter, compile_audience
from server.errors import Conflict
from server.events.record import record

ACTIVE = ("pending", "snapshotting", "sending")
_FIRST_ID = UUID(int=0)  # below every user id: where a snapshot starts


@dataclass(frozen=True)
class Run:
    id: UUID
    broadcast_id: UUID
    app_id: UUID
    scheduled_for: datetime
    status: str
    snapshot_after: UUID | None
    snapshot_done: bool
    sent_through: int


@dataclass(frozen=True)
class Broadcast:
    id: UUID
    app_id: UUID
    status: str
    message: dict[str, Any]
    audience: dict[str, Any]
    schedule: dict[str, Any]
    rate_per_s: int
    sender_name: str | None

    @property
    def every_occurrence(self) -> bool:
        return bool(self.schedule.get("every_occurrence", True)) if self.schedule.get("kind") == "recurring" \
            else True


@dataclass(frozen=True)
class Batch:
    sent: list[tuple[int, UUID]]  # (ord, user_id) of the recipients sent, in ord order
    failed: int


def _run(r: asyncpg.Record) -> Run:
    return Run(r["id"], r["broadcast_id"], r["app_id"], r["scheduled_for"], r["status"], r["snapshot_after"],
               r["snapshot_done"], r["sent_through"])


_RUN_COLUMNS = "id, broadcast_id, app_id, scheduled_for, status, snapshot_after, snapshot_done, sent_through"


async def active_broadcasts(conn: asyncpg.Pool | asyncpg.Connection) -> list[tuple[UUID, UUID]]:
    """(broadcast_id, app_id) of every broadcast with a run to carry on."""
    rows = await conn.fetch("SELECT DISTINCT broadcast_id, app_id FROM broadcast_runs WHERE status = ANY($1::text[])",
                            list(ACTIVE))
    return [(r["broadcast_id"], r["app_id"]) for r in rows]


async def next_run(conn: asyncpg.Pool | asyncpg.Connection, broadcast_id: UUID) -> Run | None:
    """The broadcast's oldest run still to carry on (runs of one broadcast go one after another)."""
    r = await conn.fetchrow(f"""SELECT {_RUN_COLUMNS} FROM broadcast_runs
                                WHERE broadcast_id = $1 AND status = ANY($2::text[])
                                ORDER BY scheduled_for LIMIT 1""", broadcast_id, list(ACTIVE))
    return _run(r) if r else None


async def load_run(conn: asyncpg.Pool | asyncpg.Connection, run_id: UUID) -> Run | None:
    r = await conn.fetchrow(f"SELECT {_RUN_COLUMNS} FROM broadcast_runs WHERE id = $1", run_id)
    return _run(r) if r else None


async def load_broadcast(conn: asyncpg.Pool | asyncpg.Connection, broadcast_id: UUID) -> Broadcast | None:
    r = await conn.fetchrow(
        """SELECT b.id, b.app_id, b.status, b.message, b.audience, b.schedule, b.rate_per_s, a.name AS sender_name
           FROM broadcasts b LEFT JOIN admins a ON a.id::text = b.message ->> 'sender_admin_id'
           WHERE b.id = $1""", broadcast_id)
    if r is None:
        return None
    return Broadcast(r["id"], r["app_id"], r["status"], r["message"], r["audience"], r["schedule"],
                     r["rate_per_s"], r["sender_name"])


async def _event_data(conn: asyncpg.Connection, app_id: UUID, broadcast_id: UUID) -> dict[str, Any]:
    """{"broadcast": the broadcast as the admin API shows it, with its stats}."""
    return store.event_data(await store.must_get(conn, app_id, broadcast_id))


def _iso(ts: datetime | None) -> str | None:
    return ts.isoformat().replace("+00:00", "Z") if ts is not None else None


# ---- the run's steps ----------------------------------------------------------------------------------
async def begin(pool: asyncpg.Pool, run: Run) -> str:
    """pending -> snapshotting (the run_started event, its stats row, the broadcast sending); a run of a
    paused or cancelled broadcast takes its status instead. The run's status after."""
    async with pool.acquire() as conn, conn.transaction():
        status = await conn.fetchval("SELECT status FROM broadcasts WHERE id = $1 FOR UPDATE", run.broadcast_id)
        if status is None:
            return "gone"
        new = {"paused": "paused", "cancelled": "cancelled"}.get(status, "snapshotting")
        moved = await conn.fetchval(
            """UPDATE broadcast_runs SET status = $2, started_at = CASE WHEN $2 = 'snapshotting' THEN now() END,
                      finished_at = CASE WHEN $2 = 'cancelled' THEN now() END
               WHERE id = $1 AND status = 'pending' RETURNING status""", run.id, new)
        if moved is None:
            return await conn.fetchval("SELECT status FROM broadcast_runs WHERE id = $1", run.id) or "gone"
        if new != "snapshotting":
            return str(new)
        await conn.execute("""INSERT INTO broadcast_stats (run_id, broadcast_id, app_id) VALUES ($1, $2, $3)
                              ON CONFLICT (run_id) DO NOTHING""", run.id, run.broadcast_id, run.app_id)
        await conn.execute("""UPDATE broadcasts SET status = 'sending', updated_at = now()
                              WHERE id = $1 AND status <> 'sending'""", run.broadcast_id)
        await record(conn, "broadcast.run_started", run.app_id,
                     {"broadcast_id": str(run.broadcast_id), "run_id": str(run.id),
                      "scheduled_for": _iso(run.scheduled_for)})
        return "snapshotting"


class _MovedOn(Exception):
    """The run changed under a step: roll the step back."""


async def snapshot_page(pool: asyncpg.Pool, run: Run, broadcast: Broadcast,
                        page_size: int) -> tuple[Run, int] | None:
    """Copy the next keyset page of the audience into the run's recipients, numbering them on from
    the last `ord`: the run with its cursor moved and how many it copied, or None when the run moved
    on under us (paused, cancelled, or another owner copied this page). A page shorter than
    `page_size` means the snapshot is complete.

    The run's row is locked only by the cursor's guarded update at the end, so the send batches
    (which lock it too) go on while a page is copied; the primary key on (run_id, ord) stops a second
    owner copying the same page."""
    try:
        async with pool.acquire() as conn, conn.transaction():
            current = await conn.fetchrow(
                "SELECT snapshot_after, status, snapshot_done FROM broadcast_runs WHERE id = $1", run.id)
            if (current is None or current["status"] != "snapshotting" or current["snapshot_done"]
                    or current["snapshot_after"] != run.snapshot_after):
                return None
            base = await conn.fetchval("SELECT coalesce(max(ord), 0) FROM broadcast_recipients WHERE run_id = $1",
                                       run.id)
            # A plain range on the id (not "$2 IS NULL OR ..."), so every page is an index range scan.
            params: list[Any] = [run.app_id, run.snapshot_after or _FIRST_ID, page_size, run.id, base]
            condition = compile_audience(await audience_filter(conn, run.app_id, broadcast.audience), params)
            exclusion = ""
            if not broadcast.every_occurrence:
                # A user gets only the first occurrence that reached them.
                params.append(run.broadcast_id)
                exclusion = f"""AND NOT EXISTS (
                    SELECT 1 FROM broadcast_recipients p
                    WHERE p.run_id = ANY(ARRAY(SELECT id FROM broadcast_runs WHERE broadcast_id = ${len(params)}
                                               AND id <> $4))
                      AND p.user_id = u.id AND p.state BETWEEN 1 AND 3)"""
            row = await conn.fetchrow(
                f"""WITH page AS (
                        SELECT u.id FROM end_users u
                        WHERE u.app_id = $1 AND u.id > $2::uuid AND ({condition}) {exclusion}
                        ORDER BY u.id LIMIT $3
                    ), ins AS (
                        INSERT INTO broadcast_recipients (run_id, ord, user_id)
                        SELECT $4, $5::bigint + row_number() OVER (ORDER BY id), id FROM page
                        RETURNING ord, user_id
                    )
                    SELECT (SELECT count(*) FROM ins) AS n,
                           (SELECT user_id FROM ins ORDER BY ord DESC LIMIT 1) AS last""", *params)
            if row["n"] == 0:
                return run, 0
            moved = await conn.fetchval(
                """UPDATE broadcast_runs SET snapshot_after = $2
                   WHERE id = $1 AND snapshot_after IS NOT DISTINCT FROM $3 AND status = 'snapshotting'
                   RETURNING 1""", run.id, row["last"], run.snapshot_after)
            if moved is None:
                raise _MovedOn
            return dataclasses.replace(run, snapshot_after=row["last"]), int(row["n"])
    except (_MovedOn, asyncpg.UniqueViolationError):
        return None


async def snapshotted(conn: asyncpg.Pool | asyncpg.Connection, run_id: UUID) -> int:
    """How many recipients the run's snapshot holds so far (its highest `ord`)."""
    return int(await conn.fetchval("SELECT coalesce(max(ord), 0) FROM broadcast_recipients WHERE run_id = $1", run_id))


async def finish_snapshot(pool: asyncpg.Pool, run: Run) -> int | None:
    """snapshotting -> sending with `targeted` set; the number targeted (None: the run moved on)."""
    async with pool.acquire() as conn, conn.transaction():
        locked = await conn.fetchval(
            """SELECT 1 FROM broadcast_runs WHERE id = $1 AND status = 'snapshotting' AND NOT snapshot_done
               AND snapshot_after IS NOT DISTINCT FROM $2 FOR UPDATE""", run.id, run.snapshot_after)
        if locked is None:
            return None
        targeted = int(await conn.fetchval(
            "SELECT coalesce(max(ord), 0) FROM broadcast_recipients WHERE run_id = $1", run.id))
        await conn.execute("UPDATE broadcast_runs SET snapshot_done = true, status = 'sending' WHERE id = $1", run.id)
        await conn.execute("UPDATE broadcast_stats SET targeted = $2 WHERE run_id = $1", run.id, targeted)
        return targeted


async def targeted(conn: asyncpg.Pool | asyncpg.Connection, run_id: UUID) -> int:
    return int(await conn.fetchval("SELECT targeted FROM broadcast_stats WHERE run_id = $1", run_id) or 0)


_SEND = """UPDATE broadcast_recipients r SET state = 1, sent_at = $4
           FROM end_users u
           WHERE r.run_id = $1 AND r.ord > $2 AND r.ord <= $3 AND r.state = 0 AND u.id = r.user_id
           RETURNING r.ord, r.user_id"""
_SENT_BY = """SELECT ord, user_id FROM broadcast_recipients
              WHERE run_id = $1 AND ord > $2 AND ord <= $3 AND sent_at = $4"""


def _sent_rows(rows: list[asyncpg.Record]) -> list[tuple[int, UUID]]:
    return sorted((r[0], r[1]) for r in rows)


async def recipients_of(conn: asyncpg.Pool | asyncpg.Connection, user_ids: list[UUID]) -> dict[UUID, dict[str, Any]]:
    """What personalisation reads of each user (name, email, external_id, attributes)."""
    rows = await conn.fetch("SELECT id, name, email, external_id, attributes FROM end_users WHERE id = ANY($1::uuid[])",
                            user_ids)
    return {r["id"]: {"name": r["name"], "email": r["email"], "external_id": r["external_id"],
                      "attributes": r["attributes"]} for r in rows}


async def send_batch(pool: asyncpg.Pool, run: Run, old: int, new: int, now: datetime) -> Batch | None:
    """Recipients old < ord <= new from queued to sent, the checkpoint, the counters and one
    messages_sent event, in one transaction guarded by the old checkpoint (None: it had moved,
    or the run is no longer snapshotting or sending). The caller sends only what the snapshot has
    committed. A recipient whose user is gone fails instead."""
    async with pool.acquire() as conn, conn.transaction():
        guarded = await conn.fetchval(
            """UPDATE broadcast_runs SET sent_through = $3
               WHERE id = $1 AND sent_through = $2 AND status IN ('snapshotting', 'sending') RETURNING 1""",
            run.id, old, new)
        if guarded is None:
            return None
        sent = await conn.fetch(_SEND, run.id, old, new, now)
        failed = await conn.fetch(
            """UPDATE broadcast_recipients SET state = 4, failed_reason = 'user_deleted'
               WHERE run_id = $1 AND ord > $2 AND ord <= $3 AND state = 0 RETURNING ord, user_id""", run.id, old, new)
        if sent:
            await conn.execute("UPDATE broadcast_stats SET sent = sent + $2 WHERE run_id = $1", run.id, len(sent))
            await conn.execute(
                """INSERT INTO broadcast_stats_minutes (run_id, minute, sent)
                   VALUES ($1, date_trunc('minute', $2::timestamptz), $3)
                   ON CONFLICT (run_id, minute) DO UPDATE SET sent = broadcast_stats_minutes.sent + EXCLUDED.sent""",
                run.id, now, len(sent))
            await record(conn, "broadcast.messages_sent", run.app_id,
                         {"broadcast_id": str(run.broadcast_id), "run_id": str(run.id), "count": len(sent)})
        for f in failed:  # counted by the broadcast-stats consumer, like every other per-recipient outcome
            await record(conn, "broadcast.message_failed", run.app_id,
                         {"broadcast_id": str(run.broadcast_id), "run_id": str(run.id),
                          "delivery_id": f"{run.id}.{f['ord']}", "reason": "user_deleted"}, user_id=f["user_id"])
        return Batch(_sent_rows(sent), len(failed))


async def batch_committed(pool: asyncpg.Pool, run: Run, old: int, new: int, now: datetime) -> Batch | None:
    """After a commit whose answer was lost: the batch, if it was this attempt (`now`) that committed."""
    through = await pool.fetchval("SELECT sent_through FROM broadcast_runs WHERE id = $1", run.id)
    if through is None or through < new:
        return None
    rows = await pool.fetch(_SENT_BY, run.id, old, new, now)
    return Batch(_sent_rows(rows), 0) if rows else None


async def complete(pool: asyncpg.Pool, run: Run) -> dict[str, Any] | None:
    """sending -> completed; the broadcast goes back to scheduled while it has a next occurrence, else
    completed; records run_completed. The broadcast as recorded (None: the run had moved on)."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT 1 FROM broadcasts WHERE id = $1 FOR UPDATE", run.broadcast_id)
        done = await conn.fetchval(
            """UPDATE broadcast_runs SET status = 'completed', finished_at = now()
               WHERE id = $1 AND status = 'sending' AND snapshot_done RETURNING 1""", run.id)
        if done is None:
            return None
        await conn.execute(
            """UPDATE broadcasts SET updated_at = now(),
                      status = CASE WHEN schedule ->> 'kind' = 'recurring' AND next_run_at IS NOT NULL
                                    THEN 'scheduled' ELSE 'completed' END
               WHERE id = $1 AND status = 'sending'
                 AND NOT EXISTS (SELECT 1 FROM broadcast_runs WHERE broadcast_id = $1 AND id <> $2
                                 AND status = ANY($3::text[]))""", run.broadcast_id, run.id, list(ACTIVE))
        data = await _event_data(conn, run.app_id, run.broadcast_id)
        await record(conn, "broadcast.run_completed", run.app_id, data)
        return data


async def fail(pool: asyncpg.Pool, run: Run, error: str) -> None:
    """The run cannot go on (its audience is gone): the run and the broadcast failed, with why."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT 1 FROM broadcasts WHERE id = $1 FOR UPDATE", run.broadcast_id)
        done = await conn.fetchval(
            """UPDATE broadcast_runs SET status = 'failed', error = $2, finished_at = now()
               WHERE id = $1 AND status = ANY($3::text[]) RETURNING 1""", run.id, error[:500], list(ACTIVE))
        if done is None:
            return
        await conn.execute("""UPDATE broadcasts SET status = 'failed', updated_at = now()
                              WHERE id = $1 AND status IN ('sending', 'scheduled')""", run.broadcast_id)
        await record(conn, "broadcast.run_completed", run.app_id,
                     await _event_data(conn, run.app_id, run.broadcast_id))


async def progress(conn: asyncpg.Pool | asyncpg.Connection, run_id: UUID) -> dict[str, Any] | None:
    r = await conn.fetchrow(
        """SELECT br.broadcast_id, br.id AS run_id, br.status, coalesce(s.sent, 0) AS sent,
                  CASE WHEN br.snapshot_done THEN coalesce(s.targeted, 0)
                       ELSE (SELECT coalesce(max(ord), 0) FROM broadcast_recipients WHERE run_id = br.id)
                  END AS targeted
           FROM broadcast_runs br LEFT JOIN broadcast_stats s ON s.run_id = br.id WHERE br.id = $1""", run_id)
    if r is None:
        return None
    return {"broadcast_id": str(r["broadcast_id"]), "run_id": str(r["run_id"]), "targeted": int(r["targeted"]),
            "sent": int(r["sent"]), "status": r["status"]}


# ---- the commands ----------------------------------------------------------------------------------
async def _changed(conn: asyncpg.Connection, app_id: UUID, broadcast_id: UUID, previous: str) -> None:
    await record(conn, "broadcast.status_changed", app_id,
                 {**await _event_data(conn, app_id, broadcast_id), "previous_status": previous})


async def pause(pool: asyncpg.Pool, app_id: UUID, broadcast_id: UUID) -> tuple[str, list[UUID]]:
    """sending or scheduled -> paused, with its active runs; the new status and the runs paused."""
    async with pool.acquire() as conn, conn.transaction():
        b = await store.locked(conn, app_id, broadcast_id)
        if b["status"] == "paused":
            return "paused", []
        if b["status"] not in ("sending", "scheduled"):
            raise Conflict(f"a {b['status']} broadcast cannot be paused", code="invalid_status")
        runs = await conn.fetch("""UPDATE broadcast_runs SET status = 'paused'
                                   WHERE broadcast_id = $1 AND status = ANY($2::text[]) RETURNING id""",
                                broadcast_id, list(ACTIVE))
        await conn.execute("UPDATE broadcasts SET status = 'paused', updated_at = now() WHERE id = $1", broadcast_id)
        await _changed(conn, app_id, broadcast_id, b["status"])
        return "paused", [r["id"] for r in runs]


async def resume(pool: asyncpg.Pool, app_id: UUID, broadcast_id: UUID) -> tuple[str, list[UUID]]:
    """paused -> sending (its paused runs carry on where they were), or back to scheduled when none is."""
    async with pool.acquire() as conn, conn.transaction():
        b = await store.locked(conn, app_id, broadcast_id)
        if b["status"] in ("sending", "scheduled"):
            return str(b["status"]), []
        if b["status"] != "paused":
            raise Conflict(f"a {b['status']} broadcast cannot be resumed", code="invalid_status")
        runs = await conn.fetch(
            """UPDATE broadcast_runs SET status = CASE WHEN started_at IS NULL THEN 'pending'
                                                      WHEN NOT snapshot_done THEN 'snapshotting' ELSE 'sending' END
               WHERE broadcast_id = $1 AND status = 'paused' RETURNING id""", broadcast_id)
        status = "sending" if runs else ("scheduled" if b["next_run_at"] is not None else "completed")
        await conn.execute("UPDATE broadcasts SET status = $2, updated_at = now() WHERE id = $1", broadcast_id, status)
        await _changed(conn, app_id, broadcast_id, "paused")
        return status, [r["id"] for r in runs]


async def cancel(pool: asyncpg.Pool, app_id: UUID, broadcast_id: UUID) -> tuple[str, list[UUID]]:
    """No more sends and no further occurrences: the broadcast and its unfinished runs cancelled."""
    async with pool.acquire() as conn, conn.transaction():
        b = await store.locked(conn, app_id, broadcast_id)
        if b["status"] == "cancelled":
            return "cancelled", []
        if b["status"] not in ("scheduled", "sending", "paused"):
            raise Conflict(f"a {b['status']} broadcast cannot be cancelled", code="invalid_status")
        runs = await conn.fetch(
            """UPDATE broadcast_runs SET status = 'cancelled', finished_at = now()
               WHERE broadcast_id = $1 AND status = ANY($2::text[]) RETURNING id""",
            broadcast_id, [*ACTIVE, "paused"])
        await conn.execute("""UPDATE broadcasts SET status = 'cancelled', next_run_at = NULL, updated_at = now()
                              WHERE id = $1""", broadcast_id)
        await _changed(conn, app_id, broadcast_id, b["status"])
        data = await _event_data(conn, app_id, broadcast_id)
        for _ in runs:
            await record(conn, "broadcast.run_completed", app_id, data)
        return "cancelled", [r["id"] for r in runs]
