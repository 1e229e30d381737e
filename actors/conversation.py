"""The conversation actor: applies a partition's commands in order, numbering messages with a
gapless per-conversation `seq` and committing each batch in one transaction (group commit).

Every command on a conversation takes this one path, whoever sends it (SDK REST and socket, agent
REST and socket, workers): the actor alone creates conversations, answers resends (a client_id
already stored returns the original, fanned out again), and checks that a resend comes from the
original's sender.

Replies go out only after the commit; fan-out and domain events follow in seq order.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import asyncpg
import msgspec

from actors.runtime.state_cache import StateCache
from server.conversations import store
from server.conversations.commit import (
    ConversationState,
    DuplicateClientIds,
    NewMessage,
    StaleSeq,
    apply_receipt,
    apply_update,
    existing_messages,
    load_states,
)
from server.conversations.group_commit import GroupCommitter
from server.conversations.models import (
    Conversation,
    ConversationCommand,
    CreateCommand,
    Created,
    Message,
    Receipt,
    ReceiptCommand,
    SendCommand,
    Sent,
    UpdateCommand,
)
from server.conversations.ports import ConversationFanout
from server.errors import ApiError, Conflict, NotFound, ServiceUnavailable
from server.platform.metrics import Metrics

log = logging.getLogger("replyhq.actors.conversation")
_encoder = msgspec.json.Encoder()
_command_decoder = msgspec.json.Decoder(ConversationCommand)  # type: ignore[var-annotated]


class _Result(msgspec.Struct, tag_field="t"):
    pass


class MessageResult(_Result, tag="m"):
    value: Message
    created: bool = True  # a Sent; the default reads a reply of a replica that predates the flag


class ReceiptResult(_Result, tag="r"):
    value: Receipt


class ConversationResult(_Result, tag="c"):
    value: Conversation


class CreatedResult(_Result, tag="n"):
    value: Created


_result_decoder = msgspec.json.Decoder(MessageResult | ReceiptResult | ConversationResult | CreatedResult)


class Outcome(msgspec.Struct):
    """What a processed command leaves for after_process: the fan-out to do."""

    result: Any
    new: bool  # False for a resent message: no second fan-out
    # The conversation as the batch saw it: fan-out needs it after the cache may have evicted it.
    state: ConversationState | None = None
    # A create: the conversation as it was made, announced (conversation:created) before its message.
    announce: Conversation | None = None


class ConversationHandler:
    kind = "conversation"

    def __init__(self, pool: asyncpg.Pool, fanout: ConversationFanout, metrics: Metrics, commit_workers: int = 1,
                 state_cache_size: int = 50_000) -> None:
        self.pool = pool
        self.fanout = fanout
        self.metrics = metrics
        self.committer = GroupCommitter(pool, metrics, workers=commit_workers)
        # The conversations this replica served most recently; any other is read from Postgres
        # when next touched, so memory stays flat however many conversations pass through.
        self.states: StateCache[UUID, ConversationState] = StateCache(state_cache_size)
        metrics.conversation_states_cached.set_function(lambda: len(self.states))
        self._pending_effects: dict[int, list[Outcome]] = {}

    # ---- lifecycle (the app's, or a test's) ----------------------------------------------
    async def start(self) -> None:
        """Start the group-commit workers: before the actor host hands this handler a batch."""
        await self.committer.start()

    async def close(self) -> None:
        """Stop them (they hold pool connections): after the actor host stopped, before the pool closes."""
        await self.committer.close()

    # ---- codec ---------------------------------------------------------------------
    def key(self, command: ConversationCommand) -> str:
        return command.conversation_id

    def encode(self, command: ConversationCommand) -> bytes:
        return _encoder.encode(command)

    def decode(self, data: bytes) -> ConversationCommand:
        return _command_decoder.decode(data)  # type: ignore[no-any-return]

    def encode_result(self, result: Any) -> bytes:
        if isinstance(result, Sent):
            return _encoder.encode(MessageResult(result.message, result.created))
        if isinstance(result, Receipt):
            return _encoder.encode(ReceiptResult(result))
        if isinstance(result, Created):
            return _encoder.encode(CreatedResult(result))
        return _encoder.encode(ConversationResult(result))

    def decode_result(self, data: bytes) -> Any:
        decoded = _result_decoder.decode(data)
        if isinstance(decoded, MessageResult):
            return Sent(message=decoded.value, created=decoded.created)
        return decoded.value

    # ---- processing ------------------------------------------------------------------
    async def process(self, partition: int, commands: list[ConversationCommand]) -> list[Any]:
        for attempt in range(3):
            try:
                outcomes = await self._process_once(commands)
                break
            except (StaleSeq, asyncpg.UniqueViolationError, asyncpg.DeadlockDetectedError) as exc:
                # Someone else wrote to one of these conversations (a previous owner finishing
                # late): forget what we believed and read it again.
                log.warning("reloading conversation state after %s (attempt %s)", exc, attempt + 1)
                self._forget(commands)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("commit failed: %s", exc)
                self._forget(commands)
                err = ServiceUnavailable("storage unavailable; retry with the same client_id", code="storage")
                return [err] * len(commands)
        else:
            err = ServiceUnavailable("conversation busy; retry with the same client_id", code="conflict_retry")
            return [err] * len(commands)
        self._pending_effects[partition] = outcomes
        return [o.result for o in outcomes]

    def _forget(self, commands: list[ConversationCommand]) -> None:
        for c in commands:
            try:
                self.states.discard(UUID(c.conversation_id))
            except ValueError:
                pass

    async def _process_once(self, commands: list[ConversationCommand]) -> list[Outcome]:
        ids: list[UUID | None] = []
        for c in commands:
            try:
                ids.append(UUID(c.conversation_id))
            except ValueError:
                ids.append(None)
        # The batch works on its own copy of the states it needs: while it awaits Postgres, other
        # partitions' batches may evict them from the cache without touching this one.
        known: dict[UUID, ConversationState] = {}
        # Conversations made first: nobody can name them in a command before their create answers.
        born = await self._create([(c, i) for c, i in zip(commands, ids, strict=True)
                                   if isinstance(c, CreateCommand) and i is not None], known)
        missing: list[UUID] = []
        for i in {i for i in ids if i is not None and i not in known}:
            state = self.states.get(i)
            if state is None:
                missing.append(i)
            else:
                known[i] = state
        if missing:
            known.update(await load_states(self.pool, missing))
        sends: list[tuple[SendCommand, UUID]] = []  # a resend's original is looked up by (conversation, client_id)
        for c, cid in zip(commands, ids, strict=True):
            send = c.first if isinstance(c, CreateCommand) else c
            if isinstance(send, SendCommand) and cid is not None and cid in known:
                sends.append((send, cid))
        prior: dict[tuple[UUID, str], Message] = {}
        while True:
            # Optimistic: assume no client_id is a resend; the commit says if one was.
            outcomes, states, new = self._plan(commands, ids, known, born, prior)
            base = {i: known[i] for i in {m.conversation_id for m in new}}
            try:
                await self.committer.commit(new, base)
                break
            except DuplicateClientIds:
                if prior:
                    raise
                async with self.pool.acquire() as conn:
                    prior = await existing_messages(conn, [(i, c.client_id) for c, i in sends])
        self.states.put_many(states)
        others = [n for n, o in enumerate(outcomes) if o is None]
        if others:  # receipts and conversation changes: rarer, one transaction, in order
            async with self.pool.acquire() as conn:
                async with conn.transaction():
                    for n in others:
                        cmd = commands[n]
                        state = states[ids[n]]  # type: ignore[index]
                        if isinstance(cmd, ReceiptCommand):
                            receipt = await apply_receipt(conn, state, cmd.participant_kind,
                                                          UUID(cmd.participant_id), cmd.delivered_seq, cmd.read_seq)
                            outcomes[n] = Outcome(receipt, True, state)
                        elif isinstance(cmd, UpdateCommand):
                            outcomes[n] = Outcome(await apply_update(conn, state, cmd), True, state)
        # A conversation created with its first message answers as it stands after that message.
        grown = [o.result for o in outcomes if o is not None and isinstance(o.result, Created) and o.result.message]
        if grown:
            now = await store.by_ids(self.pool, [UUID(c.conversation.id) for c in grown])
            for created in grown:
                created.conversation = now.get(UUID(created.conversation.id), created.conversation)
        return [o for o in outcomes if o is not None]

    async def _create(self, creates: list[tuple[CreateCommand, UUID]],
                      known: dict[UUID, ConversationState]) -> dict[UUID, Conversation]:
        """Make the conversations the batch creates (each in its own transaction, the creation
        recorded once even if a create is processed again) and add their states to `known`."""
        born: dict[UUID, Conversation] = {}
        if not creates:
            return born
        async with self.pool.acquire() as conn:
            for cmd, i in creates:
                try:
                    conv, _ = await store.create(conn, i, UUID(cmd.app_id), UUID(cmd.user_id), cmd.subject)
                except asyncpg.ForeignKeyViolationError:  # the app or the user is gone: not found below
                    continue
                known[i] = ConversationState(i, UUID(conv.app_id), UUID(conv.user_id), conv.last_seq)
                born[i] = conv
        return born

    def _plan(self, commands: list[ConversationCommand], ids: list[UUID | None],
              known: dict[UUID, ConversationState], born: dict[UUID, Conversation],
              prior: dict[tuple[UUID, str], Message]
              ) -> tuple[list[Outcome | None], dict[UUID, ConversationState], list[NewMessage]]:
        """Number the batch's new messages from each conversation's last_seq (nothing is written)."""
        states = {i: known[i] for i in ids if i is not None and i in known}
        outcomes: list[Outcome | None] = [None] * len(commands)
        new: list[NewMessage] = []
        fresh: dict[tuple[UUID, str], Message] = {}
        now = datetime.now(UTC)
        stamp = (now, now.isoformat().replace("+00:00", "Z"))
        for n, cmd in enumerate(commands):
            cid = ids[n]
            state = states.get(cid) if cid is not None else None
            if (state is None or str(state.app_id) != cmd.app_id or (
                    isinstance(cmd, CreateCommand) and (state.id not in born or str(state.user_id) != cmd.user_id))):
                outcomes[n] = Outcome(NotFound("conversation not found", code="conversation_not_found"), False)
                continue
            if isinstance(cmd, CreateCommand):
                made = born[state.id]
                if cmd.first is None:
                    outcomes[n] = Outcome(Created(conversation=made), True, state, announce=made)
                    continue
                first = self._plan_send(cmd.first, state, states, stamp, prior, fresh, new)
                if isinstance(first.result, Sent):
                    first.result = Created(conversation=made, message=first.result.message)
                first.announce = made
                outcomes[n] = first
            elif isinstance(cmd, SendCommand):
                outcomes[n] = self._plan_send(cmd, state, states, stamp, prior, fresh, new)
        return outcomes, states, new

    @staticmethod
    def _plan_send(cmd: SendCommand, state: ConversationState, states: dict[UUID, ConversationState],
                   stamp: tuple[datetime, str], prior: dict[tuple[UUID, str], Message],
                   fresh: dict[tuple[UUID, str], Message], new: list[NewMessage]) -> Outcome:
        """One send to `state` (the conversation as the batch has it so far): the original if its
        client_id is stored (or earlier in the batch), else a new message numbered next (`states`
        and `new` grow, `fresh` remembers it)."""
        now, created_at = stamp
        key = (state.id, cmd.client_id)
        original = prior.get(key) or fresh.get(key)
        if original is not None:
            if (original.sender_kind, original.sender_id, original.is_note) != (cmd.sender_kind, cmd.sender_id,
                                                                                 cmd.is_note):
                # client_id is unique per conversation: never hand someone else's message (or a
                # private note for a reply, or the reverse) back as "your original".
                return Outcome(Conflict("client_id is already used in this conversation", {"path": "$.client_id"},
                                        code="client_id_taken"), False)
            return Outcome(Sent(message=original, created=False), False, state)
        seq = state.last_seq + 1
        states[state.id] = ConversationState(state.id, state.app_id, state.user_id, seq)
        row = NewMessage(uuid.uuid4(), state.app_id, state.id, seq, cmd.client_id, cmd.sender_kind,
                         UUID(cmd.sender_id) if cmd.sender_id else None, cmd.body,
                         _encoder.encode(cmd.attachments).decode(), cmd.is_note, now)
        new.append(row)
        msg = Message(id=str(row.id), conversation_id=cmd.conversation_id, seq=seq, client_id=cmd.client_id,
                      sender_kind=cmd.sender_kind, sender_id=cmd.sender_id, body=cmd.body,
                      attachments=cmd.attachments, created_at=created_at, is_note=cmd.is_note)
        fresh[key] = msg
        return Outcome(Sent(message=msg, created=True), True, state)

    async def after_process(self, partition: int, results: list[Any]) -> asyncio.Future[None] | None:
        """Fan-out, in the order the batch was applied (domain events were recorded with the commit)."""
        outcomes = self._pending_effects.pop(partition, [])
        for o in outcomes:
            r = o.result
            state = o.state
            if o.announce is not None:  # before its first message, as a device expects
                await self.fanout.conversation("conversation:created", o.announce)
            message = r.message if isinstance(r, (Sent, Created)) else None
            if message is not None:
                if state is None:
                    continue
                # A resend fans the original out again: the owner that committed it may have
                # died before its fan-out, and devices drop what they already hold by seq.
                await self.fanout.message_new(str(state.app_id), str(state.user_id), message)
                continue
            if not o.new or isinstance(r, ApiError):
                continue
            if isinstance(r, Receipt):
                if state is None:
                    continue
                await self.fanout.receipt(str(state.app_id), str(state.user_id), r)
            elif isinstance(r, Conversation):
                await self.fanout.conversation("conversation:updated", r)
        # No wait here: the publishes are queued on the writer the host replies through, ahead
        # of the replies, and local callers wait for what this returns (see ActorHost._reply).
        return self.fanout.published()
