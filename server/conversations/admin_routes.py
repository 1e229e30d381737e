"""Admin inbox REST: list/search conversations, read one with its history, and act on it
(reply, private note, assign, status, tags, read). Writes go through server.conversations.agent."""

from __future__ import annotations

from uuid import UUID

import msgspec
from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json

from server.auth.rbac import current_admin, requires
from server.context import context_of
from server.conversations import agent
from server.conversations import inbox_queries as inbox_sql
from server.conversations import store as conversations
from server.conversations.admin_schemas import (
    AssignBody,
    ConversationDetail,
    ConversationPage,
    ReadBody,
    ReplyBody,
    ReplyResult,
    StatusBody,
    TagsBody,
)
from server.conversations.models import Conversation, Receipt
from server.errors import ValidationFailed
from server.http.openapi import Operation, document
from server.http.payloads import decode_body
from server.http.query_params import int_param, text_param
from server.users import store as users

bp = Blueprint("admin_conversations", url_prefix="/admin/api/conversations")
_ID = (("conversation_id", "path", "conversation id"),)
_WRITE = (400, 401, 403, 404, 409, 413, 422, 503)
STATUSES = ("open", "pending", "snoozed", "closed")
# A send answers 201 with the new message; a resend with the same client_id 200 with the original.
REPLY = Operation("POST", "/admin/api/conversations/{conversation_id}/messages",
                  "Reply as the signed-in agent: 201 with the message; a resend with the same client_id returns "
                  "the original with 200", "inbox", body=ReplyBody, response=ReplyResult, auth="admin_jwt",
                  params=_ID, errors=_WRITE, status=201, also=(200,))
NOTE = Operation("POST", "/admin/api/conversations/{conversation_id}/notes",
                 "Add a private note (is_note): agents see it, the user never does; 201, or 200 with the "
                 "original on a resend", "inbox", body=ReplyBody, response=ReplyResult, auth="admin_jwt",
                 params=_ID, errors=_WRITE, status=201, also=(200,))

document(
    Operation("GET", "/admin/api/conversations", "The inbox: the app's conversations, most recently active first",
              "inbox", response=ConversationPage, auth="admin_jwt", errors=(401, 403, 422), params=(
                  ("status", "query", "open | pending | snoozed | closed (default: every status)"),
                  ("assignee", "query", "an admin id, or `me`"),
                  ("unassigned", "query", "true: only conversations nobody is assigned to"),
                  ("unread", "query", "true: only conversations with user messages no agent has read"),
                  ("tag", "query", "only conversations carrying this tag"),
                  ("q", "query", "search subject, message bodies, user name / email / user id"),
                  ("cursor", "query", "next_cursor of the previous page"),
                  ("limit", "query", "1..100, default 30"))),
    Operation("GET", "/admin/api/conversations/{conversation_id}",
              "A conversation with its user (metadata.device included), receipts and newest messages, "
              "notes included; page back with ?before=<seq>", "inbox", response=ConversationDetail,
              auth="admin_jwt", errors=(401, 403, 404, 422), params=(
                  *_ID, ("before", "query", "only messages with seq < before"),
                  ("limit", "query", "1..200, default 50"))),
    REPLY,
    NOTE,
    Operation("POST", "/admin/api/conversations/{conversation_id}/assign",
              "Assign to a teammate of the app, or unassign with null", "inbox", body=AssignBody,
              response=Conversation, auth="admin_jwt", params=_ID, errors=_WRITE),
    Operation("POST", "/admin/api/conversations/{conversation_id}/status",
              "Set the status: open (also reopens), pending, snoozed (with snoozed_until), closed", "inbox",
              body=StatusBody, response=Conversation, auth="admin_jwt", params=_ID, errors=_WRITE),
    Operation("POST", "/admin/api/conversations/{conversation_id}/tags", "Add and remove tags", "inbox",
              body=TagsBody, response=Conversation, auth="admin_jwt", params=_ID, errors=_WRITE),
    Operation("POST", "/admin/api/conversations/{conversation_id}/read",
              "Raise the agent's read high-water mark to seq (clears the unread count)", "inbox",
              body=ReadBody, response=Receipt, auth="admin_jwt", params=_ID, errors=_WRITE),
)


def _flag(request: Request, name: str) -> bool:
    raw = (request.args.get(name) or "").lower()
    if raw in ("", "0", "false", "no"):
        return False
    if raw in ("1", "true", "yes"):
        return True
    raise ValidationFailed(f"query parameter {name} must be true or false", {"path": f"?{name}"},
                           code="invalid_query")


