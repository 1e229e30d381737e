"""Segments: saved audience filters on end users and their preview (broadcasts and workflows use the
filters through server/segments/filters.py, compile.py and audience.py)."""

from __future__ import annotations

from sanic import Sanic

from server.context import AppContext
from server.segments import routes


def setup(app: Sanic, ctx: AppContext) -> None:
    app.blueprint(routes.bp)
