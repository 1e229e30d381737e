"""The replica's Redis client packs commands with hiredis: same bytes on the wire, same errors."""

from __future__ import annotations

import pytest
from redis.asyncio.connection import Connection
from redis.exceptions import DataError

from server.platform.redis.client import connect

COMMANDS = [("SET", "k", "é", "PX", 2000),
            ("XADD", "s", "MAXLEN", "~", 200000, "*", "c", b"\x00\xff", "r", "replica-1"),
            ("EVAL", "return 1", 1, "k", 1.5, -3),
            ("CLIENT SETNAME", "x")]


@pytest.mark.parametrize("args", COMMANDS, ids=[c[0] for c in COMMANDS])
async def test_commands_are_packed_as_redis_py_packs_them(redis_url: str, args: tuple[object, ...]) -> None:
    client = connect(redis_url)
    conn = client.connection_pool.make_connection()
    assert type(conn).pack_command is not Connection.pack_command  # not redis-py's Python packer
    assert b"".join(conn.pack_command(*args)) == b"".join(Connection().pack_command(*args))
    await client.aclose()


async def test_values_round_trip_and_bad_arguments_are_refused(redis_url: str) -> None:
    client = connect(redis_url)
    try:
        await client.set("packing:text", "héllo")
        await client.set("packing:bytes", b"\x00\xff\r\n")
        assert await client.get("packing:text") == "héllo".encode()
        assert await client.get("packing:bytes") == b"\x00\xff\r\n"
        entry = await client.xadd("packing:stream", {"c": b"{}", "n": 7}, maxlen=10, approximate=True)
        assert (await client.xrange("packing:stream"))[0] == (entry, {b"c": b"{}", b"n": b"7"})
        with pytest.raises(DataError):
            await client.set("packing:none", None)  # type: ignore[arg-type]
    finally:
        await client.delete("packing:text", "packing:bytes", "packing:stream")
        await client.aclose()
