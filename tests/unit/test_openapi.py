"""The OpenAPI document says what the runner does: each operation's errors (and only those, with
real bodies in the runner's format), tags, a bearer scheme only where a token is needed, the
headers sent, examples valid against their own schemas; and the answers Starlette would give in
its own formats come in the runner's."""

from __future__ import annotations

import base64
import gzip
import io
import tarfile
from collections.abc import Iterator
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from api_app import create_app
from runner.rest.docs import TAGS
from runner.rest.health import OPEN_PATHS
from tests.fakes import FakeBackend
from tests.helpers import LocalClient, run_body

TOKEN = "openapi-token"
ERRORS_WITH_TOKENS = {
    ("post", "/run"): {401, 403, 404, 413, 415, 422, 429, 499, 502, 503},
    ("get", "/health"): {403, 503},
    ("get", "/livez"): {403},
    ("get", "/metrics"): {401, 403},
    ("post", "/runs"): {401, 403, 404, 413, 415, 422, 429, 503},
    ("get", "/runs"): {401, 403, 422, 503},
    ("get", "/runs/{run_id}"): {401, 403, 404, 422, 503},
    ("delete", "/runs/{run_id}"): {401, 403, 404, 422, 503},
    ("get", "/runs/{run_id}/logs"): {401, 403, 404, 422, 503},
    ("post", "/runs/{run_id}/cancel"): {401, 403, 404, 413, 415, 422, 503},
    ("get", "/runs/{run_id}/files/{path}"): {401, 403, 404, 409, 422, 503},
    ("post", "/volume"): {400, 401, 403, 409, 413, 415, 422, 501, 503},
    ("get", "/volumes"): {401, 403, 503},
    ("delete", "/volume/{name}"): {401, 403, 404, 409, 422, 503},
    ("get", "/volume/{name}/files"): {401, 403, 404, 409, 413, 422, 501, 503},
    ("get", "/volume/{name}/file"): {401, 403, 404, 409, 413, 422, 501, 503},
    ("put", "/volume/{name}/file"): {400, 401, 403, 404, 409, 413, 415, 422, 501, 503},
    ("get", "/containers"): {401, 403, 422, 503},
    ("get", "/images"): {401, 403, 501, 503},
    ("post", "/images/pull"): {400, 401, 403, 404, 413, 415, 422, 499, 502, 503},
}
"""What each operation can answer besides its success, on a runner with API tokens."""


def document(make_settings: Any, **settings: Any) -> dict[str, Any]:
    app = create_app(make_settings(**settings), backend=FakeBackend())
    schema: dict[str, Any] = app.openapi()
    return schema


