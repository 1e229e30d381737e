"""/admin socket inbox events with real servers and SDK sockets: join/leave and typing take a
string or {conversation_id}; replies reach the SDK user live, notes never do; sessions:list;
presence; another app's sockets see nothing; viewers cannot reply."""

from __future__ import annotations

import asyncio
import uuid

from tests.admin_helpers import call
from tests.inbox_helpers import DEVICE, owner_token, reply, start_conversation, teammate
from tests.sockets import admin_socket, sdk_socket
from tests.support import ServerProcess


async def test_join_and_typing_accept_a_string_or_an_object(server: ServerProcess, workspace) -> None:
    token = owner_token(server, workspace)
    conv = start_conversation(server, workspace, "ann")
    async with sdk_socket(server, workspace.publishable_key, "ann") as user, \
            admin_socket(server, token) as agent, admin_socket(server, token) as other_agent:
        for payload in (conv["id"], {"conversation_id": conv["id"]}):
            ack = await agent.call("conversation:join", payload)
            assert ack["ok"] is True and ack["conversation"]["id"] == conv["id"], ack
            assert (await agent.call("conversation:leave", payload))["ok"] is True
        for n, payload in enumerate((conv["id"], {"conversation_id": conv["id"]})):
            assert (await agent.call("typing:start", payload)) == {"ok": True}
            got = await user.wait_for("typing", lambda d, n=n: len(user.named("typing")) > n)
            assert got["conversation_id"] == conv["id"] and got["typing"] is True and got["sender_kind"] == "admin"
            await other_agent.wait_for("typing", lambda d: d["sender_kind"] == "admin")
        assert (await agent.call("typing:stop", conv["id"])) == {"ok": True}
        await user.wait_for("typing", lambda d: d["typing"] is False)
        assert not agent.named("typing")  # never echoed to the typing agent
        # the user typing reaches the agents
        await user.call("typing:start", {"conversation_id": conv["id"]})
        got = await agent.wait_for("typing", lambda d: d["sender_kind"] == "user")
        assert got["user_id"] == conv["user_id"] and got["typing"] is True
        for bad in (None, 42, {"id": conv["id"]}, {"conversation_id": ""}, [conv["id"]]):
            ack = await agent.call("conversation:join", bad)
            assert ack["ok"] is False and 400 <= ack["status"] < 500, (bad, ack)
        ack = await agent.call("conversation:join", str(uuid.uuid4()))
        assert ack["ok"] is False and ack["status"] == 404


async def test_replies_reach_the_sdk_user_live_and_notes_never_do(server: ServerProcess, workspace) -> None:
    token = owner_token(server, workspace)
    conv = start_conversation(server, workspace, "ann")
    async with sdk_socket(server, workspace.publishable_key, "ann") as user, admin_socket(server, token) as agent:
        ack = await agent.call("message:send", {"conversation_id": conv["id"], "client_id": "n1",
                                                  "body": "internal: check billing", "is_note": True})
        assert ack["ok"] and ack["message"]["is_note"] is True
        status, _ = reply(server, token, conv["id"], "rest note", kind="notes")
        assert status == 201
        ack = await agent.call("message:send", {"conversation_id": conv["id"], "client_id": "r1",
                                                  "body": "Hi Ann, on it"})
        assert ack["ok"] and ack["message"]["seq"] == 4 and ack["message"]["sender_kind"] == "admin"
        status, _ = reply(server, token, conv["id"], "Fixed now")
        got = await user.wait_for("message:new", lambda d: d["body"] == "Fixed now")
        assert got["seq"] == 5
        bodies = [m["body"] for m in user.named("message:new")]
        assert bodies == ["Hi Ann, on it", "Fixed now"]  # in seq order, notes absent
        assert "internal" not in str(user.events) and "rest note" not in str(user.events)
        # agents see notes live
        await agent.wait_for("message:new", lambda d: d["body"] == "rest note" and d["is_note"] is True)
        # the user reads; the agent sees the receipt
        await user.call("message:read", {"conversation_id": conv["id"], "seq": 5})
        got = await agent.wait_for("receipt:updated", lambda d: d["participant_kind"] == "user")
        assert got["read_seq"] == 5
        # the agent reads over the socket; unread drops to 0
        ack = await agent.call("message:read", {"conversation_id": conv["id"], "seq": 5})
        assert ack["ok"] and ack["receipt"]["read_seq"] == 5
        _, detail = call(server, "GET", f"/admin/api/conversations/{conv['id']}", token)
        assert detail["conversation"]["admin_unread"] == 0
        assert (await agent.call("message:send", {"conversation_id": conv["id"], "body": "x"}))["status"] == 422


