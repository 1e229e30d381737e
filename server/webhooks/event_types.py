"""The event types an endpoint can subscribe to, and the schema of each one's `data`.

A webhook body is `{"type", "timestamp", "data"}`: `type` and `data` are those of the domain event
(server/events/catalog.py), `timestamp` its `occurred_at`. `webhook.ping` is sent only by
POST /admin/webhooks/{id}/test. Types whose capability has not landed yet (broadcasts, workflows,
usage limits) can be subscribed to already: deliveries start when their events are recorded.
"""

from __future__ import annotations

from typing import Any

import msgspec

from server.conversations.models import Conversation, EndUser, Message


class MessageData(msgspec.Struct, kw_only=True):
    message: Message | None  # null only if the message was deleted (with its conversation) before it was read


class ConversationData(msgspec.Struct, kw_only=True):
    conversation: Conversation


class ConversationChangeData(msgspec.Struct, kw_only=True):
    conversation: Conversation
    changes: list[str]  # the fields that changed: status, assignee_id, tags, snoozed_until


class StatusChangeData(ConversationChangeData, kw_only=True):
    previous_status: str


class AssignData(ConversationChangeData, kw_only=True):
    previous_assignee_id: str | None


class UserData(msgspec.Struct, kw_only=True):
    user: EndUser


class UserChangeData(msgspec.Struct, kw_only=True):
    user: EndUser
    changes: list[str]  # name, email, attributes, metadata


class BroadcastRunData(msgspec.Struct, kw_only=True):
    broadcast: dict[str, Any]  # the broadcast as GET /admin/api/broadcasts/{id} shows it, with its stats


class WorkflowRunData(msgspec.Struct, kw_only=True):
    workflow_run: dict[str, Any]  # the run as the run log shows it, with the error of the step that failed


class UsageLimitData(msgspec.Struct, kw_only=True):
    metric: str
    limit: int
    value: int
    month: str  # YYYY-MM


class PingData(msgspec.Struct, kw_only=True):
    endpoint_id: str
    message: str


# type -> (when it is sent, the Struct of its data)
WEBHOOK_TYPES: dict[str, tuple[str, type[msgspec.Struct]]] = {
    "conversation.created": ("a conversation was started", ConversationData),
    "conversation.updated": ("tags (or the snooze time) changed, and neither status nor assignee",
                             ConversationChangeData),
    "conversation.assigned": ("the assignee changed (assigned or unassigned)", AssignData),
    "conversation.status_changed": ("status changed (open, closed, snoozed)", StatusChangeData),
    "message.created": ("a message or private note was committed", MessageData),
    "user.created": ("an SDK user was seen for the first time", UserData),
    "user.updated": ("an SDK user's name, email, attributes or device changed", UserChangeData),
    "broadcast.run_completed": ("a broadcast run finished sending", BroadcastRunData),
    "workflow.run_failed": ("a workflow run stopped on an error", WorkflowRunData),
    "usage.limit_reached": ("the workspace reached a limit of its plan this month", UsageLimitData),
    "webhook.ping": ("sent by POST /admin/webhooks/{id}/test only", PingData),
}
# What the consumer turns into deliveries (a ping is never a domain event).
DELIVERED_TYPES = frozenset(WEBHOOK_TYPES) - {"webhook.ping"}


def schemas() -> dict[str, dict[str, Any]]:
    """Each type's data as a self-contained JSON Schema (its own $defs)."""
    out = {}
    for name, (_, struct) in WEBHOOK_TYPES.items():
        (schema,), defs = msgspec.json.schema_components([struct], ref_template="#/$defs/{name}")
        out[name] = {**defs[struct.__name__], "$defs": {k: v for k, v in defs.items() if k != struct.__name__}}
        del schema
    return out
