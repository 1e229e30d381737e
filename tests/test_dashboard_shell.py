"""The dashboard shell in real headless Chromium: sign in, navigate, settings, silent refresh, logout."""

from __future__ import annotations

import json
import re
import uuid

import pytest
from playwright.sync_api import Page, expect

from server.auth.tokens import issue_access_token
from tests.admin_helpers import PASSWORD, call, signup
from tests.conftest import TEST_JWT_SECRET
from tests.support import ServerProcess, http

PAGES = ["index.html", "chat.html", "users.html", "broadcasts.html", "broadcast-new.html",
         "broadcast-analytics.html", "workflows.html", "workflow-editor.html", "analytics.html", "settings.html"]


@pytest.fixture
def app_server(start_server) -> ServerProcess:  # type: ignore[no-untyped-def]
    return start_server()


def sign_in(page: Page, server: ServerProcess, email: str) -> None:
    page.goto(server.url + "/login.html")
    page.fill("#login-form input[name=email]", email)
    page.fill("#login-form input[name=password]", PASSWORD)
    page.click("#login-form button[type=submit]")
    expect(page.get_by_test_id("admin-name")).to_be_visible()


# What a person would see of each element the page marks `hidden`: none of them may show.
SHOWN_THOUGH_HIDDEN = """() => [...document.querySelectorAll('[hidden]')]
    .filter((el) => el.checkVisibility()).map((el) => el.id || el.outerHTML.slice(0, 80))"""


def test_the_login_page_shows_only_the_form_a_person_needs(page: Page, app_server: ServerProcess) -> None:
    forms = {name: page.locator(f"#{name}-form") for name in ("login", "signup", "invite")}

    def only(visible: str) -> None:
        for name, form in forms.items():
            if name == visible:
                expect(form).to_be_visible()
            else:
                expect(form).to_be_hidden()

    page.goto(app_server.url + "/login.html")
    only("login")
    page.click("#to-signup")
    only("signup")
    page.click("#to-login")
    only("login")
    page.goto(app_server.url + "/login.html#invite=rhq_inv_example")
    page.reload()  # a fresh visit through the link, not only a hash change
    only("invite")


def test_no_page_shows_what_it_marks_hidden(page: Page, app_server: ServerProcess) -> None:
    signup(app_server, "olive@acme.test", app_name="Acme")
    page.goto(app_server.url + "/login.html")
    page.wait_for_load_state("networkidle")
    assert page.evaluate(SHOWN_THOUGH_HIDDEN) == []
    sign_in(page, app_server, "olive@acme.test")
    for name in PAGES:
        page.goto(f"{app_server.url}/{name}")
        expect(page.get_by_test_id("admin-name")).to_be_visible()
        page.wait_for_load_state("networkidle")
        assert page.evaluate(SHOWN_THOUGH_HIDDEN) == [], name


def test_every_page_has_an_icon_the_server_serves(page: Page, app_server: ServerProcess) -> None:
    signup(app_server, "olive@acme.test", app_name="Acme")
    page.goto(app_server.url + "/login.html")
    icons = {"login.html": page.evaluate("document.querySelector('link[rel~=icon]')?.href ?? null")}
    sign_in(page, app_server, "olive@acme.test")
    for name in PAGES:
        page.goto(f"{app_server.url}/{name}")
        icons[name] = page.evaluate("document.querySelector('link[rel~=icon]')?.href ?? null")
    assert all(icons.values()), icons
    # /favicon.ico too: browsers and tools ask for it whatever the page says
    for url in {*icons.values(), app_server.url + "/favicon.ico"}:
        response = page.request.get(url)
        assert response.status == 200, url
        assert response.headers["content-type"].startswith("image/"), (url, response.headers["content-type"])
        assert response.body(), url


