"""Admin authentication and the team: sign-up, sessions, invitations, roles."""

from __future__ import annotations

from sanic import Sanic

from server.auth import account_routes, routes, team_routes
from server.context import AppContext


def setup(app: Sanic, ctx: AppContext) -> None:
    for bp in (routes.bp, team_routes.bp, account_routes.bp):
        app.blueprint(bp)
