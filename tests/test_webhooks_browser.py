"""The settings page's Webhooks section in real headless Chromium: add an endpoint, copy the secret
shown once, ping it, and see the delivery the receiver verified in the log."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from tests.admin_helpers import signup
from tests.test_dashboard_shell import sign_in
from tests.webhook_helpers import FAST_ENV, ThreadedReceiver


def test_add_a_webhook_ping_it_and_see_the_verified_delivery(page: Page, start_server) -> None:  # type: ignore[no-untyped-def]
    server = start_server(**FAST_ENV)
    signup(server, "hooks@acme.test", app_name="Acme")
    sign_in(page, server, "hooks@acme.test")
    with ThreadedReceiver() as receiver:
        page.goto(server.url + "/settings.html#webhooks")
        form = page.locator("#webhook-form")
        form.locator("input[name=url]").fill(f"http://127.0.0.1:{receiver.port}/replyhq")
        form.locator("input[name=description]").fill("CRM")
        form.locator("input[name=all]").uncheck()
        form.locator("input[value='message.created']").check()
        form.locator("button[type=submit]").click()
        secret = page.get_by_test_id("webhook-secret")
        expect(secret).to_have_value(re.compile(r"^whsec_"))
        receiver.secret = secret.input_value()
        endpoint = page.locator("#webhook-endpoints article").first
        expect(endpoint).to_contain_text("message.created")
        endpoint.get_by_role("button", name="Send test ping").click()
        expect(page.get_by_test_id("ping-result")).to_contain_text("HTTP 200")
        assert [r.verified["type"] for r in receiver.received if r.verified] == ["webhook.ping"]
        log = page.get_by_test_id("delivery-log")
        expect(log).to_contain_text("webhook.ping")
        expect(log).to_contain_text("delivered")
        log.get_by_role("button", name="Attempts").first.click()
        expect(page.get_by_test_id("attempt").first).to_contain_text("HTTP 200")
        expect(page.get_by_test_id("attempt").first).to_contain_text("verified")
        page.locator("#webhook-endpoints article").first.get_by_role("button", name="Disable").click()
        expect(page.locator("#webhook-endpoints article").first).to_contain_text("disabled")
