"""Every code example of BentoML's Services page (`../shared/seeds/bentoml-services.txt`) runs
with `import nbserve as bentoml`, completed where the page's extraction dropped lines.

Two substitutions, because model hubs are unreachable here and nothing else in them is under
test: `transformers.pipeline('summarization')` and vLLM's engine are replaced by small local
stand-ins with the same call shapes. Everything else is the page's code: decorators, options,
Context, `depends`, `to_async` with `asyncio.gather`, and the legacy runner flow.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Annotated, Any

import httpx
import numpy as np
import pytest

import nbserve as bentoml
from nbserve.testing import running_service


@pytest.fixture
def model_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("NBSERVE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("BENTOML_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


# --- Service definitions / configurations / APIs / custom route --------------------------


def pipeline(task: str) -> Any:
    """Stand-in for `transformers.pipeline(task)`: same call shape, no hub download."""
    assert task == "summarization"
    return lambda text: [{"summary_text": " ".join(text.split()[:3])}]


@bentoml.service(
    resources={"cpu": "2"},
    traffic={"timeout": 10},
)
class Summarization:
    def __init__(self) -> None:
        # Load model into pipeline
        self.pipeline = pipeline("summarization")

    @bentoml.api
    def summarize(self, text: str) -> str:
        result = self.pipeline(text)
        return result[0]["summary_text"]


@bentoml.service(
    resources={"memory": "500MiB"},
    traffic={"timeout": 10},
)
class SummarizationRouted:
    def __init__(self) -> None:
        self.pipeline = pipeline("summarization")

    @bentoml.api(route="/custom/url/name")
    def summarize(self, text: str) -> str:
        result = self.pipeline(text)
        return result[0]["summary_text"]


def test_definition_configuration_and_route() -> None:
    assert Summarization.config.timeout == 10
    with running_service(Summarization) as handle:
        r = httpx.post(
            f"{handle.url}/summarize", json={"text": "the quick brown fox jumps"}, timeout=60
        )
        assert (r.status_code, r.text) == (200, "the quick brown")
    with running_service(SummarizationRouted) as handle:
        r = httpx.post(
            f"{handle.url}/custom/url/name", json={"text": "one two three four"}, timeout=60
        )
        assert (r.status_code, r.text) == (200, "one two three")
        assert httpx.post(f"{handle.url}/summarize", json={"text": "x"}).status_code == 404


# --- Inference context -------------------------------------------------------------------


@bentoml.service
class ContextExample:
    def __init__(self) -> None:
        self.pipeline = pipeline("summarization")

    @bentoml.api
    def summarize(self, text: str, ctx: bentoml.Context) -> str:
        # Get request headers
        request_headers = ctx.request.headers

        result = self.pipeline(text)

        # Set response headers, cookies, and status code
        ctx.response.status_code = 202
        ctx.response.cookies = [
            bentoml.Cookie(
                key="key",
                value="value",
                max_age=None,
                expires=None,
                path="/summarize",
                domain=None,
                secure=True,
                httponly=True,
                samesite="lax",
            )
        ]

        # Add a custom header to the response
        ctx.response.headers.append("X-Custom-Header", "value")
        ctx.response.headers.append("X-Custom-Header", "second")
        ctx.response.headers["X-Agent-Seen"] = request_headers.get("x-agent", "")
        ctx.state["calls"] = ctx.state.get("calls", 0) + 1
        ctx.response.headers["X-Calls"] = str(ctx.state["calls"])

        return result[0]["summary_text"]


def test_context_headers_cookies_status_and_state() -> None:
    with (
        running_service(ContextExample) as handle,
        httpx.Client(base_url=handle.url, timeout=60) as client,
    ):
        r = client.post("/summarize", json={"text": "a b c d"}, headers={"X-Agent": "seed"})
        assert (r.status_code, r.text) == (202, "a b c")
        assert r.headers.get_list("x-custom-header") == ["value", "second"]
        assert r.headers["x-agent-seen"] == "seed"
        cookie = r.headers["set-cookie"]
        assert cookie.startswith("key=value")
        for attribute in ("Path=/summarize", "Secure", "HttpOnly", "SameSite=lax"):
            assert attribute.lower() in cookie.lower()
        # `state` is per worker (here the one inline instance): it carries across requests.
        assert client.post("/summarize", json={"text": "x"}).headers["x-calls"] == "2"


def test_response_headers_behave_like_starlettes_mutable_headers() -> None:
    headers = bentoml.Context().response.headers
    headers["Content-Language"] = "en"
    headers.append("Vary", "Accept")
    headers.append("vary", "Cookie")
    assert headers["content-language"] == "en"
    assert headers.getlist("VARY") == ["Accept", "Cookie"]
    headers["Vary"] = "Origin"  # setting replaces every value
    assert headers.getlist("vary") == ["Origin"]
    del headers["content-language"]
    assert "Content-Language" not in headers
    with pytest.raises(ValueError, match="line break"):
        headers["X-Bad"] = "a\r\nSet-Cookie: evil=1"


# --- Synchronous API with a stored model and depends() -----------------------------------


@bentoml.service
class Preprocessing:
    @bentoml.api
    def preprocess(self, input_series: np.ndarray) -> np.ndarray:
        return input_series * 1.0


def _iris_classifier() -> Any:
    @bentoml.service(name="iris_classifier", resources={"cpu": "200m", "memory": "512Mi"})
    class IrisClassifier:
        iris_model = bentoml.models.get("iris_sklearn:latest")
        preprocessing = bentoml.depends(Preprocessing)

        def __init__(self) -> None:
            import joblib

            self.model = joblib.load(self.iris_model.path_of("model.pkl"))

        @bentoml.api
        def classify(self, input_series: np.ndarray) -> np.ndarray:
            # The page has `this.model`, a typo for `self.model`.
            return self.model.predict(self.preprocessing.preprocess(input_series))

    return IrisClassifier


def _save_iris() -> Any:
    import joblib
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    x, y = load_iris(return_X_y=True)
    clf = LogisticRegression(max_iter=300).fit(x, y)
    with bentoml.models.create("iris_sklearn") as model:
        joblib.dump(clf, model.path_of("model.pkl"))
    return clf


@pytest.mark.usefixtures("model_store")
def test_synchronous_api_with_stored_model_and_dependency() -> None:
    clf = _save_iris()
    rows = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]
    with running_service(_iris_classifier()) as handle:
        r = httpx.post(f"{handle.url}/classify", json={"input_series": rows}, timeout=60)
        assert r.status_code == 200
        assert r.json() == clf.predict(np.array(rows)).tolist()


# --- Asynchronous streaming API ----------------------------------------------------------


class _Engine:
    """Stand-in for vLLM's AsyncLLMEngine: an async stream of growing outputs."""

    async def add_request(
        self, request_id: int, prompt: str, params: Any, prompt_token_ids: Any
    ) -> Any:
        async def stream() -> AsyncGenerator[Any, None]:
            for word in prompt.split()[:3]:
                yield type("Out", (), {"outputs": [type("Text", (), {"text": word})]})
                await asyncio.sleep(0)

        return stream()


