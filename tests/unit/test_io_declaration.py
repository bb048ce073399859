"""Declaration errors surface when the class is decorated, naming the function and the fix;
optional libraries are imported only when a signature names them."""

import subprocess
import sys
import textwrap
from typing import Annotated, Any

import numpy as np
import pytest
from pydantic import BaseModel

from nbserve._sdk.io import input_spec_for, output_spec_for
from nbserve.exceptions import ServiceDefinitionError
from nbserve.validators import DType


class Item(BaseModel):
    name: str


class Opaque:
    """A type pydantic has no schema for."""


def fails(func: Any, match: str, *, ctx_param: str | None = None, input_spec: Any = None) -> None:
    with pytest.raises(ServiceDefinitionError, match=match):
        input_spec_for(func, ctx_param=ctx_param, input_spec=input_spec)


def test_var_args_and_kwargs_are_rejected_with_the_fix() -> None:
    class S:
        def star(self, *texts: str) -> None: ...
        def stars(self, **options: Any) -> None: ...

    fails(S.star, r"S\.star: \*texts is not supported .* declare each input as a parameter")
    fails(S.stars, r"S\.stars: \*\*options is not supported .* take one dict parameter")


def test_positional_only_must_be_alone() -> None:
    class S:
        def f(self, text: str, /, n: int) -> None: ...
        def ok(self, text: str, /, ctx: Any = None) -> None: ...

    fails(S.f, r"S\.f: positional-only parameter 'text' .* there are 'n'; remove the '/'")
    assert input_spec_for(S.ok, ctx_param="ctx", input_spec=None).root


def test_service_definition_error_is_a_type_error() -> None:
    class S:
        def f(self, *a: int) -> None: ...

    with pytest.raises(TypeError):
        input_spec_for(S.f, ctx_param=None, input_spec=None)


def test_unsupported_type_names_the_parameter() -> None:
    class S:
        def f(self, good: int, bad: Opaque) -> None: ...
        def g(self) -> Opaque: ...

    fails(S.f, r"S\.f: parameter 'bad' has type .*Opaque, which nbserve cannot read from a request")
    with pytest.raises(
        ServiceDefinitionError, match=r"S\.g: return type .*Opaque has no JSON schema"
    ):
        output_spec_for(S.g, output_spec=None)


def test_bad_dtype_names_the_dtype() -> None:
    class S:
        def f(self, x: Annotated[np.ndarray, DType("floot32")]) -> None: ...

    fails(S.f, r"S\.f: parameter 'x': DType\('floot32'\) is not a numpy dtype")


def test_unresolvable_annotation() -> None:
    class S:
        def f(self, x: "Missing") -> None: ...  # type: ignore[name-defined] # noqa: F821

    fails(
        S.f, r"S\.f: cannot resolve the type 'Missing' of parameter 'x' .*define it at module level"
    )


def test_explicit_input_spec_must_match_the_function() -> None:
    class S:
        def f(self, name: str, extra: int) -> None: ...
        def g(self, other: str = "") -> None: ...
        def h(self, **kwargs: Any) -> None: ...

    fails(S.f, r"required parameter\(s\) 'extra' are not fields of Item", input_spec=Item)
    fails(S.g, r"input_spec field\(s\) 'name' are not parameters", input_spec=Item)
    assert input_spec_for(S.h, ctx_param=None, input_spec=Item).fields == ("name",)
    fails(S.f, r"input_spec=.* must be a pydantic BaseModel subclass", input_spec=dict)
    with pytest.raises(
        ServiceDefinitionError, match=r"output_spec=.* must be a pydantic BaseModel"
    ):
        output_spec_for(S.f, output_spec=dict)  # type: ignore[arg-type]


def test_string_annotations_resolve() -> None:
    namespace: dict[str, Any] = {}
    exec(
        textwrap.dedent(
            """
            from __future__ import annotations
            import numpy as np

            class S:
                def f(self, x: np.ndarray, n: int = 1) -> list[int]: ...
            """
        ),
        namespace,
    )
    spec = input_spec_for(namespace["S"].f, ctx_param=None, input_spec=None)
    assert spec.json_schema()["properties"]["x"]["type"] == "tensor"


def test_optional_libraries_are_imported_only_when_named() -> None:
    code = textwrap.dedent(
        """
        import sys
        from pathlib import Path
        from nbserve._sdk.io import input_spec_for, output_spec_for

        class S:
            def f(self, text: str, n: int, p: Path) -> dict: ...

        input_spec_for(S.f, ctx_param=None, input_spec=None)
        output_spec_for(S.f, output_spec=None)
        print(sorted(m for m in ("pandas", "torch", "PIL", "numpy") if m in sys.modules))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_an_ndarray_annotation_that_contradicts_itself_is_refused() -> None:
    """`Annotated[NDArray[float64], DType("int64")]`: BentoML refuses it at decoration; so do we."""
    import numpy.typing as npt

    class S:
        def f(self, x: np.ndarray) -> Annotated[npt.NDArray[np.float64], DType("int64")]: ...

        def g(self, x: np.ndarray) -> Annotated[npt.NDArray[np.float64], DType("float")]: ...

    with pytest.raises(
        ServiceDefinitionError,
        match="contradicts itself: the type says float64, the validator int64",
    ):
        output_spec_for(S.f, output_spec=None)
    output_spec_for(S.g, output_spec=None)  # "float" is float64: no contradiction
