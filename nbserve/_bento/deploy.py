"""Deploy files of a bento: `env/docker/Dockerfile` and `deploy/kubernetes.yaml`.

Both are plain text derived from the service's configuration and nothing else (no time, no
host), so they are as reproducible as the rest of the archive. The Dockerfile is built from the
extracted bento directory (`nbserve containerize`, `nbserve._bento.image`): a base with python3
(`ARG BASE_IMAGE`), a non-root user (uid 1034) and a virtual environment, then layers from the
least to the most often changed: the requirements (`env/python/install.sh`), the models, the
code. `nbserve serve` is the entrypoint (PID 1, so it gets SIGTERM and drains), on `0.0.0.0` at
`$PORT` inside the image only (`IMAGE_ENV`), logging to stdout, with a healthcheck on `/readyz`.
It passes hadolint. The manifest holds a Deployment (requests = limits from
`@service(resources=...)`, `nvidia.com/gpu` included; probes on `/readyz` and `/livez`; the
image's environment; a grace period above `traffic.timeout`), a Service, a
HorizontalPodAutoscaler and a PodDisruptionBudget; it passes kubernetes-validate against
`KUBERNETES_VERSION`, and a test checks that its port, probe paths and env are the image's.
"""

from __future__ import annotations

import math
import re
from typing import Any

import yaml

from nbserve._sdk.config import ServiceConfig

__all__ = [
    "IMAGE_ENV",
    "KUBERNETES_VERSION",
    "PORT",
    "USER_ID",
    "dockerfile",
    "dockerfile_base_image",
    "grace_period",
    "kubernetes_manifest",
    "kubernetes_name",
]

PORT = 3000
USER_ID = 1034  # BentoML's uid/gid for its image user, so volume permissions carry over
BENTO_DIR = "/home/nbserve/bento"
READY_PATH = "/readyz"
LIVE_PATH = "/livez"
# What the image sets for `nbserve serve`; the manifest sets the same (a test checks they agree).
IMAGE_ENV = {
    "NBSERVE_HOST": "0.0.0.0",
    "PORT": str(PORT),
    "NBSERVE_LOGS": "stdout",
}
# The bento's files besides env/python/ and models/, copied last (they change most often).
CODE_PATHS = ("bento.yaml", "apis/", "deploy/", "env/docker/", "src/")
PRE_STOP_SECONDS = 5
KUBERNETES_VERSION = "1.31.0"  # the schema the manifest is validated against (tests, docs)


def kubernetes_name(name: str) -> str:
    """A DNS-1123 label: `iris_classifier` → `iris-classifier`."""
    label = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")
    return label[:63].rstrip("-") or "bento"


def dockerfile_base_image(config: ServiceConfig, python_version: str) -> str:
    """The image to build on: `@service(image=...)`'s base_image, else python:X.Y-slim."""
    image = config.image
    base = (
        image.get("base_image") if isinstance(image, dict) else getattr(image, "base_image", None)
    )
    if isinstance(base, str) and base:
        return base
    major_minor = ".".join(python_version.split(".")[:2])
    return f"python:{major_minor}-slim"


def dockerfile(
    *, name: str, version: str, config: ServiceConfig, python_version: str, models: bool = False
) -> str:
    """The Dockerfile text; built with the bento directory as the context.

    `models`: whether the bento carries a `models/` directory (it gets a layer of its own).
    """
    prefix = config.path_prefix
    probe = (
        "import os, sys, urllib.request; "
        f"sys.exit(urllib.request.urlopen('http://127.0.0.1:%s{prefix}{READY_PATH}' "
        "% os.environ.get('PORT', '3000'), timeout=3).status != 200)"
    )
    models_layer = (
        "# 2. The models: reused while the models do not change.\nCOPY models/ models/\n"
        if models
        else "# 2. No models in this bento.\n"
    )
    code = "".join(f"COPY {path} {path if path.endswith('/') else './'}\n" for path in CODE_PATHS)
    env = " \\\n    ".join(f"{key}={value}" for key, value in IMAGE_ENV.items())
    return f"""\
# Image for bento {name}:{version}, written by nbserve. `nbserve containerize` builds it; by hand,
# from the bento's directory (`nbserve import {name}-{version}.bento` prints it):
#   docker build -f env/docker/Dockerfile -t {kubernetes_name(name)}:{version} .
# `--build-arg BASE_IMAGE=...` picks another base: Debian or Ubuntu with python3 and its venv.
ARG BASE_IMAGE={dockerfile_base_image(config, python_version)}
FROM ${{BASE_IMAGE}}

ENV PYTHONDONTWRITEBYTECODE=1 \\
    PYTHONUNBUFFERED=1 \\
    PIP_NO_CACHE_DIR=1 \\
    PIP_DISABLE_PIP_VERSION_CHECK=1 \\
    PIP_ROOT_USER_ACTION=ignore \\
    VIRTUAL_ENV=/opt/venv \\
    PATH=/opt/venv/bin:$PATH \\
    NBSERVE_HOME=/home/nbserve/.nbserve \\
    BENTO_PATH={BENTO_DIR}

RUN groupadd --system --gid {USER_ID} nbserve \\
    && useradd --system --uid {USER_ID} --gid nbserve --create-home --home-dir /home/nbserve nbserve \\
    && python -m venv /opt/venv

WORKDIR {BENTO_DIR}
# Layers from the least to the most often changed, so a code-only change rebuilds in seconds.
# 1. The requirements: reused while env/python/ (pins, wheels) does not change.
COPY env/python/ env/python/
# The building machine's pip index settings, when it has any (`nbserve containerize` passes
# them). Unset here, they change nothing; set, their values show in `docker history`.
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ARG PIP_TRUSTED_HOST
RUN sh env/python/install.sh
{models_layer}# 3. The service's code and the bento's metadata.
{code}
# Inside the image only: all interfaces (the container's network is its own), the port from
# $PORT, logs on stdout one line per event (NBSERVE_LOG_FORMAT=json for JSON).
ENV {env}
USER {USER_ID}:{USER_ID}
EXPOSE {PORT}
# SIGTERM: the port closes, in-flight requests finish (up to traffic.timeout), exit status 0.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=5s --timeout=3s --start-period=120s --retries=3 \\
    CMD ["python", "-c", "{probe}"]
ENTRYPOINT ["nbserve", "serve", "{BENTO_DIR}"]
"""