def test_visitors_without_a_session_are_sent_to_login_and_back(page: Page, app_server: ServerProcess) -> None:
    signup(app_server, "olive@acme.test", app_name="Acme")
    page.goto(app_server.url + "/settings.html")
    expect(page).to_have_url(re.compile(r"/login\.html\?next=%2Fsettings\.html$"))
    page.fill("#login-form input[name=email]", "olive@acme.test")
    page.fill("#login-form input[name=password]", "wrong password")
    page.click("#login-form button[type=submit]")
    expect(page.get_by_role("alert")).to_have_text("wrong email or password")
    page.fill("#login-form input[name=password]", PASSWORD)
    page.click("#login-form button[type=submit]")
    expect(page).to_have_url(re.compile(r"/settings\.html$"))
    expect(page.get_by_test_id("workspace-name")).to_have_text("Acme")


def test_sign_in_navigate_create_an_api_key_and_log_out(page: Page, app_server: ServerProcess) -> None:
    owner = signup(app_server, "olive@acme.test", app_name="Acme")
    sign_in(page, app_server, "olive@acme.test")
    expect(page).to_have_url(re.compile(r"/index\.html$"))
    expect(page.get_by_test_id("admin-name")).to_have_text("Olive Owner")
    expect(page.get_by_test_id("dashboard-stats")).to_be_visible()

    # every page the seed lists is in the sidebar and renders the shell
    links = page.locator("nav.nav a")
    assert [href.lstrip("/") for href in links.evaluate_all("els => els.map(e => e.getAttribute('href'))")] == PAGES
    page.click("nav.nav a[data-page=workflows]")
    expect(page).to_have_url(re.compile(r"/workflows\.html$"))
    expect(page.locator(".coming-soon")).to_contain_text("coming in a later release")
    expect(page.locator("nav.nav a.active")).to_have_text("Workflows")

    page.click("nav.nav a[data-page=settings]")
    expect(page.locator("main[data-ready=true]")).to_be_visible()
    expect(page.locator("#team-table")).to_contain_text("olive@acme.test")
    expect(page.locator("#keys-table tbody tr")).to_have_count(2)
    page.fill("#key-form input[name=name]", "Web app")
    page.select_option("#key-form select[name=kind]", "publishable")
    page.click("#key-form button[type=submit]")
    new_key = page.get_by_test_id("new-key")
    expect(new_key).to_have_value(re.compile(r"^rhq_pk_"))
    key = new_key.input_value()
    page.get_by_test_id("close-show-once").click()  # the key is shown once, in a dialog
    expect(page.locator("#keys-table tbody tr")).to_have_count(3)
    expect(page.locator(f"#keys-table tr[data-prefix='{key[:15]}']")).to_contain_text("Web app")
    listing = call(app_server, "GET", "/admin/api/api-keys", owner["access_token"])[1]["api_keys"]
    assert any(k["prefix"] == key[:15] and k["name"] == "Web app" for k in listing)

    # revoke it from the UI
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator(f"#keys-table tr[data-prefix='{key[:15]}'] button", has_text="Revoke").click()
    expect(page.locator(f"#keys-table tr[data-prefix='{key[:15]}']")).to_contain_text("revoked")

    stored = json.loads(page.evaluate("localStorage.getItem('replyhq.session')"))
    page.click("#logout")
    expect(page).to_have_url(re.compile(r"/login\.html$"))
    assert page.evaluate("localStorage.getItem('replyhq.session')") is None
    # logging out revoked the session on the server too
    status, body = http("POST", app_server.url + "/admin/auth/refresh", {"refresh_token": stored["refresh_token"]})
    assert status == 401, body
    page.goto(app_server.url + "/index.html")
    expect(page).to_have_url(re.compile(r"/login\.html"))


def test_signup_in_the_browser_creates_a_workspace(page: Page, app_server: ServerProcess) -> None:
    page.goto(app_server.url + "/login.html")
    page.click("#to-signup")
    page.fill("#signup-form input[name=app_name]", "Initech")
    page.fill("#signup-form input[name=name]", "Peter")
    page.fill("#signup-form input[name=email]", "peter@initech.test")
    page.fill("#signup-form input[name=password]", PASSWORD)
    page.click("#signup-form button[type=submit]")
    expect(page.get_by_test_id("workspace-name")).to_have_text("Initech")
    expect(page.get_by_test_id("admin-name")).to_have_text("Peter")


