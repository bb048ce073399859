"""`@service` / `@api` / hooks / `depends`: what a declaration collects, and every mistake it refuses.

Mistakes surface when the class is decorated, each naming the value and the fix.
"""

from __future__ import annotations

import warnings
from collections.abc import AsyncGenerator, Generator
from typing import Any

import numpy as np
import pytest

import nbserve
from nbserve.exceptions import ServiceDefinitionError


def test_bare_and_called_forms_collect_apis_hooks_and_config() -> None:
    @nbserve.service
    class Bare:
        @nbserve.api
        def ping(self) -> str:
            return "pong"

    @nbserve.service(
        name="Called",
        traffic={"timeout": 5, "max_concurrency": 8},
        workers=2,
        threads=4,
        resources={"cpu": "1", "gpu": 0.5},
        labels={"team": "nlp"},
        path_prefix="/v1/",
        envs=[{"name": "TOKEN", "value": "x"}],
    )
    class Full:
        """A service."""

        @nbserve.api(route="/custom", name="renamed")
        def original(self, text: str) -> str:
            """Docstring reaches the schema."""
            return text

        @nbserve.on_startup
        def warm(self) -> None: ...

        @nbserve.on_shutdown
        async def close(self) -> None: ...

        @nbserve.on_deployment
        def prepare() -> None: ...

    assert list(Bare.apis) == ["ping"]
    assert Bare.apis["ping"].route == "/ping"
    assert Bare().ping() == "pong"  # the instance method stays a plain method
    config = Full.config
    assert (config.timeout, config.max_concurrency, config.workers, config.threads) == (
        5.0,
        8,
        2,
        4,
    )
    assert (config.gpu, config.labels, config.path_prefix) == (0.5, {"team": "nlp"}, "/v1")
    assert (Full.name, Full.bento_name) == ("Called", "called")
    api = Full.apis["renamed"]  # BentoML ignores `name`; nbserve honours it
    assert (api.route, api.doc) == ("/custom", "Docstring reaches the schema.")
    assert (Full.startup_hooks, Full.shutdown_hooks) == (["warm"], ["close"])
    assert [h.__name__ for h in Full.deployment_hooks] == ["prepare"]
    route = Full.schema()["routes"][0]
    assert (route["name"], route["route"], route["doc"]) == ("renamed", "/custom", api.doc)


def test_call_maps_to_root_and_subclasses_inherit_and_override_apis() -> None:
    class Base:
        @nbserve.api
        def __call__(self, text: str) -> str:
            return text

        @nbserve.api
        def a(self) -> str:
            return "base"

    @nbserve.service
    class Child(Base):
        @nbserve.api
        def a(self) -> str:
            return "child"

    assert Child.apis["__call__"].route == "/"
    assert Child().a() == "child"


def test_streams_async_and_batching_flags() -> None:
    @nbserve.service
    class S:
        @nbserve.api
        def gen(self, n: int) -> Generator[str, None, None]:
            yield from map(str, range(n))

        @nbserve.api
        async def agen(self, n: int) -> AsyncGenerator[int, None]:
            for i in range(n):
                yield i

        @nbserve.api(batchable=True, batch_dim=(0, 1), max_batch_size=1, max_latency_ms=5)
        def batch(self, x: np.ndarray) -> np.ndarray:
            return x

    gen, agen, batch = S.apis["gen"], S.apis["agen"], S.apis["batch"]
    assert (gen.is_stream, gen.is_async, agen.is_stream, agen.is_async) == (True, False, True, True)
    assert S.schema()["routes"][0]["output"]["sse"] is True
    assert (batch.batch_dim, batch.max_batch_size, batch.batch_field) == ((0, 1), 1, "x")


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"traffic": {"timeout": 0}}, r"traffic.timeout=0 must be a positive number"),
        (
            {"traffic": {"max_concurrency": 0}},
            r"traffic.max_concurrency=0 must be a positive integer",
        ),
        ({"traffic": [1]}, r"traffic=\[1\] must be a dict"),
        ({"workers": 0}, r"workers=0 must be a positive integer or 'cpu_count'"),
        ({"threads": "2"}, r"threads='2' must be a positive integer"),
        ({"resources": {"gpu": 1.5}}, r"resources.gpu=1.5: above 1 a GPU count must be whole"),
        ({"resources": {"gpu": -1}}, r"resources.gpu=-1 must be a number of GPUs"),
        ({"path_prefix": "v1"}, r"path_prefix='v1' must be a path starting with '/'"),
        ({"labels": {"a": 1}}, r"labels=\{'a': 1\} must be a dict of strings"),
        ({"envs": [{"value": "x"}]}, r"envs entry .* must be a dict with a 'name'"),
        ({"python_packages": "numpy"}, r"python_packages='numpy' must be a list"),
    ],
)
def test_bad_service_options_name_the_value_and_the_fix(
    options: dict[str, Any], match: str
) -> None:
    with pytest.raises(ServiceDefinitionError, match=match):

        @nbserve.service(**options)
        class S:
            pass


