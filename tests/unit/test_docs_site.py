"""The documentation site: `mkdocs build --strict` passes, the configuration page is what
`Settings` gives, and every page, served offline, renders in headless Chromium (tests/browser.py)
with its title, its navigation and its search, without a console message or a failed request,
and without a link that leads nowhere."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from functools import partial
from html.parser import HTMLParser
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit

import pytest
import yaml

from runner.settings import Settings
from tests.browser import load
from tests.helpers import ROOT

DOCS = ROOT / "docs"
ORIGIN = "http://site.invalid/"
"""Where links are resolved from: any origin serves, the built site's own paths are checked."""


def nav_pages() -> dict[str, str]:
    """Each page of mkdocs.yml's navigation (its file) and its title there."""
    found: dict[str, str] = {}

    def walk(entries: list[dict[str, Any]]) -> None:
        for entry in entries:
            for title, target in entry.items():
                if isinstance(target, list):
                    walk(target)
                else:
                    found[target] = title

    walk(yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"])
    return found


def url_of(page: str) -> str:
    """The built page's path in the site, as mkdocs writes it (`concepts.md` → `concepts/`)."""
    return "" if page == "index.md" else page.removesuffix(".md") + "/"


def heading_of(page: str) -> str:
    return (DOCS / page).read_text().splitlines()[0].removeprefix("# ")


def configuration_hook() -> ModuleType:
    spec = importlib.util.spec_from_file_location("configuration", DOCS / "hooks/configuration.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The site built strictly, as CI and a writer build it; and what the build said."""
    site = tmp_path_factory.mktemp("site")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return site, done.stderr


class Recording(SimpleHTTPRequestHandler):
    """Serves the site; remembers every request's path and status."""

    requests: list[tuple[str, int]]

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        self.requests.append((self.path, int(code)))

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def served(built: tuple[Path, str]) -> Iterator[tuple[str, list[tuple[str, int]]]]:
    """The built site over HTTP on loopback: its URL and the requests made to it."""
    requests: list[tuple[str, int]] = []
    handler = type("Handler", (Recording,), {"requests": requests})
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=str(built[0])))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", requests
    finally:
        server.shutdown()
        server.server_close()
        thread.join(30)


def test_the_site_builds_strictly_without_a_warning(built: tuple[Path, str]) -> None:
    assert "WARNING" not in built[1], built[1]


def test_every_page_is_in_the_navigation_and_every_navigation_entry_is_a_page() -> None:
    pages = {str(path.relative_to(DOCS)) for path in DOCS.rglob("*.md")}
    assert set(nav_pages()) == pages


def test_the_configuration_page_is_generated_from_settings() -> None:
    page = (DOCS / "configuration.md").read_text()
    assert configuration_hook().with_tables(page) == page, (
        "docs/configuration.md differs from runner/settings.py: "
        "run `uv run python docs/hooks/configuration.py`"
    )
    for name in Settings.model_fields:
        assert f"`RUNNER_{name.upper()}`" in page, name


TEST_REFERENCE = re.compile(r"(tests/[\w/]+\.py)::(\w+)")
"""How a page names the test of a control (`docs/security.md`): `tests/<file>.py::<test>`."""


def test_every_test_a_page_names_exists() -> None:
    named = [
        (page.name, *found.groups())
        for page in DOCS.rglob("*.md")
        for found in TEST_REFERENCE.finditer(page.read_text())
    ]
    assert named
    for page, file, test in named:
        source = ROOT / file
        assert source.is_file(), f"{page} names {file}, which does not exist"
        assert re.search(rf"^(async )?def {test}\(", source.read_text(), re.M), (
            f"{page} names {file}::{test}, which does not exist"
        )


def test_the_built_configuration_page_lists_every_setting(built: tuple[Path, str]) -> None:
    html = (built[0] / "configuration/index.html").read_text()
    for name in Settings.model_fields:
        assert f"RUNNER_{name.upper()}" in html, name


class Anchors(HTMLParser):
    """A page's ids, the links it follows (`a`) and what it loads (scripts, styles, images)."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.links: list[str] = []
        self.loads: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if found.get("id"):
            self.ids.add(str(found["id"]))
        if tag == "a" and found.get("href"):
            self.links.append(str(found["href"]))
        for attribute in ("src",) if tag != "link" else ("href",):
            if found.get(attribute):
                self.loads.append(str(found[attribute]))


def parsed(path: Path) -> Anchors:
    anchors = Anchors()
    anchors.feed(path.read_text())
    return anchors


def target_file(site: Path, url: str) -> Path:
    path = site / unquote(urlsplit(url).path).lstrip("/")
    return path / "index.html" if path.is_dir() else path


def test_every_internal_link_and_anchor_of_the_built_site_resolves(
    built: tuple[Path, str],
) -> None:
    site = built[0]
    for page in site.rglob("*.html"):
        here = urljoin(ORIGIN, str(page.relative_to(site)))
        anchors = parsed(page)
        for link in anchors.links:
            url = urljoin(here, link)
            if not url.startswith(ORIGIN):
                continue  # another site's page: a link to follow, never a load
            target = target_file(site, url)
            assert target.is_file(), f"{page.relative_to(site)}: {link} leads nowhere"
            fragment = urlsplit(url).fragment
            if fragment and target.suffix == ".html":
                assert fragment in parsed(target).ids, f"{page.relative_to(site)}: {link}"
        for loaded in anchors.loads:
            url = urljoin(here, loaded)
            assert url.startswith(ORIGIN), f"{page.relative_to(site)} loads {loaded} from afar"
            assert target_file(site, url).is_file(), f"{page.relative_to(site)}: {loaded}"


def test_the_search_index_holds_every_page(built: tuple[Path, str]) -> None:
    index = json.loads((built[0] / "search/search_index.json").read_text())
    locations = {entry["location"] for entry in index["docs"]}
    assert {url_of(page) for page in nav_pages()} <= locations
    concepts = [entry for entry in index["docs"] if entry["location"] == "concepts/#lease"]
    assert concepts and "renews" in concepts[0]["text"]


@pytest.mark.chromium
@pytest.mark.parametrize("page", list(nav_pages()))
def test_a_page_renders_with_its_title_navigation_and_search(
    page: str, served: tuple[str, list[tuple[str, int]]]
) -> None:
    base, requests = served
    requests.clear()
    loaded = load(base + url_of(page))
    title = "oneoff-runner" if page == "index.md" else f"{heading_of(page)} - oneoff-runner"
    assert f"<title>{title}</title>" in loaded.dom
    assert f">{heading_of(page)}<" in loaded.dom.replace("\n", "")  # the page's own h1
    for entry in nav_pages().values():
        assert entry in loaded.dom, f"the navigation lacks {entry!r}"
    assert loaded.console == [], loaded.console
    failed = [(path, status) for path, status in requests if status != 200]
    assert failed == [], failed
    assert ("/search/search_index.json", 200) in requests  # the search's worker loaded it
