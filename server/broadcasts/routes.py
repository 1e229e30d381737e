"""/admin/api/broadcasts: drafts (CRUD, duplicate), the commands that move a broadcast through its
states, cron previews, and what a broadcast did (runs, stats, recipients, a CSV of them)."""

from __future__ import annotations

import csv
import io
import logging
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

import msgspec
from sanic import Blueprint, Request
from sanic.response import HTTPResponse, raw

from server.auth.rbac import AdminPrincipal, current_admin, requires
from server.broadcasts import schedule as schedules
from server.broadcasts import store
from server.broadcasts.schemas import (
    RECIPIENT_STATES,
    Audience,
    Broadcast,
    BroadcastList,
    BroadcastPatch,
    BroadcastStats,
    CronPreview,
    CronPreviewRequest,
    CronTime,
    Deleted,
    FunnelStep,
    Message,
    NewBroadcast,
    Recipient,
    RecipientPage,
    Recurring,
    RunList,
    Schedule,
    Stats,
)
from server.context import AppContext, context_of
from server.errors import Conflict, ValidationFailed
from server.http.openapi import Operation, document
from server.http.pagination import Cursor
from server.http.payloads import decode_body
from server.http.query_params import int_param
from server.segments.filters import filter_to_json, parse_filter

log = logging.getLogger("replyhq.broadcasts")
bp = Blueprint("admin_broadcasts", url_prefix="/admin/api/broadcasts")
_encode = msgspec.json.Encoder().encode

STATUSES = ("draft", "scheduled", "sending", "paused", "completed", "cancelled", "failed")
# Which statuses each actor command may leave (anything else is 409 invalid_transition).
COMMAND_FROM = {"pause": ("scheduled", "sending"), "resume": ("paused",), "cancel": ("scheduled", "sending", "paused")}

_ID = ("broadcast_id", "path", "broadcast id (uuid)", {"type": "string", "format": "uuid"})
_CURSOR = ("cursor", "query", "next_cursor of the previous page")
_RUN = ("run_id", "query", "one run of the broadcast (uuid)", {"type": "string", "format": "uuid"})
_STATE = ("state", "query", "only recipients in this state", {"type": "string", "enum": list(RECIPIENT_STATES)})
_BODY_NOTE = (
    "Beyond the schema, each of these is a 422 whose details.path names the field: `message.text` blank; "
    "`message.sender_admin_id` not an enabled teammate (`sender_not_teammate`); `message.button_url` not "
    "absolute http(s) (`invalid_url`), or a button_label without a button_url (or the reverse); `audience` "
    "with both or neither of segment_id and filter; `audience.segment_id` not a segment of this workspace "
    "(`segment_not_found`: 422, not 404, because the id is a field of the body); an `audience.filter` "
    "node that fails validation (the path names the node); `schedule.timezone` not an IANA name "
    "(`invalid_timezone`); `schedule.cron` not 5 valid fields (`invalid_cron`) or occurrences closer than "
    "BROADCAST_MIN_INTERVAL (`interval_too_short`); `schedule.at` not in the future (`schedule_in_past`); "
    "`rate_per_s` over BROADCAST_MAX_RATE (`rate_out_of_range`). Nothing is stored on any refusal.")
_STATE_NOTE = "409 `invalid_transition` when the broadcast's status does not allow the command."

LIST = Operation("GET", "/admin/api/broadcasts", "The workspace's broadcasts, newest first: status, next run, "
                 "progress of the current run", "broadcasts", response=BroadcastList, auth="admin_jwt",
                 errors=(403, 422),
                 params=(("status", "query", "only broadcasts in this status",
                          {"type": "string", "enum": list(STATUSES)}), _CURSOR,
                         ("limit", "query", "broadcasts per page (1-200, default 50)",
                          {"type": "integer", "minimum": 1, "maximum": 200})))
CREATE = Operation("POST", "/admin/api/broadcasts", "Create a broadcast (a draft)", "broadcasts", body=NewBroadcast,
                   response=Broadcast, auth="admin_jwt", errors=(403,), status=201,
                   extra={"description": _BODY_NOTE})
PREVIEW = Operation("POST", "/admin/api/broadcasts/cron-preview",
                    "The next times of a cron in a time zone, as UTC and local ISO strings", "broadcasts",
                    body=CronPreviewRequest, response=CronPreview, auth="admin_jwt", errors=(403,),
                    extra={"description": "422 `invalid_cron` or `invalid_timezone` naming $.cron or $.timezone."})