def test_unknown_options_warn_and_are_kept() -> None:
    with pytest.warns(UserWarning, match=r"ssl are kept .* nbserve does not act on them") as caught:

        @nbserve.service(ssl={"enabled": False})
        class S:
            pass

    assert "not BentoML options" not in str(caught[0].message)
    assert S.config.raw["ssl"] == {"enabled": False}
    with pytest.warns(
        UserWarning, match=r"timeuot are not BentoML options either; check the spelling"
    ):

        @nbserve.service(timeuot=3)
        class T:
            pass


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"route": "predict"}, r"route='predict' must start with '/'"),
        ({"name": "not-valid"}, r"name='not-valid' must be a Python identifier"),
        ({"max_batch_size": 0}, r"max_batch_size=0 must be an integer >= 1"),
        ({"max_latency_ms": 0}, r"max_latency_ms=0 must be a positive number"),
        (
            {"batch_dim": (0,)},
            r"batch_dim=\(0,\) must be an int or an \(input_dim, output_dim\) pair",
        ),
    ],
)
def test_bad_api_options_name_the_value_and_the_fix(options: dict[str, Any], match: str) -> None:
    with pytest.raises(ServiceDefinitionError, match=match):

        class S:
            @nbserve.api(**options)
            def f(self, x: int) -> int:
                return x


def test_declaration_mistakes_across_apis() -> None:
    with pytest.raises(ServiceDefinitionError, match=r"share route '/x'"):

        @nbserve.service
        class Twice:
            @nbserve.api(route="/x")
            def a(self) -> str:
                return ""

            @nbserve.api(route="/x")
            def b(self) -> str:
                return ""

    with pytest.raises(ServiceDefinitionError, match=r"route '/metrics', which the server owns"):

        @nbserve.service
        class Owned:
            @nbserve.api
            def metrics(self) -> str:
                return ""

    with pytest.raises(ServiceDefinitionError, match=r"takes exactly one input \(the batch\)"):

        class TwoInputs:
            @nbserve.api(batchable=True)
            def f(self, a: list[int], b: list[int]) -> list[int]:
                return a

    with pytest.raises(ServiceDefinitionError, match=r"a task cannot return a stream"):

        class StreamTask:
            @nbserve.task
            def f(self, n: int) -> Any:
                yield n

    with pytest.raises(
        ServiceDefinitionError, match=r"the function is not a generator; write it with `yield`"
    ):

        class NotAGenerator:
            @nbserve.api
            def f(self, n: int) -> Generator[int, None, None]:
                return iter(range(n))  # type: ignore[return-value]

    with pytest.raises(ServiceDefinitionError, match=r"cannot be an API without an explicit route"):

        class Dunder:
            @nbserve.api
            def __len__(self) -> int:
                return 0


def test_service_applied_twice_or_to_a_function_is_refused() -> None:
    @nbserve.service
    class Once:
        pass

    with pytest.raises(ServiceDefinitionError, match=r"applied twice"):
        nbserve.service(Once)  # type: ignore[call-overload]
    with pytest.raises(ServiceDefinitionError, match=r"decorates a class"):
        nbserve.service(lambda: None)  # type: ignore[call-overload]


def test_context_parameter_is_not_an_input() -> None:
    class S:
        @nbserve.api
        def f(self, text: str, ctx: nbserve.Context) -> str:
            return text

    api = S.__dict__["f"]
    assert api.ctx_param == "ctx"
    assert api.input.fields == ("text",)


def test_depends_gives_an_in_process_instance_shared_by_instances() -> None:
    @nbserve.service
    class Encoder:
        def encode(self, text: str) -> list[int]:
            return [ord(c) for c in text]

    @nbserve.service
    class Pipeline:
        encoder = nbserve.depends(Encoder)

        @nbserve.api
        def run(self, text: str) -> list[int]:
            return self.encoder.encode(text)

    assert list(Pipeline.dependencies) == ["encoder"]
    first, second = Pipeline(), Pipeline()
    assert first.run("ab") == [97, 98]
    assert first.encoder is second.encoder


def test_depends_mistakes() -> None:
    with pytest.raises(ServiceDefinitionError, match=r"exactly one of on="):
        nbserve.depends()
    with pytest.raises(
        ServiceDefinitionError, match=r"expected a class decorated with @nbserve.service"
    ):
        nbserve.depends(object)  # type: ignore[arg-type]
    with pytest.raises(ServiceDefinitionError, match=r"exactly one of on="):
        nbserve.depends(url="http://x", deployment="d")
    with pytest.raises(ServiceDefinitionError, match=r"cluster not supported by nbserve"):
        nbserve.depends(deployment="d", cluster="eu")
    with pytest.raises(ServiceDefinitionError, match=r"expected an http\(s\) URL"):
        nbserve.depends(url="localhost:3000")


def test_decorating_is_silent() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")

        @nbserve.service(resources={"cpu": "1"}, traffic={"timeout": 10})
        class Quiet:
            @nbserve.api
            def ping(self) -> str:
                return "pong"
