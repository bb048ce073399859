"""The docs page at `GET {prefix}/`: a self-contained HTML page to read and call a service's APIs.

BentoML serves Swagger UI, whose assets come from the server's `static_content/` (and, in many
setups, a CDN). nbserve's page has no external URL at all: the HTML, CSS and JS are inlined, so
it works offline, in an air-gapped cluster and behind Jupyter's proxy. The page reads
`./schema.json` and `./docs.json` with relative URLs, so it works under any path prefix.

The three assets live in `static/` as plain files (editable with a web editor's tooling) and are
read once per process, on first use.
"""

from __future__ import annotations

import functools
import html
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nbserve._sdk.service import Service

__all__ = ["docs_page_html"]

_STATIC = Path(__file__).with_name("static")
_SLOT = re.compile(r"\{\{(title|css|js|config)\}\}")


@functools.cache
def _assets() -> tuple[str, str, str]:
    """(html template, css, js), read from the package once."""
    return tuple(  # type: ignore[return-value]
        (_STATIC / name).read_text(encoding="utf-8")
        for name in ("docs.html", "docs.css", "docs.js")
    )


def _script_json(value: Any) -> str:
    """JSON that is safe inside a <script> element: `<`, `>` and `&` are escaped, so a service
    name like `</script>` cannot end the element early."""
    text = json.dumps(value, ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def docs_page_html(service: Service[Any]) -> bytes:
    """The docs page of `service`, as UTF-8 bytes for a `text/html; charset=utf-8` response."""
    template, css, js = _assets()
    values = {
        "title": html.escape(service.name),
        "css": css,
        "js": js,
        "config": _script_json({"name": service.name, "prefix": service.path_prefix}),
    }
    # One pass over the template only, so text inside the inlined assets is never substituted.
    page = _SLOT.sub(lambda m: values[m.group(1)], template)
    return page.encode("utf-8")
