"""The settings page's Usage section in real headless Chromium: after real traffic, the meters show
what the test did and the charts draw the API's daily series."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import asyncpg
from playwright.sync_api import Page, expect

from server.tenancy.workspaces import NewWorkspace, create_workspace
from tests.admin_helpers import PASSWORD, call
from tests.conftest import run_sync
from tests.inbox_helpers import owner_token
from tests.test_dashboard_shell import sign_in
from tests.usage_helpers import drive_traffic

ENV = {"USAGE_FLUSH_INTERVAL": "0.2", "WEBHOOKS_ALLOW_PRIVATE": "true", "WEBHOOK_RETRY_SCALE": "100"}
CHART_DATA = """(id) => { const c = Chart.getChart(document.querySelector(`[data-testid=usage-chart-${id}]`));
  return c && { labels: c.data.labels, sets: Object.fromEntries(c.data.datasets.map((d) => [d.label, d.data])) }; }"""


async def _workspace(db_url: str) -> NewWorkspace:
    pool = await asyncpg.create_pool(db_url, min_size=1, max_size=1)
    try:
        return await create_workspace(pool, app_name="Usage", email="usage-browser@acme.test", password=PASSWORD)
    finally:
        await pool.close()


def test_the_usage_section_shows_the_traffic_in_meters_and_charts(page: Page, start_server,  # type: ignore[no-untyped-def]
                                                                  db_url: str) -> None:
    server = start_server(**ENV)
    workspace = run_sync(_workspace(db_url))
    owner = owner_token(server, workspace)
    done = run_sync(drive_traffic(server, workspace, owner))
    deadline = time.monotonic() + 20
    usage: Any = None
    while time.monotonic() < deadline:
        status, usage = call(server, "GET", "/admin/api/usage", owner)
        if (status == 200 and usage["api_calls"]["total"] == done["api_calls"]
                and usage["messages"]["total"] == sum(done["messages"].values())):
            break
        time.sleep(0.2)
    sign_in(page, server, workspace.email)
    page.goto(server.url + "/settings.html#usage")
    expect(page.get_by_test_id("usage-seats-value")).to_have_text(str(done["seats"]))
    expect(page.get_by_test_id("usage-active-users-value")).to_have_text(str(done["active_users"]))
    expect(page.get_by_test_id("usage-conversations-value")).to_have_text(str(done["conversations"]))
    expect(page.get_by_test_id("usage-messages-value")).to_have_text(str(sum(done["messages"].values())))
    expect(page.get_by_test_id("usage-messages")).to_contain_text("5 user · 2 agent · 1 notes")
    expect(page.get_by_test_id("usage-api-calls-value")).to_have_text(str(done["api_calls"]))
    expect(page.get_by_test_id("usage-webhook-deliveries-value")).to_have_text(
        str(usage["webhook_deliveries"]["total"]))
    page.wait_for_function(
        "() => window.Chart && Chart.getChart(document.querySelector('[data-testid=usage-chart-platform]'))")
    messages = page.evaluate(CHART_DATA, "messages")
    platform = page.evaluate(CHART_DATA, "platform")
    day = datetime.now(UTC).day - 1
    assert messages["labels"] == [d[5:] for d in usage["days"]]
    assert messages["sets"]["Conversations"] == usage["conversations"]["daily"]
    assert messages["sets"]["User messages"][day] == 5 and messages["sets"]["Agent replies"][day] == 2
    assert messages["sets"]["Notes"] == usage["messages"]["by_sender"]["note"]["daily"]
    assert platform["sets"]["Secret-key API calls"][day] == done["api_calls"]
    assert platform["sets"]["New active users"] == usage["active_users"]["daily"]
    assert platform["sets"]["Webhook deliveries"] == usage["webhook_deliveries"]["daily"]
