"""Human-readable API docs served by the app (the OpenAPI document covers REST; this the sockets)."""

from __future__ import annotations

from pathlib import Path

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, text

from server.errors import NotFound
from server.openapi import Operation, document

bp = Blueprint("docs", url_prefix="/docs")
DOCS_DIR = Path(__file__).resolve().parent.parent.parent / "docs"
PAGES = {"socket-events": "socket-events.md"}

document(
    Operation("GET", "/docs/socket-events", "Socket.IO events of /client (and /admin), as Markdown", "docs"),
)


@bp.get("/<page:str>")
async def page(request: Request, page: str) -> HTTPResponse:
    name = PAGES.get(page)
    path = DOCS_DIR / name if name else None
    if path is None or not path.is_file():
        raise NotFound(f"no docs page {page!r}")
    return text(path.read_text(), content_type="text/markdown; charset=utf-8")
