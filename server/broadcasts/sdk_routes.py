"""/v1/broadcasts/{delivery_id}/...: an SDK user's receipts of and reply to a broadcast message, and
/v1/r/{token}: the message button's click redirect.

Receipts and replies authenticate like every /v1 route (server/users/sdk_auth.py); the redirect is
opened by a browser, so the signed token is its only credential, and it only ever redirects to the
URL stored with the broadcast.
"""

from __future__ import annotations

from typing import Literal
from uuid import UUID

import msgspec
from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json, redirect

from server.broadcasts import click_tokens, receipts
from server.broadcasts.sdk_schemas import DeliveryState, Reply, ReplyBody
from server.context import context_of
from server.conversations.requests import check_body_size
from server.conversations.sdk_messages import send_as_user
from server.errors import ServiceUnavailable
from server.http.openapi import Operation, document
from server.http.payloads import decode_body
from server.users.sdk_auth import HEADER_PARAMS, sdk_user

bp = Blueprint("sdk_broadcasts", url_prefix="/v1")
_ID = (("delivery_id", "path", 'the delivery: "<run_id>.<ord>", as broadcast:message and sync name it',
        {"type": "string", "maxLength": 100}),)

REPLY = Operation("POST", "/v1/broadcasts/{delivery_id}/reply",
                  "Reply: starts a conversation linked to the delivery with the reply as its first message "
                  "(201); again (the same client_id: the original; another: a new message in that "
                  "conversation) answers 200", "sdk", body=ReplyBody, response=Reply, auth="api_key",
                  params=(*_ID, *HEADER_PARAMS), errors=(404, 409, 503), status=201, also=(200,))
CLICK = Operation("GET", "/v1/r/{token}",
                  "The message button's link: records the first click and redirects (302) to the broadcast's "
                  "button URL; a bad token or a message without a button is 404", "sdk",
                  params=(("token", "path", "the signed token of the button URL", {"type": "string"}),),
                  errors=(404,), status=302)
document(
    Operation("POST", "/v1/broadcasts/{delivery_id}/delivered",
              "The message reached the device: state delivered (a repeat, or after read, changes nothing)",
              "sdk", response=DeliveryState, auth="api_key", params=(*_ID, *HEADER_PARAMS), errors=(404,)),
    Operation("POST", "/v1/broadcasts/{delivery_id}/read",
              "The user saw the message: state read (implies delivered; a repeat changes nothing)", "sdk",
              response=DeliveryState, auth="api_key", params=(*_ID, *HEADER_PARAMS), errors=(404,)),
    REPLY,
    CLICK,
)


async def _advance(request: Request, delivery_id: str, to: Literal[2, 3]) -> HTTPResponse:
    caller, user = await sdk_user(request)
    state = await receipts.advance(context_of(request).pool, caller.app_id, UUID(user.id), delivery_id, to)
    return json(msgspec.to_builtins(DeliveryState(delivery_id=delivery_id, state=state)))


@bp.post("/broadcasts/<delivery_id:str>/delivered")
async def delivered(request: Request, delivery_id: str) -> HTTPResponse:
    return await _advance(request, delivery_id, receipts.DELIVERED)


@bp.post("/broadcasts/<delivery_id:str>/read")
async def read(request: Request, delivery_id: str) -> HTTPResponse:
    return await _advance(request, delivery_id, receipts.READ)


@bp.post("/broadcasts/<delivery_id:str>/reply")
async def reply(request: Request, delivery_id: str) -> HTTPResponse:
    caller, user = await sdk_user(request)
    body = decode_body(request, ReplyBody)
    ctx = context_of(request)
    max_bytes = ctx.settings.max_message_bytes
    check_body_size(body.body, max_bytes)
    d = await receipts.mine(ctx.pool, caller.app_id, UUID(user.id), delivery_id)
    if d.conversation_id is not None:  # replied before: the reply goes to that conversation
        conversation = await ctx.messaging.conversation_for_user(caller.app_id, UUID(user.id),
                                                                 str(d.conversation_id))
        sent = await send_as_user(ctx.messaging, caller.app_id, user.id, conversation.id, client_id=body.client_id,
                                  body=body.body, attachments=(), max_bytes=max_bytes)
        conversation = await ctx.messaging.conversation_for_user(caller.app_id, UUID(user.id), conversation.id)
        out = Reply(delivery_id=str(d.id), conversation=conversation, message=sent.message)
        return json(msgspec.to_builtins(out), status=REPLY.also[0])
    conversation_id = d.id.reply_conversation_id
    conv, message = await ctx.messaging.create_conversation(
        caller.app_id, UUID(user.id), first_message=(body.client_id, body.body, ()), conversation_id=conversation_id)
    first = await receipts.link_reply(ctx.pool, d, conversation_id)
    # Whoever replied has read the message: the funnel never shows more replies than reads.
    await receipts.advance(ctx.pool, caller.app_id, UUID(user.id), delivery_id, receipts.READ)
    if message is None:  # a create with a first message always answers it
        raise ServiceUnavailable("the reply was not stored; retry with the same client_id", code="unavailable")
    out = Reply(delivery_id=str(d.id), conversation=conv, message=message)
    return json(msgspec.to_builtins(out), status=REPLY.status if first else REPLY.also[0])


@bp.get("/r/<token:str>")
async def click(request: Request, token: str) -> HTTPResponse:
    ctx = context_of(request)
    delivery_id = click_tokens.verify(ctx.settings.signing_key, token)
    if delivery_id is None:
        raise receipts.not_found()
    url = await receipts.click(ctx.pool, delivery_id)
    return redirect(url, status=CLICK.status)
