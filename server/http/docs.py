"""Human-readable API docs served by the app (the OpenAPI document covers REST; this the sockets)."""

from __future__ import annotations

from pathlib import Path

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, text

from server.errors import NotFound
from server.http.openapi import Operation, document

bp = Blueprint("docs", url_prefix="/docs")
DOCS_DIR = Path(__file__).resolve().parent.parent.parent / "docs"

document(
    Operation("GET", "/docs/socket-events", "Socket.IO events of /client (and /admin), as Markdown", "docs",
              content_type="text/markdown", errors=(404,), storage=False),
    Operation("GET", "/docs/events", "Domain events: the envelope, every type and its data, as Markdown", "docs",
              content_type="text/markdown", errors=(404,), storage=False),
    Operation("GET", "/docs/webhooks", "Webhooks: types, signing, verifying (Python, Node), retries, as Markdown",
              "docs", content_type="text/markdown", errors=(404,), storage=False),
)


def _page(name: str) -> HTTPResponse:
    path = DOCS_DIR / f"{name}.md"
    if not path.is_file():  # an install without the docs folder
        raise NotFound(f"the docs page {name} is not installed")
    return text(path.read_text(), content_type="text/markdown; charset=utf-8")


@bp.get("/socket-events")
async def socket_events(request: Request) -> HTTPResponse:
    return _page("socket-events")


@bp.get("/events")
async def events(request: Request) -> HTTPResponse:
    return _page("events")


@bp.get("/webhooks")
async def webhooks(request: Request) -> HTTPResponse:
    return _page("webhooks")
