"""What an agent does to a conversation — reply, note, assign, status, tags, read — shared by the
admin REST routes and the /admin socket. Every write goes through the conversation actor
(MessagingService); this module only checks the agent's input against the app first."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID

from server.auth.rbac import AdminPrincipal
from server.context import AppContext
from server.conversations import inbox_queries as inbox_sql
from server.conversations.models import Conversation, Message, Receipt, SendCommand, UpdateCommand
from server.conversations.requests import check_body_size
from server.errors import Forbidden, NotFound, ValidationFailed


def _admin_id(p: AdminPrincipal) -> str | None:
    return str(p.admin_id) if p.admin_id else None


async def conversation(ctx: AppContext, p: AdminPrincipal, conversation_id: str) -> Conversation:
    """The app's conversation or 404: another app's id looks exactly like a missing one."""
    conv: Conversation = await ctx.messaging.conversation_for_app(p.app_id, conversation_id)
    return conv


async def reply(ctx: AppContext, p: AdminPrincipal, conversation_id: str, *, client_id: str, body: str,
                is_note: bool) -> tuple[Message, bool]:
    """Send as the agent; returns (message, created). The actor answers a resend with the same
    client_id with the original (created=False) — but only if it is this agent's message of the
    same kind (reply or note); otherwise a 409."""
    conv = await conversation(ctx, p, conversation_id)
    check_body_size(body, ctx.settings.max_message_bytes)
    sent = await ctx.messaging.submit(SendCommand(
        conversation_id=conv.id, app_id=str(p.app_id), sender_kind="admin", sender_id=_admin_id(p),
        client_id=client_id, body=body, is_note=is_note))
    message: Message = sent.message
    return message, sent.created


async def assign(ctx: AppContext, p: AdminPrincipal, conversation_id: str, assignee_id: str | None) -> Conversation:
    conv = await conversation(ctx, p, conversation_id)
    if assignee_id is not None:
        try:
            assignee = UUID(assignee_id)
        except ValueError:
            raise NotFound("no such teammate", code="assignee_not_found") from None
        if not await inbox_sql.admin_in_app(ctx.pool, p.app_id, assignee):
            raise NotFound("no such teammate", code="assignee_not_found")
    return await _update(ctx, UpdateCommand(conversation_id=conv.id, app_id=str(p.app_id), actor_id=_admin_id(p),
                                            assignee_id=assignee_id, unassign=assignee_id is None))


async def set_status(ctx: AppContext, p: AdminPrincipal, conversation_id: str, status: str,
                     snoozed_until: str | None) -> Conversation:
    until = _snooze_time(status, snoozed_until)
    conv = await conversation(ctx, p, conversation_id)
    return await _update(ctx, UpdateCommand(conversation_id=conv.id, app_id=str(p.app_id), actor_id=_admin_id(p),
                                            status=status, snoozed_until=until))  # type: ignore[arg-type]


def _snooze_time(status: str, raw: str | None) -> str | None:
    if status != "snoozed":
        if raw is not None:
            raise ValidationFailed("snoozed_until is only allowed with status snoozed",
                                   {"path": "$.snoozed_until"}, code="validation_error")
        return None
    if raw is None:
        raise ValidationFailed("status snoozed needs snoozed_until", {"path": "$.snoozed_until"})
    try:  # in UTC: a time whose UTC form is past year 9999 could be stored but never read back
        until = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        until = until.astimezone(UTC) if until.tzinfo is not None else until
    except (ValueError, OverflowError):
        until = None
    if until is None or until.tzinfo is None:
        raise ValidationFailed("snoozed_until must be an ISO 8601 time with a zone", {"path": "$.snoozed_until"})
    if until <= datetime.now(UTC):
        raise ValidationFailed("snoozed_until must be in the future", {"path": "$.snoozed_until"})
    return until.isoformat()


async def tag(ctx: AppContext, p: AdminPrincipal, conversation_id: str,
              add: list[str], remove: list[str]) -> Conversation:
    if not add and not remove:
        raise ValidationFailed("give tags to add or remove", {"path": "$"})
    conv = await conversation(ctx, p, conversation_id)
    return await _update(ctx, UpdateCommand(conversation_id=conv.id, app_id=str(p.app_id), actor_id=_admin_id(p),
                                            add_tags=[t.strip() for t in add],
                                            remove_tags=[t.strip() for t in remove]))


async def read(ctx: AppContext, p: AdminPrincipal, conversation_id: str, seq: int) -> Receipt:
    """The agent's read high-water mark; it also clears the conversation's unread count."""
    if p.admin_id is None:
        raise Forbidden("a legacy API-key session has no agent to record a read for", code="no_admin")
    conv = await conversation(ctx, p, conversation_id)
    receipt: Receipt = await ctx.messaging.mark(p.app_id, conv.id, "admin", str(p.admin_id), "read", seq)
    return receipt


async def _update(ctx: AppContext, command: UpdateCommand) -> Conversation:
    conv: Conversation = await ctx.messaging.update(command)
    return conv