GET = Operation("GET", "/admin/api/broadcasts/{broadcast_id}", "One broadcast, with its totals and current run",
                "broadcasts", response=Broadcast, auth="admin_jwt", params=(_ID,), errors=(403, 404))
PATCH = Operation("PATCH", "/admin/api/broadcasts/{broadcast_id}", "Change a draft (each field given is replaced)",
                  "broadcasts", body=BroadcastPatch, response=Broadcast, auth="admin_jwt", params=(_ID,),
                  errors=(403, 404, 409),
                  extra={"description": "409 `broadcast_not_draft` unless the broadcast is a draft. " + _BODY_NOTE})
DELETE = Operation("DELETE", "/admin/api/broadcasts/{broadcast_id}", "Delete a draft", "broadcasts",
                   response=Deleted, auth="admin_jwt", params=(_ID,), errors=(403, 404, 409),
                   extra={"description": "409 `broadcast_not_draft` unless the broadcast is a draft."})
SCHEDULE = Operation("POST", "/admin/api/broadcasts/{broadcast_id}/schedule",
                     "Schedule a draft: its schedule decides the first run (now, once, or the cron's next time)",
                     "broadcasts", response=Broadcast, auth="admin_jwt", params=(_ID,), errors=(403, 404, 409, 422),
                     extra={"description": "409 `broadcast_not_draft` unless a draft. 422 when the stored schedule "
                                           "no longer holds (a once time now past: `schedule_in_past`, an end_at "
                                           "reached) or the audience's segment was deleted (`segment_not_found`)."})
SEND_NOW = Operation("POST", "/admin/api/broadcasts/{broadcast_id}/send-now",
                     "Send a draft now: a run starts at once (a recurring one then keeps its schedule)",
                     "broadcasts", response=Broadcast, auth="admin_jwt", params=(_ID,), errors=(403, 404, 409, 422),
                     extra={"description": "409 `broadcast_not_draft` unless a draft; 422 `segment_not_found` when "
                                           "the audience's segment was deleted."})
PAUSE = Operation("POST", "/admin/api/broadcasts/{broadcast_id}/pause", "Pause a broadcast: sending stops after the "
                  "batch in flight, and no occurrence starts while paused", "broadcasts", response=Broadcast,
                  auth="admin_jwt", params=(_ID,), errors=(403, 404, 409),
                  extra={"description": _STATE_NOTE + " Allowed from: scheduled, sending."})
RESUME = Operation("POST", "/admin/api/broadcasts/{broadcast_id}/resume", "Resume a paused broadcast", "broadcasts",
                   response=Broadcast, auth="admin_jwt", params=(_ID,), errors=(403, 404, 409),
                   extra={"description": _STATE_NOTE + " Allowed from: paused. A broadcast with a run under way "
                                         "goes back to sending, else to scheduled (after an occurrence missed "
                                         "while paused, the latest one runs)."})
CANCEL = Operation("POST", "/admin/api/broadcasts/{broadcast_id}/cancel",
                   "Cancel: no more sends and no further occurrences", "broadcasts", response=Broadcast,
                   auth="admin_jwt", params=(_ID,), errors=(403, 404, 409),
                   extra={"description": _STATE_NOTE + " Allowed from: scheduled, sending, paused."})
DUPLICATE = Operation("POST", "/admin/api/broadcasts/{broadcast_id}/duplicate",
                      "A new draft with this broadcast's name (+ \" (copy)\"), message, audience, schedule and rate",
                      "broadcasts", response=Broadcast, auth="admin_jwt", params=(_ID,), errors=(403, 404), status=201)
STATS = Operation("GET", "/admin/api/broadcasts/{broadcast_id}/stats",
                  "Totals over the runs (or one run), the funnel, and per-minute counts", "broadcasts",
                  response=BroadcastStats, auth="admin_jwt", params=(_ID, _RUN), errors=(403, 404, 422))
RUNS = Operation("GET", "/admin/api/broadcasts/{broadcast_id}/runs", "The broadcast's runs (one per occurrence), "
                 "newest first, each with its counters", "broadcasts", response=RunList, auth="admin_jwt",
                 params=(_ID, _CURSOR, ("limit", "query", "runs per page (1-200, default 50)",
                                        {"type": "integer", "minimum": 1, "maximum": 200})),
                 errors=(403, 404, 422))
