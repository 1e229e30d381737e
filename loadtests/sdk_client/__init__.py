"""The Python SDK client: what an app embedding ReplyHQ does over REST and Socket.IO.

Tests and load tests share it; it speaks only the public contracts (docs/socket-events.md, the
OpenAPI document), never the server's internals.
"""

from loadtests.sdk_client.client import ReplyHQClient, ReplyHQError
from loadtests.sdk_client.sync_socket import SyncSocket
from loadtests.sdk_client.webhooks import WebhookVerificationError, verify_webhook

__all__ = ["ReplyHQClient", "ReplyHQError", "SyncSocket", "WebhookVerificationError", "verify_webhook"]
