"""The Team and API keys sections of settings.html in real headless Chromium: create a key (shown
once), use it from the SDK client, rotate it with no grace and use the new one; secret-key scopes;
invite, resend, withdraw, accept, change a role, the last owner refused, remove."""

from __future__ import annotations

import re
from typing import Any

from playwright.sync_api import Page, expect

from loadtests.sdk_client import ReplyHQClient
from tests.admin_helpers import PASSWORD, call, signup
from tests.conftest import run_sync
from tests.support import ServerProcess, http
from tests.test_dashboard_shell import sign_in


async def _use(url: str, key: str) -> dict[str, Any]:
    """The SDK client, over its socket: start a conversation with a first message."""
    client = ReplyHQClient(url, key, user_id="browser-user", transports=["websocket"])
    await client.connect()
    try:
        return await client.create_conversation(subject="from the SDK", body="hello")
    finally:
        await client.close()


async def _rest_status(url: str, key: str) -> int:
    client = ReplyHQClient(url, key, user_id="browser-user")
    try:
        return (await client.rest("GET", "/v1/users/me"))[0]
    finally:
        await client.close()


def _take_shown_key(page: Page) -> str:
    shown = page.get_by_test_id("new-key")
    expect(shown).to_have_value(re.compile(r"^rhq_(pk|sk)_"))
    key = shown.input_value()
    page.get_by_test_id("close-show-once").click()
    expect(page.get_by_test_id("new-key")).to_have_count(0)  # gone: shown once
    return key


def test_create_a_key_use_it_from_the_sdk_rotate_it_and_scope_a_secret_key(page: Page, start_server) -> None:  # type: ignore[no-untyped-def]
    server: ServerProcess = start_server()
    owner = signup(server, "olive@acme.test", app_name="Acme")
    sign_in(page, server, "olive@acme.test")
    page.goto(server.url + "/settings.html#api-keys")
    expect(page.locator("main[data-ready=true]")).to_be_visible()
    expect(page.get_by_test_id("scope-picker")).to_be_hidden()  # publishable keys have no scopes
    page.fill("#key-form input[name=name]", "Web app")
    page.click("#key-form button[type=submit]")
    key = _take_shown_key(page)
    row = page.locator(f"#keys-table tr[data-prefix='{key[:15]}']")
    expect(row).to_contain_text("Web app")
    expect(row).to_contain_text("active")
    assert key not in page.content()

    conv = run_sync(_use(server.url, key))
    assert conv["message"]["body"] == "hello"
    # last used, and from where, after the background write (every few seconds)
    for _ in range(30):
        page.reload()
        expect(page.locator("main[data-ready=true]")).to_be_visible()
        if "127.0.0.1" in (row.locator("td.last-used").text_content() or ""):
            break
        page.wait_for_timeout(500)
    expect(row.locator("td.last-used")).to_contain_text("127.0.0.1")

    # rotate with no grace: the new key is shown once and works, the old one stops at once
    row.locator("button", has_text="Rotate").click()
    page.select_option("#rotate-key-dialog select[name=grace_seconds]", "0")
    page.click("#rotate-key-dialog button[type=submit]")
    new_key = _take_shown_key(page)
    assert new_key != key and new_key.startswith("rhq_pk_")
    expect(row).to_contain_text("expired")
    new_row = page.locator(f"#keys-table tr[data-prefix='{new_key[:15]}']")
    expect(new_row).to_contain_text("Web app")
    expect(new_row).to_contain_text("active")
    assert run_sync(_rest_status(server.url, key)) == 401
    assert run_sync(_use(server.url, new_key))["message"]["body"] == "hello"

    # a secret key reading only: its scopes are listed; a write with it is refused
    page.select_option("#key-form select[name=kind]", "secret")
    expect(page.get_by_test_id("scope-picker")).to_be_visible()
    page.fill("#key-form input[name=name]", "Reporting")
    for box in page.locator("#key-form [data-testid=scope-picker] input").all():
        if box.get_attribute("value") != "conversations.read":
            box.uncheck()
    page.click("#key-form button[type=submit]")
    secret = _take_shown_key(page)
    secret_row = page.locator(f"#keys-table tr[data-prefix='{secret[:15]}']")
    expect(secret_row.locator("td.scopes-cell")).to_have_text("conversations.read")
    headers = {"x-api-key": secret, "x-user-id": "browser-user"}
    assert http("GET", server.url + "/v1/conversations", headers=headers)[0] == 200
    status, body = http("POST", server.url + "/v1/conversations", {"subject": "x"}, headers=headers)
    assert status == 403 and body["error"]["code"] == "scope_denied"
    # re-scope and rename it in the dialog
    secret_row.locator("button", has_text="Edit").click()
    page.fill("#edit-key-dialog input[name=name]", "Reporting + replies")
    page.check("#edit-key-dialog input[value='conversations.reply']")
    page.click("#edit-key-dialog button[type=submit]")
    expect(secret_row).to_contain_text("Reporting + replies")
    expect(secret_row.locator("td.scopes-cell")).to_contain_text("conversations.reply")
    assert http("POST", server.url + "/v1/conversations", {"subject": "x"}, headers=headers)[0] == 201
    # revoke it
    page.once("dialog", lambda dialog: dialog.accept())
    secret_row.locator("button", has_text="Revoke").click()
    expect(secret_row).to_contain_text("revoked")
    assert http("GET", server.url + "/v1/conversations", headers=headers)[0] == 401
    listing = call(server, "GET", "/admin/api/api-keys", owner["access_token"])[1]["api_keys"]
    assert {k["status"] for k in listing if k["prefix"] in (key[:15], new_key[:15], secret[:15])} == {
        "expired", "active", "revoked"}


