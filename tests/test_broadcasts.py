"""/admin/api/broadcasts on a real server: drafts, the state machine and its 409s, every 422 of the
contract with nothing stored, other workspaces' ids (404), permissions (403), cron previews, and
what a run did (runs, stats, recipients, CSV).

The server runs with a test double of the actor's port (tests/broadcast_port.py): it notes each
call and moves the status as the actor answers, so what the routes write and ask is what is checked.
"""

from __future__ import annotations

import csv
import io
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.request import Request, urlopen
from zoneinfo import ZoneInfo

import asyncpg
import pytest
import redis.asyncio as aioredis

from server.dev.embedded import EmbeddedServices
from server.platform.db.pool import init_connection
from tests.admin_helpers import bearer, call, invite_and_join, signup
from tests.broadcast_port import CALLS
from tests.conftest import cloned_database, module_server, run_sync
from tests.support import ServerProcess, http

REDIS_DB = 12


@pytest.fixture(scope="module")
def bc_db(pg_admin_url: str, template_db: str) -> Iterator[str]:
    with cloned_database(pg_admin_url, template_db, f"broadcasts_{os.getpid()}") as url:
        yield url


@pytest.fixture(scope="module")
def bc_server(services: EmbeddedServices, bc_db: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[
        ServerProcess]:
    with module_server(services, bc_db, tmp_path_factory.mktemp("broadcasts"), redis_db=REDIS_DB,
                       module="tests.broadcast_port", REPLICA_ID="broadcasts-1", BROADCAST_MAX_RATE="1000",
                       BROADCAST_SCHEDULER_INTERVAL="0.2") as server:
        yield server


@pytest.fixture
async def pool(bc_db: str) -> Any:
    p = await asyncpg.create_pool(bc_db, min_size=1, max_size=4, init=init_connection)
    yield p
    await p.close()


@pytest.fixture
def owner(bc_server: ServerProcess) -> dict[str, Any]:
    return signup(bc_server, app_name="Broadcaster")


def _draft(**over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"name": "Spring release",
                            "message": {"text": "Hi {{user.name|there}}, see what's new",
                                        "button_url": "https://example.com/new", "button_label": "See what's new"},
                            "audience": {"filter": {"all": [{"field": "device.platform", "op": "eq",
                                                             "value": "ios"}]}}}
    body.update(over)
    return body


def _create(server: ServerProcess, token: str, **over: Any) -> dict[str, Any]:
    status, created = call(server, "POST", "/admin/api/broadcasts", token, _draft(**over))
    assert status == 201, created
    return dict(created)


def _path(broadcast: dict[str, Any] | str, suffix: str = "") -> str:
    bid = broadcast if isinstance(broadcast, str) else broadcast["id"]
    return f"/admin/api/broadcasts/{bid}{suffix}"


def _calls(server: ServerProcess) -> list[list[str]]:
    """What the actor's port was asked, in order (tests/broadcast_port.py)."""
    async def read() -> list[list[str]]:
        r = aioredis.from_url(server.env["REDIS_URL"], decode_responses=True)
        try:
            return [c.split() for c in await r.lrange(CALLS, 0, -1)]
        finally:
            await r.aclose()

    return run_sync(read())


async def _events(pool: asyncpg.Pool, app_id: str) -> list[str]:
    rows = await pool.fetch("SELECT type FROM domain_events WHERE app_id = $1 AND type LIKE 'broadcast.%' "
                            "ORDER BY seq", uuid.UUID(app_id))
    return [r["type"] for r in rows]


# -- drafts -----------------------------------------------------------------------------------------

async def test_a_draft_is_created_read_listed_edited_duplicated_and_deleted(bc_server: ServerProcess, owner,
                                                                           pool: asyncpg.Pool) -> None:
    token = owner["access_token"]
    created = _create(bc_server, token)
    assert created["status"] == "draft" and created["rate_per_s"] == 100  # BROADCAST_DEFAULT_RATE
    assert created["message"]["sender_admin_id"] == owner["admin"]["id"]  # the caller by default
    assert created["schedule"] == {"kind": "now"} and created["next_run_at"] is None
    assert created["audience"] == {"filter": {"all": [{"field": "device.platform", "op": "eq", "value": "ios"}]}}
    assert created["stats"] == dict.fromkeys(("targeted", "sent", "delivered", "read", "replied", "clicked",
                                              "failed"), 0)
    assert created["current_run"] is None and created["created_by"] == owner["admin"]["id"]
    assert call(bc_server, "GET", _path(created), token) == (200, created)

    status, patched = call(bc_server, "PATCH", _path(created), token, {
        "name": "Spring release v2", "rate_per_s": 250,
        "schedule": {"kind": "recurring", "cron": "0 9 * * 1", "timezone": "Europe/Paris", "end_at": None}})
    assert status == 200, patched
    assert (patched["name"], patched["rate_per_s"], patched["message"]) == (
        "Spring release v2", 250, created["message"])
    assert patched["schedule"] == {"kind": "recurring", "cron": "0 9 * * 1", "timezone": "Europe/Paris",
                                   "end_at": None, "every_occurrence": False}

    status, copy = call(bc_server, "POST", _path(created, "/duplicate"), token)
    assert status == 201 and copy["status"] == "draft" and copy["id"] != created["id"]
    assert (copy["name"], copy["schedule"], copy["rate_per_s"]) == ("Spring release v2 (copy)",
                                                                    patched["schedule"], 250)

    status, listed = call(bc_server, "GET", "/admin/api/broadcasts", token)
    assert status == 200 and [b["id"] for b in listed["broadcasts"]] == [copy["id"], created["id"]]
    assert listed["broadcasts"][1]["schedule_kind"] == "recurring" and listed["next_cursor"] is None
    status, page = call(bc_server, "GET", "/admin/api/broadcasts?limit=1", token)
    assert [b["id"] for b in page["broadcasts"]] == [copy["id"]] and page["next_cursor"]
    status, rest = call(bc_server, "GET", f"/admin/api/broadcasts?limit=1&cursor={page['next_cursor']}", token)
    assert [b["id"] for b in rest["broadcasts"]] == [created["id"]] and rest["next_cursor"] is None
    assert call(bc_server, "GET", "/admin/api/broadcasts?status=scheduled", token)[1]["broadcasts"] == []

    assert call(bc_server, "DELETE", _path(copy), token) == (200, {"id": copy["id"], "deleted": True})
    assert call(bc_server, "GET", _path(copy), token)[0] == 404
    assert await _events(pool, owner["app"]["id"]) == ["broadcast.created", "broadcast.updated",
                                                       "broadcast.created", "broadcast.deleted"]


async def test_a_segment_audience_must_be_a_segment_of_the_workspace(bc_server: ServerProcess, owner,
                                                                    pool: asyncpg.Pool) -> None:
    token = owner["access_token"]
    other = signup(bc_server, app_name="Other")
    ours, theirs = [await pool.fetchval(
        """INSERT INTO segments (app_id, name, filter) VALUES ($1, 'ios', '{"all": []}') RETURNING id""",
        uuid.UUID(s["app"]["id"])) for s in (owner, other)]
    created = _create(bc_server, token, audience={"segment_id": str(ours)})
    assert created["audience"] == {"segment_id": str(ours)}
    for segment in (theirs, uuid.uuid4()):
        status, body = call(bc_server, "POST", "/admin/api/broadcasts", token,
                            _draft(audience={"segment_id": str(segment)}))
        assert status == 422 and body["error"]["code"] == "segment_not_found", body
        assert body["error"]["details"]["path"] == "$.audience.segment_id"
    # a segment deleted after the draft was saved: scheduling it names the field
    await pool.execute("DELETE FROM segments WHERE id = $1", ours)
    status, body = call(bc_server, "POST", _path(created, "/send-now"), token)
    assert status == 422 and body["error"]["code"] == "segment_not_found", body
    assert call(bc_server, "GET", _path(created), token)[1]["status"] == "draft"


async def test_the_sender_must_be_an_enabled_teammate(bc_server: ServerProcess, owner) -> None:
    token = owner["access_token"]
    agent = invite_and_join(bc_server, token, "agent")
    created = _create(bc_server, token, message={"text": "From the agent", "sender_admin_id": agent["admin"]["id"]})
    assert created["message"] == {"text": "From the agent", "sender_admin_id": agent["admin"]["id"],
                                  "button_url": None, "button_label": None}
    other = signup(bc_server, app_name="Other")
    for sender in (other["admin"]["id"], str(uuid.uuid4())):
        status, body = call(bc_server, "POST", "/admin/api/broadcasts", token,
                            _draft(message={"text": "x", "sender_admin_id": sender}))
        assert status == 422 and body["error"]["code"] == "sender_not_teammate", body
        assert body["error"]["details"]["path"] == "$.message.sender_admin_id"


def _bad_bodies() -> list[tuple[dict[str, Any], str]]:
    """(body, the details.path of its 422)."""
    future = (datetime.now(UTC) + timedelta(days=30)).strftime("%Y-%m-%dT%H:%M")
    past = (datetime.now(ZoneInfo("Europe/Paris")) - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M")
    msg = _draft()["message"]
    return [
        (_draft(schedule={"kind": "recurring", "cron": "61 * * * *", "timezone": "UTC"}), "$.schedule.cron"),
        (_draft(schedule={"kind": "recurring", "cron": "0 9 * * 1 *", "timezone": "UTC"}), "$.schedule.cron"),
        (_draft(schedule={"kind": "recurring", "cron": "0 9 * * 1", "timezone": "Mars/Olympus"}),
         "$.schedule.timezone"),
        (_draft(schedule={"kind": "once", "at": future, "timezone": "Nowhere/City"}), "$.schedule.timezone"),
        (_draft(schedule={"kind": "once", "at": past, "timezone": "Europe/Paris"}), "$.schedule.at"),
        (_draft(schedule={"kind": "once", "at": "2026-12-24 09:00", "timezone": "UTC"}), "$.schedule.at"),
        (_draft(schedule={"kind": "once", "at": future + "Z", "timezone": "UTC"}), "$.schedule.at"),
        (_draft(schedule={"kind": "recurring", "cron": "*/10 * * * *", "timezone": "Europe/Paris"}),
         "$.schedule.cron"),  # under BROADCAST_MIN_INTERVAL (1 hour)
        (_draft(schedule={"kind": "recurring", "cron": "0 9 * * *", "timezone": "UTC",
                          "end_at": "2020-01-01T00:00:00Z"}), "$.schedule.end_at"),
        (_draft(schedule={"kind": "recurring", "cron": "0 9 * * *", "timezone": "UTC",
                          "end_at": "2099-01-01T00:00:00"}), "$.schedule.end_at"),  # no zone
        (_draft(schedule={"kind": "weekly"}), "$.schedule.kind"),
        (_draft(schedule={"kind": "now", "at": future}), "$.schedule"),  # msgspec names the object
        (_draft(audience={"filter": {"all": [{"field": "email", "op": "exists", "value": True},
                                             {"field": "shoe_size", "op": "eq", "value": 42}]}}),
         "$.audience.filter.all[1].field"),
        (_draft(audience={"filter": {"any": [{"all": [{"field": "device.platform", "op": "gt", "value": "x"}]}]}}),
         "$.audience.filter.any[0].all[0].op"),
        (_draft(audience={}), "$.audience"),
        (_draft(audience={"segment_id": str(uuid.uuid4()), "filter": {"all": []}}), "$.audience"),
        (_draft(audience={"segment_id": "not-a-uuid"}), "$.audience.segment_id"),
        (_draft(message={**msg, "text": ""}), "$.message.text"),
        (_draft(message={**msg, "text": "   "}), "$.message.text"),
        (_draft(message={**msg, "text": "x" * 5001}), "$.message.text"),
        (_draft(message={**msg, "text": "nul \u0000"}), "$.message.text"),
        (_draft(message={**msg, "button_url": "javascript:alert(1)"}), "$.message.button_url"),
        (_draft(message={**msg, "button_url": "/relative/path"}), "$.message.button_url"),
        (_draft(message={**msg, "button_url": "http://[::1/x"}), "$.message.button_url"),
        (_draft(message={**msg, "button_url": "https://e.co:port/x"}), "$.message.button_url"),
        (_draft(message={**msg, "button_url": "https://e.co/a b"}), "$.message.button_url"),
        (_draft(message={**msg, "button_url": "https://e.co/" + "x" * 2048}), "$.message.button_url"),
        (_draft(message={**msg, "button_label": "l" * 41}), "$.message.button_label"),
        (_draft(message={"text": "x", "button_label": "Go"}), "$.message.button_url"),
        (_draft(message={"text": "x", "button_url": "https://e.co"}), "$.message.button_label"),
        (_draft(rate_per_s=0), "$.rate_per_s"),
        (_draft(rate_per_s=1001), "$.rate_per_s"),  # over BROADCAST_MAX_RATE
        (_draft(rate_per_s="fast"), "$.rate_per_s"),
        (_draft(name=""), "$.name"),
        (_draft(name="n" * 201), "$.name"),
        (_draft(colour="red"), "$"),
    ]


async def test_each_bad_input_is_a_422_naming_the_field_and_nothing_is_stored(bc_server: ServerProcess, owner,
                                                                             pool: asyncpg.Pool) -> None:
    token = owner["access_token"]
    draft = _create(bc_server, token)
    before = await pool.fetchval("SELECT count(*) FROM domain_events")
    row_before = await pool.fetchrow("SELECT * FROM broadcasts WHERE id = $1", uuid.UUID(draft["id"]))
    for body, path in _bad_bodies():
        status, out = call(bc_server, "POST", "/admin/api/broadcasts", token, body)
        assert status == 422 and out["error"]["details"]["path"] == path, (body, out)
        # the same fields on a draft's PATCH
        patch = {k: v for k, v in body.items() if k in ("schedule", "audience", "message", "rate_per_s", "name")
                 and v != _draft().get(k)} or {"colour": "red"}
        status, out = call(bc_server, "PATCH", _path(draft), token, patch)
        assert status == 422 and out["error"]["details"]["path"] == path, (patch, out)
    assert await pool.fetchval("SELECT count(*) FROM broadcasts WHERE app_id = $1",
                               uuid.UUID(owner["app"]["id"])) == 1
    assert await pool.fetchrow("SELECT * FROM broadcasts WHERE id = $1", uuid.UUID(draft["id"])) == row_before
    assert await pool.fetchval("SELECT count(*) FROM domain_events") == before


def test_codes_of_the_schedule_refusals(bc_server: ServerProcess, owner) -> None:
    token = owner["access_token"]
    cases = [({"kind": "recurring", "cron": "61 * * * *", "timezone": "UTC"}, "invalid_cron"),
             ({"kind": "recurring", "cron": "0 9 * * 1", "timezone": "Mars/Olympus"}, "invalid_timezone"),
             ({"kind": "once", "at": "2001-01-01T09:00", "timezone": "UTC"}, "schedule_in_past"),
             ({"kind": "recurring", "cron": "*/10 * * * *", "timezone": "UTC"}, "interval_too_short")]
    for schedule, code in cases:
        status, out = call(bc_server, "POST", "/admin/api/broadcasts", token, _draft(schedule=schedule))
        assert (status, out["error"]["code"]) == (422, code), out
    status, out = call(bc_server, "POST", "/admin/api/broadcasts", token, _draft(rate_per_s=5000))
    assert (status, out["error"]["code"], out["error"]["details"]["max"]) == (422, "rate_out_of_range", 1000)


# -- the state machine ------------------------------------------------------------------------------

def _status(server: ServerProcess, token: str, broadcast: dict[str, Any]) -> str:
    return str(call(server, "GET", _path(broadcast), token)[1]["status"])


def _refused(server: ServerProcess, token: str, broadcast: dict[str, Any], method: str, suffix: str,
             code: str, body: Any = None) -> None:
    status, out = call(server, method, _path(broadcast, suffix), token, body)
    assert (status, out["error"]["code"]) == (409, code), (suffix, out)


async def test_schedule_once_then_pause_resume_and_cancel_are_the_only_changes(bc_server: ServerProcess, owner,
                                                         pool: asyncpg.Pool) -> None:
    token = owner["access_token"]
    at = (datetime.now(ZoneInfo("Europe/Paris")) + timedelta(days=3)).replace(second=0, microsecond=0)
    draft = _create(bc_server, token, schedule={"kind": "once", "at": at.strftime("%Y-%m-%dT%H:%M"),
                                                "timezone": "Europe/Paris"})
    for suffix in ("/pause", "/resume", "/cancel"):
        _refused(bc_server, token, draft, "POST", suffix, "invalid_transition")
    status, scheduled = call(bc_server, "POST", _path(draft, "/schedule"), token)
    assert status == 200 and scheduled["status"] == "scheduled", scheduled
    assert datetime.fromisoformat(scheduled["next_run_at"]) == at
    _refused(bc_server, token, draft, "PATCH", "", "broadcast_not_draft", {"name": "late edit"})
    _refused(bc_server, token, draft, "DELETE", "", "broadcast_not_draft")
    _refused(bc_server, token, draft, "POST", "/schedule", "broadcast_not_draft")
    _refused(bc_server, token, draft, "POST", "/send-now", "broadcast_not_draft")
    _refused(bc_server, token, draft, "POST", "/resume", "invalid_transition")
    assert call(bc_server, "POST", _path(draft, "/pause"), token)[1]["status"] == "paused"
    _refused(bc_server, token, draft, "POST", "/pause", "invalid_transition")
    assert call(bc_server, "POST", _path(draft, "/resume"), token)[1]["status"] == "scheduled"
    status, cancelled = call(bc_server, "POST", _path(draft, "/cancel"), token)
    assert status == 200 and cancelled["status"] == "cancelled", cancelled
    assert ["cancel", owner["app"]["id"], draft["id"]] in _calls(bc_server)
    for suffix in ("/pause", "/resume", "/cancel"):
        _refused(bc_server, token, draft, "POST", suffix, "invalid_transition")
    status, copy = call(bc_server, "POST", _path(draft, "/duplicate"), token)
    assert status == 201 and copy["status"] == "draft" and copy["next_run_at"] is None
    assert await _events(pool, owner["app"]["id"]) == ["broadcast.created", "broadcast.scheduled",
                                                       "broadcast.created"]


async def test_send_now_makes_a_run_asks_the_actor_and_pause_resume_cancel_follow(bc_server: ServerProcess, owner,
                                                                                 pool: asyncpg.Pool) -> None:
    token = owner["access_token"]
    draft = _create(bc_server, token)
    status, sending = call(bc_server, "POST", _path(draft, "/send-now"), token)
    assert status == 200 and sending["status"] == "sending", sending
    run = sending["current_run"]
    assert run["status"] == "pending" and run["targeted"] == 0 and sending["next_run_at"] is None
    assert ["start", owner["app"]["id"], draft["id"], run["id"]] in _calls(bc_server)
    status, runs = call(bc_server, "GET", _path(draft, "/runs"), token)
    assert status == 200 and [r["id"] for r in runs["runs"]] == [run["id"]]
    _refused(bc_server, token, draft, "POST", "/send-now", "broadcast_not_draft")
    _refused(bc_server, token, draft, "POST", "/resume", "invalid_transition")
    assert call(bc_server, "POST", _path(draft, "/pause"), token)[1]["status"] == "paused"
    _refused(bc_server, token, draft, "POST", "/pause", "invalid_transition")
    assert call(bc_server, "POST", _path(draft, "/resume"), token)[1]["status"] == "sending"
    assert call(bc_server, "POST", _path(draft, "/cancel"), token)[1]["status"] == "cancelled"
    assert [c[0] for c in _calls(bc_server) if c[2] == draft["id"]] == ["start", "pause", "resume", "cancel"]
    assert await _events(pool, owner["app"]["id"]) == ["broadcast.created", "broadcast.status_changed"]


def test_a_recurring_broadcast_sent_now_keeps_its_next_occurrence(bc_server: ServerProcess, owner) -> None:
    token = owner["access_token"]
    draft = _create(bc_server, token, schedule={"kind": "recurring", "cron": "0 9 * * 1",
                                                "timezone": "America/New_York"})
    status, sending = call(bc_server, "POST", _path(draft, "/send-now"), token)
    assert status == 200 and sending["status"] == "sending"
    following = datetime.fromisoformat(sending["next_run_at"]).astimezone(ZoneInfo("America/New_York"))
    assert (following.weekday(), following.hour, following.minute) == (0, 9, 0)
    assert following - datetime.now(UTC) <= timedelta(days=7)


def test_scheduling_a_recurring_draft_sets_the_first_local_occurrence(bc_server: ServerProcess, owner) -> None:
    token = owner["access_token"]
    end_at = (datetime.now(UTC) + timedelta(days=30)).replace(microsecond=0)
    draft = _create(bc_server, token, schedule={"kind": "recurring", "cron": "30 9 * * 1",
                                                "timezone": "Europe/Paris", "end_at": end_at.isoformat()})
    assert datetime.fromisoformat(draft["schedule"]["end_at"]) == end_at
    status, scheduled = call(bc_server, "POST", _path(draft, "/schedule"), token)
    assert status == 200 and scheduled["status"] == "scheduled"
    first = datetime.fromisoformat(scheduled["next_run_at"])
    local = first.astimezone(ZoneInfo("Europe/Paris"))
    assert (local.weekday(), local.hour, local.minute) == (0, 9, 30)
    assert timedelta(0) < first - datetime.now(UTC) <= timedelta(days=7)
    status, listed = call(bc_server, "GET", "/admin/api/broadcasts?status=scheduled", token)
    assert [(b["id"], b["next_run_at"]) for b in listed["broadcasts"]] == [(draft["id"], scheduled["next_run_at"])]


async def test_a_once_time_that_passed_while_in_draft_cannot_be_scheduled(bc_server: ServerProcess, owner,
                                                                         pool: asyncpg.Pool) -> None:
    token = owner["access_token"]
    draft = _create(bc_server, token, schedule={"kind": "once", "at": "2030-01-01T09:00", "timezone": "UTC"})
    await pool.execute("""UPDATE broadcasts SET schedule = '{"kind": "once", "at": "2001-01-01T09:00",
                          "timezone": "UTC"}' WHERE id = $1""", uuid.UUID(draft["id"]))  # time passed
    status, out = call(bc_server, "POST", _path(draft, "/schedule"), token)
    assert (status, out["error"]["code"], out["error"]["details"]["path"]) == (422, "schedule_in_past",
                                                                               "$.schedule.at")
    assert _status(bc_server, token, draft) == "draft"


def test_scheduling_now_runs_it_on_the_next_scheduler_tick(bc_server: ServerProcess, owner) -> None:
    import time

    token = owner["access_token"]
    draft = _create(bc_server, token)
    status, scheduled = call(bc_server, "POST", _path(draft, "/schedule"), token)
    assert status == 200 and scheduled["status"] == "scheduled" and scheduled["next_run_at"]
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        runs = call(bc_server, "GET", _path(draft, "/runs"), token)[1]["runs"]
        if runs:
            break
        time.sleep(0.1)
    assert len(runs) == 1, runs
    assert ["start", owner["app"]["id"], draft["id"], runs[0]["id"]] in _calls(bc_server)
    assert call(bc_server, "GET", _path(draft), token)[1]["next_run_at"] is None


# -- cron preview -----------------------------------------------------------------------------------

def test_cron_preview_lists_the_next_times_in_utc_and_local(bc_server: ServerProcess, owner) -> None:
    token = owner["access_token"]
    status, preview = call(bc_server, "POST", "/admin/api/broadcasts/cron-preview", token,
                           {"cron": "0 9 * * 1", "timezone": "America/New_York"})
    assert status == 200 and len(preview["times"]) == 5 and preview["meets_min_interval"] is True
    status, year = call(bc_server, "POST", "/admin/api/broadcasts/cron-preview", token,
                        {"cron": "0  9 * * 1", "timezone": "America/New_York", "count": 50})
    assert status == 200 and year["cron"] == "0 9 * * 1" and len(year["times"]) == 50
    assert {t["local"][10:19] for t in year["times"]} == {"T09:00:00"}
    assert {t["utc"][10:] for t in year["times"]} == {"T13:00:00Z", "T14:00:00Z"}  # a DST change in a year
    for t in year["times"]:
        local, at = datetime.fromisoformat(t["local"]), datetime.fromisoformat(t["utc"].replace("Z", "+00:00"))
        assert local == at and local.weekday() == 0
    status, fast = call(bc_server, "POST", "/admin/api/broadcasts/cron-preview", token,
                        {"cron": "*/15 * * * *", "timezone": "UTC", "count": 2})
    assert status == 200 and fast["meets_min_interval"] is False and fast["min_interval_s"] == 3600
    for body, path in (({"cron": "0 9 * *", "timezone": "UTC"}, "$.cron"),
                       ({"cron": "0 25 * * *", "timezone": "UTC"}, "$.cron"),
                       ({"cron": "0 9 * * 1", "timezone": "Atlantis/Capital"}, "$.timezone"),
                       ({"cron": "0 9 * * 1", "timezone": "UTC", "count": 51}, "$.count")):
        status, out = call(bc_server, "POST", "/admin/api/broadcasts/cron-preview", token, body)
        assert status == 422 and out["error"]["details"]["path"] == path, out


# -- runs, stats, recipients ------------------------------------------------------------------------

async def _sent_run(pool: asyncpg.Pool, app_id: str, broadcast_id: str, users: int) -> uuid.UUID:
    """A run as the actor and the stats consumer leave it: recipients sent, some delivered and read."""
    app = uuid.UUID(app_id)
    run_id: uuid.UUID = await pool.fetchval(
        """INSERT INTO broadcast_runs (broadcast_id, app_id, scheduled_for, status, snapshot_done, sent_through,
                                       started_at, finished_at)
           VALUES ($1, $2, now() - interval '1 hour', 'completed', true, $3, now() - interval '1 hour', now())
           RETURNING id""", uuid.UUID(broadcast_id), app, users)
    for n in range(1, users + 1):
        name = "=HYPERLINK(\"evil\")" if n == 1 else f"User {n}"
        user_id = await pool.fetchval(
            "INSERT INTO end_users (app_id, external_id, name, email) VALUES ($1, $2, $3, $4) RETURNING id",
            app, f"u-{uuid.uuid4().hex[:8]}", name, f"u{n}@example.test")
        state = 3 if n <= 2 else 2 if n <= 5 else 1
        await pool.execute(
            """INSERT INTO broadcast_recipients (run_id, ord, user_id, state, sent_at, delivered_at, read_at,
                                                 clicked_at)
               VALUES ($1, $2::bigint, $3, $4::smallint, now(), CASE WHEN $4 >= 2 THEN now() END,
                       CASE WHEN $4 >= 3 THEN now() END, CASE WHEN $2 = 1 THEN now() END)""",
            run_id, n, user_id, state)
    await pool.execute(
        """INSERT INTO broadcast_stats (run_id, broadcast_id, app_id, targeted, sent, delivered, read, clicked)
           VALUES ($1, $2, $3, $4, $4, 5, 2, 1)""", run_id, uuid.UUID(broadcast_id), app, users)
    await pool.execute(
        """INSERT INTO broadcast_stats_minutes (run_id, minute, sent, delivered, read, clicked)
           VALUES ($1, date_trunc('minute', now()) - interval '2 minutes', $2, 3, 0, 0),
                  ($1, date_trunc('minute', now()) - interval '1 minute', 0, 2, 2, 1)""", run_id, users)
    return run_id


def _csv(server: ServerProcess, token: str, path: str) -> tuple[dict[str, str], list[list[str]]]:
    with urlopen(Request(server.url + path, headers=bearer(token)), timeout=10) as resp:
        return dict(resp.headers.items()), list(csv.reader(io.StringIO(resp.read().decode())))


async def test_runs_stats_recipients_and_csv_show_what_a_run_did(bc_server: ServerProcess, owner,
                                                                 pool: asyncpg.Pool) -> None:
    token = owner["access_token"]
    draft = _create(bc_server, token)
    assert call(bc_server, "GET", _path(draft, "/recipients"), token) == (
        200, {"run_id": None, "recipients": [], "next_cursor": None})
    call(bc_server, "POST", _path(draft, "/send-now"), token)
    older = await _sent_run(pool, owner["app"]["id"], draft["id"], 8)
    await pool.execute("UPDATE broadcast_runs SET scheduled_for = now() - interval '2 hours' WHERE id = $1", older)

    status, stats = call(bc_server, "GET", _path(draft, "/stats"), token)
    assert status == 200, stats
    assert stats["totals"] == {"targeted": 8, "sent": 8, "delivered": 5, "read": 2, "replied": 0, "clicked": 1,
                               "failed": 0}
    assert [(f["step"], f["count"], f["rate"]) for f in stats["funnel"]] == [
        ("targeted", 8, 1.0), ("sent", 8, 1.0), ("delivered", 5, 0.625), ("read", 2, 0.25), ("clicked", 1, 0.125),
        ("replied", 0, 0.0)]
    assert [(m["sent"], m["delivered"], m["read"]) for m in stats["minutes"]] == [(8, 3, 0), (0, 2, 2)]
    status, one = call(bc_server, "GET", _path(draft, f"/stats?run_id={older}"), token)
    assert status == 200 and one["run_id"] == str(older) and one["totals"] == stats["totals"]

    runs = call(bc_server, "GET", _path(draft, "/runs"), token)[1]["runs"]
    assert [r["id"] == str(older) for r in runs] == [False, True]  # newest occurrence first
    assert runs[1]["stats"]["sent"] == 8 and runs[1]["status"] == "completed" and runs[1]["sent_through"] == 8
    page1 = call(bc_server, "GET", _path(draft, "/runs?limit=1"), token)[1]
    page2 = call(bc_server, "GET", _path(draft, f"/runs?limit=1&cursor={page1['next_cursor']}"), token)[1]
    assert [r["id"] for r in page1["runs"] + page2["runs"]] == [r["id"] for r in runs]

    # the latest run (send-now's, not snapshotted here) has no recipients; ?run_id names the other
    assert call(bc_server, "GET", _path(draft, "/recipients"), token)[1]["recipients"] == []
    seen: list[dict[str, Any]] = []
    cursor = ""
    while True:
        status, page = call(bc_server, "GET", _path(draft, f"/recipients?run_id={older}&limit=3{cursor}"), token)
        assert status == 200 and page["run_id"] == str(older), page
        seen += page["recipients"]
        if not page["next_cursor"]:
            break
        cursor = f"&cursor={page['next_cursor']}"
    assert [r["ord"] for r in seen] == list(range(1, 9))
    assert [r["state"] for r in seen] == ["read"] * 2 + ["delivered"] * 3 + ["sent"] * 3
    assert seen[0]["delivery_id"] == f"{older}.1" and seen[0]["clicked_at"] and seen[1]["clicked_at"] is None
    status, read = call(bc_server, "GET", _path(draft, f"/recipients?run_id={older}&state=read"), token)
    assert [r["ord"] for r in read["recipients"]] == [1, 2]

    headers, rows = _csv(bc_server, token, _path(draft, "/recipients.csv"))
    assert headers["content-type"].startswith("text/csv") and "attachment" in headers["content-disposition"]
    assert rows[0][:3] == ["delivery_id", "run_id", "ord"] and len(rows) == 9
    assert [r[2] for r in rows[1:]] == [str(n) for n in range(1, 9)]
    assert rows[1][5] == "'=HYPERLINK(\"evil\")"  # never a formula in a spreadsheet
    assert len(_csv(bc_server, token, _path(draft, "/recipients.csv?state=delivered"))[1]) == 4


@pytest.mark.parametrize("query", ["/recipients?state=lost", "/recipients?cursor=abc", "/recipients?cursor=-1",
                                   "/recipients?run_id=nope", "/recipients?limit=0", "/recipients?limit=501",
                                   "/runs?cursor=x", "/runs?limit=0", "/stats?run_id=x",
                                   "/recipients.csv?state=x", "/recipients.csv?run_id=1"])
def test_bad_query_parameters_are_422(bc_server: ServerProcess, owner, query: str) -> None:
    token = owner["access_token"]
    draft = _create(bc_server, token)
    status, out = call(bc_server, "GET", _path(draft, query), token)
    assert status == 422 and out["error"]["code"] == "invalid_query", out


def test_a_run_of_another_broadcast_is_404(bc_server: ServerProcess, owner) -> None:
    token = owner["access_token"]
    a, b = _create(bc_server, token), _create(bc_server, token)
    run = call(bc_server, "POST", _path(a, "/send-now"), token)[1]["current_run"]["id"]
    for suffix in (f"/stats?run_id={run}", f"/recipients?run_id={run}", f"/recipients.csv?run_id={run}"):
        status, out = call(bc_server, "GET", _path(b, suffix), token)
        assert (status, out["error"]["code"]) == (404, "run_not_found"), out


# -- tenancy and permissions ------------------------------------------------------------------------

ROUTES = [("GET", ""), ("PATCH", ""), ("DELETE", ""), ("POST", "/schedule"), ("POST", "/send-now"),
          ("POST", "/pause"), ("POST", "/resume"), ("POST", "/cancel"), ("POST", "/duplicate"), ("GET", "/stats"),
          ("GET", "/runs"), ("GET", "/recipients"), ("GET", "/recipients.csv")]


async def test_another_workspaces_broadcasts_are_404_and_unchanged(bc_server: ServerProcess, owner,
                                                                   pool: asyncpg.Pool) -> None:
    ours = _create(bc_server, owner["access_token"])
    other = signup(bc_server, app_name="Rival")
    before = await pool.fetchrow("SELECT * FROM broadcasts WHERE id = $1", uuid.UUID(ours["id"]))
    for method, suffix in ROUTES:
        body = {"name": "stolen"} if method == "PATCH" else None
        status, out = call(bc_server, method, _path(ours, suffix), other["access_token"], body)
        assert (status, out["error"]["code"]) == (404, "broadcast_not_found"), (method, suffix, out)
    for fake in (str(uuid.uuid4()), "not-a-uuid"):
        assert call(bc_server, "GET", _path(fake), owner["access_token"])[0] == 404
    assert call(bc_server, "GET", "/admin/api/broadcasts", other["access_token"])[1]["broadcasts"] == []
    assert await pool.fetchrow("SELECT * FROM broadcasts WHERE id = $1", uuid.UUID(ours["id"])) == before
    assert await pool.fetchval("SELECT count(*) FROM broadcast_runs WHERE broadcast_id = $1",
                               uuid.UUID(ours["id"])) == 0


async def test_without_broadcasts_write_changes_are_403(bc_server: ServerProcess, owner,
                                                        pool: asyncpg.Pool) -> None:
    token = owner["access_token"]
    ours = _create(bc_server, token)
    viewer = invite_and_join(bc_server, token, "viewer")["access_token"]  # broadcasts.read only
    before = await pool.fetchrow("SELECT * FROM broadcasts WHERE id = $1", uuid.UUID(ours["id"]))
    writes = [("POST", "/admin/api/broadcasts", _draft())] + [
        (m, _path(ours, s), {"name": "x"} if m == "PATCH" else None) for m, s in ROUTES if m != "GET"]
    for method, path, body in writes:
        status, out = call(bc_server, method, path, viewer, body)
        assert status == 403 and out["error"]["details"] == {"permission": "broadcasts.write"}, (path, out)
    for method, suffix in ROUTES:
        if method == "GET":
            assert call(bc_server, "GET", _path(ours, suffix), viewer)[0] == 200, suffix
    assert call(bc_server, "POST", "/admin/api/broadcasts/cron-preview", viewer,
                {"cron": "0 9 * * 1", "timezone": "UTC"})[0] == 200
    assert await pool.fetchrow("SELECT * FROM broadcasts WHERE id = $1", uuid.UUID(ours["id"])) == before
    assert http("GET", bc_server.url + "/admin/api/broadcasts")[0] == 401


# -- three replicas ---------------------------------------------------------------------------------

def test_three_replicas_ticking_make_one_run_of_a_scheduled_broadcast(start_server) -> None:
    """Every replica runs the scheduler; the occurrence still becomes one run, started once."""
    import time

    replicas = [start_server(module="tests.broadcast_port", BROADCAST_SCHEDULER_INTERVAL="0.02")
                for _ in range(3)]
    owner = signup(replicas[0], app_name="Replicated")
    token = owner["access_token"]
    drafts = [_create(replicas[n % 3], token) for n in range(6)]
    for n, draft in enumerate(drafts):
        status, out = call(replicas[n % 3], "POST", _path(draft, "/schedule"), token)
        assert status == 200, out
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        runs = [call(replicas[0], "GET", _path(d, "/runs"), token)[1]["runs"] for d in drafts]
        if all(runs):
            break
        time.sleep(0.1)
    assert [len(r) for r in runs] == [1] * 6, runs
    time.sleep(0.5)  # more ticks on every replica change nothing
    assert [len(call(replicas[1], "GET", _path(d, "/runs"), token)[1]["runs"]) for d in drafts] == [1] * 6
    starts = [c for c in _calls(replicas[0]) if c[0] == "start"]
    assert sorted(c[2] for c in starts) == sorted(d["id"] for d in drafts)  # each asked for once
