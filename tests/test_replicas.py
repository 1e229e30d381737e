"""Two replicas on one Postgres and Redis: a user's devices on different replicas, and agents."""

from __future__ import annotations

import asyncio

from loadtests.sdk_client import ReplyHQClient


async def test_a_users_two_devices_on_different_replicas_see_every_message_in_seq_order(
        start_server, workspace) -> None:
    one, two = start_server(), start_server()
    await asyncio.sleep(1.0)
    phone = ReplyHQClient(one.url, workspace.publishable_key, user_id="traveller", device={"platform": "ios"})
    laptop = ReplyHQClient(two.url, workspace.publishable_key, user_id="traveller", device={"platform": "web"})
    await phone.connect()
    await laptop.connect()
    try:
        conv = (await phone.create_conversation(subject="two devices"))["conversation"]
        sent = [await phone.send(conv["id"], f"hello {i}") for i in range(30)]
        seen = []
        while len(seen) < 30:
            _, msg = await laptop.receive("message:new", timeout=10)  # live fan-out only, no sync
            seen.append(msg["seq"])
        assert seen == [m["seq"] for m in sent] == list(range(1, 31))
        # and the other way round: the laptop answers, the phone gets it
        reply = await laptop.send(conv["id"], "from the laptop")
        while True:
            _, msg = await phone.receive("message:new", timeout=10)
            if msg["seq"] == reply["seq"]:
                assert msg["body"] == "from the laptop"
                break
    finally:
        await phone.close()
        await laptop.close()