RECIPIENTS = Operation("GET", "/admin/api/broadcasts/{broadcast_id}/recipients",
                       "Recipients of one run (the latest unless run_id names one), in audience order",
                       "broadcasts", response=RecipientPage, auth="admin_jwt",
                       params=(_ID, _STATE, _CURSOR, _RUN,
                               ("limit", "query", "recipients per page (1-500, default 100)",
                                {"type": "integer", "minimum": 1, "maximum": 500})),
                       errors=(403, 404, 422))
CSV = Operation("GET", "/admin/api/broadcasts/{broadcast_id}/recipients.csv",
                "Every recipient of every run (or of run_id) as CSV, streamed", "broadcasts", auth="admin_jwt",
                params=(_ID, _STATE, _RUN), errors=(403, 404, 422), content_type="text/csv")
document(LIST, CREATE, PREVIEW, GET, PATCH, DELETE, SCHEDULE, SEND_NOW, PAUSE, RESUME, CANCEL, DUPLICATE, STATS,
         RUNS, RECIPIENTS, CSV)


def _json(value: Any, status: int = 200) -> HTTPResponse:
    return raw(_encode(value), status=status, content_type="application/json")


def _now() -> datetime:
    return datetime.now(UTC)


# -- validation beyond the schema -------------------------------------------------------------------

async def _message(ctx: AppContext, me: AdminPrincipal, message: Message) -> Message:
    if not message.text.strip():
        raise ValidationFailed("message.text must not be blank", {"path": "$.message.text"})
    sender = message.sender_admin_id or me.admin_id
    if sender is None or not await store.teammate_exists(ctx.pool, me.app_id, sender):
        raise ValidationFailed("sender_admin_id is not a teammate of this workspace",
                               {"path": "$.message.sender_admin_id"}, code="sender_not_teammate")
    if message.button_url is not None:
        if not _absolute_http(message.button_url):
            raise ValidationFailed("button_url must be an absolute http(s) URL", {"path": "$.message.button_url"},
                                   code="invalid_url")
        if message.button_label is None:
            raise ValidationFailed("a button needs a button_label", {"path": "$.message.button_label"})
    elif message.button_label is not None:
        raise ValidationFailed("button_label needs a button_url", {"path": "$.message.button_url"})
    return msgspec.structs.replace(message, sender_admin_id=sender)


def _absolute_http(url: str) -> bool:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  # raises on a port that is not a number
    except ValueError:  # an unclosed IPv6 bracket, a bad port
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname) and not any(c.isspace() for c in url)


async def _audience(ctx: AppContext, app_id: UUID, audience: Audience) -> Audience:
    if (audience.segment_id is None) == (audience.filter is None):
        raise ValidationFailed("audience takes exactly one of segment_id or filter", {"path": "$.audience"})
    if audience.segment_id is not None:
        if not await store.segment_exists(ctx.pool, app_id, audience.segment_id):
            raise ValidationFailed("no such segment in this workspace", {"path": "$.audience.segment_id"},
                                   code="segment_not_found")
        return Audience(segment_id=audience.segment_id)
    return Audience(filter=filter_to_json(parse_filter(audience.filter, "$.audience.filter")))


def _rate(ctx: AppContext, rate: int | None) -> int:
    settings = ctx.settings
    if rate is None:
        return min(settings.broadcast_default_rate, settings.broadcast_max_rate)
    if not 1 <= rate <= settings.broadcast_max_rate:
        raise ValidationFailed(f"rate_per_s must be 1 to {settings.broadcast_max_rate}",
                               {"path": "$.rate_per_s", "max": settings.broadcast_max_rate}, code="rate_out_of_range")
    return rate


def _schedule(ctx: AppContext, schedule: Schedule) -> Schedule:
    return schedules.validate(schedule, _now(), ctx.settings.broadcast_min_interval)


async def _ask_start(ctx: AppContext, app_id: UUID, broadcast_id: UUID, run_id: UUID) -> None:
    """The run is committed: if the actor cannot be asked now, the scheduler asks again."""
    try:
        await ctx.broadcast_commands.start(app_id, broadcast_id, run_id)
    except Exception:
        log.warning("could not ask the actor to start run %s of broadcast %s; the scheduler will retry", run_id,
                    broadcast_id, exc_info=True)


# -- routes -----------------------------------------------------------------------------------------