def operations(schema: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, methods in schema["paths"].items():
        for method, operation in methods.items():
            yield method, path, operation


@pytest.fixture(scope="module")
def with_tokens(make_module_settings: Any) -> dict[str, Any]:
    return document(make_module_settings, api_tokens=[TOKEN])


@pytest.fixture(scope="module")
def without_tokens(make_module_settings: Any) -> dict[str, Any]:
    return document(make_module_settings)


def test_each_operation_lists_exactly_the_errors_it_can_give(with_tokens: dict[str, Any]) -> None:
    listed = {
        (method, path): {int(code) for code in operation["responses"] if int(code) >= 400}
        for method, path, operation in operations(with_tokens)
    }
    assert listed == ERRORS_WITH_TOKENS


def test_without_tokens_no_401_of_a_token_but_421_of_a_host(
    without_tokens: dict[str, Any],
) -> None:
    for method, path, operation in operations(without_tokens):
        assert "421" in operation["responses"], (method, path)
        assert "token" not in str(operation["responses"].get("401")), (method, path)


def test_every_error_has_a_real_example_in_the_runners_format(with_tokens: dict[str, Any]) -> None:
    for method, path, operation in operations(with_tokens):
        for code, response in operation["responses"].items():
            if int(code) < 400 or path == "/health":
                continue
            content = response["content"]["application/json"]
            assert content["schema"] == {"$ref": "#/components/schemas/ErrorBody"}
            assert content["examples"], (method, path, code)
            for example in content["examples"].values():
                assert example["value"]["message"] != "string", (method, path, code)


def test_every_operation_is_tagged(with_tokens: dict[str, Any]) -> None:
    names = {tag["name"] for tag in TAGS}
    for method, path, operation in operations(with_tokens):
        assert len(operation["tags"]) == 1 and operation["tags"][0] in names, (method, path)
    assert [tag["name"] for tag in with_tokens["tags"]] == [tag["name"] for tag in TAGS]


def test_with_tokens_a_lock_where_one_is_needed_only(with_tokens: dict[str, Any]) -> None:
    assert "security" not in with_tokens
    for method, path, operation in operations(with_tokens):
        needed = path not in OPEN_PATHS
        assert ("security" in operation) == needed, (method, path)
        assert ("401" in operation["responses"]) == (needed or path == "/run"), (method, path)


def test_without_tokens_no_lock_at_all(without_tokens: dict[str, Any]) -> None:
    assert "securitySchemes" not in without_tokens["components"]
    assert all("security" not in operation for _, _, operation in operations(without_tokens))
    assert "requires no token" in without_tokens["info"]["description"]


def test_the_headers_sent_are_declared(with_tokens: dict[str, Any]) -> None:
    paths = with_tokens["paths"]
    assert paths["/runs"]["post"]["responses"]["202"]["headers"]["Location"]["required"]
    assert paths["/run"]["post"]["responses"]["429"]["headers"]["Retry-After"]["required"]
    assert "WWW-Authenticate" in paths["/runs"]["get"]["responses"]["401"]["headers"]
    files = paths["/runs/{run_id}/files/{path}"]["get"]["responses"]["200"]
    assert "Content-Disposition" in files["headers"]


def valid(value: Any, schema: dict[str, Any], components: dict[str, Any]) -> bool:
    return Draft202012Validator({**schema, "components": components}).is_valid(value)


def test_every_example_is_valid_against_its_own_schema(with_tokens: dict[str, Any]) -> None:
    components = with_tokens["components"]
    checked = 0
    for _, _, operation in operations(with_tokens):
        for response in operation["responses"].values():
            for content in response.get("content", {}).values():
                for example in content.get("examples", {}).values():
                    assert valid(example["value"], content["schema"], components), example
                    checked += 1
    for name, schema in components["schemas"].items():
        for example in schema.get("examples", []):
            assert valid(example, {"$ref": f"#/components/schemas/{name}"}, components), name
            checked += 1
        for field, part in schema.get("properties", {}).items():
            for example in part.get("examples", []):
                assert valid(example, part, components), (name, field, example)
                checked += 1
    assert checked > 60


def test_the_run_example_runs_a_local_image(with_tokens: dict[str, Any]) -> None:
    (example,) = with_tokens["components"]["schemas"]["RunRequest"]["examples"]
    assert example["pull_policy"] == "missing"


def test_the_volume_example_content_is_a_base64_tar_gz(with_tokens: dict[str, Any]) -> None:
    volume = with_tokens["components"]["schemas"]["CreateVolumeRequest"]["properties"]
    (content,) = volume["content"]["examples"]
    data = gzip.decompress(base64.b64decode(content, validate=True))
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        assert archive.getnames() == ["data/hello.txt"]


@pytest.mark.parametrize(
    "rule",
    [
        ({"volumes": {"app": {"type": "directory"}}}, False),
        ({"volumes": {"/app:ro": {"type": "directory"}}}, True),
        ({"env_vars": {"A=B": "x"}}, False),
        ({"command": []}, False),
        ({"command": "   "}, False),
        ({"command": "it's"}, False),
        ({"command": "sh -c 'echo hi'"}, True),
        ({"memory": "5m"}, False),
        ({"memory": "6m"}, True),
        ({"volumes": {"/f": {"type": "file", "mode": "0999", "content": "aGk="}}}, False),
        ({"volumes": {"/f": {"type": "file"}}}, False),
        ({"volumes": {"/f": {"type": "file", "content": "not base64!"}}}, False),
        ({"volumes": {"/v": {"type": "volume"}}}, False),
        ({"volumes": {"/v": {"type": "volume", "name": "cache", "response": True}}}, False),
        ({"volumes": {"/h": {"type": "host", "host_path": "srv"}}}, False),
        ({"volumes": {"/h": {"type": "host", "host_path": "/srv"}}}, True),
        ({"timeout_seconds": None, "response": None}, False),
        ({"timeout_seconds": None}, True),
    ],
    ids=str,
)
def test_the_schema_says_what_the_server_refuses(
    with_tokens: dict[str, Any], api: Any, rule: tuple[dict[str, Any], bool]
) -> None:
    """Each rule as the schema says it, and as the server judges it: a 422 exactly when the
    schema refuses (the policy may still refuse with a 403)."""
    fields, accepted = rule
    body = run_body("true", **fields)
    components = with_tokens["components"]
    assert valid(body, {"$ref": "#/components/schemas/RunRequest"}, components) == accepted
    assert (api.post("/run", json=body).status_code != 422) == accepted


@pytest.fixture(scope="module")
def client(make_module_settings: Any) -> Iterator[Any]:
    app = create_app(make_module_settings(max_request_bytes=4096), backend=FakeBackend())
    with LocalClient(app) as test_client:
        yield test_client


def refused(response: Any, status: int, error: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["error"] == error and body["message"]
    return body


def test_an_unknown_path_is_a_404_in_the_runners_format(client: Any) -> None:
    refused(client.get("/no/such/path"), 404, "not_found")


def test_a_405_lists_every_method_of_the_path(client: Any) -> None:
    response = client.put("/runs", json={})
    refused(response, 405, "method_not_allowed")
    assert response.headers["allow"] == "GET, POST"


def test_a_post_where_none_is_taken_is_405_whatever_its_body(client: Any) -> None:
    response = client.post("/health", content=b"x", headers={"Content-Type": "text/plain"})
    refused(response, 405, "method_not_allowed")


@pytest.mark.parametrize(("method", "path"), [("POST", "/runs"), ("PUT", "/volume/cache/file")])
def test_a_body_that_does_not_say_json_is_a_415_where_the_method_is_taken(
    client: Any, method: str, path: str
) -> None:
    """A page's text/plain body (no preflight) is refused before any route reads it, for every
    method a path takes, as the document says."""
    body = b'{"path": "a", "content": "x"}'
    response = client.request(method, path, content=body, headers={"Content-Type": "text/plain"})
    refused(response, 415, "unsupported_media_type")


@pytest.mark.parametrize("path", ["/volume", "/images/pull"])
def test_a_body_that_is_not_utf8_is_a_400_in_the_runners_format(client: Any, path: str) -> None:
    response = client.post(path, content=b'{"name": "\xff"}', headers={"Content-Type": JSON})
    assert refused(response, 400, "unreadable_body")["field"] == "body"


JSON = "application/json"


def test_a_declared_length_over_the_bound_is_a_413_in_the_runners_format(client: Any) -> None:
    refused(client.request("GET", "/runs", content=b"x" * 5000), 413, "payload_too_large")


def test_a_streamed_body_over_the_bound_is_a_413_in_the_runners_format(client: Any) -> None:
    chunks = iter([b'{"name": "', b"x" * 5000, b'"}'])
    response = client.post("/volume", content=chunks, headers={"Content-Type": JSON})
    refused(response, 413, "payload_too_large")
