"""Analytics: the dashboard's statistics (grows with the analytics issue)."""

from __future__ import annotations

from sanic import Sanic

from server.analytics import routes
from server.context import AppContext


def setup(app: Sanic, ctx: AppContext) -> None:
    app.blueprint(routes.bp)