@bp.get("")
@requires("broadcasts.read")
async def list_broadcasts(request: Request) -> HTTPResponse:
    status = request.args.get("status") or None
    if status is not None and status not in STATUSES:
        raise ValidationFailed(f"status must be one of {', '.join(STATUSES)}",
                               {"path": "?status", "value": status[:50]}, code="invalid_query")
    cursor = _cursor(request)
    limit = int_param(request, "limit", 50, lo=1, hi=200) or 50
    found, next_cursor = await store.list_page(context_of(request).pool, current_admin(request).app_id,
                                               status=status, cursor=cursor, limit=limit)
    return _json(BroadcastList(broadcasts=found, next_cursor=next_cursor.encode() if next_cursor else None))


@bp.post("")
@requires("broadcasts.write")
async def create_broadcast(request: Request) -> HTTPResponse:
    body = decode_body(request, NewBroadcast)
    ctx, me = context_of(request), current_admin(request)
    message = await _message(ctx, me, body.message)
    audience = await _audience(ctx, me.app_id, body.audience)
    sched = _schedule(ctx, body.schedule)
    rate = _rate(ctx, body.rate_per_s)
    created = await store.create(ctx.pool, me.app_id, me.admin_id, name=body.name, message=message,
                                 audience=audience, schedule=sched, rate_per_s=rate)
    return _json(created, CREATE.status)


@bp.post("/cron-preview")
@requires("broadcasts.read")
async def cron_preview(request: Request) -> HTTPResponse:
    body = decode_body(request, CronPreviewRequest)
    minimum = context_of(request).settings.broadcast_min_interval
    now = _now()
    times, tz, cron = schedules.preview(body.cron, body.timezone, now, max(body.count, schedules.MIN_INTERVAL_CHECKS))
    gap = schedules.shortest_gap(times)
    shown = times[:body.count]
    return _json(CronPreview(
        cron=cron, timezone=body.timezone, min_interval_s=minimum,
        meets_min_interval=bool(times) and (gap is None or gap.total_seconds() >= minimum),
        times=[CronTime(utc=t.strftime("%Y-%m-%dT%H:%M:%SZ"), local=t.astimezone(tz).isoformat()) for t in shown]))


@bp.get("/<broadcast_id:uuid>")
@requires("broadcasts.read")
async def get_broadcast(request: Request, broadcast_id: UUID) -> HTTPResponse:
    return _json(await store.must_get(context_of(request).pool, current_admin(request).app_id, broadcast_id))


@bp.patch("/<broadcast_id:uuid>")
@requires("broadcasts.write")
async def update_broadcast(request: Request, broadcast_id: UUID) -> HTTPResponse:
    body = decode_body(request, BroadcastPatch)
    ctx, me = context_of(request), current_admin(request)
    current = await store.must_get(ctx.pool, me.app_id, broadcast_id)
    if current.status != "draft":  # before validating: an edit of a sent broadcast is refused as such
        raise Conflict(f"only a draft can be edited; this broadcast is {current.status}", {"status": current.status},
                       code="broadcast_not_draft")
    changes: dict[str, Any] = {}
    if body.name is not msgspec.UNSET:
        changes["name"] = body.name
    if body.message is not msgspec.UNSET:
        changes["message"] = await _message(ctx, me, body.message)
    if body.audience is not msgspec.UNSET:
        changes["audience"] = await _audience(ctx, me.app_id, body.audience)
    if body.schedule is not msgspec.UNSET:
        changes["schedule"] = _schedule(ctx, body.schedule)
    if body.rate_per_s is not msgspec.UNSET:
        changes["rate_per_s"] = _rate(ctx, body.rate_per_s)
    return _json(await store.update(ctx.pool, me.app_id, me.admin_id, broadcast_id, changes))


@bp.delete("/<broadcast_id:uuid>")
@requires("broadcasts.write")
async def delete_broadcast(request: Request, broadcast_id: UUID) -> HTTPResponse:
    me = current_admin(request)
    await store.delete(context_of(request).pool, me.app_id, me.admin_id, broadcast_id)
    return _json(Deleted(id=str(broadcast_id)))


async def _check_segment_still_there(ctx: AppContext, app_id: UUID, audience: Audience) -> None:
    if audience.segment_id is not None and not await store.segment_exists(ctx.pool, app_id, audience.segment_id):
        raise ValidationFailed("the audience's segment was deleted; choose another",
                               {"path": "$.audience.segment_id"}, code="segment_not_found")


