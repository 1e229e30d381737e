"""The broadcast pages in real headless Chromium: save a segment in the composer's audience builder,
send now to live SDK sockets, watch the progress bar fill, let the users act (read, click, reply) and
read the same numbers on the analytics page (funnel, chart, recipients, CSV); a recurring broadcast's
next runs in the composer and the list, its runs; 422s beside their field; the list's live bars and
pause/resume/cancel; what a viewer may do. These need the segments, broadcast routes, actor and SDK
side merged (h/segments, h/bcore, h/bactor, h/bsdk)."""

from __future__ import annotations

import csv
import io
import re
import urllib.parse
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import datetime
from http.client import HTTPConnection
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.admin_helpers import call, invite_and_join, signup
from tests.sockets import ThreadedSocket, open_socket_in_thread
from tests.support import ServerProcess, http
from tests.test_dashboard_shell import sign_in

ENV = {"BROADCAST_SCHEDULER_INTERVAL": "0.2"}
USERS = {"ann-1": ("Ann", "pro"), "bob-1": ("Bob", "pro"), "dee-1": ("Dee", "pro"), "cid-1": ("Cid", "free")}
CHART = """() => { const c = Chart.getChart(document.querySelector('[data-testid=stats-chart]'));
  return c && Object.fromEntries(c.data.datasets.map((d) => [d.label, d.data])); }"""
READ_DRAWN = """() => { const c = window.Chart && Chart.getChart(document.querySelector('[data-testid=stats-chart]'));
  return Boolean(c) && c.data.datasets[2].data.reduce((a, b) => a + b, 0) === 2; }"""
SLOW = 20_000  # ms: receipts reach the funnel through the stats consumer and the page's polling


@pytest.fixture
def bserver(start_server) -> ServerProcess:  # type: ignore[no-untyped-def]
    return start_server(**ENV)


@pytest.fixture
def acme(bserver: ServerProcess) -> dict[str, Any]:
    owner = signup(bserver, "bea@acme.test", app_name="Acme")
    status, created = call(bserver, "POST", "/admin/api/api-keys", owner["access_token"],
                           {"kind": "publishable", "name": "ios app"})
    assert status == 201, created
    key = created["key"]
    for user_id, (name, plan) in USERS.items():
        status, body = http("POST", bserver.url + "/v1/users/identify",
                            {"user_id": user_id, "name": name, "attributes": {"plan": plan}},
                            headers={"X-API-Key": key})
        assert status == 200, body
    return {"email": "bea@acme.test", "token": owner["access_token"], "key": key}


@pytest.fixture
def sdk_users(bserver: ServerProcess, acme: dict[str, Any]) -> Iterator[dict[str, ThreadedSocket]]:
    """Each user online on a /client socket of their own, beside the sync browser."""
    with ExitStack() as stack:
        yield {uid: stack.enter_context(open_socket_in_thread(
            bserver.url, "/client", transports=["websocket"], auth={"api_key": acme["key"], "user_id": uid}))
            for uid in USERS}


def build_pro_audience(page: Page) -> None:
    """In the composer's audience builder: users whose custom attribute plan is "pro"."""
    box = page.get_by_test_id("audience-builder")
    box.get_by_test_id("add-condition").click()
    condition = box.get_by_test_id("audience-condition").first
    condition.get_by_test_id("condition-field").select_option("custom")
    condition.get_by_test_id("condition-custom").fill("plan")
    condition.get_by_test_id("condition-op").select_option("eq")
    condition.get_by_test_id("condition-value").fill("pro")


def compose(page: Page, name: str, text: str) -> None:
    page.locator("input[name=name]").fill(name)
    page.locator("textarea[name=text]").fill(text)


def download_csv(page: Page) -> list[dict[str, str]]:
    with page.expect_download() as download:
        page.get_by_test_id("csv-link").click()
    return list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text(encoding="utf-8"))))


