"""Service + captured source → a `.bento` archive (layout in DESIGN §6, BentoML's).

```
bento.yaml                  service, name, version, apis, models, python, requirements
src/service.py              the %%serve cell(s) + captured helpers + imports (+ local modules)
env/python/requirements.txt, version.txt, install.sh, wheels/ (nbserve, when not from an index)
env/docker/Dockerfile       deploy/kubernetes.yaml
apis/openapi.yaml           apis/schema.json
models/<name>/<version>/    the model-store entries the service uses, plus models/<name>/latest,
                            and its HuggingFaceModel attributes' files, packed as entries too
```
Every file is a function of the inputs (the code, the service's configuration, the installed
versions, the model entries), never of the time or the directory, so building twice gives the
same archive and the version is a hash of the content (see `archive.py`). The one field of a
model entry that records a time, `creation_time` in its model.yaml, is set to the archive's
fixed epoch in the copy, so re-saving the same model does not change the archive. A
`HuggingFaceModel` class attribute is resolved here and its files packed the same way
(`huggingface.pack`), so the bento serves where there is no Hugging Face cache or network.

Where the source comes from (a kernel, a saved notebook, a file) is `sources.py`'s business;
all of them end in `build_bento`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from nbserve._bento import archive, deploy
from nbserve._bento.archive import Entry
from nbserve._bento.bentofile import bento_info, bento_name, referenced_models, service_closure
from nbserve._bento.capture import CapturedSource
from nbserve._bento.integrity import file_sha256
from nbserve._bento.model_modules import entry_modules, model_modules
from nbserve._bento.names import imported_modules
from nbserve._bento.progress import notice, progress_bar
from nbserve._bento.requirements import (
    REPRODUCIBLE_EPOCH,
    Requirements,
    image_packages,
    nbserve_wheel,
    resolve_requirements,
)
from nbserve._models.huggingface import PackedModel, class_references, model_files, pack
from nbserve._sdk.service import Service
from nbserve.exceptions import NbserveError

if TYPE_CHECKING:
    from nbserve._models.model import Model, ModelInfo

__all__ = ["BuildError", "build_bento"]

INSTALL_SH = """\
#!/bin/sh
# Installs this bento's Python requirements into the current Python environment
# (an activated virtual environment, or the one named by $PYTHON).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
if [ -n "${PYTHON:-}" ]; then python=$PYTHON
elif command -v python >/dev/null 2>&1; then python=python
else python=python3
fi
wheels=$(find "$here/wheels" -name '*.whl' 2>/dev/null | sort)
# shellcheck disable=SC2086  # the wheel paths contain no spaces: they are ours
if ! "$python" -m pip install --no-input --disable-pip-version-check -r "$here/requirements.txt" $wheels; then
    if grep -q '+cpu' "$here/requirements.txt"; then
        echo "install.sh: this bento pins a CPU-only build (+cpu), which only the PyTorch index carries; run: PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu sh $0" >&2
    fi
    exit 1