def _filter(request: Request) -> inbox_sql.InboxFilter:
    me = current_admin(request)
    status = request.args.get("status") or None
    if status == "all":
        status = None
    if status is not None and status not in STATUSES:
        raise ValidationFailed("query parameter status must be open, pending, snoozed or closed",
                               {"path": "?status", "value": status[:50]}, code="invalid_query")
    assignee: UUID | None = None
    raw = request.args.get("assignee")
    if raw == "me":
        assignee = me.admin_id or UUID(int=0)  # a legacy key session is nobody: matches nothing
    elif raw:
        try:
            assignee = UUID(raw)
        except ValueError:
            raise ValidationFailed("query parameter assignee must be an admin id or me",
                                   {"path": "?assignee", "value": raw[:50]}, code="invalid_query") from None
    q = text_param(request, "q", 200)
    tag = text_param(request, "tag", 50)
    return inbox_sql.InboxFilter(status=status, assignee_id=assignee, unassigned=_flag(request, "unassigned"),
                                 unread=_flag(request, "unread"), tag=tag, q=q)


@bp.get("")
@requires("conversations.read")
async def list_inbox(request: Request) -> HTTPResponse:
    me = current_admin(request)
    limit = int_param(request, "limit", 30, lo=1, hi=100) or 30
    cursor = None
    if request.args.get("cursor"):
        try:
            cursor = inbox_sql.Cursor.decode(request.args.get("cursor", ""))
        except ValueError:
            raise ValidationFailed("query parameter cursor is not a cursor this API returned",
                                   {"path": "?cursor"}, code="invalid_query") from None
    found, next_cursor = await inbox_sql.list_inbox(context_of(request).pool, me.app_id, _filter(request),
                                                    limit=limit, cursor=cursor)
    page = ConversationPage(conversations=found, next_cursor=next_cursor.encode() if next_cursor else None)
    return json(msgspec.to_builtins(page))


@bp.get("/<conversation_id:str>")
@requires("conversations.read")
async def detail(request: Request, conversation_id: str) -> HTTPResponse:
    me = current_admin(request)
    before = int_param(request, "before", None, lo=1, hi=2_147_483_647)
    limit = int_param(request, "limit", 50, lo=1, hi=200) or 50
    ctx = context_of(request)
    conv = await agent.conversation(ctx, me, conversation_id)
    # Newest page first: "before" defaults to just past the newest message.
    found = await ctx.messaging.list_messages(conv.id, before=before or conv.last_seq + 1, after=None,
                                              limit=limit + 1, include_notes=True)
    more = len(found) > limit
    user = await users.get(ctx.pool, me.app_id, UUID(conv.user_id))
    assert user is not None  # conversations.user_id is a foreign key of the same app
    out = ConversationDetail(conversation=conv, user=user, messages=found[1:] if more else found, has_more=more,
                             receipts=await conversations.receipts(ctx.pool, UUID(conv.id)))
    return json(msgspec.to_builtins(out))


async def _send(request: Request, conversation_id: str, is_note: bool) -> HTTPResponse:
    body = decode_body(request, ReplyBody)
    message, created = await agent.reply(context_of(request), current_admin(request), conversation_id,
                                         client_id=body.client_id, body=body.body, is_note=is_note)
    op = NOTE if is_note else REPLY
    return json(msgspec.to_builtins(ReplyResult(message=message)), status=op.status if created else op.also[0])


@bp.post("/<conversation_id:str>/messages")
@requires("conversations.reply")
async def reply(request: Request, conversation_id: str) -> HTTPResponse:
    return await _send(request, conversation_id, is_note=False)


@bp.post("/<conversation_id:str>/notes")
@requires("conversations.reply")
async def note(request: Request, conversation_id: str) -> HTTPResponse:
    return await _send(request, conversation_id, is_note=True)


@bp.post("/<conversation_id:str>/assign")
@requires("conversations.assign")
async def assign(request: Request, conversation_id: str) -> HTTPResponse:
    body = decode_body(request, AssignBody)
    conv = await agent.assign(context_of(request), current_admin(request), conversation_id, body.assignee_id)
    return json(msgspec.to_builtins(conv))


@bp.post("/<conversation_id:str>/status")
@requires("conversations.assign")
async def set_status(request: Request, conversation_id: str) -> HTTPResponse:
    body = decode_body(request, StatusBody)
    conv = await agent.set_status(context_of(request), current_admin(request), conversation_id, body.status,
                                  body.snoozed_until)
    return json(msgspec.to_builtins(conv))


@bp.post("/<conversation_id:str>/tags")
@requires("conversations.assign")
async def tags(request: Request, conversation_id: str) -> HTTPResponse:
    body = decode_body(request, TagsBody)
    conv = await agent.tag(context_of(request), current_admin(request), conversation_id, body.add, body.remove)
    return json(msgspec.to_builtins(conv))


@bp.post("/<conversation_id:str>/read")
@requires("conversations.reply")  # a write others see (unread counts): not for viewers
async def read(request: Request, conversation_id: str) -> HTTPResponse:
    body = decode_body(request, ReadBody)
    receipt = await agent.read(context_of(request), current_admin(request), conversation_id, body.seq)
    return json(msgspec.to_builtins(receipt))
