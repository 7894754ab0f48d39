"""deploy/kserve: the InferenceService for KServe, read for intent and its container validated."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from tests.deploy.manifests import container_env, venv_tool

KSERVE = Path(__file__).resolve().parents[2] / "deploy" / "kserve"
SERVICE = yaml.safe_load((KSERVE / "inferenceservice.yaml").read_text())
PREDICTOR = SERVICE["spec"]["predictor"]
(CONTAINER,) = PREDICTOR["containers"]
GRPC_SERVICE = yaml.safe_load((KSERVE / "inferenceservice-grpc.yaml").read_text())
GRPC_PREDICTOR = GRPC_SERVICE["spec"]["predictor"]
(GRPC_CONTAINER,) = GRPC_PREDICTOR["containers"]


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


def test_the_grpc_variant_listens_on_the_port_kserve_sends_grpc_to_and_probes_it() -> None:
    assert GRPC_SERVICE["kind"] == "InferenceService"
    assert GRPC_CONTAINER["name"] == "kserve-container"
    env = container_env(GRPC_CONTAINER)
    (port,) = GRPC_CONTAINER["ports"]
    assert port["name"] == "h2c"  # KServe's name for a gRPC port
    assert env["RESNET_SERVE_GRPC_PORT"] == str(port["containerPort"])
    assert env["RESNET_SERVE_PORT"] != env["RESNET_SERVE_GRPC_PORT"]
    assert GRPC_CONTAINER["readinessProbe"]["grpc"] == {"port": port["containerPort"]}
    assert GRPC_CONTAINER["livenessProbe"]["grpc"] == {
        "port": port["containerPort"],
        "service": "liveness",
    }


@pytest.mark.parametrize("predictor", [PREDICTOR, GRPC_PREDICTOR], ids=["http", "grpc"])
def test_the_pod_parts_validate_against_the_kubernetes_api(tmp_path: Path, predictor) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "kserve-predictor"},
        "spec": {"containers": predictor["containers"], "volumes": predictor["volumes"]},
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
