"""Messages and user changes have no foreign keys (migration 011): deleting a conversation, a
user or a whole app still deletes what the group commit wrote for them, and nothing else; and
truncating the parents truncates them too (migration 013)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from uuid import UUID

import asyncpg
import pytest

from server.conversations.commit import ConversationState, NewMessage, StaleSeq, insert_messages
from server.tenancy.workspaces import NewWorkspace


async def _conversation_with_messages(conn: asyncpg.Connection, app_id: UUID, n: int) -> tuple[UUID, UUID]:
    """A user, a conversation and n messages written by the real group-commit statement."""
    user_id = await conn.fetchval("INSERT INTO end_users (app_id, external_id) VALUES ($1, $2) RETURNING id",
                                  app_id, uuid.uuid4().hex)
    conv_id = await conn.fetchval("INSERT INTO conversations (app_id, user_id) VALUES ($1, $2) RETURNING id",
                                  app_id, user_id)
    now = datetime.now(UTC)
    new = [NewMessage(uuid.uuid4(), app_id, conv_id, seq, f"c{seq}", "user", user_id, f"hello {seq}", "[]",
                      False, now) for seq in range(1, n + 1)]
    await insert_messages(conn, new, {conv_id: ConversationState(conv_id, app_id, user_id, 0)})
    return user_id, conv_id


async def _counts(conn: asyncpg.Connection, conv_id: UUID, user_id: UUID) -> tuple[int, int]:
    return (await conn.fetchval("SELECT count(*) FROM messages WHERE conversation_id = $1", conv_id),
            await conn.fetchval("SELECT count(*) FROM user_changes WHERE user_id = $1", user_id))


async def test_deleting_a_conversation_deletes_its_messages_only(db: asyncpg.Pool, workspace: NewWorkspace) -> None:
    async with db.acquire() as conn:
        user, gone = await _conversation_with_messages(conn, workspace.app_id, 3)
        other_user, kept = await _conversation_with_messages(conn, workspace.app_id, 2)
        assert await _counts(conn, gone, user) == (3, 3)

        await conn.execute("DELETE FROM conversations WHERE id = $1", gone)

        assert (await _counts(conn, gone, user))[0] == 0
        assert await _counts(conn, kept, other_user) == (2, 2)


async def test_deleting_a_user_deletes_their_conversations_messages_and_changes(
        db: asyncpg.Pool, workspace: NewWorkspace) -> None:
    async with db.acquire() as conn:
        user, conv = await _conversation_with_messages(conn, workspace.app_id, 4)
        other_user, other_conv = await _conversation_with_messages(conn, workspace.app_id, 1)

        await conn.execute("DELETE FROM end_users WHERE id = $1", user)

        assert await _counts(conn, conv, user) == (0, 0)
        assert await _counts(conn, other_conv, other_user) == (1, 1)


async def test_deleting_an_app_leaves_no_message_or_change_behind(
        db: asyncpg.Pool, workspace: NewWorkspace, other_workspace: NewWorkspace) -> None:
    async with db.acquire() as conn:
        user, conv = await _conversation_with_messages(conn, workspace.app_id, 2)
        other_user, other_conv = await _conversation_with_messages(conn, other_workspace.app_id, 2)

        await conn.execute("DELETE FROM apps WHERE id = $1", workspace.app_id)

        assert await _counts(conn, conv, user) == (0, 0)
        assert await conn.fetchval("SELECT count(*) FROM messages WHERE app_id = $1", workspace.app_id) == 0
        assert await _counts(conn, other_conv, other_user) == (2, 2)


async def test_truncating_the_parents_leaves_no_message_or_change_behind(
        db: asyncpg.Pool, workspace: NewWorkspace) -> None:
    async with db.acquire() as conn:
        await _conversation_with_messages(conn, workspace.app_id, 2)
        await conn.execute("TRUNCATE conversations CASCADE")
        assert await conn.fetchval("SELECT count(*) FROM messages") == 0
        await _conversation_with_messages(conn, workspace.app_id, 2)
        await conn.execute("TRUNCATE end_users CASCADE")  # conversations go by their foreign key
        assert await conn.fetchval("SELECT count(*) FROM messages") == 0
        assert await conn.fetchval("SELECT count(*) FROM user_changes") == 0


async def test_the_commit_writes_nothing_for_a_conversation_that_does_not_exist(
        db: asyncpg.Pool, workspace: NewWorkspace) -> None:
    """What the foreign key refused before: the statement's fence refuses it now, all or nothing."""
    async with db.acquire() as conn:
        user, conv = await _conversation_with_messages(conn, workspace.app_id, 1)
        ghost = uuid.uuid4()
        now = datetime.now(UTC)
        new = [NewMessage(uuid.uuid4(), workspace.app_id, conv, 2, "c2", "user", user, "real", "[]", False, now),
               NewMessage(uuid.uuid4(), workspace.app_id, ghost, 1, "g1", "user", user, "ghost", "[]", False, now)]
        states = {conv: ConversationState(conv, workspace.app_id, user, 1),
                  ghost: ConversationState(ghost, workspace.app_id, user, 0)}
        with pytest.raises(StaleSeq):  # the fence: a conversation it could not advance
            await insert_messages(conn, new, states)
        assert await conn.fetchval("SELECT count(*) FROM messages WHERE conversation_id = ANY($1::uuid[])",
                                   [conv, ghost]) == 1
        assert await _counts(conn, conv, user) == (1, 1)