def test_an_expired_access_token_is_refreshed_silently(page: Page, app_server: ServerProcess) -> None:
    owner = signup(app_server, "olive@acme.test", app_name="Acme")
    expired, _ = issue_access_token(TEST_JWT_SECRET, admin_id=uuid.UUID(owner["admin"]["id"]),
                                    app_id=uuid.UUID(owner["app"]["id"]), role="owner", ttl=-10,
                                    session_id=uuid.uuid4())
    assert call(app_server, "GET", "/admin/auth/me", expired)[1]["error"]["code"] == "token_expired"
    page.goto(app_server.url + "/login.html")
    session = {"access_token": expired, "refresh_token": owner["refresh_token"], "admin": owner["admin"],
               "app": owner["app"]}
    page.evaluate("s => localStorage.setItem('replyhq.session', s)", json.dumps(session))
    page.goto(app_server.url + "/settings.html")
    # the page loads fully, with data fetched after one rotation shared by its parallel requests
    expect(page.locator("main[data-ready=true]")).to_be_visible()
    expect(page.get_by_test_id("identity-secret-hint")).to_have_text(re.compile(r"^….{4}$"))
    expect(page).to_have_url(re.compile(r"/settings\.html$"))
    stored = json.loads(page.evaluate("localStorage.getItem('replyhq.session')"))
    assert stored["access_token"] != expired and stored["refresh_token"] != owner["refresh_token"]
    assert call(app_server, "GET", "/admin/auth/me", stored["access_token"])[0] == 200


def test_invite_a_teammate_who_joins_through_the_link(page: Page, app_server: ServerProcess, browser) -> None:  # type: ignore[no-untyped-def]
    signup(app_server, "olive@acme.test", app_name="Acme")
    sign_in(page, app_server, "olive@acme.test")
    page.goto(app_server.url + "/settings.html#team")
    expect(page.locator("main[data-ready=true]")).to_be_visible()
    page.fill("#invite-form input[name=email]", "ada@acme.test")
    page.fill("#invite-form input[name=name]", "Ada")
    page.select_option("#invite-form select[name=role]", "agent")
    page.click("#invite-form button[type=submit]")
    link = page.get_by_test_id("invite-url")
    expect(link).to_have_value(re.compile(r"/login\.html#invite=rhq_inv_"))
    expect(page.locator("#invites-table tr[data-email='ada@acme.test']")).to_contain_text("invited")

    other = browser.new_context()
    invitee = other.new_page()
    invitee.goto(link.input_value())
    expect(invitee.locator("#invite-form")).to_be_visible()
    invitee.fill("#invite-form input[name=password]", PASSWORD)
    invitee.click("#invite-form button[type=submit]")
    expect(invitee.get_by_test_id("admin-name")).to_have_text("Ada")
    invitee.goto(app_server.url + "/settings.html")
    expect(invitee.locator("main[data-ready=true]")).to_be_visible()
    # an agent sees the team but cannot change it, nor see API keys or the identity secret's hint
    expect(invitee.locator("#team-table")).to_contain_text("olive@acme.test")
    expect(invitee.locator("#invite-form")).to_have_count(0)
    expect(invitee.locator("#api-keys")).to_contain_text("cannot see API keys")
    expect(invitee.get_by_test_id("identity-secret-hint")).to_have_count(0)
    other.close()

    # the owner changes Ada's role in the table
    page.reload()
    expect(page.locator("main[data-ready=true]")).to_be_visible()
    page.select_option("#team-table tr[data-email='ada@acme.test'] select", "viewer")
    expect(page.locator("#team-table tr[data-email='ada@acme.test'] select")).to_have_value("viewer")
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("#team-table tr[data-email='ada@acme.test'] button", has_text="Remove").click()
    expect(page.locator("#team-table tr[data-email='ada@acme.test']")).to_have_count(0)
