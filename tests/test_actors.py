"""The actor runtime on real Redis and Postgres: leases, rebalancing, ordering, idempotency."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import asyncpg
import msgspec
import pytest
import redis.asyncio as aioredis
import socketio

from actors.conversation import ConversationHandler
from actors.runtime.host import ActorHost
from actors.runtime.leases import PartitionCountMismatch, PartitionLeases
from actors.runtime.partitions import partition_of
from actors.runtime.state_cache import StateCache
from server.conversations.commit import NewMessage
from server.conversations.group_commit import GroupCommitter
from server.conversations.models import (
    Conversation,
    CreateCommand,
    Created,
    Message,
    ReceiptCommand,
    SendCommand,
    Sent,
)
from server.conversations.service import MessagingService
from server.errors import Conflict, NotFound, ServiceUnavailable
from server.platform.metrics import Metrics
from server.platform.redis.writer import RedisWriter
from server.realtime.fanout import Fanout
from server.tenancy.workspaces import NewWorkspace

PARTITIONS = 8


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def make_host(db: asyncpg.Pool, redis: aioredis.Redis) -> AsyncIterator[Callable[..., object]]:
    hosts: list[ActorHost] = []
    writers: list[RedisWriter] = []

    async def make(name: str, call_timeout: float = 10.0,
                   state_cache_size: int = 50_000) -> tuple[ActorHost, MessagingService]:
        metrics = Metrics()
        fanout = Fanout(socketio.AsyncServer(async_mode="asgi"), metrics)
        writer = RedisWriter(redis, f"{name}-writer")  # one per replica, as the app has
        writers.append(writer)
        handler = ConversationHandler(db, fanout, metrics, state_cache_size=state_cache_size)
        await handler.start()
        host: ActorHost = ActorHost(redis, handler, replica_id=name,
                                    partitions=PARTITIONS, writer=writer, metrics=metrics,
                                    call_timeout=call_timeout)
        await host.start()
        hosts.append(host)
        return host, MessagingService(db, host)

    yield make
    for h in hosts:
        await h.stop()
        await h.handler.close()  # its group-commit workers hold pool connections
    for w in writers:
        await w.close()


async def wait_for(predicate: Callable[[], bool], timeout: float = 8.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def test_partitions_rebalance_when_a_replica_joins_and_leaves(make_host) -> None:
    a, _ = await make_host("replica-a")
    await wait_for(lambda: len(a.owned) == PARTITIONS)
    b, _ = await make_host("replica-b")
    await wait_for(lambda: len(a.owned) == len(b.owned) == PARTITIONS // 2)
    assert a.owned.isdisjoint(b.owned)
    await b.stop()
    await wait_for(lambda: len(a.owned) == PARTITIONS)


async def test_a_replica_with_another_partition_count_refuses_to_join(make_host, redis: aioredis.Redis) -> None:
    a, _ = await make_host("replica-a")
    other = PartitionLeases(redis, kind="conversation", partitions=PARTITIONS * 2, replica_id="replica-b")
    with pytest.raises(PartitionCountMismatch, match=f"ACTOR_PARTITIONS is {PARTITIONS * 2} here but {PARTITIONS}"):
        await other.start()
    assert len(a.owned) == PARTITIONS  # the running replica keeps serving every partition
    await a.stop()
    await other.start()  # alone, a new count is taken (a deliberate change with every replica stopped)
    await other.stop()


async def test_a_dead_replicas_partitions_are_taken_over(make_host) -> None:
    a, _ = await make_host("replica-a")
    b, _ = await make_host("replica-b")
    await wait_for(lambda: len(a.owned) == len(b.owned) == PARTITIONS // 2)
    _freeze(a)  # the leases must expire and move
    await wait_for(lambda: len(b.owned) == PARTITIONS)


def _freeze(host: ActorHost) -> None:
    """The replica stops doing anything (a hung or killed process) without handing anything back."""
    host.leases._task.cancel()  # type: ignore[union-attr]
    for task in host._tasks:
        task.cancel()
    for worker in host._workers.values():
        worker.cancel()


async def test_a_send_its_owner_never_answers_times_out_retryably_and_lands_once(make_host, workspace, db) -> None:
    a, _ = await make_host("replica-a")
    b, svc_b = await make_host("replica-b", call_timeout=0.5)
    await wait_for(lambda: len(a.owned) == len(b.owned) == PARTITIONS // 2)
    for i in range(100):  # a conversation whose partition replica-a owns
        conv_id, user_id = await _conversation(svc_b, workspace, f"frozen-{i}")
        if partition_of(conv_id, PARTITIONS) in a.owned:
            break
    _freeze(a)
    cmd = SendCommand(conversation_id=conv_id, app_id=str(workspace.app_id), sender_kind="user",
                      sender_id=user_id, client_id="while-frozen", body="anyone there?")
    with pytest.raises(ServiceUnavailable) as waited:
        await svc_b.send(cmd)
    assert waited.value.code == "timeout" and waited.value.status == 503
    await wait_for(lambda: len(b.owned) == PARTITIONS)
    landed = await svc_b.send(cmd)  # the SDK retries with the same client_id
    assert landed.seq == 1
    assert await db.fetchval("SELECT count(*) FROM messages WHERE conversation_id = $1", uuid.UUID(conv_id)) == 1


async def _conversation(svc: MessagingService, ws: NewWorkspace, external_id: str) -> tuple[str, str]:
    user = await svc.identify(ws.app_id, external_id=external_id, anonymous_id=None)
    conv, _ = await svc.create_conversation(ws.app_id, uuid.UUID(user.id))
    return conv.id, user.id


async def test_concurrent_senders_through_two_replicas_get_gapless_ordered_seq(make_host, workspace, db) -> None:
    _, svc_a = await make_host("replica-a")
    _, svc_b = await make_host("replica-b")
    conv_id, user_id = await _conversation(svc_a, workspace, "u-1")

    async def sender(svc: MessagingService, tag: str) -> list[int]:
        seqs = []
        for i in range(40):
            msg = await svc.send(SendCommand(conversation_id=conv_id, app_id=str(workspace.app_id),
                                             sender_kind="user", sender_id=user_id, client_id=f"{tag}-{i}",
                                             body=f"{tag} {i}"))
            seqs.append(msg.seq)
        return seqs

    seqs_a, seqs_b = await asyncio.gather(sender(svc_a, "a"), sender(svc_b, "b"))
    assert seqs_a == sorted(seqs_a) and seqs_b == sorted(seqs_b)  # each sender's order is kept
    stored = [r["seq"] for r in await db.fetch(
        "SELECT seq FROM messages WHERE conversation_id = $1 ORDER BY seq", uuid.UUID(conv_id))]
    assert stored == list(range(1, 81))
    assert await db.fetchval("SELECT last_seq FROM conversations WHERE id = $1", uuid.UUID(conv_id)) == 80


async def test_resending_a_client_id_returns_the_original_from_either_replica(make_host, workspace, db) -> None:
    _, svc_a = await make_host("replica-a")
    _, svc_b = await make_host("replica-b")
    conv_id, user_id = await _conversation(svc_a, workspace, "u-2")
    cmd = SendCommand(conversation_id=conv_id, app_id=str(workspace.app_id), sender_kind="user",
                      sender_id=user_id, client_id="same-id", body="hello")
    first = await svc_a.send(cmd)
    again = await asyncio.gather(svc_a.send(cmd), svc_b.send(cmd), svc_b.send(cmd))
    assert {m.id for m in again} == {first.id} and {m.seq for m in again} == {1}
    assert await db.fetchval("SELECT count(*) FROM messages WHERE conversation_id = $1", uuid.UUID(conv_id)) == 1


async def test_receipts_are_high_water_marks(make_host, workspace) -> None:
    _, svc = await make_host("replica-a")
    conv_id, user_id = await _conversation(svc, workspace, "u-3")
    for i in range(5):
        await svc.send(SendCommand(conversation_id=conv_id, app_id=str(workspace.app_id), sender_kind="admin",
                                   sender_id=str(workspace.admin_id), client_id=f"x{i}", body="hi"))
    base = {"conversation_id": conv_id, "app_id": str(workspace.app_id), "participant_kind": "user",
            "participant_id": user_id}
    r = await svc.receipt(ReceiptCommand(**base, read_seq=3))
    assert (r.delivered_seq, r.read_seq) == (3, 3)
    r = await svc.receipt(ReceiptCommand(**base, read_seq=2, delivered_seq=5))  # never goes back
    assert (r.delivered_seq, r.read_seq) == (5, 3)
    r = await svc.receipt(ReceiptCommand(**base, read_seq=99))  # clamped to what exists
    assert r.read_seq == 5
    conv = await svc.conversation_for_app(workspace.app_id, conv_id)
    assert conv.user_unread == 0


async def test_a_command_for_another_apps_conversation_is_not_found(make_host, workspace, other_workspace) -> None:
    _, svc = await make_host("replica-a")
    conv_id, user_id = await _conversation(svc, workspace, "u-4")
    with pytest.raises(NotFound):
        await svc.send(SendCommand(conversation_id=conv_id, app_id=str(other_workspace.app_id),
                                   sender_kind="user", sender_id=user_id, client_id="evil", body="hi"))


async def test_a_client_id_used_by_another_sender_is_a_conflict_not_their_message(make_host, workspace) -> None:
    _, svc = await make_host("replica-a")
    conv_id, user_id = await _conversation(svc, workspace, "u-5")
    note = SendCommand(conversation_id=conv_id, app_id=str(workspace.app_id), sender_kind="admin",
                       sender_id=str(workspace.admin_id), client_id="shared", body="private note", is_note=True)
    await svc.send(note)
    with pytest.raises(Conflict):
        await svc.send(SendCommand(conversation_id=conv_id, app_id=str(workspace.app_id), sender_kind="user",
                                   sender_id=user_id, client_id="shared", body="hi"))


async def test_a_resend_is_answered_by_the_actor_as_not_created_and_only_to_its_sender(make_host, workspace,
                                                                                      db) -> None:
    _, svc = await make_host("replica-a")
    conv_id, _ = await _conversation(svc, workspace, "u-6")
    reply = SendCommand(conversation_id=conv_id, app_id=str(workspace.app_id), sender_kind="admin",
                        sender_id=str(workspace.admin_id), client_id="agent-1", body="hello")
    first = await svc.submit(reply)
    again = await svc.submit(reply)
    assert (first.created, again.created) == (True, False) and again.message == first.message
    with pytest.raises(Conflict):  # the same agent's client_id as a note is another message
        await svc.submit(SendCommand(**{**msgspec.structs.asdict(reply), "is_note": True}))
    assert await db.fetchval("SELECT count(*) FROM messages WHERE conversation_id = $1", uuid.UUID(conv_id)) == 1


async def test_a_create_processed_again_makes_one_conversation_message_and_event(make_host, workspace, db) -> None:
    host, svc = await make_host("replica-a")
    user = await svc.identify(workspace.app_id, external_id="u-7", anonymous_id=None)
    conv_id = str(uuid.uuid4())
    create = CreateCommand(conversation_id=conv_id, app_id=str(workspace.app_id), user_id=user.id, subject="once",
                           first=SendCommand(conversation_id=conv_id, app_id=str(workspace.app_id),
                                             sender_kind="user", sender_id=user.id, client_id="c1", body="hi"))
    made = await host.call(create)
    again = await host.call(create)  # what a claimed stream entry does after its owner died
    assert isinstance(made, Created) and made.message is not None and made.conversation.last_seq == 1
    assert again.conversation.id == conv_id and again.message == made.message
    assert await db.fetchval("SELECT count(*) FROM conversations WHERE id = $1", uuid.UUID(conv_id)) == 1
    assert await db.fetchval("SELECT count(*) FROM messages WHERE conversation_id = $1", uuid.UUID(conv_id)) == 1
    assert await db.fetchval("SELECT count(*) FROM domain_events WHERE type = 'conversation.created' "
                             "AND conversation_id = $1", uuid.UUID(conv_id)) == 1
    other = await svc.identify(workspace.app_id, external_id="u-8", anonymous_id=None)
    with pytest.raises(NotFound):  # the id is taken: never someone else's conversation
        await host.call(CreateCommand(conversation_id=conv_id, app_id=str(workspace.app_id), user_id=other.id))


def test_every_result_crosses_replicas_unchanged() -> None:
    handler = ConversationHandler(None, None, Metrics())  # type: ignore[arg-type]
    conv = msgspec.json.decode(b'''{"id": "c", "app_id": "a", "user_id": "u", "status": "open", "assignee_id": null,
        "tags": [], "subject": null, "last_seq": 1, "last_message_at": null, "last_message_preview": null,
        "user_unread": 0, "admin_unread": 1, "snoozed_until": null, "created_at": "t", "updated_at": "t"}''',
                               type=Conversation)
    msg = Message(id="m", conversation_id="c", seq=1, client_id="x", sender_kind="user", sender_id="u", body="b",
                  attachments=[], created_at="t")
    for result in (Sent(message=msg, created=False), Sent(message=msg, created=True),
                   Created(conversation=conv, message=msg), Created(conversation=conv), conv):
        assert handler.decode_result(handler.encode_result(result)) == result


async def test_the_group_committer_starts_its_workers_in_start_not_in_its_constructor(db) -> None:
    before = asyncio.all_tasks()
    committer = GroupCommitter(db, Metrics(), workers=2)
    assert asyncio.all_tasks() == before
    row = NewMessage(uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), 1, "c", "user", None, "b", "[]", False,
                     datetime.now(UTC))
    with pytest.raises(RuntimeError):  # nothing would ever commit it
        await committer.commit([row], {})
    await committer.start()
    assert len(asyncio.all_tasks() - before) == 2
    await committer.close()
    assert asyncio.all_tasks() == before


# ---- the conversation state cache: bounded, and what it forgets is read again correctly --------

def test_the_state_cache_forgets_the_least_recently_used_beyond_its_size() -> None:
    cache: StateCache[str, int] = StateCache(2)
    cache.put_many({"a": 1, "b": 2})
    assert cache.get("a") == 1  # "a" is now more recent than "b"
    cache.put_many({"c": 3})
    assert ("a" in cache, "b" in cache, "c" in cache) == (True, False, True)
    assert len(cache) == 2


def _send(ws: NewWorkspace, conv_id: str, user_id: str, client_id: str) -> SendCommand:
    return SendCommand(conversation_id=conv_id, app_id=str(ws.app_id), sender_kind="user", sender_id=user_id,
                       client_id=client_id, body=f"body of {client_id}")


async def test_a_conversation_whose_state_was_evicted_continues_its_seq_and_answers_resends(
        make_host, workspace, db) -> None:  # type: ignore[no-untyped-def]
    host, svc = await make_host("replica-a", state_cache_size=2)
    conv_id, user_id = await _conversation(svc, workspace, "evicted")
    originals = [await svc.send(_send(workspace, conv_id, user_id, f"first-{i}")) for i in range(3)]
    assert [m.seq for m in originals] == [1, 2, 3]

    async def evict() -> None:  # two other conversations push it out
        for _ in range(2):
            other, other_user = await _conversation(svc, workspace, f"other-{uuid.uuid4().hex[:8]}")
            await svc.send(_send(workspace, other, other_user, "hello"))
        assert uuid.UUID(conv_id) not in host.handler.states

    await evict()
    assert (await svc.send(_send(workspace, conv_id, user_id, "after-eviction"))).seq == 4
    await evict()
    again = await svc.send(_send(workspace, conv_id, user_id, "first-1"))  # the SDK resends
    assert (again.id, again.seq) == (originals[1].id, 2)
    await evict()
    receipt = await svc.receipt(ReceiptCommand(conversation_id=conv_id, app_id=str(workspace.app_id),
                                               participant_kind="user", participant_id=user_id, read_seq=99))
    assert (receipt.read_seq, receipt.delivered_seq) == (4, 4)  # clamped to the real last seq
    await evict()
    assert (await svc.send(_send(workspace, conv_id, user_id, "last"))).seq == 5
    stored = await db.fetch("SELECT seq, client_id FROM messages WHERE conversation_id = $1 ORDER BY seq",
                            uuid.UUID(conv_id))
    assert [(r["seq"], r["client_id"]) for r in stored] == [
        (1, "first-0"), (2, "first-1"), (3, "first-2"), (4, "after-eviction"), (5, "last")]


async def test_a_cache_smaller_than_a_batch_still_numbers_and_fans_out_every_message(
        make_host, workspace, db) -> None:  # type: ignore[no-untyped-def]
    host, svc = await make_host("replica-a", state_cache_size=1)
    fanned: list[tuple[str, int]] = []
    real_message_new = host.handler.fanout.message_new

    async def recording(app_id: str, user_id: str, message) -> None:  # type: ignore[no-untyped-def]
        fanned.append((message.conversation_id, message.seq))
        await real_message_new(app_id, user_id, message)

    host.handler.fanout.message_new = recording
    convs = [await _conversation(svc, workspace, f"busy-{i}") for i in range(20)]
    # Every conversation's sends at once: batches of many conversations, each evicting the others.
    sent = await asyncio.gather(*(svc.send(_send(workspace, c, u, f"{c}-{k}")) for k in range(5) for c, u in convs))
    assert len(host.handler.states) == 1
    by_conv: dict[str, list[int]] = {}
    for m in sent:
        by_conv.setdefault(m.conversation_id, []).append(m.seq)
    assert {c: sorted(seqs) for c, seqs in by_conv.items()} == {c: [1, 2, 3, 4, 5] for c, _ in convs}
    assert sorted(fanned) == sorted((m.conversation_id, m.seq) for m in sent)
    assert await db.fetchval("SELECT count(*) FROM messages WHERE conversation_id = ANY($1::uuid[])",
                             [uuid.UUID(c) for c, _ in convs]) == 100


async def test_touching_more_conversations_than_the_bound_levels_off_at_the_bound(
        make_host, workspace) -> None:  # type: ignore[no-untyped-def]
    host, svc = await make_host("replica-a", state_cache_size=40)
    sizes = []
    touched = []
    for i in range(160):
        conv_id, user_id = await _conversation(svc, workspace, f"many-{i}")
        await svc.send(_send(workspace, conv_id, user_id, "one"))
        touched.append(uuid.UUID(conv_id))
        sizes.append(len(host.handler.states))
    assert sizes[:40] == list(range(1, 41))  # grows while under the bound ...
    assert set(sizes[40:]) == {40}  # ... then stays there
    assert all(c in host.handler.states for c in touched[-40:])  # the most recently used are kept