fi
"""


class BuildError(NbserveError):
    """The archive cannot be built; the message says why and what to do."""


def _text(value: str) -> Entry:
    return Entry(value.encode("utf-8"))


def _dump(value: Any) -> str:
    return yaml.safe_dump(
        value, sort_keys=False, allow_unicode=True, default_flow_style=False, width=100
    )


def _verify_models(models: Sequence[Model], progress: bool | None) -> None:
    """Check every entry against its model.yaml, hashing its files under a progress bar.

    The hashes go into the process's cache (`integrity.file_sha256`, keyed by file identity,
    size and times), which `verify()` then reads: an unchanged entry is hashed once per process.
    """
    total = sum(model.file_size for model in models)
    with progress_bar(total, "hashing models", progress) as bar:
        for model in models:
            for rel in sorted(model.info.files):
                path = Path(model.path) / rel
                file_sha256(path)
                bar.update(path.stat().st_size)
            model.verify()


def _packed_models(service: Service[Any], progress: bool | None) -> list[PackedModel]:
    """The `HuggingFaceModel` attributes of the service and those it depends on, resolved
    and hashed (under a progress bar), each entry once, in a stable order."""
    refs = [ref for svc in service_closure(service) for ref in class_references(svc.inner)]
    total = sum(path.stat().st_size for ref in refs for path in model_files(ref).values())
    found: dict[tuple[str, str], PackedModel] = {}
    with progress_bar(total, "hashing models", progress) as bar:
        for ref in refs:
            packed = pack(ref, on_file=bar.update)
            found.setdefault((packed.info.name, packed.info.version), packed)
    return [found[key] for key in sorted(found)]


def _entry_files(info: ModelInfo, sources: Mapping[str, Path]) -> dict[str, Entry]:
    """One entry under `models/<name>/<version>/`: its model.yaml (dated at the archive's
    epoch) and its files, whose hashes `info` holds, checked just before."""
    prefix = f"models/{info.name}/{info.version}"
    record = info.to_dict()
    record["creation_time"] = datetime.fromtimestamp(REPRODUCIBLE_EPOCH, timezone.utc).isoformat()
    files = {f"{prefix}/model.yaml": _text(_dump(record))}
    for rel, sha in sorted(info.files.items()):
        source = sources[rel]
        # Just verified against this hash: no need to read the file again.
        files[f"{prefix}/{rel}"] = Entry(
            source, bool(source.stat().st_mode & 0o111), known_sha256=sha
        )
    return files


def _model_files(
    models: Sequence[Model], packed: Sequence[PackedModel], progress: bool | None
) -> dict[str, Entry]:
    """The entries under `models/`, each name with a `latest` file naming its version."""
    _verify_models(models, progress)
    files: dict[str, Entry] = {}
    entries: list[tuple[ModelInfo, Mapping[str, Path]]] = [
        (m.info, {rel: Path(m.path) / rel for rel in m.info.files}) for m in models
    ]
    entries += [(p.info, p.sources) for p in packed]
    for info, sources in sorted(entries, key=lambda e: (e[0].name, e[0].version)):
        files.update(_entry_files(info, sources))
        files[f"models/{info.name}/latest"] = _text(info.version)
    return files


def _local_module_files(paths: Sequence[Path]) -> dict[str, Entry]:
    files: dict[str, Entry] = {}
    for path in paths:
        sources = [path] if path.is_file() else sorted(path.rglob("*.py"))
        base = path.parent
        for source in sources:
            if "__pycache__" not in source.parts:
                files[f"src/{source.relative_to(base).as_posix()}"] = Entry(source.read_bytes())
    return files


def _wheel_cache() -> Path:
    """Built wheels of nbserve, by source hash: `$XDG_CACHE_HOME/nbserve/wheels`."""
    return Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "nbserve" / "wheels"


def _requirements(
    service: Service[Any],
    captured: CapturedSource,
    models: Sequence[Model],
    packed: Sequence[PackedModel],
    requirements_file: str | os.PathLike[str] | None,
) -> tuple[Requirements, dict[str, Entry]]:
    """What to pin: every module the code imports and every module its models need to load.

    Also the files of local modules (imported from a plain path, no distribution), which
    travel in `src/`, and whose own imports need pinning too.
    """
    why: dict[str, list[str]] = {m: ["imported by the service's code"] for m in captured.modules}
    for model in models:
        for module in sorted(model_modules(model)):
            why.setdefault(module, []).append(f"to load model {model.tag}")
    for hf in packed:
        modules = entry_modules(hf.info.context.framework_versions, hf.sources.values())
        for module in sorted(modules):
            why.setdefault(module, []).append(f"to load model {hf.info.tag}")
    # What the services it depends on declare comes first, so the service's own wins.
    packages: list[str] = []
    for svc in reversed(service_closure(service)):
        if svc is not service:
            packages += image_packages(svc.config.image)
        packages += svc.config.python_packages
    local: dict[str, Entry] = {}
    while True:
        requirements = resolve_requirements(
            why,
            packages=packages,
            requirements_file=requirements_file,
            image=service.config.image,
        )
        local = _local_module_files(requirements.local_modules)
        more = {
            m
            for e in local.values()
            if isinstance(e.data, bytes)
            for m in imported_modules(e.data.decode())
        } - why.keys()
        if not more:
            break
        for module in more:
            why[module] = ["imported by a local module the service uses"]
    if requirements.missing:
        needs = "; ".join(f"{m} ({', '.join(why[m])})" for m in requirements.missing)
        notice(
            f"{service.name} needs modules that no distribution installed here provides, so the archive pins nothing for them: {needs}. Install them here and export again, or add their distributions with @service(python_packages=[...]) or --requirements FILE."
        )
    return requirements, local


def build_bento(
    service: Service[Any],
    captured: CapturedSource,
    out_dir: str | os.PathLike[str],
    *,
    variable: str | None = None,
    requirements_file: str | os.PathLike[str] | None = None,
    progress: bool | None = None,
) -> Path:
    """Write `<out_dir>/<name>-<version>.bento` and return its path.

    `progress`: show hashing and writing as bars (default: in a kernel or a terminal).
    """
    name = bento_name(service)
    config = service.config
    models = referenced_models(service, captured.text)
    packed = _packed_models(service, progress)
    requirements, local = _requirements(service, captured, models, packed, requirements_file)
    wheel = nbserve_wheel(_wheel_cache(), progress=progress)

    files: dict[str, Entry] = {"src/service.py": _text(captured.text), **local}
    files["env/python/requirements.txt"] = _text(requirements.text)
    files["env/python/version.txt"] = _text(requirements.python_version + "\n")
    files["env/python/install.sh"] = Entry(INSTALL_SH.encode(), executable=True)
    if wheel is not None:
        files[f"env/python/wheels/{wheel.name}"] = Entry(wheel)
    files.update(_model_files(models, packed, progress))
    files["apis/openapi.yaml"] = _text(_dump(service.openapi_spec))
    files["apis/schema.json"] = _text(_json(service.schema()))
    placeholder = archive.PLACEHOLDER  # the version is the hash of all these files
    info = bento_info(
        service,
        name=name,
        version=placeholder,
        variable=variable or service.inner.__name__,
        models=models,
        packed=packed,
        requirements=requirements,
        wheel=wheel.name if wheel else None,
    )
    files["bento.yaml"] = _text(_dump(info))
    python = requirements.python_version
    files["env/docker/Dockerfile"] = _text(
        deploy.dockerfile(
            name=name,
            version=placeholder,
            config=config,
            python_version=python,
            models=bool(models or packed),
        )
    )
    files["deploy/kubernetes.yaml"] = _text(
        deploy.kubernetes_manifest(name=name, version=placeholder, config=config)
    )

    version = archive.content_version(files, progress=progress)
    dest = Path(out_dir) / f"{name}-{version}{archive.SUFFIX}"
    return archive.write_archive(archive.with_version(files, version), dest, progress=progress)


def _json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str) + "\n"
