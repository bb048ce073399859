"""The docs page's HTML: self-contained, escaped, relative URLs only. (The browser test in
tests/e2e drives it for real.)"""

from __future__ import annotations

import html.parser
import json
import re
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from nbserve._runtime.http import docs_page
from nbserve._runtime.http.docs_page import docs_page_html

STATIC = Path(docs_page.__file__).with_name("static")


def page(name: str = "Demo", prefix: str = "") -> str:
    svc: Any = SimpleNamespace(name=name, path_prefix=prefix)
    body = docs_page_html(svc)
    assert isinstance(body, bytes)
    return body.decode("utf-8")


class _Collector(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.data: dict[str, str] = {}
        self._current: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._current = dict(attrs).get("id") or tag

    def handle_data(self, data: str) -> None:
        if self._current:
            self.data[self._current] = self.data.get(self._current, "") + data

    def handle_endtag(self, tag: str) -> None:
        self._current = None


def parse(text: str) -> _Collector:
    collector = _Collector()
    collector.feed(text)
    return collector


def test_a_complete_html_page() -> None:
    text = page()
    assert text.startswith("<!doctype html>")
    assert "{{" not in text  # every slot filled
    assert "<style>" in text
    assert "<script>" in text
    parsed = parse(text)
    assert parsed.data["title"].strip() == "Demo · nbserve"
    assert parsed.data["svc-name"] == "Demo"


def test_no_external_urls() -> None:
    text = page()
    assert not re.search(r"https?://", text), "the page must work offline"
    for tag, attrs in parse(text).tags:
        for key in ("src", "href"):
            value = attrs.get(key)
            if value is not None:
                assert value.startswith(("./", "#", "data:")), f"<{tag} {key}={value!r}>"


def test_fetches_are_relative_to_the_page() -> None:
    js = (STATIC / "docs.js").read_text()
    assert '"./schema.json"' in js
    assert '"./docs.json"' in js
    assert '"./readyz"' in js
    assert not re.search(r"fetch\(\s*[\"'`]/", js), "an absolute path breaks behind a proxy"


def test_the_service_name_is_escaped() -> None:
    name = "</script><img src=x onerror=alert(1)>&"
    text = page(name, "/v1")
    assert text.count("</script>") == 2  # the config and the code, nothing injected
    assert "<img" not in text
    assert "&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;&amp;" in text
    config = parse(text).data["nbserve-config"]
    assert json.loads(config) == {"name": name, "prefix": "/v1"}


def test_assets_are_read_once() -> None:
    page()
    before = docs_page._assets.cache_info()
    page("Other")
    after = docs_page._assets.cache_info()
    assert after.misses == before.misses
    assert after.hits == before.hits + 1


def test_assets_cannot_close_their_element_early() -> None:
    assert "</style" not in (STATIC / "docs.css").read_text().lower()
    assert "</script" not in (STATIC / "docs.js").read_text().lower()


def test_light_and_dark() -> None:
    css = (STATIC / "docs.css").read_text()
    assert "@media (prefers-color-scheme: dark)" in css
    assert 'name="color-scheme" content="light dark"' in page()


@pytest.mark.skipif(shutil.which("node") is None, reason="node checks the JS syntax")
def test_js_parses() -> None:
    subprocess.run(["node", "--check", str(STATIC / "docs.js")], check=True, capture_output=True)
