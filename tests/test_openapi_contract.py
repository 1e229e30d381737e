"""The REST contract: /openapi.json names every route the server serves, and says what each answers.

The last test is the short pass of `make fuzz` (schemathesis, a few examples per operation, fixed
seed) against a real server signed in with every security scheme of the document.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import CHECKS as CHECK_REGISTRY
from schemathesis.config import SchemathesisConfig

from server.dev.embedded import EmbeddedServices
from tests.api_contract import CHECKS, Credentials, provision
from tests.api_contract import settings as contract_settings
from tests.conftest import TEST_JWT_SECRET, cloned_database, module_server
from tests.support import ServerProcess, http

# What the app serves besides the API: the dashboard's pages and assets, its vendor libraries, Socket.IO.
NOT_API = ("/v1/socket.io", "/vendor/", "/js", "/css", "/img", "/favicon.ico")


def _served_operations() -> set[tuple[str, str]]:
    from server.app import create_app
    from server.settings import load_settings

    app = create_app(load_settings({"DATABASE_URL": "postgresql://unused/x", "REDIS_URL": "redis://unused",
                                    "JWT_SECRET": TEST_JWT_SECRET, "REPLYHQ_ENV": "test"}),
                     name=f"contract_{secrets.token_hex(4)}")
    served = set()
    for route in app.router.routes:
        path = "/" + "/".join(f"{{{p[1:-1].split(':')[0]}}}" if p.startswith("<") else p
                              for p in route.path.split("/"))
        if path == "/" or path.endswith(".html") or path.startswith(NOT_API):
            continue
        served |= {(method, path) for method in route.methods if method not in ("HEAD", "OPTIONS")}
    return served


def test_every_route_is_documented_and_every_documented_operation_is_served() -> None:
    from server.http.openapi import build_document

    served = _served_operations()
    doc = build_document()
    documented = {(method.upper(), path) for path, ops in doc["paths"].items() for method in ops}
    assert served - documented == set(), "served but not in /openapi.json"
    assert documented - served == set(), "in /openapi.json but not served"


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def test_every_schema_reference_resolves() -> None:
    from server.http.openapi import build_document

    doc = build_document()
    refs = set(_refs(doc))
    assert len(refs) > 20
    for ref in refs:
        node: Any = doc
        for part in ref.removeprefix("#/").split("/"):
            assert isinstance(node, dict) and part in node, f"{ref} does not resolve"
            node = node[part]
    security = {name for path in doc["paths"].values() for op in path.values()
                for req in op.get("security", ()) for name in req}
    assert security <= set(doc["components"]["securitySchemes"])


# -- against a real server ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def contract_server(services: EmbeddedServices, pg_admin_url: str, template_db: str,
                    tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server for the module: the fuzz pass runs many operations against it."""
    with cloned_database(pg_admin_url, template_db, f"contract_{os.getpid()}") as url, \
            module_server(services, url, tmp_path_factory.mktemp("contract"), redis_db=15,
                          LOG_LEVEL="WARNING") as server:
        yield server


@pytest.fixture(scope="module")
def credentials(contract_server: ServerProcess) -> Credentials:
    return provision(contract_server.url)


def _documented(doc: dict[str, Any], method: str, path: str) -> set[int]:
    return {int(s) for s in doc["paths"][path][method.lower()]["responses"]}