@bp.post("/<broadcast_id:uuid>/schedule")
@requires("broadcasts.write")
async def schedule_broadcast(request: Request, broadcast_id: UUID) -> HTTPResponse:
    ctx, me = context_of(request), current_admin(request)
    async with ctx.pool.acquire() as conn, conn.transaction():
        row = await store.lock_draft(conn, me.app_id, broadcast_id, "scheduled")
        await _check_segment_still_there(ctx, me.app_id, msgspec.convert(row["audience"], Audience))
        sched = _schedule(ctx, store.schedule_of(row["schedule"]))  # time has passed since it was saved
        now = _now()
        first = schedules.first_run_at(sched, now)
        if first is None:
            raise ValidationFailed("the schedule has no occurrence left", {"path": "$.schedule"},
                                   code="schedule_in_past")
        scheduled = await store.mark_scheduled(conn, me.app_id, me.admin_id, broadcast_id, first)
    return _json(scheduled)


@bp.post("/<broadcast_id:uuid>/send-now")
@requires("broadcasts.write")
async def send_now(request: Request, broadcast_id: UUID) -> HTTPResponse:
    ctx, me = context_of(request), current_admin(request)
    async with ctx.pool.acquire() as conn, conn.transaction():
        row = await store.lock_draft(conn, me.app_id, broadcast_id, "sent now")
        await _check_segment_still_there(ctx, me.app_id, msgspec.convert(row["audience"], Audience))
        sched = store.schedule_of(row["schedule"])
        following = schedules.next_times(sched, _now(), 1) if isinstance(sched, Recurring) else []
        sending, run_id = await store.mark_sending_now(conn, me.app_id, me.admin_id, broadcast_id,
                                                       following[0] if following else None)
    await _ask_start(ctx, me.app_id, broadcast_id, run_id)
    return _json(sending)


async def _command(request: Request, broadcast_id: UUID, command: str) -> HTTPResponse:
    ctx, me = context_of(request), current_admin(request)
    current = await store.must_get(ctx.pool, me.app_id, broadcast_id)
    if current.status not in COMMAND_FROM[command]:
        raise Conflict(f"cannot {command} a broadcast that is {current.status}",
                       {"status": current.status, "allowed_from": list(COMMAND_FROM[command])},
                       code="invalid_transition")
    commands = ctx.broadcast_commands
    ask = {"pause": commands.pause, "resume": commands.resume, "cancel": commands.cancel}[command]
    status = await ask(me.app_id, broadcast_id)
    after = await store.must_get(ctx.pool, me.app_id, broadcast_id)
    return _json(msgspec.structs.replace(after, status=status) if status in STATUSES else after)


@bp.post("/<broadcast_id:uuid>/pause")
@requires("broadcasts.write")
async def pause(request: Request, broadcast_id: UUID) -> HTTPResponse:
    return await _command(request, broadcast_id, "pause")


@bp.post("/<broadcast_id:uuid>/resume")
@requires("broadcasts.write")
async def resume(request: Request, broadcast_id: UUID) -> HTTPResponse:
    return await _command(request, broadcast_id, "resume")


@bp.post("/<broadcast_id:uuid>/cancel")
@requires("broadcasts.write")
async def cancel(request: Request, broadcast_id: UUID) -> HTTPResponse:
    return await _command(request, broadcast_id, "cancel")


@bp.post("/<broadcast_id:uuid>/duplicate")
@requires("broadcasts.write")
async def duplicate(request: Request, broadcast_id: UUID) -> HTTPResponse:
    me = current_admin(request)
    copy = await store.duplicate(context_of(request).pool, me.app_id, me.admin_id, broadcast_id)
    return _json(copy, DUPLICATE.status)


def _funnel(totals: Stats) -> list[FunnelStep]:
    base = totals.targeted
    steps = ("targeted", "sent", "delivered", "read", "clicked", "replied")
    return [FunnelStep(step=s, count=getattr(totals, s),  # type: ignore[arg-type]  # the Literal's own names
                       rate=round(getattr(totals, s) / base, 4) if base else None) for s in steps]


@bp.get("/<broadcast_id:uuid>/stats")
@requires("broadcasts.read")
async def stats(request: Request, broadcast_id: UUID) -> HTTPResponse:
    ctx, me = context_of(request), current_admin(request)
    run_id = _uuid_query(request, "run_id")
    await store.must_get(ctx.pool, me.app_id, broadcast_id)
    if run_id is not None:
        await store.run_of(ctx.pool, broadcast_id, run_id)
    totals, minutes = await store.stats(ctx.pool, broadcast_id, run_id)
    return _json(BroadcastStats(broadcast_id=str(broadcast_id), run_id=str(run_id) if run_id else None,
                                totals=totals, funnel=_funnel(totals), minutes=minutes))


