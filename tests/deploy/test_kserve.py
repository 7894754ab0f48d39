"""deploy/kserve: the InferenceService for KServe, read for intent and its container validated."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from tests.deploy.manifests import container_env, venv_tool

MANIFEST = Path(__file__).resolve().parents[2] / "deploy" / "kserve" / "inferenceservice.yaml"
SERVICE = yaml.safe_load(MANIFEST.read_text())
PREDICTOR = SERVICE["spec"]["predictor"]
(CONTAINER,) = PREDICTOR["containers"]


def test_it_is_a_v1beta1_inference_service_with_one_custom_container() -> None:
    assert SERVICE["apiVersion"] == "serving.kserve.io/v1beta1"
    assert SERVICE["kind"] == "InferenceService"
    assert CONTAINER["name"] == "kserve-container"  # the name KServe routes to


def test_the_container_listens_where_kserve_sends_v2_traffic() -> None:
    env = container_env(CONTAINER)
    (port,) = CONTAINER["ports"]
    assert env["RESNET_SERVE_PORT"] == str(port["containerPort"])
    assert env["RESNET_SERVE_HOST"] == "0.0.0.0"
    assert CONTAINER["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert CONTAINER["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"


def test_the_pod_parts_validate_against_the_kubernetes_api(tmp_path: Path) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "kserve-predictor"},
        "spec": {"containers": PREDICTOR["containers"], "volumes": PREDICTOR["volumes"]},
    }
    path = tmp_path / "pod.yaml"
    path.write_text(yaml.safe_dump(pod))
    result = subprocess.run(
        [venv_tool("kubernetes-validate"), "--strict", "-k", "1.31.0", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
