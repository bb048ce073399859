"""A BentoML 1.4 service in BentoML's own style, exercising what nbserve must do the same way:
Context headers (append, multi-value), cookies, status codes, `state`, `to_async` with
`asyncio.gather` over `depends()`, a root text input, `images.Image`, `use_arguments`,
`importing()` (of a module both have; a missing one fails `serve` in both), `monitor()`,
`get_current_service()`, a mounted FastAPI app with a class view, and a path prefix.

Served unchanged by `bentoml serve parity_service:Front` and by nbserve (`import bentoml`
aliased to nbserve, `nbserve_as_bentoml.py`); tests/integration/test_bentoml_parity.py
compares what both answer.
"""

from __future__ import annotations

import asyncio
import os

import bentoml
from fastapi import FastAPI

app = FastAPI()


@app.get("/plain")
def plain(q: str = "none") -> dict:
    return {"q": q}


image = bentoml.images.Image(python_version="3.11").python_packages("numpy")
args = bentoml.use_arguments()

with bentoml.importing():
    import json  # noqa: F401  (guarded imports that exist load as usual)


@bentoml.service
class Shouter:
    @bentoml.api
    def shout(self, text: str) -> str:
        return text.upper()

    @bentoml.api
    def count(self, text: str) -> int:
        return len(text)


@bentoml.service(image=image)
@bentoml.asgi_app(app, path="/v1")
class Front:
    shouter = bentoml.depends(Shouter)

    @app.get("/view")
    def view(self) -> dict:  # a FastAPI class view: `self` is the served instance
        return {"class": type(self).__name__, "shouter": type(self.shouter).__name__ != ""}

    @bentoml.api
    def headers(self, ctx: bentoml.Context) -> str:
        ctx.response.status_code = 202
        ctx.response.headers.append("X-Multi", "one")
        ctx.response.headers.append("X-Multi", "two")
        ctx.response.headers["X-Single"] = ctx.request.headers.get("x-caller", "nobody")
        ctx.response.cookies = [
            bentoml.Cookie(
                key="session",
                value="abc",
                max_age=60,
                expires=None,
                path="/",
                domain=None,
                secure=False,
                httponly=True,
                samesite="strict",
            )
        ]
        return "headers set"

    @bentoml.api
    def state(self, ctx: bentoml.Context) -> int:
        ctx.state["hits"] = ctx.state.get("hits", 0) + 1
        return ctx.state["hits"]

    @bentoml.api
    async def gather(self, text: str) -> list:
        loud, n = await asyncio.gather(
            self.shouter.to_async.shout(text), self.shouter.to_async.count(text)
        )
        return [loud, n]

    @bentoml.api
    def echo_text(self, text: str, /) -> str:
        return f"<{text}>"

    @bentoml.api
    def who(self) -> dict:
        return {
            "current": type(bentoml.get_current_service()).__name__,
            "args": sorted(vars(args)),
        }

    @bentoml.api
    def monitored(self, x: float) -> float:
        # Records go where the test says (BentoML's default is ./monitoring, the checkout).
        options = {"log_path": os.environ.get("PARITY_MONITORING_DIR", "monitoring")}
        with bentoml.monitor("parity", monitor_options=options) as mon:
            mon.log(x, name="x", role="feature", data_type="numerical")
            mon.log(x * 2, name="y", role="prediction", data_type="numerical")
        return x * 2

    @bentoml.api
    def environment(self) -> str:
        return os.environ.get("PARITY_MARK", "unset")


@bentoml.service(path_prefix="/v3")
class PrefixedFront:
    @bentoml.api
    def hello(self, name: str = "world") -> str:
        return f"hello {name}"
