"""`@service(...)` options: BentoML's `ServiceConfig` keys, checked once at decoration.

Known keys are validated and normalised into a `ServiceConfig`; BentoML keys that nbserve does
not act on (ssl, logging, tracing, ...) are kept as given with a warning, never a crash.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Literal, TypedDict

from nbserve.exceptions import ServiceDefinitionError

__all__ = ["ResourcesConfig", "ServiceConfig", "TrafficConfig", "parse_service_config"]


class TrafficConfig(TypedDict, total=False):
    timeout: float
    max_concurrency: int | None
    concurrency: int
    external_queue: bool


class ResourcesConfig(TypedDict, total=False):
    cpu: str | int | float
    memory: str
    gpu: int | float
    gpu_type: str
    tpu_type: str


# BentoML keys nbserve accepts but does not act on (yet). Using one warns once, at decoration.
_KEPT_KEYS = frozenset(
    {
        "backlog",
        "max_runner_connections",
        "runner_connection",
        "extra_ports",
        "metrics",
        "logging",
        "ssl",
        "http",
        "grpc",
        "runner_probe",
        "tracing",
        "monitoring",
        "endpoints",
        "service_class",
        "image",
        "description",
    }
)


@dataclass(frozen=True)
class ServiceConfig:
    """The normalised configuration of one service."""

    timeout: float = 60.0
    max_concurrency: int | None = None
    workers: int | Literal["cpu_count"] | None = None
    threads: int = 1
    resources: ResourcesConfig = field(default_factory=lambda: ResourcesConfig())
    envs: tuple[dict[str, str], ...] = ()
    labels: dict[str, str] = field(default_factory=dict)
    path_prefix: str = ""
    image: Any = None
    python_packages: tuple[str, ...] = ()
    description: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)
    """Every option as the user gave it (bento.yaml records this)."""

    @property
    def worker_count(self) -> int | None:
        """Workers as a number: None means "inline in a notebook, one process elsewhere"."""
        if self.workers == "cpu_count":  # the container's CPU limit, not the host's cores
            from nbserve._runtime.execution.cpus import available_cpus

            return available_cpus()
        return self.workers

    @property
    def gpu(self) -> float:
        return float(self.resources.get("gpu", 0) or 0)


def _fail(msg: str) -> ServiceDefinitionError:
    return ServiceDefinitionError(msg)


def _check_traffic(traffic: Any) -> tuple[float, int | None]:
    if not isinstance(traffic, dict):
        msg = f"traffic={traffic!r} must be a dict, e.g. traffic={{'timeout': 10, 'max_concurrency': 32}}"
        raise _fail(msg)
    timeout = traffic.get("timeout", 60.0)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:
        msg = f"traffic.timeout={timeout!r} must be a positive number of seconds, e.g. traffic={{'timeout': 10}}"
        raise _fail(msg)
    max_concurrency = traffic.get("max_concurrency")
    if max_concurrency is not None and (
        isinstance(max_concurrency, bool)
        or not isinstance(max_concurrency, int)
        or max_concurrency < 1
    ):
        msg = f"traffic.max_concurrency={max_concurrency!r} must be a positive integer or None (no limit)"
        raise _fail(msg)
    return float(timeout), max_concurrency


def _check_workers(workers: Any) -> int | Literal["cpu_count"] | None:
    if workers is None or workers == "cpu_count":
        return workers  # type: ignore[no-any-return]
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        msg = f"workers={workers!r} must be a positive integer or 'cpu_count'"
        raise _fail(msg)
    return workers


def _check_resources(resources: Any) -> ResourcesConfig:
    if not isinstance(resources, dict):
        msg = f"resources={resources!r} must be a dict, e.g. resources={{'cpu': '1', 'gpu': 1}}"
        raise _fail(msg)
    gpu = resources.get("gpu", 0)
    if isinstance(gpu, str):  # BentoML's own examples write resources={"gpu": "1"}
        try:
            gpu = float(gpu) if "." in gpu else int(gpu)
        except ValueError:
            pass
        else:
            resources = {**resources, "gpu": gpu}
    if isinstance(gpu, bool) or not isinstance(gpu, int | float) or gpu < 0 or math.isnan(gpu):
        msg = f"resources.gpu={gpu!r} must be a number of GPUs per worker: an integer (1, 2) or a fraction (0.5)"
        raise _fail(msg)
    if gpu > 1 and gpu != int(gpu):
        msg = f"resources.gpu={gpu!r}: above 1 a GPU count must be whole, e.g. 2 (fractions pack several workers on one device)"
        raise _fail(msg)
    return ResourcesConfig(**resources)  # type: ignore[typeddict-item]


def _check_envs(envs: Any) -> tuple[dict[str, str], ...]:
    if not isinstance(envs, list | tuple):
        msg = f"envs={envs!r} must be a list of {{'name': ..., 'value': ...}} dicts"
        raise _fail(msg)
    out = []
    for env in envs:
        if not isinstance(env, dict) or not isinstance(env.get("name"), str):
            msg = f"envs entry {env!r} must be a dict with a 'name', e.g. {{'name': 'HF_TOKEN'}}"
            raise _fail(msg)
        out.append(dict(env))
    return tuple(out)


def _check_prefix(prefix: Any) -> str:
    if not isinstance(prefix, str) or (prefix and not prefix.startswith("/")):
        msg = f"path_prefix={prefix!r} must be a path starting with '/', e.g. path_prefix='/v1'"
        raise _fail(msg)
    return prefix.rstrip("/")


def parse_service_config(options: dict[str, Any], *, where: str) -> ServiceConfig:
    """Validate `@service(**options)`; `where` names the class in messages."""
    known = {
        "traffic",
        "workers",
        "threads",
        "resources",
        "envs",
        "labels",
        "path_prefix",
        "name",
        "image",
        "description",
        "cmd",  # a command service (_runtime/execution/command.py)
        "endpoints",  # its health path: endpoints={"livez": ...}
        # Read by the command service, which logs at start why it runs one copy anyway.
        "replicate_process",
    }
    if set(options.get("http") or {}) <= {"proxy_port"}:
        known.add("http")  # http={"proxy_port": N}: where a command service listens
    ignored = sorted(k for k in options if k not in known and k != "python_packages")
    unknown = [k for k in ignored if k not in _KEPT_KEYS]
    if ignored:
        warnings.warn(
            f"@service on {where}: option(s) {', '.join(ignored)} are kept in the service's configuration but nbserve does not act on them"
            + (
                f" ({', '.join(unknown)} are not BentoML options either; check the spelling)"
                if unknown
                else ""
            ),
            UserWarning,
            stacklevel=4,
        )
    timeout, max_concurrency = _check_traffic(options.get("traffic", {}))
    threads = options.get("threads", 1)
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        msg = f"threads={threads!r} must be a positive integer: how many sync API calls run at once per worker"
        raise _fail(msg)
    labels = options.get("labels", {})
    if not isinstance(labels, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
    ):
        msg = f"labels={labels!r} must be a dict of strings, e.g. labels={{'team': 'nlp'}}"
        raise _fail(msg)
    packages = options.get("python_packages", ())
    if isinstance(packages, str) or not all(isinstance(p, str) for p in packages):
        msg = f"python_packages={packages!r} must be a list of requirement strings, e.g. ['scikit-learn==1.5.2']"
        raise _fail(msg)
    image = options.get("image")
    # `image=nbserve.images.Image(...).python_packages(...)` (BentoML 1.3+): its packages are
    # the service's requirements, as if given with python_packages=.
    packages = (*packages, *getattr(image, "packages", ()))
    return ServiceConfig(
        timeout=timeout,
        max_concurrency=max_concurrency,
        workers=_check_workers(options.get("workers")),
        threads=threads,
        resources=_check_resources(options.get("resources", {})),
        envs=_check_envs(options.get("envs", [])),
        labels=dict(labels),
        path_prefix=_check_prefix(options.get("path_prefix", "")),
        image=image,
        python_packages=tuple(packages),
        description=options.get("description"),
        raw=dict(options),
    )
