"""Presence when a replica dies: the users whose only sockets were on it go offline for the
agents (event and REST), users still connected elsewhere stay online, and a replica restarted
under the same REPLICA_ID clears what its previous process left."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack

from tests.admin_helpers import call
from tests.inbox_helpers import owner_token
from tests.sockets import Socket, admin_socket, sdk_socket
from tests.support import ServerProcess


async def _sdk(sockets: AsyncExitStack, server: ServerProcess, key: str, user_id: str) -> Socket:
    """An SDK socket that does not reconnect (its replica may die under it), open until `sockets` closes."""
    return await sockets.enter_async_context(sdk_socket(server, key, user_id, device=None))


def _users(server: ServerProcess, token: str) -> dict[str, dict]:  # type: ignore[type-arg]
    """External user id -> the admin API's user (with `online`)."""
    status, body = call(server, "GET", "/admin/api/users", token)
    assert status == 200, body
    return {u["user_id"]: u for u in body["users"]}


def _presence(agent: Socket, user_id: str) -> list[bool]:
    return [d["online"] for d in agent.named("presence") if d["user_id"] == user_id]


async def test_a_dead_replicas_users_go_offline_and_users_on_other_replicas_stay_online(
        start_server, workspace) -> None:
    survivor, doomed = start_server(), start_server()
    token = owner_token(survivor, workspace)
    async with admin_socket(survivor, token) as agent, AsyncExitStack() as sdks:
        bea_phone = await _sdk(sdks, survivor, workspace.publishable_key, "bea")
        ann = await _sdk(sdks, doomed, workspace.publishable_key, "ann")
        bea_laptop = await _sdk(sdks, doomed, workspace.publishable_key, "bea")
        users = _users(survivor, token)
        ann_id, bea_id = users["ann"]["id"], users["bea"]["id"]
        await agent.wait_for("presence", lambda d: d["user_id"] == ann_id and d["online"])
        assert users["ann"]["online"] and users["bea"]["online"]

        doomed.kill()  # SIGKILL: its disconnect handlers never run
        await agent.wait_for("presence", lambda d: d["user_id"] == ann_id and not d["online"], timeout=15)
        users = _users(survivor, token)
        assert users["ann"]["online"] is False and users["bea"]["online"] is True
        await asyncio.sleep(1)  # another reaping round or two: still nothing for bea
        assert _presence(agent, bea_id) == [True]

        await bea_phone.disconnect()  # her last socket: now she goes offline, once
        await agent.wait_for("presence", lambda d: d["user_id"] == bea_id and not d["online"])
        await asyncio.sleep(0.5)
        assert _presence(agent, ann_id) == [True, False]
        assert _presence(agent, bea_id) == [True, False]
        for rec in (ann, bea_laptop):
            await rec.disconnect()


async def test_a_replica_restarted_under_the_same_id_clears_its_previous_sockets(
        start_server, workspace) -> None:
    other, first = start_server(), start_server()
    token = owner_token(other, workspace)
    async with admin_socket(other, token) as agent, AsyncExitStack() as sdks:
        ann = await _sdk(sdks, first, workspace.publishable_key, "ann")
        await agent.wait_for("presence", lambda d: d["online"])
        first.kill()
        # Back at once under the same id, so the other replica never sees it miss a heartbeat.
        start_server(REPLICA_ID=first.env["REPLICA_ID"])
        await agent.wait_for("presence", lambda d: not d["online"], timeout=15)
        assert _users(other, token)["ann"]["online"] is False
        await ann.disconnect()
