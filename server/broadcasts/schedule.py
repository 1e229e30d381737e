"""When a broadcast runs: schedule validation and its occurrences in UTC, DST-correct.

A recurring cron is read in local wall-clock time (croniter over naive datetimes, so no DST
arithmetic happens inside croniter), and each local time is placed in its zone with zoneinfo:
"0 9 * * 1" in Europe/Paris is 09:00 in Paris in winter (08:00 UTC) and in summer (07:00 UTC).
A local time that does not exist (the spring-forward gap) fires just after the jump, as cron does;
one that happens twice (fall back) fires once, the first time.
"""

from __future__ import annotations

import functools
import itertools
import zoneinfo
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from croniter import croniter

from server.broadcasts.schemas import Now, Once, Recurring, Schedule
from server.errors import ValidationFailed

MIN_INTERVAL_CHECKS = 200  # consecutive occurrences checked against the minimum interval
MAX_AHEAD = timedelta(days=3660)  # a `once.at` or an `end_at` at most ten years ahead
LOCAL_FORMAT = "%Y-%m-%dT%H:%M"


def _fail(path: str, message: str, code: str = "invalid_schedule", **extra: Any) -> ValidationFailed:
    return ValidationFailed(message, {"path": path, **extra}, code=code)


@functools.cache
def _zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones() | {"UTC"})


def zone(name: str, path: str = "$.schedule.timezone") -> zoneinfo.ZoneInfo:
    """The IANA zone, or a 422 naming the field (never a file path probe: only listed names load)."""
    if name not in _zones():
        raise _fail(path, f"unknown time zone {name[:64]!r}: use an IANA name such as Europe/Paris",
                    code="invalid_timezone")
    return zoneinfo.ZoneInfo(name)


def _cron(expr: str, path: str) -> str:
    fields = expr.split()
    if len(fields) != 5:
        raise _fail(path, "cron must have 5 fields: minute hour day-of-month month day-of-week", code="invalid_cron")
    normalised = " ".join(fields)
    try:
        croniter(normalised, datetime(2000, 1, 1)).get_next(datetime)
    except Exception as exc:  # croniter's own errors, and what its parser lets through (ValueError, KeyError)
        raise _fail(path, f"invalid cron expression: {str(exc)[:200]}", code="invalid_cron") from None
    return normalised


def _utc(local: datetime, tz: zoneinfo.ZoneInfo) -> datetime:
    """A naive local time placed in its zone (fold=0: the first of a repeated time; a time in a gap
    lands after the jump) as an aware UTC datetime."""
    return local.replace(tzinfo=tz, fold=0).astimezone(UTC)


def _local_naive(at: datetime, tz: zoneinfo.ZoneInfo) -> datetime:
    return at.astimezone(tz).replace(tzinfo=None)


def _forward(cron: str, tz: zoneinfo.ZoneInfo, after: datetime) -> Iterator[datetime]:
    """Occurrences strictly after `after` (aware), in order, without duplicates."""
    # Start a little before: in a repeated hour the local clock runs behind an instant already passed.
    it = croniter(cron, _local_naive(after, tz) - timedelta(hours=3))
    last = after
    while True:
        try:
            t = _utc(it.get_next(datetime), tz)
        except Exception:  # no further occurrence within croniter's search horizon
            return
        if t > last:
            last = t
            yield t


def _previous(cron: str, tz: zoneinfo.ZoneInfo, at_or_before: datetime) -> datetime | None:
    """The latest occurrence <= `at_or_before`."""
    it = croniter(cron, _local_naive(at_or_before, tz) + timedelta(hours=3, minutes=1))
    for _ in range(64):  # a few steps back cover the 3 hours of margin, whatever the zone did
        try:
            t = _utc(it.get_prev(datetime), tz)
        except Exception:
            return None
        if t <= at_or_before:
            return t
    return None


def once_at(schedule: Once) -> datetime:
    """The UTC instant of a once schedule's local `at`."""
    return _utc(datetime.strptime(schedule.at, LOCAL_FORMAT), zone(schedule.timezone))


def next_times(schedule: Schedule, after: datetime, n: int) -> list[datetime]:
    """The next `n` occurrences strictly after `after`, as aware UTC datetimes (end_at included)."""
    if isinstance(schedule, Now):
        return []
    if isinstance(schedule, Once):
        at = once_at(schedule)
        return [at] if at > after and n > 0 else []
    out: list[datetime] = []
    for t in _forward(schedule.cron, zone(schedule.timezone), after):
        if len(out) >= n or (schedule.end_at is not None and t > schedule.end_at):
            break
        out.append(t)
    return out