@bp.get("/<broadcast_id:uuid>/runs")
@requires("broadcasts.read")
async def runs(request: Request, broadcast_id: UUID) -> HTTPResponse:
    ctx, me = context_of(request), current_admin(request)
    cursor = _cursor(request)
    limit = int_param(request, "limit", 50, lo=1, hi=200) or 50
    await store.must_get(ctx.pool, me.app_id, broadcast_id)
    found, next_cursor = await store.list_runs(ctx.pool, broadcast_id, cursor=cursor, limit=limit)
    return _json(RunList(runs=found, next_cursor=next_cursor.encode() if next_cursor else None))


@bp.get("/<broadcast_id:uuid>/recipients")
@requires("broadcasts.read")
async def recipients(request: Request, broadcast_id: UUID) -> HTTPResponse:
    ctx, me = context_of(request), current_admin(request)
    state = _state_query(request)
    raw_cursor = request.args.get("cursor") or "0"
    if not raw_cursor.isascii() or not raw_cursor.isdigit() or len(raw_cursor) > 18:
        raise ValidationFailed("query parameter cursor is not a cursor this API returned", {"path": "?cursor"},
                               code="invalid_query")
    run_id = _uuid_query(request, "run_id")
    limit = int_param(request, "limit", 100, lo=1, hi=500) or 100
    await store.must_get(ctx.pool, me.app_id, broadcast_id)
    run = await store.run_of(ctx.pool, broadcast_id, run_id)
    if run is None:
        return _json(RecipientPage(run_id=None, recipients=[], next_cursor=None))
    page, after = await store.recipients_page(ctx.pool, run, state=state, after=int(raw_cursor), limit=limit)
    return _json(RecipientPage(run_id=str(run), recipients=page, next_cursor=str(after) if after else None))


_CSV_COLUMNS = ("delivery_id", "run_id", "ord", "user_id", "external_id", "name", "email", "state", "sent_at",
                "delivered_at", "read_at", "clicked_at", "replied_at", "conversation_id", "failed_reason")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    text = str(value)
    # A spreadsheet runs a cell starting with these as a formula: user-supplied names must not.
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _csv_rows(rows: list[Recipient]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    for r in rows:
        writer.writerow([_cell(getattr(r, c)) for c in _CSV_COLUMNS])
    return out.getvalue().encode()


@bp.get("/<broadcast_id:uuid>/recipients.csv")
@requires("broadcasts.read")
async def recipients_csv(request: Request, broadcast_id: UUID) -> HTTPResponse | None:
    ctx, me = context_of(request), current_admin(request)
    state = _state_query(request)
    run_id = _uuid_query(request, "run_id")
    await store.must_get(ctx.pool, me.app_id, broadcast_id)
    if run_id is not None:
        await store.run_of(ctx.pool, broadcast_id, run_id)
    response = await request.respond(content_type="text/csv; charset=utf-8", headers={
        "content-disposition": f'attachment; filename="broadcast-{broadcast_id}-recipients.csv"'})
    await response.send(",".join(_CSV_COLUMNS).encode() + b"\r\n")
    async for page in store.all_recipients(ctx.pool, broadcast_id, run_id, state):
        await response.send(_csv_rows(page))
    await response.eof()
    return None


# -- query parameters -------------------------------------------------------------------------------

def _cursor(request: Request) -> Cursor | None:
    raw_cursor = request.args.get("cursor")
    if not raw_cursor:
        return None
    try:
        return Cursor.decode(raw_cursor)
    except ValueError:
        raise ValidationFailed("query parameter cursor is not a cursor this API returned", {"path": "?cursor"},
                               code="invalid_query") from None


def _uuid_query(request: Request, name: str) -> UUID | None:
    value = request.args.get(name)
    if not value:
        return None
    try:
        return UUID(value)
    except ValueError:
        raise ValidationFailed(f"query parameter {name} must be a uuid", {"path": f"?{name}", "value": value[:50]},
                               code="invalid_query") from None


def _state_query(request: Request) -> int | None:
    value = request.args.get("state")
    if not value:
        return None
    if value not in RECIPIENT_STATES:
        raise ValidationFailed(f"state must be one of {', '.join(RECIPIENT_STATES)}",
                               {"path": "?state", "value": value[:50]}, code="invalid_query")
    return RECIPIENT_STATES.index(value)  # type: ignore[arg-type]  # checked just above
