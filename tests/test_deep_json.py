"""REST bodies nested deeper than the decoder reads (or deep enough to exhaust a recursive check after
it) are a 4xx with an error body, never a 500: the same limit the socket packets have."""

from __future__ import annotations

from tests.support import ServerProcess, http


def test_deeply_nested_bodies_are_a_4xx_not_a_500(server: ServerProcess, workspace) -> None:
    h = {"X-API-Key": workspace.publishable_key, "X-User-Id": "ann"}
    for depth in (990, 3000):
        deep = "[" * depth + "]" * depth
        for method, path in (("POST", "/v1/users/identify"), ("PATCH", "/v1/users/me")):
            raw = ('{"user_id": "ann", "attributes": {"a": ' + deep + "}}").encode()
            status, err = http(method, server.url + path, raw=raw, headers=h)
            assert 400 <= status < 500 and err["error"]["code"] in ("malformed_json", "validation_error"), (
                depth, path, status, err)
    assert http("POST", server.url + "/v1/users/identify", {"user_id": "ann", "attributes": {"a": [[1]]}},
                headers=h)[0] == 200
