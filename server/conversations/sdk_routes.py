"""/v1/conversations: an SDK user's conversations, their messages, and read/delivered receipts.

Every write goes through MessagingService (the conversation actor); another user's or another
app's conversation id answers 404, exactly like an id that does not exist.
"""

from __future__ import annotations

from uuid import UUID

import msgspec
from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json

from server.context import context_of
from server.conversations import store as conversations
from server.conversations.models import Conversation, Message, Receipt, ReceiptKind
from server.conversations.requests import CreateConversationBody, NewMessageBody, ReceiptBody, check_body_size
from server.conversations.sdk_messages import send_as_user
from server.conversations.sdk_schemas import CreatedConversation, MessagePage, SdkConversationPage
from server.http.openapi import Operation, document
from server.http.pagination import Cursor
from server.http.payloads import decode_body
from server.http.query_params import int_param, time_param
from server.users.sdk_auth import HEADER_PARAMS, sdk_user

bp = Blueprint("sdk_conversations", url_prefix="/v1/conversations")
_ID = (("conversation_id", "path", "conversation id"),)
_WRITE_ERRORS = (400, 401, 404, 409, 413, 422, 503)

CREATE = Operation("POST", "/v1/conversations", "Start a conversation, optionally with its first message (201)",
                   "sdk", body=CreateConversationBody, response=CreatedConversation, auth="api_key",
                   params=HEADER_PARAMS, errors=(409, 503), status=201)
# A send answers 201 with the new message; a resend with the same client_id 200 with the original.
SEND = Operation("POST", "/v1/conversations/{conversation_id}/messages",
                 "Send a message: 201 with the stored message (id, seq); a resend with the same client_id "
                 "returns the original with 200", "sdk", body=NewMessageBody, response=Message, auth="api_key",
                 params=(*_ID, *HEADER_PARAMS), errors=_WRITE_ERRORS, status=201, also=(200,))
document(
    CREATE,
    Operation("GET", "/v1/conversations", "The user's conversations, newest activity first", "sdk",
              response=SdkConversationPage, auth="api_key", errors=(401, 422), params=(
                  *HEADER_PARAMS, ("before", "query", "next_cursor of the previous page"),
                  ("limit", "query", "1..100, default 20"))),
    Operation("GET", "/v1/conversations/{conversation_id}", "One of the user's conversations", "sdk",
              response=Conversation, auth="api_key", params=(*_ID, *HEADER_PARAMS), errors=(401, 404)),
    Operation("GET", "/v1/conversations/{conversation_id}/messages",
              "Messages in seq order: `after` pages forward, `before` pages back; notes never shown", "sdk",
              response=MessagePage, auth="api_key", errors=(401, 404, 422), params=(
                  *_ID, *HEADER_PARAMS, ("before", "query", "only seq < before (newest of them)"),
                  ("after", "query", "only seq > after (oldest of them); default 0"),
                  ("limit", "query", "1..200, default 50"))),
    SEND,
    Operation("POST", "/v1/conversations/{conversation_id}/delivered",
              "Raise the user's delivered high-water mark to seq", "sdk", body=ReceiptBody, response=Receipt,
              auth="api_key", params=(*_ID, *HEADER_PARAMS), errors=_WRITE_ERRORS),
    Operation("POST", "/v1/conversations/{conversation_id}/read",
              "Raise the user's read (and delivered) high-water mark to seq", "sdk", body=ReceiptBody,
              response=Receipt, auth="api_key", params=(*_ID, *HEADER_PARAMS), errors=_WRITE_ERRORS),
)


@bp.post("")
async def create(request: Request) -> HTTPResponse:
    caller, user = await sdk_user(request)
    body = decode_body(request, CreateConversationBody)
    first = None
    if body.message is not None:
        check_body_size(body.message.body, context_of(request).settings.max_message_bytes)
        first = (body.message.client_id, body.message.body, body.message.attachments)
    conv, message = await context_of(request).messaging.create_conversation(
        caller.app_id, UUID(user.id), subject=body.subject, first_message=first)
    out = CreatedConversation(conversation=conv, message=message)
    return json(msgspec.to_builtins(out), status=CREATE.status)


@bp.get("")
async def list_mine(request: Request) -> HTTPResponse:
    _, user = await sdk_user(request)
    limit = int_param(request, "limit", 20, lo=1, hi=100) or 20
    found, more = await conversations.list_for_user(context_of(request).pool, UUID(user.id), limit=limit,
                                                    before=_before(request))
    page = SdkConversationPage(conversations=found, next_cursor=more.encode() if more else None)
    return json(msgspec.to_builtins(page))


def _before(request: Request) -> Cursor | None:
    """?before=: a next_cursor, or (what next_cursor used to be) an ISO timestamp."""
    raw = request.args.get("before")
    if not raw:
        return None
    try:
        return Cursor.decode(raw)
    except ValueError:
        stamp = time_param(request, "before")  # 422 when it is neither
        return Cursor(stamp, UUID(int=0)) if stamp else None


@bp.get("/<conversation_id:str>")
async def get_one(request: Request, conversation_id: str) -> HTTPResponse:
    caller, user = await sdk_user(request)
    conv = await context_of(request).messaging.conversation_for_user(caller.app_id, UUID(user.id), conversation_id)
    return json(msgspec.to_builtins(conv))


@bp.get("/<conversation_id:str>/messages")
async def list_messages(request: Request, conversation_id: str) -> HTTPResponse:
    caller, user = await sdk_user(request)
    before = int_param(request, "before", None, lo=1, hi=2_147_483_647)
    after = int_param(request, "after", None, lo=0, hi=2_147_483_647)
    limit = int_param(request, "limit", 50, lo=1, hi=200) or 50
    service = context_of(request).messaging
    await service.conversation_for_user(caller.app_id, UUID(user.id), conversation_id)
    found = await service.list_messages(conversation_id, before=before, after=after, limit=limit + 1)
    more = len(found) > limit
    if more:  # drop the extra from the far end of the direction asked
        found = found[1:] if before is not None else found[:limit]
    return json(msgspec.to_builtins(MessagePage(messages=found, has_more=more)))


@bp.post("/<conversation_id:str>/messages")
async def send(request: Request, conversation_id: str) -> HTTPResponse:
    caller, user = await sdk_user(request)
    body = decode_body(request, NewMessageBody)
    service = context_of(request).messaging
    conv = await service.conversation_for_user(caller.app_id, UUID(user.id), conversation_id)
    # The actor answers a resend with the original (200), fanned out again like any resend.
    sent = await send_as_user(service, caller.app_id, user.id, conv.id, client_id=body.client_id,
                              body=body.body, attachments=body.attachments,
                              max_bytes=context_of(request).settings.max_message_bytes)
    return json(msgspec.to_builtins(sent.message), status=SEND.status if sent.created else SEND.also[0])


async def _receipt(request: Request, conversation_id: str, kind: ReceiptKind) -> HTTPResponse:
    caller, user = await sdk_user(request)
    body = decode_body(request, ReceiptBody)
    service = context_of(request).messaging
    conv = await service.conversation_for_user(caller.app_id, UUID(user.id), conversation_id)
    receipt = await service.mark(caller.app_id, conv.id, "user", user.id, kind, body.seq)
    return json(msgspec.to_builtins(receipt))


@bp.post("/<conversation_id:str>/delivered")
async def delivered(request: Request, conversation_id: str) -> HTTPResponse:
    return await _receipt(request, conversation_id, "delivered")


@bp.post("/<conversation_id:str>/read")
async def read(request: Request, conversation_id: str) -> HTTPResponse:
    return await _receipt(request, conversation_id, "read")
