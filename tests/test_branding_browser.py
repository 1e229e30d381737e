"""Settings' Account, Workspace & security and Branding sections in real headless Chromium: the live
messenger preview follows the form as you type, saving changes what /v1/app/config serves, the
identity secret is shown once, and the admin's own name changes in the shell."""

from __future__ import annotations

import json
import re
import time

from playwright.sync_api import Page, expect

from tests.admin_helpers import call, signup
from tests.image_helpers import png
from tests.support import ServerProcess
from tests.test_dashboard_shell import sign_in
from tests.test_workspace_branding import fetch


def _config(server: ServerProcess, pk: str) -> dict:  # type: ignore[type-arg]
    status, _, body = fetch(server.url + "/v1/app/config", {"X-API-Key": pk})
    assert status == 200, body
    return json.loads(body)  # type: ignore[no-any-return]


def test_branding_preview_follows_the_form_and_config_follows_the_save(page: Page, start_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    server = start_server()
    owner = signup(server, "brand@acme.test", app_name="Acme")
    pk = call(server, "POST", "/admin/api/api-keys", owner["access_token"],
              {"kind": "publishable", "name": "sdk"})[1]["key"]
    sign_in(page, server, "brand@acme.test")
    page.goto(server.url + "/settings.html#branding")
    expect(page.locator("main[data-ready=true]")).to_be_visible()

    # the preview follows every keystroke, before anything is saved
    form = page.locator("#branding-form")
    header = page.get_by_test_id("preview-header")
    expect(header).to_have_css("background-color", "rgb(31, 111, 235)")
    form.locator("input[name=color]").fill("#E11D48")
    expect(header).to_have_css("background-color", "rgb(225, 29, 72)")
    expect(page.get_by_test_id("preview-launcher")).to_have_css("background-color", "rgb(225, 29, 72)")
    form.locator("textarea[name=greeting]").fill("Hello from Acme")
    expect(page.get_by_test_id("preview-greeting")).to_have_text("Hello from Acme")
    form.locator("textarea[name=team_intro]").fill("We answer within the hour")
    expect(page.get_by_test_id("preview-intro")).to_have_text("We answer within the hour")
    form.locator("select[name=launcher_position]").select_option("left")
    expect(page.get_by_test_id("messenger-preview")).to_have_attribute("data-position", "left")
    expect(header).to_contain_text("Acme")
    logo = tmp_path / "logo.png"
    logo.write_bytes(png(16, 16))
    form.locator("input[name=logo]").set_input_files(str(logo))
    expect(page.get_by_test_id("preview-logo")).to_be_visible()
    assert _config(server, pk)["branding"]["color"] == "#1F6FEB"  # nothing saved yet

    form.locator("button[type=submit]").click()
    expect(page.locator("#branding .notice.ok")).to_have_text("Saved.")
    config = _config(server, pk)["branding"]
    assert (config["color"], config["greeting"], config["team_intro"], config["launcher_position"]) == (
        "#E11D48", "Hello from Acme", "We answer within the hour", "left")
    assert config["logo"]["width"] == 16 and fetch(server.url + config["logo_url"])[2] == png(16, 16)
    # after the save the section shows what is stored, and the preview the stored logo
    expect(page.get_by_test_id("preview-logo")).to_have_attribute("src", config["logo_url"])
    expect(page.get_by_test_id("preview-header")).to_have_css("background-color", "rgb(225, 29, 72)")

    # a bad colour is refused with the server's message, and the config does not change
    page.locator("#branding-form input[name=color]").fill("#12345")
    page.evaluate("document.querySelector('#branding-form').noValidate = true")
    page.locator("#branding-form button[type=submit]").click()
    expect(page.locator("#branding .notice.error")).to_be_visible()
    assert _config(server, pk)["branding"]["color"] == "#E11D48"

    # Workspace & security: rename, and rotate the identity secret, shown once
    ws = page.locator("#workspace-form")
    ws.locator("input[name=name]").fill("Acme Europe")
    ws.locator("input[name=timezone]").fill("Europe/Paris")
    ws.locator("select[name=identity_verification]").select_option("enforce")
    ws.locator("button[type=submit]").click()
    expect(page.locator("#workspace .notice.ok")).to_have_text("Saved.")
    expect(page.get_by_test_id("workspace-name")).to_have_text("Acme Europe")
    deadline = time.monotonic() + 5
    while _config(server, pk)["app"]["name"] != "Acme Europe":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("#rotate-secret").click()
    secret = page.get_by_test_id("identity-secret")
    expect(secret).to_have_value(re.compile(r".{20,}"))
    expect(page.get_by_test_id("identity-secret-hint")).to_have_text("…" + secret.input_value()[-4:])

    # Account: the admin's own name, shown in the shell at once
    account = page.locator("#account-form")
    account.locator("input[name=name]").fill("Brenda")
    account.locator("button[type=submit]").click()
    expect(page.get_by_test_id("admin-name")).to_have_text("Brenda")

    page.reload()
    expect(page.locator("main[data-ready=true]")).to_be_visible()
    expect(page.get_by_test_id("identity-secret")).to_have_count(0)  # shown once
    expect(page.locator("#workspace-form input[name=timezone]")).to_have_value("Europe/Paris")
    expect(page.locator("#branding-form textarea[name=greeting]")).to_have_value("Hello from Acme")