def click_without_following(server: ServerProcess, url: str) -> tuple[int, str]:
    """GET the tracked link as a browser's first hop: the 302 and where it points."""
    parts = urllib.parse.urlsplit(url)
    server_parts = urllib.parse.urlsplit(server.url)
    conn = HTTPConnection(server_parts.hostname, server_parts.port, timeout=10)
    try:
        conn.request("GET", parts.path + (f"?{parts.query}" if parts.query else ""))
        resp = conn.getresponse()
        return resp.status, resp.getheader("location") or ""
    finally:
        conn.close()


def test_send_now_to_live_users_and_read_what_they_did_on_the_analytics_page(
        page: Page, bserver: ServerProcess, acme: dict[str, Any], sdk_users: dict[str, ThreadedSocket]) -> None:
    sign_in(page, bserver, acme["email"])
    page.goto(bserver.url + "/broadcasts.html")
    expect(page.get_by_test_id("broadcasts-empty")).to_be_visible()
    page.get_by_test_id("broadcasts-empty").get_by_role("link", name="New broadcast").click()
    expect(page).to_have_url(re.compile(r"/broadcast-new\.html"))

    build_pro_audience(page)
    expect(page.get_by_test_id("recipient-count")).to_have_text("3")
    page.locator("input[name=segment_name]").fill("Pro users")
    page.get_by_test_id("save-segment").click()
    expect(page.get_by_test_id("audience-builder")).to_contain_text('Saved as segment "Pro users"')
    expect(page.get_by_test_id("audience-segment").locator("option:checked")).to_have_text("Pro users")
    expect(page.get_by_test_id("recipient-count")).to_have_text("3")
    compose(page, "Spring release", "Hi {{user.name|there}}, your {{user.custom.plan}} plan got better.")
    page.locator("input[name=button_label]").fill("See what's new")
    page.locator("input[name=button_url]").fill("https://example.com/new")
    preview = page.get_by_test_id("preview-text")
    expect(preview).to_have_text(re.compile(r"^Hi (Ann|Bob|Dee), your pro plan got better\.$"))
    expect(page.get_by_test_id("preview-button")).to_have_text("See what's new")

    page.get_by_test_id("send-now").click()
    dialog = page.get_by_test_id("confirm-dialog")
    expect(dialog).to_contain_text("3 recipients")
    dialog.get_by_role("button", name="Send now").click()
    expect(page).to_have_url(re.compile(r"/broadcast-analytics\.html\?id="))
    broadcast_id = urllib.parse.parse_qs(urllib.parse.urlsplit(page.url).query)["id"][0]
    status, segments = call(bserver, "GET", "/admin/api/segments", acme["token"])
    assert [(x["name"], x["filter"]) for x in segments["segments"]] == [
        ("Pro users", {"all": [{"field": "custom.plan", "op": "eq", "value": "pro"}]})]
    status, sent = call(bserver, "GET", f"/admin/api/broadcasts/{broadcast_id}", acme["token"])
    assert sent["audience"] == {"segment_id": segments["segments"][0]["id"]}

    bar = page.get_by_test_id("live-progress")
    expect(bar).to_have_attribute("data-percent", "100", timeout=SLOW)
    expect(bar).to_contain_text("3 / 3")

    # What the users got: personalised, with a tracked button; the free user got nothing.
    ann = sdk_users["ann-1"].wait_for("broadcast:message", timeout=10)
    bob = sdk_users["bob-1"].wait_for("broadcast:message", timeout=10)
    assert ann["text"] == "Hi Ann, your pro plan got better." and ann["broadcast_id"] == broadcast_id
    assert bob["text"] == "Hi Bob, your pro plan got better."
    assert sdk_users["dee-1"].wait_for("broadcast:message", timeout=10)["text"] == "Hi Dee, your pro plan got better."
    assert sdk_users["cid-1"].named("broadcast:message") == []

    # Ann reads it on her socket; Bob gets it, clicks the button and replies over REST (a reply is a
    # read too); Dee does nothing.
    ack = sdk_users["ann-1"].call("broadcast:read", {"delivery_id": ann["delivery_id"]})
    assert ack["ok"], ack
    bob_headers = {"X-API-Key": acme["key"], "X-User-Id": "bob-1"}
    status, body = http("POST", f"{bserver.url}/v1/broadcasts/{bob['delivery_id']}/delivered", {},
                        headers=bob_headers)
    assert status == 200, body
    assert click_without_following(bserver, bob["button"]["url"]) == (302, "https://example.com/new")
    status, body = http("POST", f"{bserver.url}/v1/broadcasts/{bob['delivery_id']}/reply",
                        {"body": "Looks great", "client_id": "r1"}, headers=bob_headers)
    assert status in (200, 201), body

    expected = {"targeted": 3, "sent": 3, "delivered": 2, "read": 2, "clicked": 1, "replied": 1}
    for step, n in expected.items():
        expect(page.get_by_test_id(f"funnel-{step}-value")).to_have_text(str(n), timeout=SLOW)

    # The chart draws the API's per-minute buckets: the same totals as the funnel.
    page.wait_for_function(READ_DRAWN)
    series = page.evaluate(CHART)
    status, stats = call(bserver, "GET", f"/admin/api/broadcasts/{broadcast_id}/stats", acme["token"])
    assert status == 200, stats
    assert series == {label: [b[key] for b in stats["minutes"]] for key, label in
                      (("sent", "Sent"), ("delivered", "Delivered"), ("read", "Read"))}
    assert sum(series["Sent"]) == 3 and sum(series["Delivered"]) == 2 and sum(series["Read"]) == 2

    # Recipients: all of them, then only those who read it, then the one who has not even opened it.
    rows = page.get_by_test_id("recipient-row")
    expect(rows).to_have_count(3)
    for name in ("Ann", "Bob", "Dee"):
        expect(page.get_by_test_id("recipients-table")).to_contain_text(name)
    page.locator("select[name=state]").select_option("read")
    expect(rows).to_have_count(2)
    expect(page.get_by_test_id("recipients-table")).not_to_contain_text("Dee")
    page.locator("select[name=state]").select_option("sent")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Dee")

    # The CSV holds what the table shows, every page of it: the filtered state, then everyone.
    assert [r["external_id"] for r in download_csv(page)] == ["dee-1"]
    page.locator("select[name=state]").select_option("")
    expect(rows).to_have_count(3)
    assert sorted(r["external_id"] for r in download_csv(page)) == ["ann-1", "bob-1", "dee-1"]

    # The list shows it done, full bar, and the rates of what happened.
    page.goto(bserver.url + "/broadcasts.html")
    row = page.locator(f"[data-testid=broadcast-row][data-id='{broadcast_id}']")
    expect(row.get_by_test_id("broadcast-status")).to_have_text("completed")
    expect(row.get_by_test_id("row-progress")).to_have_attribute("data-percent", "100")
    expect(row.get_by_test_id("rates")).to_have_text("67% delivered · 67% read · 33% clicked")


