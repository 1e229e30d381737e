"""The audience builder (static/js/audience-builder.js) in real headless Chromium, mounted on a dashboard
page as broadcast-new.html mounts it: conditions and groups edited with the mouse and keyboard, the live
count from /admin/api/segments/preview, a bad value pointed at, and a saved segment loaded."""

from __future__ import annotations

import re
from typing import Any

from playwright.sync_api import Page, expect

from tests.admin_helpers import call, signup
from tests.support import ServerProcess, http
from tests.test_dashboard_shell import sign_in

MOUNT = """async () => {
  const { mountAudienceBuilder } = await import("/js/audience-builder.js");
  const el = document.createElement("section");
  el.className = "card";
  el.id = "audience";
  document.querySelector(".content").prepend(el);
  window.changes = [];
  window.builder = mountAudienceBuilder(el, { debounceMs: 50,
    onChange: (filter, meta) => window.changes.push({ filter, segmentId: meta.segmentId }) });
}"""


def _users(server: ServerProcess, token: str) -> None:
    """Six users: u0..u5, plan pro for even i, ios for i < 4 (android after), os_version 9.0 + i (9.0 .. 14.0)."""
    status, key = call(server, "POST", "/admin/api/api-keys", token, {"kind": "publishable", "name": "sdk"})
    assert status == 201
    for i in range(6):
        status, body = http("POST", server.url + "/v1/users/identify", {
            "user_id": f"u{i}", "name": f"User {i}", "attributes": {"plan": "pro" if i % 2 == 0 else "free"},
            "device": {"platform": "ios" if i < 4 else "android", "os_version": f"{9 + i}.0"}},
            headers={"X-API-Key": key["key"], "X-User-Id": f"u{i}"})
        assert status == 200, body


def _last(page: Page) -> dict[str, Any]:
    return dict(page.evaluate("window.changes[window.changes.length - 1]"))


def test_build_an_audience_see_its_count_fix_a_bad_value_and_load_a_saved_segment(page: Page,
                                                                                  start_server) -> None:  # type: ignore[no-untyped-def]
    server: ServerProcess = start_server()
    owner = signup(server, "olive@acme.test", app_name="Acme")
    token = owner["access_token"]
    _users(server, token)
    android = {"any": [{"field": "device.platform", "op": "eq", "value": "android"}]}
    status, saved = call(server, "POST", "/admin/api/segments", token, {"name": "Android users", "filter": android})
    assert status == 201
    sign_in(page, server, "olive@acme.test")
    page.goto(server.url + "/users.html")
    expect(page.get_by_test_id("users-table")).to_be_visible()
    page.evaluate(MOUNT)
    count = page.get_by_test_id("audience-count")
    expect(count).to_have_text("6 users match")  # no conditions: everyone
    expect(page.get_by_test_id("audience-sample")).to_contain_text("User 5")

    # platform is ios
    page.get_by_test_id("add-condition").click()
    first = page.get_by_test_id("audience-condition").nth(0)
    first.get_by_test_id("condition-field").select_option("device.platform")
    first.get_by_test_id("condition-value").fill("ios")
    expect(count).to_have_text("4 users match")
    # and OS version above 10 (numerically: 11.0 is above, as text it would be below)
    page.get_by_test_id("add-condition").click()
    second = page.get_by_test_id("audience-condition").nth(1)
    second.get_by_test_id("condition-field").select_option("device.os_version")
    second.get_by_test_id("condition-op").select_option("gt")
    second.get_by_test_id("condition-value").fill("10")
    expect(count).to_have_text("2 users match")  # u2 (11.0), u3 (12.0)
    sample = page.get_by_test_id("audience-sample")
    expect(sample.locator("li")).to_have_count(2)  # the two users, and nothing else ("null" was once)
    expect(sample).not_to_contain_text("null")
    # and a group: plan is pro, or never seen (nobody)
    page.get_by_test_id("add-group").click()
    nested = page.locator(".ab-group.nested")
    cond = nested.get_by_test_id("audience-condition").nth(0)
    cond.get_by_test_id("condition-field").select_option("custom")
    cond.get_by_test_id("condition-custom").fill("plan")
    cond.get_by_test_id("condition-value").fill("pro")
    expect(count).to_have_text("1 user matches")  # u2
    assert _last(page) == {"segmentId": None, "filter": {"all": [
        {"field": "device.platform", "op": "eq", "value": "ios"},
        {"field": "device.os_version", "op": "gt", "value": "10"},
        {"any": [{"field": "custom.plan", "op": "eq", "value": "pro"}]}]}}
    # any of the three instead of all: ios (u0-u3), above 10 (u2-u5), pro (u0, u2, u4)
    page.get_by_test_id("group-kind").first.select_option("any")
    expect(count).to_have_text("6 users match")
    page.get_by_test_id("group-kind").first.select_option("all")
    expect(count).to_have_text("1 user matches")

    # a version that is not one: the server's 422 names the node, the builder marks it
    second.get_by_test_id("condition-value").fill("10.x")
    expect(page.get_by_test_id("audience-error")).to_be_visible()
    expect(page.locator(".ab-invalid")).to_have_count(1)
    expect(page.locator(".ab-invalid").get_by_test_id("condition-value")).to_have_value("10.x")
    expect(count).to_have_text("—")
    second.get_by_test_id("remove-condition").click()
    expect(page.get_by_test_id("audience-error")).to_be_hidden()
    expect(page.locator(".ab-invalid")).to_have_count(0)
    expect(count).to_have_text("2 users match")  # ios and pro: u0, u2
    # last seen within the last 7 days (everyone just identified), then after "0 days ago" (nobody yet)
    page.locator(".ab-group:not(.nested) > .ab-actions").get_by_test_id("add-condition").click()
    seen = page.get_by_test_id("audience-condition").nth(2)  # after the nested group's
    seen.get_by_test_id("condition-field").select_option("last_seen_at")
    expect(seen.get_by_test_id("condition-value")).to_have_value("7")
    expect(count).to_have_text("2 users match")
    seen.get_by_test_id("condition-value").fill("0")
    expect(count).to_have_text("0 users match")
    assert _last(page)["filter"]["all"][2] == {"field": "last_seen_at", "op": "gt", "value": {"days_ago": 0}}

    # load the saved segment: its filter, and its id while unchanged
    page.get_by_test_id("audience-segment").select_option(label="Android users")
    expect(count).to_have_text("2 users match")
    assert _last(page) == {"filter": android, "segmentId": saved["id"]}
    expect(page.get_by_test_id("condition-value")).to_have_value("android")
    page.get_by_test_id("condition-op").select_option("neq")
    expect(count).to_have_text("4 users match")
    assert _last(page)["segmentId"] is None
    assert page.evaluate("window.builder.getFilter()") == {"any": [
        {"field": "device.platform", "op": "neq", "value": "android"}]}
    expect(page.get_by_test_id("audience-segment")).to_have_value("")
    assert re.search("Load a saved segment", page.get_by_test_id("audience-segment").inner_text())
