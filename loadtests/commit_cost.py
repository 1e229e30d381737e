"""The group commit's statement alone, with and without its `message.created` event.

What the event costs the message path's one statement, without the server, the relay, the
consumers or the driver around it (whose CPU on two shared cores blurs the full A/B,
`make bench-events-ab`). An embedded Postgres; `--connections` writers, each committing batches of
`--batch` messages over its own 20 conversations through `insert_messages`, as the actors do.
Variants alternate in short slices (`--slice` seconds, `--rounds` times, the order reversed every
other round) so a drifting machine weighs on each alike:

- `current`: the statement as it is (one event row for the workspace's messages of the commit,
  naming them: migration 045);
- `none`: the same without the event;
- `per_message`: one event row a message, naming it, as before migration 045;
- `copy`: one event row a message carrying the message's JSON, as before migration 042.

Prints each variant's median msgs/s, Postgres CPU µs and WAL bytes per message:

    python -m loadtests.commit_cost --connections 4 --slice 2 --rounds 24
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import psutil

from loadtests.process_cpu import cpu_seconds
from server.conversations import commit
from server.dev.embedded import EmbeddedPostgres
from server.platform.db.migrate import migrate
from server.platform.db.pool import init_connection
from server.tenancy.workspaces import create_workspace

_WAL = "SELECT pg_current_wal_lsn() - '0/0'::pg_lsn"
# Where the statement's event part begins, and the text that follows it (the test checks both).
EVENT_START = "ev AS ("
EVENT_END = "SELECT (SELECT array_agg(conversation_id) FROM dup)"
# The event as it was recorded before migration 042: the message's JSON built in the statement.
_COPY_EVENT = """ev AS (
    INSERT INTO event_rows (type, app_id, conversation_id, user_id, data)
    SELECT 'message.created', new.a, new.c, adv.user_id, json_build_object('message', json_build_object(
               'id', new.i, 'conversation_id', new.c, 'seq', new.s, 'client_id', new.cid, 'sender_kind', new.sk,
               'sender_id', new.sid, 'body', new.b, 'attachments', new.att::json, 'is_note', new.n,
               'created_at', to_char(new.t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')))
    FROM new JOIN adv ON adv.id = new.c ORDER BY new.ord
    RETURNING 1 AS n
)
"""
# One event row a message, naming it, as recorded from migration 044 until 045.
_PER_MESSAGE_EVENT = """ev AS (
    INSERT INTO event_rows (type, app_id, conversation_id, user_id, message_id, sender_kind, is_note)
    SELECT 'message.created', new.a, new.c, adv.user_id, new.i, new.sk, new.n
    FROM new JOIN adv ON adv.id = new.c ORDER BY new.ord
    RETURNING 1 AS n
)
"""
BODY = "Hello there, this is a fairly ordinary message of support chat length."


def variants() -> dict[str, str]:
    sql = commit._COMMIT_SQL
    head, tail = sql[:sql.index(EVENT_START)], sql[sql.index(EVENT_END):]
    return {"current": sql, "none": head + "ev AS (SELECT 0 AS n WHERE false)\n" + tail,
            "per_message": head + _PER_MESSAGE_EVENT + tail, "copy": head + _COPY_EVENT + tail}


class Writer:
    """One connection's conversations and the batches it commits to them."""

    def __init__(self, app_id: uuid.UUID, states: list[commit.ConversationState]) -> None:
        self.app_id = app_id
        self.states = {s.id: s for s in states}

    def batch(self, size: int) -> list[commit.NewMessage]:
        ids = list(self.states)
        next_seq = {c: s.last_seq for c, s in self.states.items()}
        out = []
        for i in range(size):
            state = self.states[ids[i % len(ids)]]
            next_seq[state.id] += 1
            out.append(commit.NewMessage(uuid.uuid4(), self.app_id, state.id, next_seq[state.id], uuid.uuid4().hex,
                                         "user", state.user_id, BODY, "[]", False, datetime.now(UTC)))
        return out

    def committed(self, batch: list[commit.NewMessage]) -> None:
        for m in batch:
            s = self.states[m.conversation_id]
            self.states[m.conversation_id] = commit.ConversationState(s.id, s.app_id, s.user_id, m.seq)


async def _writers(pool: asyncpg.Pool, n: int) -> list[Writer]:
    ws = await create_workspace(pool, app_name="Commit cost", email="cost@bench.test", password="correct horse battery")
    writers = []
    for _ in range(n):
        states = []
        for _ in range(20):
            user = await pool.fetchval("INSERT INTO end_users (app_id, external_id) VALUES ($1, $2) RETURNING id",
                                       ws.app_id, uuid.uuid4().hex)
            conv = await pool.fetchval("INSERT INTO conversations (app_id, user_id) VALUES ($1, $2) RETURNING id",
                                       ws.app_id, user)
            states.append(commit.ConversationState(conv, ws.app_id, user, 0))
        writers.append(Writer(ws.app_id, states))
    return writers


async def _slice(pool: asyncpg.Pool, writers: list[Writer], sql: str, seconds: float, size: int) -> int:
    commit._COMMIT_SQL = sql  # insert_messages reads the module's statement on each call
    stop = time.monotonic() + seconds
    done = 0

    async def write(w: Writer) -> None:
        nonlocal done
        async with pool.acquire() as conn:
            while time.monotonic() < stop:
                batch = w.batch(size)
                await commit.insert_messages(conn, batch, w.states)
                w.committed(batch)
                done += len(batch)

    await asyncio.gather(*(write(w) for w in writers))
    return done


def _with_children(p: psutil.Process) -> list[psutil.Process]:
    return [p, *p.children(recursive=True)]  # Postgres: the postmaster, its backends and workers


async def run(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    tmp = Path(tempfile.mkdtemp(prefix="replyhq-commit-cost-"))
    os.chmod(tmp, 0o755)  # reachable by the unprivileged user Postgres runs as under root
    pg = EmbeddedPostgres(tmp / "postgres")
    url = pg.start()
    try:
        await migrate(url)
        pool = await asyncpg.create_pool(url, min_size=args.connections + 1, max_size=args.connections + 1,
                                         init=init_connection)
        assert pool is not None and pg.proc is not None
        postmaster = psutil.Process(pg.proc.pid)
        writers = await _writers(pool, args.connections)
        sqls = variants()
        results: dict[str, list[tuple[float, float, float]]] = {v: [] for v in sqls}
        for r in range(args.rounds):
            for name in (list(sqls) if r % 2 == 0 else list(reversed(sqls))):
                cpu0, wal0 = cpu_seconds(_with_children(postmaster)), await pool.fetchval(_WAL)
                t0 = time.monotonic()
                n = await _slice(pool, writers, sqls[name], args.slice, args.batch)
                elapsed = time.monotonic() - t0
                cpu = cpu_seconds(_with_children(postmaster)) - cpu0
                wal = float(await pool.fetchval(_WAL) - wal0)
                results[name].append((n / elapsed, cpu / n * 1e6, wal / n))
        await pool.close()
    finally:
        pg.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return {name: {"msgs_per_s": round(statistics.median(x[0] for x in rows)),
                   "pg_cpu_us_per_msg": round(statistics.median(x[1] for x in rows), 1),
                   "wal_bytes_per_msg": round(statistics.median(x[2] for x in rows))}
            for name, rows in results.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument("--slice", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=24)
    args = parser.parse_args()
    out = asyncio.run(run(args))
    none = out["none"]["msgs_per_s"]
    for row in out.values():
        row["of_none"] = round(row["msgs_per_s"] / none, 3)
    print(json.dumps({"scenario": "commit_cost", **vars(args), **out}))


if __name__ == "__main__":
    main()