async def test_sessions_list_and_presence(server: ServerProcess, workspace) -> None:
    token = owner_token(server, workspace)
    async with admin_socket(server, token) as agent:
        async with sdk_socket(server, workspace.publishable_key, "ann"):
            online = await agent.wait_for("presence", lambda d: d["online"] is True)
            ack = await agent.call("sessions:list", None)
            assert ack["ok"] is True and len(ack["sessions"]) == 1
            session = ack["sessions"][0]
            assert session["external_user_id"] == "ann" and session["device"]["model"] == DEVICE["model"]
            assert online["user_id"] == session["user_id"]
            async with sdk_socket(server, workspace.publishable_key, "ann"):  # a second device: no new event
                assert len((await agent.call("sessions:list", {}))["sessions"]) == 2
            _, stats = call(server, "GET", "/admin/api/dashboard/stats", token)
            assert stats["online_users"] == 1
            _, users = call(server, "GET", "/admin/api/users", token)
            assert users["users"][0]["online"] is True
        await agent.wait_for("presence", lambda d: d["online"] is False)
        assert [d["online"] for d in agent.named("presence")] == [True, False]
        assert (await agent.call("sessions:list", None))["sessions"] == []


async def test_another_apps_agents_get_404_and_no_events(server: ServerProcess, workspace, other_workspace) -> None:
    ours = owner_token(server, workspace)
    theirs = owner_token(server, other_workspace)
    conv = start_conversation(server, workspace, "ann")
    async with admin_socket(server, theirs) as spy, admin_socket(server, ours) as agent, \
            sdk_socket(server, workspace.publishable_key, "ann") as user:
        for event, data in (("conversation:join", conv["id"]), ("typing:start", {"conversation_id": conv["id"]}),
                            ("message:send", {"conversation_id": conv["id"], "client_id": "x", "body": "hi"}),
                            ("message:read", {"conversation_id": conv["id"], "seq": 1})):
            ack = await spy.call(event, data)
            assert ack["ok"] is False and ack["status"] == 404, (event, ack)
        assert (await spy.call("sessions:list", None))["sessions"] == []
        await agent.call("typing:start", conv["id"])
        await user.call("typing:start", {"conversation_id": conv["id"]})
        reply(server, ours, conv["id"], "hello")
        start_conversation(server, workspace, "bob")
        await agent.wait_for("conversation:created")
        await user.wait_for("message:new")
        await asyncio.sleep(0.3)
        assert spy.events == []  # nothing of the other app: no presence, typing, messages, conversations


async def test_a_viewer_cannot_reply_type_or_read_over_the_socket(server: ServerProcess, workspace) -> None:
    owner = owner_token(server, workspace)
    viewer = teammate(server, owner, "viewer")["access_token"]
    conv = start_conversation(server, workspace, "ann")
    async with admin_socket(server, viewer) as sock:
        assert (await sock.call("conversation:join", conv["id"]))["ok"] is True
        for event, data in (("message:send", {"conversation_id": conv["id"], "client_id": "x", "body": "hi"}),
                            ("typing:start", conv["id"]), ("message:read", {"conversation_id": conv["id"], "seq": 1})):
            ack = await sock.call(event, data)
            assert ack["status"] == 403 and ack["error"]["code"] == "permission_denied", (event, ack)
    _, detail = call(server, "GET", f"/admin/api/conversations/{conv['id']}", owner)
    assert detail["conversation"]["last_seq"] == 1
