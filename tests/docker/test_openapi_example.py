"""The POST /run example of /docs runs as it is ("Try it out") on an engine that has its image:
here, with the suite's local image in its place, as the docs' examples are run
(`test_docs_examples.py`), and nothing else changed."""

from __future__ import annotations

import base64
import gzip
import io
import tarfile

from fastapi.testclient import TestClient

from tests.helpers import TEST_IMAGE


def test_the_run_example_of_the_openapi_runs_on_the_real_engine(client: TestClient) -> None:
    (example,) = client.get("/openapi.json").json()["components"]["schemas"]["RunRequest"][
        "examples"
    ]
    response = client.post("/run", json={**example, "image": TEST_IMAGE})
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["status"] == "success", result
    returned = base64.b64decode(result["volumes"]["/app/data"]["content"])
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(returned))) as archive:
        member = next(item for item in archive if item.name.endswith("test.txt"))
        assert archive.extractfile(member).read() == b"Hello, World!\n"  # type: ignore[union-attr]
