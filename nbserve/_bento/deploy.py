"""Deploy files of a bento: `env/docker/Dockerfile` and `deploy/kubernetes.yaml`.

Both are plain text derived from the service's configuration and nothing else (no time, no
host), so they are as reproducible as the rest of the archive. The Dockerfile is built from the
extracted bento directory (`docker build -f env/docker/Dockerfile .`): a slim Python image,
the pinned requirements installed into a virtual environment by the bento's own
`env/python/install.sh` (one layer, reused while the requirements do not change), the code in
a later layer, a non-root user, and `nbserve serve` on the bundled bento with a healthcheck on
`/readyz`. It passes hadolint. The manifest holds a Deployment (resource requests from
`@service(resources=...)`, `nvidia.com/gpu` included; readiness and liveness probes on
`/readyz` and `/livez`), a Service and a HorizontalPodAutoscaler; it passes
kubernetes-validate.
"""

from __future__ import annotations

import math
import re
from typing import Any

import yaml

from nbserve._sdk.config import ServiceConfig

__all__ = [
    "PORT",
    "USER_ID",
    "dockerfile",
    "dockerfile_base_image",
    "kubernetes_manifest",
    "kubernetes_name",
]

PORT = 3000
USER_ID = 1034  # BentoML's uid/gid for its image user, so volume permissions carry over
BENTO_DIR = "/home/nbserve/bento"


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


def dockerfile(*, name: str, version: str, config: ServiceConfig, python_version: str) -> str:
    """The Dockerfile text; built with the bento directory as the context."""
    prefix = config.path_prefix
    probe = f"import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:{PORT}{prefix}/readyz', timeout=3).status != 200)"
    return f"""\
# syntax=docker/dockerfile:1
# Image for bento {name}:{version}, written by nbserve. Build it from the bento's directory
# (`nbserve import {name}-{version}.bento` prints it):
#   docker build -f env/docker/Dockerfile -t {kubernetes_name(name)}:{version} .
FROM {dockerfile_base_image(config, python_version)}

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
# The requirements first: a change to the code alone reuses this layer.
COPY env/python/ env/python/
RUN sh env/python/install.sh
COPY . .

USER {USER_ID}:{USER_ID}
EXPOSE {PORT}
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \\
    CMD ["python", "-c", "{probe}"]
CMD ["nbserve", "serve", "{BENTO_DIR}", "--host", "0.0.0.0", "--port", "{PORT}"]
"""


def _quantity(value: Any) -> str:
    return str(value).strip()


def _resources(config: ServiceConfig) -> dict[str, Any]:
    resources = config.resources
    requests: dict[str, Any] = {"cpu": _quantity(resources.get("cpu", "1"))}
    if resources.get("memory"):
        requests["memory"] = _quantity(resources["memory"])
    out: dict[str, Any] = {"requests": requests}
    if config.gpu:
        # gpu is per worker; Kubernetes hands out whole devices per pod.
        workers = config.workers if isinstance(config.workers, int) else 1
        gpus = str(math.ceil(config.gpu * workers))
        requests["nvidia.com/gpu"] = gpus
        out["limits"] = {"nvidia.com/gpu": gpus}
    return out


def kubernetes_manifest(
    *, name: str, version: str, config: ServiceConfig, replicas: int = 1, max_replicas: int = 4
) -> str:
    """Deployment + Service + HorizontalPodAutoscaler, one YAML stream."""
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
        "image": f"{app}:{version}",
        "imagePullPolicy": "IfNotPresent",
        "ports": [{"name": "http", "containerPort": PORT, "protocol": "TCP"}],
        "env": [{"name": e["name"], "value": str(e.get("value", ""))} for e in config.envs],
        "resources": _resources(config),
        "startupProbe": probe("/readyz", 5, 60),  # model loading may take minutes
        "readinessProbe": probe("/readyz", 5, 3),
        "livenessProbe": probe("/livez", 10, 3),
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "runAsNonRoot": True,
            "runAsUser": 1034,
            "runAsGroup": 1034,
        },
    }
    if not container["env"]:
        del container["env"]
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": app, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    # In-flight requests may run up to traffic.timeout after SIGTERM.
                    "terminationGracePeriodSeconds": math.ceil(config.timeout) + 10,
                    "containers": [container],
                },
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": app, "labels": labels},
        "spec": {
            "selector": selector,
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
        },
    }
    autoscaler = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": app, "labels": labels},
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
    header = (
        f"# Kubernetes objects for bento {name}:{version}, written by nbserve.\n"
        f"# Push the image built from env/docker/Dockerfile, set `image:` below to its full name,\n"
        f"# then: kubectl apply -f deploy/kubernetes.yaml\n"
    )
    body = yaml.safe_dump_all(
        [deployment, service, autoscaler], sort_keys=False, default_flow_style=False
    )
    return header + body