def test_a_recurring_broadcast_shows_its_next_runs_in_the_composer_and_the_list(
        page: Page, bserver: ServerProcess, acme: dict[str, Any]) -> None:
    sign_in(page, bserver, acme["email"])
    page.goto(bserver.url + "/broadcast-new.html")
    compose(page, "Weekly digest", "Your week, {{user.name|friend}}")
    build_pro_audience(page)
    expect(page.get_by_test_id("recipient-count")).to_have_text("3")
    page.get_by_label("Recurring (cron)").check()
    page.locator("input[name=timezone]").fill("Europe/Paris")
    page.locator("input[name=cron]").fill("0 9 * * 1")
    status, want = call(bserver, "POST", "/admin/api/broadcasts/cron-preview", acme["token"],
                        {"cron": "0 9 * * 1", "timezone": "Europe/Paris", "count": 5})
    assert status == 200, want
    times = page.get_by_test_id("next-run-time")
    expect(times).to_have_count(5)
    expect(times.first).to_contain_text("09:00 Europe/Paris")
    shown = [times.nth(i).get_attribute("data-utc") for i in range(5)]
    first_utc = shown[0]
    assert shown == [t["utc"] for t in want["times"]]
    page.get_by_test_id("schedule").click()
    dialog = page.get_by_test_id("confirm-dialog")
    expect(dialog).to_contain_text("3 recipients")
    expect(dialog).to_contain_text('"0 9 * * 1" (Europe/Paris)')
    dialog.get_by_role("button", name="Schedule").click()
    expect(page).to_have_url(re.compile(r"/broadcasts\.html"))
    row = page.get_by_test_id("broadcast-row").filter(has_text="Weekly digest")
    expect(row.get_by_test_id("broadcast-status")).to_have_text("scheduled")
    row = page.locator(f"[data-testid=broadcast-row][data-id='{row.get_attribute('data-id')}']")
    expect(row.get_by_test_id("next-run")).to_have_attribute("data-at", re.compile(r"\d"))
    at = row.get_by_test_id("next-run").get_attribute("data-at")
    assert at is not None and first_utc is not None
    assert _same_instant(at, first_utc)
    expect(row.get_by_test_id("next-run")).not_to_have_text("—")

    # Duplicate makes an editable draft with the same schedule; sending it now starts its first run at
    # once and keeps the schedule: the analytics page lists the run, the list shows the next one.
    row.get_by_role("button", name="Duplicate").click()
    expect(page).to_have_url(re.compile(r"/broadcast-new\.html\?id="))
    expect(page.locator("input[name=name]")).to_have_value("Weekly digest (copy)")
    expect(page.locator("input[name=cron]")).to_have_value("0 9 * * 1")
    expect(page.get_by_test_id("next-run-time")).to_have_count(5)
    expect(page.get_by_test_id("recipient-count")).to_have_text("3")
    page.get_by_test_id("send-now").click()
    dialog = page.get_by_test_id("confirm-dialog")
    expect(dialog).to_contain_text("Its schedule carries on after this run.")
    dialog.get_by_role("button", name="Send now").click()
    expect(page).to_have_url(re.compile(r"/broadcast-analytics\.html\?id="))
    expect(page.get_by_test_id("broadcast-schedule")).to_contain_text('recurring "0 9 * * 1" Europe/Paris')
    expect(page.get_by_test_id("broadcast-schedule")).to_contain_text("next run")
    runs = page.get_by_test_id("run-row")
    expect(runs).to_have_count(1)
    expect(runs.first.get_by_test_id("broadcast-status")).to_have_text("completed", timeout=SLOW)
    expect(runs.first.get_by_test_id("run-targeted")).to_have_text("3")
    expect(runs.first.get_by_test_id("run-sent")).to_have_text("3")
    page.goto(bserver.url + "/broadcasts.html")
    copy = page.get_by_test_id("broadcast-row").filter(has_text="Weekly digest (copy)")
    expect(copy.get_by_test_id("broadcast-status")).to_have_text("scheduled")
    copy_at = copy.get_by_test_id("next-run").get_attribute("data-at")
    assert copy_at is not None and _same_instant(copy_at, first_utc)
    expect(copy.get_by_test_id("row-progress")).to_have_attribute("data-percent", "100")

    # Cancelled, it has no next run any more.
    row.get_by_role("button", name="Cancel").click()
    page.get_by_test_id("confirm-dialog").get_by_role("button", name="Cancel broadcast").click()
    expect(row.get_by_test_id("broadcast-status")).to_have_text("cancelled")
    expect(row.get_by_test_id("next-run")).to_have_text("—")

    # A viewer reads the list and the analytics, and is told the composer is not theirs.
    viewer = invite_and_join(bserver, acme["token"], "viewer")
    page.evaluate("() => localStorage.clear()")
    sign_in(page, bserver, viewer["admin"]["email"])
    page.goto(bserver.url + "/broadcasts.html")
    expect(page.get_by_test_id("broadcast-row")).to_have_count(2)
    expect(page.get_by_test_id("new-broadcast")).to_have_count(0)
    expect(page.get_by_test_id("broadcast-row").get_by_role("button")).to_have_count(0)
    expect(page.get_by_test_id("broadcast-row").get_by_role("link", name="Analytics")).to_have_count(2)
    page.goto(bserver.url + "/broadcast-new.html")
    expect(page.get_by_role("alert")).to_contain_text("broadcasts.write")
    expect(page.get_by_test_id("send-now")).to_have_count(0)


