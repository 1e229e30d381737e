"""Broadcast schedules: occurrences in a zone across DST changes, validation, personalisation, and the
scheduler on real Postgres: three instances ticking at once make one run per occurrence, and after an
outage only the latest missed occurrence runs."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from uuid import UUID

import asyncpg
import msgspec
import pytest

from server.broadcasts.personalise import compile_template, personalise, render
from server.broadcasts.schedule import first_run_at, latest_due_and_next, next_times, validate, zone
from server.broadcasts.schemas import Now, Once, Recurring
from server.errors import ValidationFailed
from server.platform.db.pool import init_connection
from server.tenancy.workspaces import NewWorkspace
from tests.broadcast_port import RecordedCommands
from workers.broadcast_scheduler import BroadcastScheduler

PARIS, NEW_YORK = zone("Europe/Paris"), zone("America/New_York")
HOUR = 3600


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


# -- occurrences ------------------------------------------------------------------------------------

def test_a_monday_9am_cron_stays_9am_local_across_the_spring_dst_change_in_paris() -> None:
    times = next_times(Recurring(cron="0 9 * * 1", timezone="Europe/Paris"), utc(2026, 3, 16), 3)
    assert [t.astimezone(PARIS).strftime("%Y-%m-%d %H:%M") for t in times] == [
        "2026-03-16 09:00", "2026-03-23 09:00", "2026-03-30 09:00"]
    # Paris moved from UTC+1 to UTC+2 on 29 March: the same local hour is an hour earlier in UTC
    assert [t.hour for t in times] == [8, 8, 7]


def test_a_monday_9am_cron_stays_9am_local_across_the_autumn_dst_change_in_new_york() -> None:
    times = next_times(Recurring(cron="0 9 * * 1", timezone="America/New_York"), utc(2026, 10, 20), 3)
    assert [t.astimezone(NEW_YORK).strftime("%a %H:%M") for t in times] == ["Mon 09:00"] * 3
    assert [t.strftime("%m-%d %H:%M") for t in times] == ["10-26 13:00", "11-02 14:00", "11-09 14:00"]


def test_a_local_time_skipped_by_spring_forward_fires_once_after_the_jump() -> None:
    times = next_times(Recurring(cron="30 2 * * *", timezone="Europe/Paris"), utc(2026, 3, 28, 12), 2)
    assert [t.astimezone(PARIS).strftime("%m-%d %H:%M") for t in times] == ["03-29 03:30", "03-30 02:30"]


def test_a_local_time_repeated_by_fall_back_fires_once() -> None:
    times = next_times(Recurring(cron="30 2 * * *", timezone="Europe/Paris"), utc(2026, 10, 24, 12), 2)
    assert [t.strftime("%m-%d %H:%M") for t in times] == ["10-25 00:30", "10-26 01:30"]
    # even when asked from inside the repeated hour, after the first 02:30 passed
    assert next_times(Recurring(cron="30 2 * * *", timezone="Europe/Paris"), utc(2026, 10, 25, 1, 10), 1) == [
        utc(2026, 10, 26, 1, 30)]


def test_end_at_bounds_the_occurrences() -> None:
    sched = Recurring(cron="0 9 * * *", timezone="UTC", end_at=utc(2026, 5, 3, 12))
    assert next_times(sched, utc(2026, 5, 1), 10) == [utc(2026, 5, 1, 9), utc(2026, 5, 2, 9), utc(2026, 5, 3, 9)]


def test_once_is_the_local_time_in_its_zone() -> None:
    assert next_times(Once(at="2026-12-24T09:00", timezone="Europe/Paris"), utc(2026, 1, 1), 5) == [
        utc(2026, 12, 24, 8)]
    assert next_times(Once(at="2026-12-24T09:00", timezone="Europe/Paris"), utc(2026, 12, 24, 8), 5) == []
    assert first_run_at(Now(), utc(2026, 1, 1)) == utc(2026, 1, 1)


def test_latest_due_is_the_last_missed_occurrence_and_next_is_after_now() -> None:
    hourly = Recurring(cron="0 * * * *", timezone="Europe/Paris")
    # five occurrences missed since 06:00: only 10:00 runs, the next is 11:00
    assert latest_due_and_next(hourly, utc(2026, 6, 1, 6), utc(2026, 6, 1, 10, 42)) == (
        utc(2026, 6, 1, 10), utc(2026, 6, 1, 11))
    # exactly on an occurrence: that one
    assert latest_due_and_next(hourly, utc(2026, 6, 1, 10), utc(2026, 6, 1, 10)) == (
        utc(2026, 6, 1, 10), utc(2026, 6, 1, 11))
    ends = Recurring(cron="0 * * * *", timezone="UTC", end_at=utc(2026, 6, 1, 8, 30))
    assert latest_due_and_next(ends, utc(2026, 6, 1, 6), utc(2026, 6, 1, 10, 42)) == (utc(2026, 6, 1, 8), None)
    once = Once(at="2026-06-01T12:00", timezone="Europe/Paris")
    assert latest_due_and_next(once, utc(2026, 6, 1, 10), utc(2026, 6, 1, 10, 0, 1)) == (utc(2026, 6, 1, 10), None)


# -- validation -------------------------------------------------------------------------------------

NOW = utc(2026, 6, 1, 12)


@pytest.mark.parametrize(("schedule", "path", "code"), [
    (Recurring(cron="61 * * * *", timezone="UTC"), "$.schedule.cron", "invalid_cron"),
    (Recurring(cron="0 9 * * 1 2026", timezone="UTC"), "$.schedule.cron", "invalid_cron"),
    (Recurring(cron="0 9 * *", timezone="UTC"), "$.schedule.cron", "invalid_cron"),
    (Recurring(cron="H 9 * * *", timezone="UTC"), "$.schedule.cron", "invalid_cron"),
    (Recurring(cron="0 0 30 2 *", timezone="UTC"), "$.schedule.cron", "invalid_cron"),  # never happens
    (Recurring(cron="0 9 * * 1", timezone="Mars/Olympus"), "$.schedule.timezone", "invalid_timezone"),
    (Recurring(cron="0 9 * * 1", timezone="../../etc/passwd"), "$.schedule.timezone", "invalid_timezone"),
    (Recurring(cron="*/30 * * * *", timezone="UTC"), "$.schedule.cron", "interval_too_short"),
    (Recurring(cron="0 9,9 * * *", timezone="UTC", end_at=NOW - timedelta(days=1)), "$.schedule.end_at",
     "schedule_in_past"),
    (Recurring(cron="0 9 * * *", timezone="UTC", end_at=NOW + timedelta(hours=1)), "$.schedule.cron",
     "invalid_cron"),  # no occurrence before end_at
    (Once(at="2026-06-01T13:00", timezone="Europe/Paris"), "$.schedule.at", "schedule_in_past"),  # 11:00 UTC
    (Once(at="2020-01-01T09:00", timezone="UTC"), "$.schedule.at", "schedule_in_past"),
    (Once(at="2026-02-30T09:00", timezone="UTC"), "$.schedule.at", "invalid_schedule"),
    (Once(at="9999-12-31T23:59", timezone="Etc/GMT+12"), "$.schedule.at", "schedule_too_far"),
    (Once(at="0001-01-01T00:00", timezone="Etc/GMT-14"), "$.schedule.at", "schedule_in_past"),
])
def test_invalid_schedules_are_422_naming_the_field(schedule: Once | Recurring, path: str, code: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        validate(schedule, NOW, HOUR)
    assert (caught.value.details["path"], caught.value.code) == (path, code)


def test_the_minimum_interval_is_checked_over_many_occurrences() -> None:
    # 09:00 and 09:30 once a week: the first few gaps are days, one in every two is 30 minutes
    with pytest.raises(ValidationFailed) as caught:
        validate(Recurring(cron="0,30 9 * * 1", timezone="UTC"), NOW, HOUR)
    assert caught.value.details["shortest_s"] == 1800
    ok = validate(Recurring(cron="0  9 * * 1", timezone="Europe/Paris"), NOW, HOUR)
    assert ok == Recurring(cron="0 9 * * 1", timezone="Europe/Paris")  # whitespace normalised
    assert validate(Recurring(cron="0 * * * *", timezone="UTC"), NOW, HOUR).cron == "0 * * * *"
    assert validate(Once(at="2026-06-01T15:00", timezone="Europe/Paris"), NOW, HOUR)  # 13:00 UTC


# -- personalisation --------------------------------------------------------------------------------

def test_placeholders_are_filled_per_user_with_fallbacks() -> None:
    template = compile_template("Hi {{user.name|there}}, {{ user.custom.plan | free }} plan "
                                "({{user.email}}, {{user.external_id}}) {{user.custom.visits}} {{other}}")
    full = {"name": "Ada", "email": "ada@example.test", "external_id": "u-1",
            "attributes": {"plan": "pro", "visits": 3}}
    assert template.render(full) == "Hi Ada, pro plan (ada@example.test, u-1) 3 {{other}}"
    empty = {"name": "", "email": None, "external_id": None, "attributes": {}}
    assert template.render(empty) == "Hi there, free plan (, )  {{other}}"
    assert render("No placeholders", empty) == "No placeholders"
    assert render("{{user.custom.flag|no}}", {"attributes": {"flag": True}}) == "true"
    assert not compile_template("plain").personalised and template.personalised
    assert personalise("Hi {{user.name|there}}", {"name": "Bo"}) == "Hi Bo"


# -- the scheduler on real Postgres -----------------------------------------------------------------

async def _recurring(db: asyncpg.Pool, ws: NewWorkspace, cron: str, next_run_at: datetime,
                     status: str = "scheduled") -> UUID:
    schedule = msgspec.to_builtins(Recurring(cron=cron, timezone="Europe/Paris"))
    broadcast_id: UUID = await db.fetchval(
        """INSERT INTO broadcasts (app_id, name, status, message, audience, schedule, rate_per_s, next_run_at)
           VALUES ($1, 'weekly', $2, $3::text::jsonb, '{"filter": {"all": []}}', $4::text::jsonb, 100, $5)
           RETURNING id""",
        ws.app_id, status, msgspec.json.encode({"text": "hi", "sender_admin_id": str(ws.admin_id)}).decode(),
        msgspec.json.encode(schedule).decode(), next_run_at)
    return broadcast_id


async def _runs(db: asyncpg.Pool, broadcast_id: UUID) -> list[datetime]:
    return [r["scheduled_for"] for r in await db.fetch(
        "SELECT scheduled_for FROM broadcast_runs WHERE broadcast_id = $1 ORDER BY scheduled_for", broadcast_id)]


async def test_three_schedulers_ticking_together_make_one_run_per_occurrence(db: asyncpg.Pool, db_url: str,
                                                                            workspace: NewWorkspace) -> None:
    port = RecordedCommands()
    # three replicas, each with its own connections
    pools = [await asyncpg.create_pool(db_url, min_size=1, max_size=2, init=init_connection) for _ in range(3)]
    try:
        schedulers = [BroadcastScheduler(p, lambda: port, interval_s=1) for p in pools]
        hourly = await _recurring(db, workspace, "0 * * * *", utc(2026, 6, 1, 7))  # 09:00 in Paris
        for minute in range(0, 60 * 4, 7):  # 09:00 .. 12:59 Paris time, every 7 minutes
            now = utc(2026, 6, 1, 7) + timedelta(minutes=minute, seconds=0.5)
            made = await asyncio.gather(*(s.tick(now) for s in schedulers))
            assert sum(len(m) for m in made) <= 1
        assert await _runs(db, hourly) == [utc(2026, 6, 1, h) for h in (7, 8, 9, 10)]
        assert await db.fetchval("SELECT next_run_at FROM broadcasts WHERE id = $1", hourly) == utc(2026, 6, 1, 11)
        started = [c for c in port.calls if c[0] == "start"]
        assert [c[2] for c in started] == [str(hourly)] * 4
        assert len({c[3] for c in started}) == 4  # the actor was asked once for each run
    finally:
        for p in pools:
            await p.close()


async def test_after_an_outage_only_the_latest_missed_occurrence_runs_once(db: asyncpg.Pool,
                                                                          workspace: NewWorkspace) -> None:
    port = RecordedCommands()
    schedulers = [BroadcastScheduler(db, lambda: port, interval_s=1) for _ in range(3)]
    hourly = await _recurring(db, workspace, "0 * * * *", utc(2026, 6, 1, 7))
    # down from 08:30 to 14:10 UTC: six occurrences (07:00 .. 14:00) were missed
    now = utc(2026, 6, 1, 14, 10)
    await asyncio.gather(*(s.tick(now) for s in schedulers))
    await asyncio.gather(*(s.tick(now + timedelta(seconds=1)) for s in schedulers))
    assert await _runs(db, hourly) == [utc(2026, 6, 1, 14)]
    assert await db.fetchval("SELECT next_run_at FROM broadcasts WHERE id = $1", hourly) == utc(2026, 6, 1, 15)
    assert len(port.calls) == 1


async def test_paused_and_cancelled_broadcasts_have_no_due_occurrence(db: asyncpg.Pool,
                                                                     workspace: NewWorkspace) -> None:
    port = RecordedCommands()
    scheduler = BroadcastScheduler(db, lambda: port, interval_s=1)
    paused = await _recurring(db, workspace, "0 * * * *", utc(2026, 6, 1, 7), status="paused")
    cancelled = await _recurring(db, workspace, "0 * * * *", utc(2026, 6, 1, 7), status="cancelled")
    assert await scheduler.tick(utc(2026, 6, 1, 9)) == []
    assert await _runs(db, paused) == [] and await _runs(db, cancelled) == []


async def test_a_run_whose_start_failed_is_asked_for_again(db: asyncpg.Pool, workspace: NewWorkspace) -> None:
    port = RecordedCommands()
    port.fail_start = True
    scheduler = BroadcastScheduler(db, lambda: port, interval_s=1, pending_retry_s=30)
    hourly = await _recurring(db, workspace, "0 * * * *", utc(2026, 6, 1, 7))
    [run_id] = await scheduler.tick(utc(2026, 6, 1, 7, 0, 1))
    assert port.calls == [("start", str(workspace.app_id), str(hourly), str(run_id))]
    await db.execute("UPDATE broadcasts SET next_run_at = NULL WHERE id = $1", hourly)  # no further occurrence
    later = datetime.now(UTC) + timedelta(seconds=31)  # the run (created now) has been pending 31 s
    port.fail_start = False
    await scheduler.tick(later)
    await scheduler.tick(later)  # asked once per retry period, not on every tick
    assert port.calls[1:] == [("start", str(workspace.app_id), str(hourly), str(run_id))]
    await db.execute("UPDATE broadcast_runs SET status = 'snapshotting' WHERE id = $1", run_id)
    await scheduler.tick(later + timedelta(seconds=60))
    assert len(port.calls) == 2  # started: nothing more to ask


async def test_a_scheduler_without_the_actor_wired_keeps_the_run_for_later(db: asyncpg.Pool,
                                                                          workspace: NewWorkspace) -> None:
    class Unwired:
        broadcast_commands: RecordedCommands

    ctx = Unwired()
    scheduler = BroadcastScheduler(db, lambda: ctx.broadcast_commands, interval_s=1)
    hourly = await _recurring(db, workspace, "0 * * * *", utc(2026, 6, 1, 7))
    [run_id] = await scheduler.tick(utc(2026, 6, 1, 7, 0, 1))  # the start call fails: logged, not raised
    assert await db.fetchval("SELECT status FROM broadcast_runs WHERE id = $1", run_id) == "pending"
    assert await _runs(db, hourly) == [utc(2026, 6, 1, 7)]
