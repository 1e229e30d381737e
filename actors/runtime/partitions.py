"""Which partition an actor key (a conversation id, a broadcast id) lives in."""

from __future__ import annotations

import zlib


def partition_of(key: str, partitions: int) -> int:
    return zlib.crc32(key.encode()) % partitions


def stream_key(kind: str, partition: int) -> str:
    return f"actors:{kind}:{partition}"
