"""Rate limits at the SDK edge: per API key, per end user, and per source address for handshakes.

Every /v1 request and every /client event counts against its key (`sdk-key`) and its user
(`sdk-user`); every /client handshake counts against its source address (`sdk-address`, checked
before the key is even looked up) and then its key and user. Over a limit, REST answers
`429 rate_limited` with `Retry-After`, an event gets that as its error ack, a handshake as its
`connect_error`. /v1 responses carry the IETF RateLimit headers
(draft-ietf-httpapi-ratelimit-headers) for the policies the request counted against.
"""

from __future__ import annotations

from typing import Any

from sanic import Request
from sanic.response import HTTPResponse

from server.errors import RateLimited
from server.platform.rate_limits import Policy, Verdict, WindowCounters
from server.settings import Settings


def user_subject(app_id: Any, external_id: str | None, anonymous_id: str | None) -> str:
    """One end user, the same whether it comes over REST or a socket."""
    return f"{app_id}:u:{external_id}" if external_id is not None else f"{app_id}:a:{anonymous_id}"


class SdkLimits:
    def __init__(self, settings: Settings, counters: WindowCounters) -> None:
        window = settings.sdk_rate_window
        self.key = Policy("sdk-key", settings.sdk_key_rate_limit, window)
        self.user = Policy("sdk-user", settings.sdk_user_rate_limit, window)
        self.address = Policy("sdk-address", settings.sdk_handshake_rate_limit, window)
        self.counters = counters

    def _check(self, *hits: tuple[Policy, str]) -> list[Verdict]:
        verdicts = []
        for policy, subject in hits:
            verdict = self.counters.hit(policy, subject)
            verdicts.append(verdict)
            if not verdict.allowed:
                raise SdkRateLimited(verdict, verdicts)
        return verdicts

    def handshake_address(self, address: str) -> None:
        """Before anything else in a /client handshake: one address opening sockets in a loop."""
        self._check((self.address, address))

    def use(self, key_id: Any, user: str) -> list[Verdict]:
        """A /v1 request by `user` with the key `key_id`: what it counted against, for the headers."""
        return self._check((self.key, str(key_id)), (self.user, user))

    def use_key(self, key_id: Any) -> list[Verdict]:
        """A /v1 request about the app, not a user (GET /v1/app/config): the key's limit only."""
        return self._check((self.key, str(key_id)))

    def admit(self, key_id: str, user: str) -> None:
        """A /client handshake or event: `use` without the headers (this runs per message)."""
        counters = self.counters
        now = counters.clock()
        for policy, subject in ((self.key, key_id), (self.user, user)):
            if counters.take(policy, subject, now) < 0:
                raise SdkRateLimited(Verdict(policy, False, 0, counters.reset_in(policy, now)), [])


class SdkRateLimited(RateLimited):
    """429 rate_limited; `verdicts` are what the request counted against, for its headers."""

    def __init__(self, verdict: Verdict, verdicts: list[Verdict]) -> None:
        super().__init__(f"rate limit exceeded ({verdict.policy.name}); retry in {verdict.reset} s",
                         {"policy": verdict.policy.name, "retry_after": verdict.reset},
                         retry_after=verdict.reset)
        self.verdicts = verdicts


def note_verdicts(request: Request, verdicts: list[Verdict]) -> None:
    """Remember what a /v1 request counted against, for its response headers."""
    request.ctx.rate_limits = verdicts


def add_headers(request: Request, response: HTTPResponse) -> None:
    """RateLimit-Policy and RateLimit on a /v1 response (429s included)."""
    verdicts: list[Verdict] | None = getattr(request.ctx, "rate_limits", None)
    if not verdicts:
        return
    live = [v for v in verdicts if v.policy.limit > 0]
    if not live:
        return
    response.headers["ratelimit-policy"] = ", ".join(
        f'"{v.policy.name}";q={v.policy.limit};w={v.policy.window}' for v in live)
    response.headers["ratelimit"] = ", ".join(f'"{v.policy.name}";r={v.remaining};t={v.reset}' for v in live)