@bentoml.service(workers=1, resources={"gpu": "1"})
class VLLMService:
    def __init__(self) -> None:
        self.engine = _Engine()
        self.request_id = 0

    @bentoml.api
    async def generate(
        self,
        prompt: str = "Explain superconductors like I'm five years old",
        tokens: list[int] | None = None,
    ) -> AsyncGenerator[str, None]:
        stream = await self.engine.add_request(
            self.request_id, prompt, None, prompt_token_ids=tokens
        )
        self.request_id += 1
        async for request_output in stream:
            yield request_output.outputs[0].text


def test_async_generator_api_streams_with_default_prompt() -> None:
    with (
        running_service(VLLMService) as handle,  # one worker process, as declared
        httpx.stream("POST", f"{handle.url}/generate", json={}, timeout=60) as r,
    ):
        assert r.status_code == 200
        assert "".join(r.iter_text()) == "Explainsuperconductorslike"


# --- Convert synchronous to asynchronous: to_async + asyncio.gather -----------------------

ORDER: list[str] = []
BOTH_STARTED = threading.Barrier(2, timeout=30)


@bentoml.service
class StableLMService:
    @bentoml.api
    def enhance_message(self, message: str) -> str:
        return message + "!"


@bentoml.service
class SDXLTurboService:
    @bentoml.api
    def txt2img(self, prompt: str, path: str) -> str:
        ORDER.append("txt2img started")
        BOTH_STARTED.wait()  # returns only once synthesize runs too: they overlap
        Path(path).write_bytes(b"png")
        return path


@bentoml.service
class XTTSService:
    @bentoml.api
    def synthesize(self, text: str, path: str) -> str:
        ORDER.append("synthesize started")
        BOTH_STARTED.wait()
        Path(path).write_bytes(b"wav")
        return path


