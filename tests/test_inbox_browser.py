"""The inbox in real headless Chromium: an SDK user (python-socketio client) starts a conversation,
the agent sees it live, replies in the UI and the user receives it; typing shows both ways; the
user's "Seen" shows; the dashboard and users pages show device metadata; logout."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.admin_helpers import PASSWORD, call, signup
from tests.inbox_helpers import DEVICE
from tests.sockets import ThreadedSocket, open_socket_in_thread
from tests.support import ServerProcess, http


@pytest.fixture
def inbox_server(start_server) -> ServerProcess:  # type: ignore[no-untyped-def]
    return start_server()


@pytest.fixture
def acme(inbox_server: ServerProcess) -> dict[str, Any]:
    email = f"olive-{uuid.uuid4().hex[:6]}@acme.test"
    owner = signup(inbox_server, email, app_name="Acme")
    status, created = call(inbox_server, "POST", "/admin/api/api-keys", owner["access_token"],
                           {"kind": "publishable", "name": "ios app"})
    assert status == 201, created
    return {"email": email, "owner": owner, "key": created["key"]}


@pytest.fixture
def sdk_user(inbox_server: ServerProcess, acme: dict[str, Any]) -> Iterator[ThreadedSocket]:
    """The SDK side: a raw /client socket, on an event loop thread of its own beside the sync browser."""
    with open_socket_in_thread(inbox_server.url, "/client", transports=["websocket"],
                               auth={"api_key": acme["key"], "user_id": "ann-1", "device": DEVICE}) as user:
        yield user


def sign_in(page: Page, server: ServerProcess, email: str, path: str = "/chat.html") -> None:
    page.goto(server.url + path)
    page.fill("#login-form input[name=email]", email)
    page.fill("#login-form input[name=password]", PASSWORD)
    page.click("#login-form button[type=submit]")
    expect(page.get_by_test_id("admin-name")).to_be_visible()


def test_live_inbox_conversation_reply_typing_seen_and_logout(page: Page, inbox_server: ServerProcess,
                                                              acme: dict[str, Any], sdk_user: ThreadedSocket) -> None:
    sign_in(page, inbox_server, acme["email"])
    expect(page).to_have_url(re.compile(r"/chat\.html"))
    expect(page.get_by_test_id("conversation-list")).to_contain_text("No conversations here.")

    # the SDK user starts a conversation: it shows up live with an unread badge
    ack = sdk_user.call("conversation:create", {"subject": "Card declined",
                                                "message": {"client_id": "c1", "body": "My card was declined"}})
    assert ack["ok"], ack
    conv_id = ack["conversation"]["id"]
    item = page.locator(f"[data-testid=conversation-item][data-id='{conv_id}']")
    expect(item).to_contain_text("My card was declined")
    expect(item.get_by_test_id("unread-badge")).to_have_text("1")

    item.click()
    expect(page.get_by_test_id("messages")).to_contain_text("My card was declined")
    expect(page.get_by_test_id("thread-device")).to_contain_text("iPhone15,2")

    # the user types: the agent sees it
    sdk_user.call("typing:start", {"conversation_id": conv_id})
    expect(page.get_by_test_id("typing-indicator")).to_contain_text("is typing")
    sdk_user.call("typing:stop", {"conversation_id": conv_id})
    expect(page.get_by_test_id("typing-indicator")).to_have_text("")

    # the agent types and replies: the user sees both
    page.get_by_test_id("composer-input").press_sequentially("Let me check")
    typing = sdk_user.wait_for("typing", lambda d: d["sender_kind"] == "admin" and d["typing"], timeout=10)
    assert typing["conversation_id"] == conv_id
    page.get_by_test_id("composer-input").fill("Let me check that for you")
    page.get_by_test_id("send").click()
    got = sdk_user.wait_for("message:new", lambda d: d["sender_kind"] == "admin", timeout=10)
    assert got["body"] == "Let me check that for you" and got["seq"] == 2

    # a private note is shown to the team only
    page.get_by_test_id("note-toggle").check()
    page.get_by_test_id("composer-input").fill("Customer on legacy plan")
    page.get_by_test_id("send").click()
    expect(page.get_by_test_id("note")).to_contain_text("Customer on legacy plan")

    # the user reads: "Seen" appears under the reply
    sdk_user.call("message:read", {"conversation_id": conv_id, "seq": 2})
    expect(page.get_by_test_id("seen")).to_be_visible()

    # assign to me, then the user's next message arrives live in the open thread
    page.get_by_test_id("assign").click()
    expect(page.get_by_test_id("assign")).to_have_text("Unassign")
    sdk_user.call("message:send", {"conversation_id": conv_id, "client_id": "c2", "body": "Thanks!"})
    expect(page.get_by_test_id("messages")).to_contain_text("Thanks!")

    time.sleep(0.5)
    assert all("legacy plan" not in str(d) for _, d in sdk_user.events)  # the note never reached the user

    page.click("#logout")
    expect(page).to_have_url(re.compile(r"/login\.html"))


def test_dashboard_and_users_show_stats_and_device_metadata(page: Page, inbox_server: ServerProcess,
                                                            acme: dict[str, Any], sdk_user: ThreadedSocket) -> None:
    ack = sdk_user.call("conversation:create", {"message": {"client_id": "c1", "body": "hello"}})
    assert ack["ok"], ack
    sign_in(page, inbox_server, acme["email"], path="/index.html")
    expect(page.get_by_test_id("stat-open")).to_contain_text("1")
    expect(page.get_by_test_id("stat-online")).to_contain_text("1")
    expect(page.get_by_test_id("recent-user").first).to_contain_text("iPhone15,2")
    expect(page.get_by_test_id("recent-user").first).to_contain_text("OS 17.4")
    page.click("nav.nav a[data-page=users]")
    row = page.get_by_test_id("user-row").first
    expect(row).to_contain_text("ann-1")
    expect(row).to_contain_text("app 3.2.1")
    row.click()
    expect(page.get_by_test_id("user-detail")).to_contain_text("Online on 1 device")
    expect(page.get_by_test_id("user-conversations")).to_contain_text("hello")


def test_a_dashboard_signed_out_elsewhere_goes_back_to_sign_in(page: Page, start_server) -> None:  # type: ignore[no-untyped-def]
    server = start_server(ADMIN_SOCKET_RECHECK_INTERVAL="0.3")
    email = f"olive-{uuid.uuid4().hex[:6]}@acme.test"
    signup(server, email, app_name="Acme")
    sign_in(page, server, email)
    expect(page).to_have_url(re.compile(r"/chat\.html"))
    # Its session is signed out from elsewhere ("sign out" on another device, or by an owner).
    session = page.evaluate("() => JSON.parse(localStorage.getItem('replyhq.session'))")
    status, _ = http("POST", server.url + "/admin/auth/logout", {"refresh_token": session["refresh_token"]})
    assert status in (200, 204)
    expect(page).to_have_url(re.compile(r"/login\.html"), timeout=10_000)
