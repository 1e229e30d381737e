"""The event envelope and the list of event types with their data: the one place both live.

Types are dot-named and past tense. `data` carries the changed object as the REST API shows it;
the envelope's subject ids say whom it concerns. Served at GET /docs/events (docs/events.md).
"""

from __future__ import annotations

import operator
from datetime import datetime

import msgspec

VERSION = 1
STREAM = "events:domain"  # the Redis Stream the relay appends to and consumer groups read
# The envelopes of each STREAM entry, under the same entry id: the groups of a replica share one
# copy of an entry's events, so each reads only the small entry from STREAM and, for an entry its
# process has not seen, its envelopes from here (workers/runtime/consumer_groups.py).
PAYLOADS = "events:domain:payloads"


# An event's type, for loops over a batch that run in C (map, set, isdisjoint).
event_type = operator.attrgetter("type")


# gc=False: an event holds only strings, numbers and bytes, so it can be in no reference cycle, and
# the worker process decodes thousands a second that the collector then need not track.
class DomainEvent(msgspec.Struct, kw_only=True, gc=False):
    """One committed change. `position` orders events for consumers (see server/events/store.py)."""

    id: str  # "evt_<n>": stable and unique, the same on every delivery
    type: str
    app_id: str
    occurred_at: str
    conversation_id: str | None = None
    user_id: str | None = None
    admin_id: str | None = None
    version: int = VERSION
    # The stored JSON as it is: relaying and most consumers pass it on without parsing it. On the
    # stream, and for consumers that take it so, message.created's is a reference to its message
    # (server/events/store.py `referenced_message`).
    data: msgspec.Raw
    position: str = ""  # "<tx>.<n>"

    def age_s(self, now: float) -> float:
        """Seconds from the event's transaction to `now` (a Unix time)."""
        return max(0.0, now - datetime.fromisoformat(self.occurred_at.replace("Z", "+00:00")).timestamp())


# type -> (when it happens, the keys of `data`)
EVENT_TYPES: dict[str, tuple[str, str]] = {
    "message.created": ("a message or private note was committed (not on a resend)",
                        "message (null if deleted by hand before the read)"),
    "receipt.updated": ("a participant's delivered/read high-water marks rose", "receipt"),
    "conversation.created": ("a conversation was started", "conversation"),
    "conversation.status_changed": ("status changed (open, closed, snoozed; a snooze that ends reopens)",
                                    "conversation, previous_status, changes"),
    "conversation.assigned": ("the assignee changed (assigned or unassigned) and the status did not",
                              "conversation, previous_assignee_id, changes"),
    "conversation.updated": ("tags (or the snooze time) changed, and neither status nor assignee",
                             "conversation, changes"),
    "user.created": ("an SDK user was seen for the first time", "user"),
    "user.identified": ("an anonymous visitor signed in and became the identified user", "user, anonymous_id"),
    "user.updated": ("an SDK user's name, email, attributes or device changed", "user, changes"),
    "api_key.created": ("an API key was created", "api_key"),
    "api_key.revoked": ("an API key was revoked", "api_key"),
    "api_key.rotated": ("an API key was replaced by a new one; it works until its expires_at (the grace)",
                        "api_key, replaced_by"),
    "api_key.updated": ("an API key was renamed or re-scoped, or its legacy plaintext was hashed on first use",
                        "api_key, changes"),
    "team.member_invited": ("a teammate was invited", "invitation"),
    "team.member_joined": ("an invitation was accepted", "admin"),
    "team.member_removed": ("a teammate was removed", "admin_id"),
    "team.role_changed": ("a teammate's role changed", "admin_id, role, previous_role"),
    "team.invitation_resent": ("an invitation was sent again: a new link, the old one dead", "invitation"),
    "team.invitation_revoked": ("a pending invitation was withdrawn (its link is dead)", "invitation"),
    "workspace.created": ("a workspace was created with its owner (sign-up or the CLI)", "workspace, owner"),
    "workspace.updated": ("the workspace's name, timezone or identity verification mode changed",
                          "workspace, changes"),
    "workspace.identity_secret_rotated": ("the identity secret was replaced (never in the event)",
                                          "workspace, previous_valid_until"),
    "branding.updated": ("the messenger's colour, launcher position, greeting, team intro or logo changed",
                         "branding, changes"),
    "account.updated": ("an admin changed their own name or email", "admin, changes"),
    "account.password_changed": ("an admin changed their password (their other sessions ended)",
                                 "admin, other_sessions_ended"),
    "webhook.endpoint_created": ("a webhook endpoint was added", "endpoint"),
    "webhook.endpoint_updated": ("a webhook endpoint's URL, description, types or enabled flag changed",
                                 "endpoint, changes"),
    "webhook.endpoint_deleted": ("a webhook endpoint was deleted", "endpoint"),
    "webhook.endpoint_disabled": ("deliveries disabled an endpoint: it answered 410, or failed for 5 days",
                                  "endpoint, reason"),
    "webhook.secret_rotated": ("a webhook endpoint's signing secret was rotated (never in the event)", "endpoint"),
    "segment.created": ("a segment (saved audience filter) was created", "segment"),
    "segment.updated": ("a segment's name or filter changed", "segment, changes"),
    "segment.deleted": ("a segment was deleted", "segment"),
    "broadcast.created": ("a broadcast draft was created (or duplicated)", "broadcast"),
    "broadcast.updated": ("a draft's name, message, audience, schedule or rate changed", "broadcast, changes"),
    "broadcast.deleted": ("a draft was deleted", "broadcast"),
    "broadcast.scheduled": ("a broadcast was scheduled (once or recurring)", "broadcast"),
    "broadcast.status_changed": ("sent now, paused, resumed or cancelled by a teammate",
                                 "broadcast, previous_status"),
    "broadcast.run_started": ("a run (one occurrence) began: its audience is being snapshotted",
                              "broadcast_id, run_id, scheduled_for"),
    "broadcast.messages_sent": ("a batch of recipients was sent (one event per batch, not per recipient)",
                                "broadcast_id, run_id, count"),
    "broadcast.run_completed": ("a run finished sending (or was cancelled, or failed)", "broadcast"),
    "broadcast.message_delivered": ("an SDK client confirmed it received a broadcast message",
                                    "broadcast_id, run_id, delivery_id, from_state"),
    "broadcast.message_read": ("the user saw a broadcast message (from_state 1: not delivered before)",
                               "broadcast_id, run_id, delivery_id, from_state"),
    "broadcast.message_clicked": ("the user clicked the message's button (first click only)",
                                  "broadcast_id, run_id, delivery_id"),
    "broadcast.message_replied": ("the user replied: a conversation started from the message",
                                  "broadcast_id, run_id, delivery_id, conversation_id"),
    "broadcast.message_failed": ("a recipient could not be sent to (e.g. the user was deleted)",
                                 "broadcast_id, run_id, delivery_id, reason"),
}