def latest_due_and_next(schedule: Schedule, since: datetime, now: datetime) -> tuple[datetime | None, datetime | None]:
    """For the scheduler: the occurrence to run now (the latest one in [since, now], so after an outage
    only the last missed occurrence fires) and the one after now (None when there is none)."""
    if isinstance(schedule, Now):
        return since, None
    if isinstance(schedule, Once):
        at = once_at(schedule)
        return (at, None) if at <= now else (None, at)
    tz = zone(schedule.timezone)
    due = _previous(schedule.cron, tz, min(now, schedule.end_at) if schedule.end_at else now)
    if due is not None and due < since:
        due = None
    following = next_times(schedule, now, 1)
    return due, (following[0] if following else None)


def first_run_at(schedule: Schedule, now: datetime) -> datetime | None:
    """next_run_at when a draft is scheduled: now, the once time, or the first cron occurrence."""
    if isinstance(schedule, Now):
        return now
    found = next_times(schedule, now, 1)
    return found[0] if found else None


def validate(schedule: Schedule, now: datetime, min_interval: int) -> Schedule:
    """Check what msgspec cannot: the zone, the cron, `once.at` in the future, the minimum interval,
    end_at. Returns the schedule normalised (the cron's whitespace). 422 names the field."""
    if isinstance(schedule, Now):
        return schedule
    tz = zone(schedule.timezone)
    if isinstance(schedule, Once):
        try:
            local = datetime.strptime(schedule.at, LOCAL_FORMAT)
        except ValueError:
            raise _fail("$.schedule.at", "at must be a local time YYYY-MM-DDTHH:MM in the schedule's timezone",
                        code="invalid_schedule") from None
        # Checked on the naive time first, so the zone arithmetic below cannot overflow (year 1 or 9999).
        naive_now = now.astimezone(UTC).replace(tzinfo=None)
        if local - naive_now > MAX_AHEAD + timedelta(days=2):
            raise _fail("$.schedule.at", "at is more than ten years ahead", code="schedule_too_far")
        if naive_now - local > timedelta(days=2):
            raise _fail("$.schedule.at", "at must be in the future", code="schedule_in_past")
        at = _utc(local, tz)
        if at <= now:
            raise _fail("$.schedule.at", "at must be in the future", code="schedule_in_past",
                        at_utc=at.isoformat())
        if at - now > MAX_AHEAD:
            raise _fail("$.schedule.at", "at is more than ten years ahead", code="schedule_too_far")
        return schedule
    cron = _cron(schedule.cron, "$.schedule.cron")
    if schedule.end_at is not None:
        if schedule.end_at <= now:
            raise _fail("$.schedule.end_at", "end_at must be in the future", code="schedule_in_past")
        if schedule.end_at - now > MAX_AHEAD:
            raise _fail("$.schedule.end_at", "end_at is more than ten years ahead", code="schedule_too_far")
    recurring = Recurring(cron=cron, timezone=schedule.timezone, end_at=schedule.end_at,
                          every_occurrence=schedule.every_occurrence)
    times = list(_take(_forward(cron, tz, now), MIN_INTERVAL_CHECKS + 1))
    if not times or (schedule.end_at is not None and times[0] > schedule.end_at):
        raise _fail("$.schedule.cron", "the cron has no occurrence (before end_at)", code="invalid_cron")
    gap = shortest_gap(times)
    if gap is not None and gap < timedelta(seconds=min_interval):
        raise _fail("$.schedule.cron", f"occurrences must be at least {min_interval} seconds apart",
                    code="interval_too_short", min_interval_s=min_interval,
                    shortest_s=int(gap.total_seconds()))
    return recurring


def preview(cron: str, timezone: str, now: datetime, count: int) -> tuple[list[datetime], zoneinfo.ZoneInfo, str]:
    """The next `count` times of a cron in a zone (422 naming $.cron or $.timezone)."""
    tz = zone(timezone, "$.timezone")
    normalised = _cron(cron, "$.cron")
    return list(_take(_forward(normalised, tz, now), count)), tz, normalised


def shortest_gap(times: list[datetime]) -> timedelta | None:
    gaps = [b - a for a, b in itertools.pairwise(times)]
    return min(gaps) if gaps else None


def _take(it: Iterator[datetime], n: int) -> Iterator[datetime]:
    for i, t in enumerate(it):
        if i >= n:
            return
        yield t