def _quantity(value: Any) -> str:
    return str(value).strip()


def _resources(config: ServiceConfig) -> dict[str, Any]:
    resources = config.resources
    requests: dict[str, Any] = {"cpu": _quantity(resources.get("cpu", "1"))}
    if resources.get("memory"):
        requests["memory"] = _quantity(resources["memory"])
    # Limits equal to the requests: the pod gets the Guaranteed class, and its CPU limit (the
    # cgroup quota) is what `workers="cpu_count"` and the math-library threads are sized from.
    limits = dict(requests)
    out: dict[str, Any] = {"requests": requests, "limits": limits}
    if config.gpu:
        # gpu is per worker; Kubernetes hands out whole devices per pod.
        workers = config.workers if isinstance(config.workers, int) else 1
        gpus = str(math.ceil(config.gpu * workers))
        requests["nvidia.com/gpu"] = gpus
        limits["nvidia.com/gpu"] = gpus
    return out


def grace_period(config: ServiceConfig) -> int:
    """Seconds Kubernetes waits after SIGTERM: the pre-stop pause, the longest request, a margin."""
    return PRE_STOP_SECONDS + math.ceil(config.timeout) + 5


def kubernetes_manifest(
    *,
    name: str,
    version: str,
    config: ServiceConfig,
    replicas: int = 1,
    max_replicas: int = 4,
    image: str | None = None,
) -> str:
    """Deployment + Service + HorizontalPodAutoscaler + PodDisruptionBudget, one YAML stream.

    `image`: the image reference (default `<name>:<version>`, what `nbserve containerize` tags).
    """
    app = kubernetes_name(name)
    labels = {
        "app.kubernetes.io/name": app,
        "app.kubernetes.io/version": version,
        "app.kubernetes.io/managed-by": "nbserve",
    }
    selector = {"app.kubernetes.io/name": app}
    prefix = config.path_prefix

    def probe(path: str, period: int, failures: int) -> dict[str, Any]:
        return {
            "httpGet": {"path": f"{prefix}{path}", "port": "http"},
            "periodSeconds": period,
            "timeoutSeconds": 3,
            "failureThreshold": failures,
        }

    container = {
        "name": app,
        "image": image or f"{app}:{version}",
        "imagePullPolicy": "IfNotPresent",
        "ports": [{"name": "http", "containerPort": PORT, "protocol": "TCP"}],
        # The image's own settings first (the same values; a test checks they agree), then the
        # service's `envs`.
        "env": [{"name": k, "value": v} for k, v in IMAGE_ENV.items()]
        + [{"name": e["name"], "value": str(e.get("value", ""))} for e in config.envs],
        "resources": _resources(config),
        "startupProbe": probe(READY_PATH, 5, 60),  # model loading may take minutes
        "readinessProbe": probe(READY_PATH, 5, 3),
        "livenessProbe": probe(LIVE_PATH, 10, 3),
        # Endpoints are removed from the Service while SIGTERM is already on its way: a short
        # pause before it lets load balancers stop sending new connections to a closing port.
        "lifecycle": {"preStop": {"exec": {"command": ["sleep", str(PRE_STOP_SECONDS)]}}},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "runAsNonRoot": True,
            "runAsUser": USER_ID,
            "runAsGroup": USER_ID,
        },
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": app, "labels": dict(labels)},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {"labels": dict(labels)},
                "spec": {
                    # In-flight requests may run up to traffic.timeout after SIGTERM.
                    "terminationGracePeriodSeconds": grace_period(config),
                    "containers": [container],
                },
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": app, "labels": dict(labels)},
        "spec": {
            "selector": selector,
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
        },
    }
    autoscaler = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": app, "labels": dict(labels)},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": app},
            "minReplicas": replicas,
            "maxReplicas": max(max_replicas, replicas),
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": 80},
                    },
                }
            ],
        },
    }
    # Voluntary disruptions (node drains, upgrades) take down one pod at a time; with
    # maxUnavailable rather than minAvailable a single-replica service can still be drained.
    budget = {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": app, "labels": dict(labels)},
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector}},
    }
    header = (
        f"# Kubernetes objects for bento {name}:{version}, written by nbserve.\n"
        f"# `nbserve containerize {name}-{version}.bento --kubernetes` prints it with the image it\n"
        f"# built; push that image, set `image:` to its full name, then: kubectl apply -f -\n"
        f"# Checked with kubernetes-validate against Kubernetes {KUBERNETES_VERSION}.\n"
    )
    body = yaml.safe_dump_all(
        [deployment, service, autoscaler, budget], sort_keys=False, default_flow_style=False
    )
    return header + body
