"""`HuggingFaceModel`: BentoML's reference to a Hugging Face Hub model, as a local path.

```python
@nbserve.service
class Embedder:
    model_path = HuggingFaceModel("sentence-transformers/all-MiniLM-L6-v2")
    def __init__(self):
        self.model = SentenceTransformer(self.model_path)   # a directory on this machine
```
On an instance the attribute is the snapshot directory (a `str`), resolved once; on the class
it is the reference. It is found, in this order, as a local directory (`model_id` may be a
path), then in the Hugging Face cache (`NBSERVE_HF_CACHE_DIR`, `BENTOML_HF_CACHE_DIR`, else
huggingface_hub's own: `HF_HUB_CACHE`, `HF_HOME/hub`, `~/.cache/huggingface/hub`) without
touching the network. Only when it is in neither, and the Hub is not switched off
(`HF_HUB_OFFLINE=1`), is it downloaded, with huggingface_hub's progress bars, as BentoML does.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, overload

from nbserve.exceptions import NbserveError, NotFound

__all__ = ["HuggingFaceModel"]


class HuggingFaceModel:
    """A Hugging Face model by id (`"org/name"`) or local directory; resolves to a path."""

    def __init__(
        self,
        model_id: str,
        revision: str = "main",
        endpoint: str | None = None,
        include: list[str] | None = None,
        exclude: list[str] | None = None,
    ):
        self.model_id = model_id
        self.revision = revision
        self.endpoint = endpoint if endpoint is not None else os.environ.get("HF_ENDPOINT")
        self.include = include
        self.exclude = exclude
        self._resolved: str | None = None

    def __repr__(self) -> str:
        return f"HuggingFaceModel({self.model_id!r}, revision={self.revision!r})"

    def __str__(self) -> str:
        return f"{self.model_id}:{self.revision}"

    def _cache_dir(self) -> str | None:
        return os.environ.get("NBSERVE_HF_CACHE_DIR") or os.environ.get("BENTOML_HF_CACHE_DIR")

    def resolve(self) -> str:
        """The model's directory on this machine (looked up once)."""
        if self._resolved is None:
            self._resolved = self._find()
        return self._resolved

    def _find(self) -> str:
        local = Path(self.model_id).expanduser()
        if local.is_dir():
            return str(local.resolve())
        try:
            from huggingface_hub import constants, snapshot_download
            from huggingface_hub.errors import LocalEntryNotFoundError
        except ImportError as exc:
            msg = f"HuggingFaceModel({self.model_id!r}) needs huggingface_hub to find the model in the Hugging Face cache: pip install huggingface_hub (transformers installs it), or pass a local directory."
            raise NbserveError(msg) from exc
        options: dict[str, Any] = {
            "revision": self.revision,
            "cache_dir": self._cache_dir(),
            "allow_patterns": self.include,
            "ignore_patterns": self.exclude,
        }
        try:
            return str(snapshot_download(self.model_id, local_files_only=True, **options))
        except LocalEntryNotFoundError:
            offline = constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE") in ("1", "true")
            if offline:
                where = self._cache_dir() or constants.HF_HUB_CACHE
                msg = f"HuggingFaceModel({self.model_id!r}, revision={self.revision!r}) is not in the Hugging Face cache {where}, and HF_HUB_OFFLINE is set. Download it once where the Hub is reachable (huggingface-cli download {self.model_id}), set NBSERVE_HF_CACHE_DIR to the cache that has it, or pass a local directory."
                raise NotFound(msg) from None
        return str(snapshot_download(self.model_id, endpoint=self.endpoint, **options))

    @overload
    def __get__(self, instance: None, owner: type[Any] | None = None) -> HuggingFaceModel: ...
    @overload
    def __get__(self, instance: object, owner: type[Any] | None = None) -> str: ...
    def __get__(
        self, instance: object | None, owner: type[Any] | None = None
    ) -> HuggingFaceModel | str:
        return self if instance is None else self.resolve()
