"""Snoozed conversations reopen by themselves once snoozed_until passes, and everyone sees it live."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from tests.admin_helpers import call
from tests.inbox_helpers import owner_token, start_conversation
from tests.sockets import admin_socket, sdk_socket
from tests.support import ServerProcess


def _in(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


async def test_a_snoozed_conversation_reopens_when_its_time_comes(start_server: Callable[..., ServerProcess],
                                                                   workspace) -> None:
    server = start_server(SNOOZE_CHECK_INTERVAL="0.2")
    token = owner_token(server, workspace)
    due = start_conversation(server, workspace, "ann")
    later = start_conversation(server, workspace, "bob")
    async with admin_socket(server, token) as agent, sdk_socket(server, workspace.publishable_key, "ann") as user:
        status, snoozed = call(server, "POST", f"/admin/api/conversations/{due['id']}/status", token,
                               {"status": "snoozed", "snoozed_until": _in(1.5)})
        assert status == 200 and snoozed["status"] == "snoozed"
        status, _ = call(server, "POST", f"/admin/api/conversations/{later['id']}/status", token,
                         {"status": "snoozed", "snoozed_until": _in(3600)})
        assert status == 200

        reopened = await agent.wait_for("conversation:updated",
                                        lambda d: d["id"] == due["id"] and d["status"] == "open", timeout=15)
        assert reopened["snoozed_until"] is None
        seen = await user.wait_for("conversation:updated",
                                   lambda d: d["id"] == due["id"] and d["status"] == "open", timeout=15)
        assert seen["snoozed_until"] is None

    _, detail = call(server, "GET", f"/admin/api/conversations/{due['id']}", token)
    assert detail["conversation"]["status"] == "open"
    _, inbox = call(server, "GET", "/admin/api/conversations?status=snoozed", token)
    assert [c["id"] for c in inbox["conversations"]] == [later["id"]]  # not due yet: still snoozed


async def test_snoozes_reopen_with_two_replicas_and_after_the_worker_replica_dies(
        start_server: Callable[..., ServerProcess], workspace) -> None:
    one = start_server(SNOOZE_CHECK_INTERVAL="0.2")
    two = start_server(SNOOZE_CHECK_INTERVAL="0.2")
    token = owner_token(one, workspace)
    first = start_conversation(one, workspace, "ann")
    async with admin_socket(two, token) as agent:
        call(one, "POST", f"/admin/api/conversations/{first['id']}/status", token,
             {"status": "snoozed", "snoozed_until": _in(1.0)})
        await agent.wait_for("conversation:updated", lambda d: d["id"] == first["id"] and d["status"] == "open",
                             timeout=15)

    one.kill()  # whichever replica held the worker lease, the survivor takes over
    second = start_conversation(two, workspace, "bob")
    async with admin_socket(two, token) as agent:
        call(two, "POST", f"/admin/api/conversations/{second['id']}/status", token,
             {"status": "snoozed", "snoozed_until": _in(1.0)})
        await agent.wait_for("conversation:updated", lambda d: d["id"] == second["id"] and d["status"] == "open",
                             timeout=20)