@bentoml.service(
    traffic={"timeout": 600},
    resources={
        "gpu": 1,
        "memory": "4Gi",
    },
)
class GreetingCardService:
    # Services StableLMService, SDXLTurboService, and XTTSService are previously defined
    # Retrieve these Services using `bentoml.depends` so that their methods can be called directly
    stablelm = bentoml.depends(StableLMService)
    sdxl = bentoml.depends(SDXLTurboService)
    xtts = bentoml.depends(XTTSService)

    @bentoml.api
    async def generate_card(
        self,
        context: bentoml.Context,
        message: str = "Happy new year!",
    ) -> Annotated[Path, bentoml.validators.ContentType("text/plain")]:
        greeting_message = await self.stablelm.to_async.enhance_message(message)

        sdxl_prompt_tmpl = (
            "a happy and heart-warming greeting card based on greeting message {message}"
        )
        sdxl_prompt = sdxl_prompt_tmpl.format(message=greeting_message)

        # Run `txt2img` and `synthesize` operations in parallel
        image_path, audio_path = await asyncio.gather(
            self.sdxl.to_async.txt2img(sdxl_prompt, os.path.join(context.temp_dir, "output.png")),
            self.xtts.to_async.synthesize(
                greeting_message, os.path.join(context.temp_dir, "a.wav")
            ),
        )
        # The page muxes the two with ffmpeg; here the card lists what it would combine.
        output_path = os.path.join(context.temp_dir, "output.txt")
        Path(output_path).write_text(
            f"{Path(image_path).name} + {Path(audio_path).name}: {greeting_message}"
        )
        return Path(output_path)


def test_to_async_runs_depended_sync_apis_concurrently() -> None:
    ORDER.clear()
    BOTH_STARTED.reset()
    with running_service(GreetingCardService) as handle:
        r = httpx.post(f"{handle.url}/generate_card", json={}, timeout=60)
        assert r.status_code == 200, r.text
        assert r.text == "output.png + a.wav: Happy new year!!"
    # Both sync calls had started before either returned (the barrier let them through).
    assert sorted(ORDER) == ["synthesize started", "txt2img started"]


def test_to_async_and_to_sync_on_an_instance() -> None:
    instance = StableLMService()
    assert asyncio.run(instance.to_async.enhance_message("hi")) == "hi!"  # type: ignore[attr-defined]
    assert instance.to_sync.enhance_message("hi") == "hi!"  # type: ignore[attr-defined]
    with pytest.raises(AttributeError, match="has no API 'missing'"):
        instance.to_async.missing  # type: ignore[attr-defined]  # noqa: B018


# --- Convert legacy Runners to a Service --------------------------------------------------


@pytest.mark.usefixtures("model_store")
def test_legacy_runner_as_a_service() -> None:
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    x, y = load_iris(return_X_y=True)
    clf = LogisticRegression(max_iter=300).fit(x, y)
    saved = bentoml.models.save("model_name", clf)

    # Create a legacy runner
    sample_legacy_runner = bentoml.models.get(f"model_name:{saved.version}").to_runner()
    # Create an internal Service
    SampleService = bentoml.runner_service(runner=sample_legacy_runner)

    # Use the @bentoml.service decorator to mark a class as a Service
    @bentoml.service(
        resources={"cpu": "2", "memory": "500MiB"},
        workers=1,
        traffic={"timeout": 20},
    )
    # Define the BentoML Service
    class MyService:
        # Integrate the internal Service using bentoml.depends() to inject it as a dependency
        sample_model_runner = bentoml.depends(SampleService)

        # Define Service API and IO schema
        @bentoml.api
        def classify(self, input_series: np.ndarray) -> np.ndarray:
            # Use the internal Service for prediction
            result = self.sample_model_runner.predict.run(input_series)
            return result  # noqa: RET504  (the page's code, verbatim)

        @bentoml.api
        def classify_12(self, input_series: np.ndarray) -> np.ndarray:
            return self.sample_model_runner.predict(input_series)  # the 1.2 spelling

    rows = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]
    expected = clf.predict(np.array(rows)).tolist()
    with running_service(MyService) as handle:
        for route in ("/classify", "/classify_12"):
            r = httpx.post(handle.url + route, json={"input_series": rows}, timeout=60)
            assert (r.status_code, r.json()) == (200, expected)
    assert sample_legacy_runner.predict.run(np.array(rows)).tolist() == expected
    assert asyncio.run(sample_legacy_runner.predict.async_run(np.array(rows))).tolist() == expected