def _same_instant(a: str, b: str) -> bool:
    return datetime.fromisoformat(a.replace("Z", "+00:00")) == datetime.fromisoformat(b.replace("Z", "+00:00"))


def test_422s_show_beside_their_field_and_a_one_off_shows_as_the_next_run(
        page: Page, bserver: ServerProcess, acme: dict[str, Any]) -> None:
    sign_in(page, bserver, acme["email"])
    page.goto(bserver.url + "/broadcast-new.html")
    build_pro_audience(page)
    expect(page.get_by_test_id("recipient-count")).to_have_text("3")
    compose(page, "Bad link", "Hello")

    def error_for(path: str):  # type: ignore[no-untyped-def]
        return page.locator(f"[data-error-for='{path}']")

    page.locator("input[name=button_label]").fill("Open")
    page.locator("input[name=button_url]").fill("ftp://example.com/file")
    page.get_by_test_id("save-draft").click()
    expect(error_for("$.message.button_url")).to_be_visible()
    expect(error_for("$.message.button_url")).not_to_be_empty()
    expect(error_for("$.message.text")).to_be_empty()

    page.locator("input[name=button_url]").fill("https://example.com/file")
    page.locator("textarea[name=text]").fill("")
    page.get_by_test_id("save-draft").click()
    expect(error_for("$.message.text")).to_be_visible()
    expect(error_for("$.message.button_url")).to_be_empty()

    # A cron the server refuses: its message shows under the cron field while typing.
    page.locator("textarea[name=text]").fill("Hello")
    page.get_by_label("Recurring (cron)").check()
    page.locator("input[name=timezone]").fill("UTC")
    page.locator("input[name=cron]").fill("61 * * * *")
    expect(error_for("$.schedule.cron")).to_be_visible()
    expect(page.get_by_test_id("next-run-time")).to_have_count(0)
    page.locator("input[name=cron]").fill("* * * * *")  # every minute: below the minimum interval
    page.get_by_test_id("schedule").click()
    expect(error_for("$.schedule.cron")).to_be_visible()
    expect(page.get_by_test_id("confirm-dialog")).to_have_count(0)

    # A time in the past, for a one-off.
    page.get_by_label("Once, at a set time").check()
    page.locator("input[name=at]").fill("2020-01-01T09:00")
    page.get_by_test_id("schedule").click()
    expect(error_for("$.schedule.at")).to_be_visible()
    expect(page.get_by_test_id("confirm-dialog")).to_have_count(0)

    # Nothing refused was stored. A time to come is scheduled, and the list shows it as its next run.
    status, listed = call(bserver, "GET", "/admin/api/broadcasts", acme["token"])
    assert status == 200 and listed["broadcasts"] == []
    page.locator("input[name=at]").fill("2030-01-01T09:00")
    page.locator("input[name=timezone]").fill("Europe/Paris")
    page.get_by_test_id("schedule").click()
    expect(error_for("$.schedule.at")).to_be_empty()
    dialog = page.get_by_test_id("confirm-dialog")
    expect(dialog).to_contain_text("at 2030-01-01 09:00 Europe/Paris")
    dialog.get_by_role("button", name="Schedule").click()
    expect(page).to_have_url(re.compile(r"/broadcasts\.html"))
    row = page.get_by_test_id("broadcast-row")
    expect(row.get_by_test_id("broadcast-status")).to_have_text("scheduled")
    at = row.get_by_test_id("next-run").get_attribute("data-at")
    assert at is not None and _same_instant(at, "2030-01-01T08:00:00Z")

    # Its duplicate is a draft the list can delete.
    row.get_by_role("button", name="Duplicate").click()
    expect(page.locator("input[name=at]")).to_have_value("2030-01-01T09:00")
    page.goto(bserver.url + "/broadcasts.html")
    draft = page.locator("[data-testid=broadcast-row][data-status=draft]")
    expect(draft).to_have_count(1)
    draft.get_by_role("button", name="Delete").click()
    page.get_by_test_id("confirm-dialog").get_by_role("button", name="Delete").click()
    expect(draft).to_have_count(0)
    expect(page.get_by_test_id("broadcast-row")).to_have_count(1)


