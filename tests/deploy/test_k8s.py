"""The Kubernetes manifests in deploy/k8s, validated against the API schemas and read for intent."""

from __future__ import annotations

import subprocess

import pytest

from tests.deploy.manifests import container_env, k8s_files, k8s_objects, venv_tool

OBJECTS = k8s_objects()
DEPLOYMENT = OBJECTS["Deployment"]
POD = DEPLOYMENT["spec"]["template"]
(CONTAINER,) = POD["spec"]["containers"]
POD_LABELS = POD["metadata"]["labels"]


# The oldest Kubernetes the manifests promise (docs/deploy.md) and the newest schema we have.
@pytest.mark.parametrize("version", ["1.31.0", "1.37.0"])
def test_manifests_validate_strictly_against_the_kubernetes_api(version: str) -> None:
    result = subprocess.run(
        [venv_tool("kubernetes-validate"), "--strict", "-k", version, *k8s_files()],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("passed") == len(k8s_files()), result.stdout


def test_kustomization_applies_one_of_each_object() -> None:
    assert set(OBJECTS) == {
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
    }


def test_each_pod_gets_one_gpu_and_requests_what_it_needs() -> None:
    resources = CONTAINER["resources"]
    assert resources["limits"]["nvidia.com/gpu"] == 1
    assert {"cpu", "memory"} <= set(resources["requests"])
    assert "memory" in resources["limits"]
    assert container_env(CONTAINER)["RESNET_SERVE_DEVICE"] == "cuda"


def test_probes_ask_ready_for_startup_and_readiness_and_live_for_liveness() -> None:
    assert CONTAINER["startupProbe"]["httpGet"]["path"] == "/health/ready"
    assert CONTAINER["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    # liveness over gRPC's standard health service: the gRPC port is probed too
    assert CONTAINER["livenessProbe"]["grpc"] == {"port": 8001, "service": "liveness"}
    startup = CONTAINER["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 120


def test_pod_runs_non_root_on_a_read_only_root_with_a_writable_tmp() -> None:
    pod_security = POD["spec"]["securityContext"]
    assert pod_security["runAsNonRoot"] is True
    assert pod_security["runAsUser"] != 0
    security = CONTAINER["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    (mount,) = (m for m in CONTAINER["volumeMounts"] if m["mountPath"] == "/tmp")
    volumes = {volume["name"]: volume for volume in POD["spec"]["volumes"]}
    assert "emptyDir" in volumes[mount["name"]]


def test_service_links_cannot_shadow_the_settings_prefix() -> None:
    # A Service named resnet-serve injects RESNET_SERVE_PORT=tcp://..., which the app would read.
    assert POD["spec"]["enableServiceLinks"] is False


def test_rollout_never_drops_below_the_ready_pods_it_has() -> None:
    strategy = DEPLOYMENT["spec"]["strategy"]
    assert strategy["rollingUpdate"]["maxUnavailable"] == 0
    assert strategy["rollingUpdate"]["maxSurge"] >= 1
    assert "replicas" not in DEPLOYMENT["spec"]  # the HPA owns it; apply must not reset it


def test_service_and_pdb_select_the_pods_and_the_hpa_scales_the_deployment() -> None:
    assert OBJECTS["Service"]["spec"]["selector"].items() <= POD_LABELS.items()
    assert OBJECTS["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"] == POD_LABELS
    target = OBJECTS["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", DEPLOYMENT["metadata"]["name"])
    assert DEPLOYMENT["spec"]["selector"]["matchLabels"] == POD_LABELS