def test_invite_resend_withdraw_accept_change_role_and_remove(page: Page, start_server, browser) -> None:  # type: ignore[no-untyped-def]
    server: ServerProcess = start_server()
    owner = signup(server, "olive@acme.test", app_name="Acme")
    sign_in(page, server, "olive@acme.test")
    page.goto(server.url + "/settings.html#team")
    expect(page.locator("main[data-ready=true]")).to_be_visible()
    expect(page.locator("#team-table tr[data-email='olive@acme.test'] td.last-active")).not_to_have_text("—")

    def invite(email: str, role: str) -> str:
        page.fill("#invite-form input[name=email]", email)
        page.select_option("#invite-form select[name=role]", role)
        page.click("#invite-form button[type=submit]")
        link = page.get_by_test_id("invite-url")
        expect(link).to_have_value(re.compile(r"/login\.html#invite=rhq_inv_"))
        url = link.input_value()
        page.get_by_test_id("close-show-once").click()
        return url

    first = invite("ada@acme.test", "agent")
    invite("bob@acme.test", "viewer")
    expect(page.locator("#invites-table tbody tr")).to_have_count(2)
    ada = page.locator("#invites-table tr[data-email='ada@acme.test']")
    expect(ada).to_contain_text("invited")
    # resend: a new link, the old one dead
    ada.locator("button", has_text="Resend").click()
    link = page.get_by_test_id("invite-url")
    expect(link).to_have_value(re.compile(r"/login\.html#invite=rhq_inv_"))
    second = link.input_value()
    page.get_by_test_id("close-show-once").click()
    assert second != first
    status, body = http("POST", server.url + "/admin/auth/accept-invite",
                        {"token": first.split("#invite=")[1], "password": PASSWORD})
    assert status == 401 and body["error"]["code"] == "invalid_invitation"
    # withdraw Bob's
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("#invites-table tr[data-email='bob@acme.test'] button", has_text="Revoke").click()
    expect(page.locator("#invites-table tr[data-email='bob@acme.test']")).to_have_count(0)

    # Ada joins through the new link
    other = browser.new_context()
    invitee = other.new_page()
    invitee.goto(second)
    expect(invitee.locator("#invite-form")).to_be_visible()
    invitee.fill("#invite-form input[name=password]", PASSWORD)
    invitee.click("#invite-form button[type=submit]")
    expect(invitee.get_by_test_id("admin-name")).to_be_visible()
    other.close()

    page.reload()
    expect(page.locator("main[data-ready=true]")).to_be_visible()
    expect(page.locator("#no-invites")).to_be_visible()
    row = page.locator("#team-table tr[data-email='ada@acme.test']")
    expect(row).to_be_visible()
    # change Ada's role; the last owner cannot demote themselves (409 shown, role kept)
    row.locator("select").select_option("admin")
    expect(row.locator("select")).to_have_value("admin")
    page.wait_for_load_state("networkidle")  # the section has re-rendered after the change
    team = call(server, "GET", "/admin/api/team", owner["access_token"])[1]
    assert next(m["role"] for m in team["members"] if m["email"] == "ada@acme.test") == "admin"
    me = page.locator("#team-table tr[data-email='olive@acme.test'] select")
    me.select_option("agent")
    expect(page.locator("#team .notice.error")).to_contain_text("at least one owner")
    expect(me).to_have_value("owner")
    # remove Ada
    page.once("dialog", lambda dialog: dialog.accept())
    row.locator("button", has_text="Remove").click()
    expect(page.locator("#team-table tr[data-email='ada@acme.test']")).to_have_count(0)