def test_the_list_moves_the_bar_live_and_pauses_resumes_and_cancels_a_sending_broadcast(
        page: Page, bserver: ServerProcess, acme: dict[str, Any]) -> None:
    for i in range(20):
        status, body = http("POST", bserver.url + "/v1/users/identify",
                            {"user_id": f"bulk-{i}", "attributes": {"plan": "bulk"}},
                            headers={"X-API-Key": acme["key"]})
        assert status == 200, body
    # One recipient a second: the run sends for about 20 s, long enough to act on it.
    status, created = call(bserver, "POST", "/admin/api/broadcasts", acme["token"], {
        "name": "Slow drip", "message": {"text": "drip"}, "rate_per_s": 1,
        "audience": {"filter": {"all": [{"field": "custom.plan", "op": "eq", "value": "bulk"}]}}})
    assert status == 201, created
    sign_in(page, bserver, acme["email"])
    page.goto(bserver.url + "/broadcasts.html")
    row = page.locator(f"[data-testid=broadcast-row][data-id='{created['id']}']")
    expect(row.get_by_test_id("broadcast-status")).to_have_text("draft")
    expect(row.get_by_role("link", name="Edit")).to_be_visible()
    status, _ = call(bserver, "POST", f"/admin/api/broadcasts/{created['id']}/send-now", acme["token"])
    assert status == 200

    # The bar fills from the socket's progress events, without reloading the page.
    expect(row.get_by_test_id("broadcast-status")).to_have_text("sending")
    bar = row.get_by_test_id("row-progress")
    expect(bar).to_contain_text("/ 20")
    # The same bar element moves (a reload of the list would draw a new one).
    bar.evaluate("(el) => { el.marked = true; }")
    first = int(bar.get_attribute("data-percent") or "0")
    page.wait_for_function(
        """([id, first]) => Number(document.querySelector(`[data-testid=broadcast-row][data-id='${id}']
             [data-testid=row-progress]`)?.dataset.percent) > first""", arg=[created["id"], first])
    assert bar.evaluate("(el) => el.marked === true")

    row.get_by_role("button", name="Pause").click()
    expect(row.get_by_test_id("broadcast-status")).to_have_text("paused")
    expect(row.get_by_role("button", name="Pause")).to_have_count(0)
    row.get_by_role("button", name="Resume").click()
    expect(row.get_by_test_id("broadcast-status")).to_have_text("sending")
    row.get_by_role("button", name="Cancel").click()
    dialog = page.get_by_test_id("confirm-dialog")
    expect(dialog).to_contain_text('Cancel "Slow drip"?')
    dialog.get_by_role("button", name="Cancel broadcast").click()
    expect(row.get_by_test_id("broadcast-status")).to_have_text("cancelled")
    expect(row.get_by_role("button", name=re.compile("Pause|Resume|Cancel"))).to_have_count(0)
    expect(row.get_by_role("link", name="Analytics")).to_be_visible()
    status, after = call(bserver, "GET", f"/admin/api/broadcasts/{created['id']}", acme["token"])
    assert after["status"] == "cancelled" and after["current_run"]["sent"] < 20