def test_create_routes_answer_the_status_they_document(contract_server: ServerProcess,
                                                       credentials: Credentials) -> None:
    url, doc = contract_server.url, http("GET", contract_server.url + "/openapi.json")[1]
    admin = {"authorization": f"Bearer {credentials.admin_token}"}
    sdk = {"x-api-key": credentials.publishable_key, "x-user-id": "contract-user"}
    answered: dict[tuple[str, str], int] = {}

    def call(method: str, path: str, body: Any, headers: dict[str, str] | None = None, **ids: str) -> Any:
        status, out = http(method, url + path.format(**ids), body, headers=headers)
        answered[(method, path)] = status
        assert 200 <= status < 300, (path, status, out)
        return out

    call("POST", "/admin/auth/signup", {"email": f"c-{secrets.token_hex(3)}@acme.test", "password": "long enough pw",
                                        "app_name": "Contract"})
    call("POST", "/admin/api/api-keys", {"kind": "secret", "name": "ci"}, admin)
    call("POST", "/admin/api/team/invite", {"email": "new@acme.test", "role": "agent"}, admin)
    conv = call("POST", "/v1/conversations", {"subject": "hello"}, sdk)["conversation"]
    call("POST", "/v1/conversations/{conversation_id}/messages", {"client_id": "m1", "body": "hi"}, sdk,
         conversation_id=conv["id"])
    call("POST", "/admin/api/conversations/{conversation_id}/messages", {"client_id": "r1", "body": "hello"}, admin,
         conversation_id=conv["id"])
    call("POST", "/admin/api/conversations/{conversation_id}/notes", {"client_id": "n1", "body": "vip"}, admin,
         conversation_id=conv["id"])
    assert set(answered.values()) == {201}
    for (method, path), status in answered.items():
        assert status in _documented(doc, method, path), (method, path, status)
    # a resend answers 200 with the original: documented too
    status, _ = http("POST", url + f"/v1/conversations/{conv['id']}/messages", {"client_id": "m1", "body": "hi"},
                     headers=sdk)
    assert status == 200 in _documented(doc, "POST", "/v1/conversations/{conversation_id}/messages")


def test_an_empty_user_header_is_a_documented_422(contract_server: ServerProcess, credentials: Credentials) -> None:
    url, doc = contract_server.url, http("GET", contract_server.url + "/openapi.json")[1]
    empty = {"x-api-key": credentials.publishable_key, "x-user-id": ""}
    for path, documented in (("/v1/users/me", "/v1/users/me"),
                             (f"/v1/conversations/{secrets.token_hex(4)}", "/v1/conversations/{conversation_id}")):
        status, body = http("GET", url + path, headers=empty)
        assert (status, body["error"]["code"]) == (422, "invalid_user_id")
        assert 422 in _documented(doc, "GET", documented), documented


@pytest.fixture(scope="module")
def contract_schema(contract_server: ServerProcess, credentials: Credentials) -> Any:
    config = contract_settings(credentials)
    return schemathesis.openapi.from_url(contract_server.url + "/openapi.json",
                                         config=SchemathesisConfig.from_dict(config))


def test_every_operation_keeps_the_contract(contract_schema: Any) -> None:
    """What `make fuzz` checks, briefly: no 5xx, only documented statuses, content types and bodies,
    and invalid input refused. A few valid and a few invalid requests per operation, fixed seed."""
    checks = [CHECK_REGISTRY.get_one(name) for name in CHECKS]
    failures: dict[str, str] = {}
    accepted: set[str] = set()  # operations that answered 2xx at least once: the credentials work
    operations = [result.ok() for result in contract_schema.get_all_operations()]
    assert len(operations) > 30
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(max_examples=4, derandomize=True, deadline=None, database=None,
                      suppress_health_check=list(HealthCheck), phases=[Phase.generate])
            def check(case: schemathesis.Case) -> None:
                response = case.call_and_validate(checks=checks)
                if response.status_code < 300:
                    accepted.add(case.operation.label)

            try:
                check()
            except Unsatisfiable:  # nothing in this operation can be made invalid (no parameters, no body)
                pass
            except Exception as exc:  # every operation's failure is reported, not only the first
                failures[f"{operation.label} ({mode.value})"] = str(exc)[:2000]
    assert not failures, "\n\n".join(f"{label}: {err}" for label, err in failures.items())
    assert {"GET /admin/auth/me", "GET /admin/api/api-keys", "POST /v1/users/identify"} <= accepted, accepted
