"""Property-based attacks: the OpenAPI schema fuzzed by schemathesis over a real HTTP server (on
a FakeBackend), and hypothesis on the archive and volume-spec parsing. Nothing may crash."""

from __future__ import annotations

import io
import tarfile

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api_app import create_app
from runner.archives import Budget, check_tar_gz, decode_base64
from runner.errors import RunnerError
from runner.models import MountPoint, RunRequest
from tests.fakes import FakeBackend
from tests.helpers import serving

# No 500s, and every answer as documented. Schema-valid requests may still be refused: limits
# and volume keys are checked against the operator's settings, which no schema can carry.
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def api_schema(make_module_settings):  # type: ignore[no-untyped-def]
    settings = make_module_settings(max_archive_bytes=4096, max_extracted_bytes=65536)
    with serving(create_app(settings, backend=FakeBackend())) as port:
        yield schemathesis.openapi.from_url(f"http://127.0.0.1:{port}/openapi.json")


def test_the_api_never_fails_and_answers_as_documented(api_schema):  # type: ignore[no-untyped-def]
    # schemathesis' own pytest plugin does not load under pytest 9: drive each operation here.
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert {operation.path for operation in operations} >= {"/run", "/volume", "/health"}
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
        def check(case):  # type: ignore[no-untyped-def]
            case.call_and_validate(checks=CHECKS)

        check()


def tar_gz_of(members: list[tuple[str, bytes, int]]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as archive:
        for name, content, kind in members:
            info = tarfile.TarInfo(name)
            info.type = bytes([kind])
            info.size = len(content) if info.isfile() else 0
            info.linkname = content.decode("latin-1")[:50] if not info.isfile() else ""
            archive.addfile(info, io.BytesIO(content) if info.isfile() else None)
    return out.getvalue()


member_names = st.text(alphabet="ab./\\-_ \x00é", min_size=1, max_size=20)
member_kinds = st.sampled_from(b"0123456")


@given(st.lists(st.tuples(member_names, st.binary(max_size=64), member_kinds), max_size=8))
@settings(max_examples=300, deadline=None)
def test_any_archive_is_accepted_or_refused_cleanly(members):  # type: ignore[no-untyped-def]
    try:
        data = tar_gz_of(members)
    except (ValueError, tarfile.TarError):
        return  # tarfile itself cannot write it
    try:
        names = check_tar_gz(data, "f", Budget(10**6, 100))
    except RunnerError:
        return
    for name in names:
        assert not name.startswith("/") and name != ".." and not name.startswith("../"), name


@given(st.binary(max_size=512))
@settings(max_examples=300, deadline=None)
def test_any_bytes_as_an_archive_are_refused_cleanly(data):  # type: ignore[no-untyped-def]
    try:
        check_tar_gz(data, "f", Budget(10**6, 100))
    except RunnerError:
        pass


@given(st.text(max_size=64))
@settings(max_examples=300, deadline=None)
def test_any_text_as_base64_is_decoded_or_refused_cleanly(text):  # type: ignore[no-untyped-def]
    try:
        decode_base64(text, "f", 1024)
    except RunnerError:
        pass


@given(st.text(max_size=40))
@settings(max_examples=300, deadline=None)
def test_any_volume_key_parses_or_is_refused_with_a_reason(key):  # type: ignore[no-untyped-def]
    try:
        point = MountPoint.parse(key)
    except ValueError as exc:
        assert str(exc)
        return
    assert point.path.startswith("/") and point.path != "/"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=12,
)


@given(st.dictionaries(st.sampled_from(list(RunRequest.model_fields) + ["x"]), json_values))
@settings(max_examples=300, deadline=None)
def test_any_request_body_validates_or_is_refused_cleanly(body):  # type: ignore[no-untyped-def]
    try:
        RunRequest.model_validate(body)
    except ValidationError:
        pass
