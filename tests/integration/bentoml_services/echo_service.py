"""A BentoML 1.4 service covering every IO kind nbserve's client must handle.

Served by `bentoml serve echo_service:Echo` (and `echo_service:Prefixed`, the same APIs under
`/v2`) from tests/integration/test_client_against_bentoml.py, inside .venv-bentoml.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncGenerator, Generator
from pathlib import Path
from typing import Annotated, Any

import bentoml
import numpy as np
import pandas as pd
from bentoml.exceptions import InvalidArgument, NotFound
from bentoml.validators import DataframeSchema, DType
from PIL import Image
from pydantic import BaseModel


class Item(BaseModel):
    name: str
    qty: int = 1


class Order(BaseModel):
    item: Item
    total: float


class EchoAPIs:
    """Echoes its inputs back, transformed, for client tests."""

    @bentoml.api
    def shout(self, text: str, times: int = 1) -> str:
        """Upper-case `text`, repeated `times` times."""
        return text.upper() * times

    @bentoml.api
    def plain(self, text: str, /) -> str:
        return f"<{text}>"

    @bentoml.api
    def scale(
        self, arr: Annotated[np.ndarray, DType("float32")], factor: float = 2.0
    ) -> Annotated[np.ndarray, DType("float32")]:
        return (arr * factor).astype(np.float32)

    @bentoml.api
    def frame(self, df: pd.DataFrame) -> pd.DataFrame:
        return df.assign(total=df["price"] * df["qty"])

    @bentoml.api
    def frame_columns(
        self, df: Annotated[pd.DataFrame, DataframeSchema(orient="columns")]
    ) -> Annotated[pd.DataFrame, DataframeSchema(orient="columns")]:
        return df * 10

    @bentoml.api
    def upper_file(self, doc: Path, suffix: str = "!") -> Path:
        out = Path(tempfile.mkdtemp()) / "upper.txt"
        out.write_text(doc.read_text().upper() + suffix)
        return out

    @bentoml.api
    def sizes(self, docs: list[Path]) -> list[int]:
        return [len(d.read_bytes()) for d in docs]

    @bentoml.api
    def flip(self, img: Image.Image) -> Image.Image:
        return img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)

    @bentoml.api
    def order(self, item: Item, price: float = 2.5) -> Order:
        return Order(item=item, total=item.qty * price)

    @bentoml.api
    def order_root(self, item: Item, /) -> dict[str, Any]:
        return {"name": item.name, "double": item.qty * 2}

    @bentoml.api
    def raw(self, data: bytes) -> bytes:
        return data[::-1]

    @bentoml.api
    def tokens(self, text: str) -> Generator[str, None, None]:
        yield from text.split()

    @bentoml.api
    async def events(self, n: int) -> AsyncGenerator[dict[str, int], None]:
        for i in range(n):
            yield {"i": i, "square": i * i}
            await asyncio.sleep(0)

    @bentoml.api
    def fail(self, kind: str) -> str:
        if kind == "invalid":
            raise InvalidArgument("kind 'invalid' is refused on purpose")
        if kind == "missing":
            raise NotFound("nothing called 'missing'")
        raise RuntimeError("boom")

    @bentoml.task
    def slow_double(self, x: int) -> int:
        return x * 2


@bentoml.service
class Echo(EchoAPIs):
    """Echoes its inputs back, transformed, for client tests."""


@bentoml.service(path_prefix="/v2")
class Prefixed(EchoAPIs):
    """The same APIs under the path prefix /v2."""
