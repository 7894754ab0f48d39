"""deploy/kserve: the InferenceServices, validated against KServe's CRD schema and the Kubernetes
API, and read for what KServe's controller and webhooks do with them.

The KServe behaviours asserted here were read in kserve/kserve v0.20.0 (the version of the schema
in tests/deploy/schemas/): the defaulting webhook's resources (pkg/apis/serving/v1beta1/
inference_service_defaults.go, config/configmap/inferenceservice.yaml), the custom predictor's
protocol (predictor_custom.go, GetProtocol: the PROTOCOL variable), the metrics aggregator
(pkg/webhook/admission/pod/metrics_aggregate_injector.go) and the autoscaling validation
(inference_service_validation.go: concurrency is a Knative (KPA) metric).
"""

from __future__ import annotations

import json
import re
import subprocess
from decimal import Decimal
from pathlib import Path

import jsonschema
import pytest
import yaml

from tests.deploy.manifests import K8S_DIR, REPO, container_env, venv_tool

KSERVE = Path(__file__).resolve().parents[2] / "deploy" / "kserve"
SERVICE = yaml.safe_load((KSERVE / "inferenceservice.yaml").read_text())
PREDICTOR = SERVICE["spec"]["predictor"]
(CONTAINER,) = PREDICTOR["containers"]
GRPC_SERVICE = yaml.safe_load((KSERVE / "inferenceservice-grpc.yaml").read_text())
GRPC_PREDICTOR = GRPC_SERVICE["spec"]["predictor"]
(GRPC_CONTAINER,) = GRPC_PREDICTOR["containers"]
SERVICES = {"http": SERVICE, "grpc": GRPC_SERVICE}
SCHEMA_FILE = Path(__file__).parent / "schemas" / "kserve-inferenceservice-v0.20.0.json"


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


def _cpu(quantity: str | int) -> Decimal:
    text = str(quantity)
    return Decimal(text[:-1]) / 1000 if text.endswith("m") else Decimal(text)


@pytest.fixture(scope="module")
def kserve_schema() -> jsonschema.Draft4Validator:
    schema = json.loads(SCHEMA_FILE.read_text())
    assert schema["x-source"]["repository"] == "kserve/kserve"
    assert schema["x-source"]["tag"] in SCHEMA_FILE.name
    # OpenAPI v3.0 (what CRDs use) is closest to draft 4: boolean exclusiveMinimum and the like.
    jsonschema.Draft4Validator.check_schema(schema)
    return jsonschema.Draft4Validator(schema)


@pytest.mark.parametrize("variant", SERVICES)
def test_the_service_validates_against_kserves_crd_schema(kserve_schema, variant: str) -> None:
    errors = [
        f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
        for e in kserve_schema.iter_errors(SERVICES[variant])
    ]
    assert errors == []


def test_the_schema_refuses_what_the_api_server_would(kserve_schema) -> None:
    """The trimmed schema still bites: an unknown field, a bad enum, a bad quantity."""
    broken = yaml.safe_load(yaml.safe_dump(SERVICE))
    predictor = broken["spec"]["predictor"]
    predictor["scaleMetric"] = "qps"
    predictor["containers"][0]["resources"]["limits"]["cpu"] = "four"
    predictor["containers"][0]["envv"] = []
    predictor["minReplica"] = 1
    messages = {error.message for error in kserve_schema.iter_errors(broken)}
    assert len(messages) == 4, messages


@pytest.mark.parametrize("variant", SERVICES)
def test_the_cpu_limit_is_explicit_and_not_below_the_request(variant: str) -> None:
    """KServe's defaulting webhook fills a missing CPU limit from inferenceservice-config (1 CPU):
    below our request of 2, the pod would be invalid and no replica would start."""
    (container,) = SERVICES[variant]["spec"]["predictor"]["containers"]
    resources = container["resources"]
    assert "cpu" in resources["limits"]
    assert _cpu(resources["limits"]["cpu"]) >= _cpu(resources["requests"]["cpu"])
    assert "memory" in resources["limits"]  # the same default would apply (2Gi)
    assert resources["limits"]["nvidia.com/gpu"] == 1


@pytest.mark.parametrize(("variant", "protocol"), [("http", "v2"), ("grpc", "grpc-v2")])
def test_the_protocol_is_declared_to_kserve(variant: str, protocol: str) -> None:
    """A custom predictor's protocol is its first container's PROTOCOL; without it KServe assumes
    v1 and builds /v1/models/<name>:predict URLs in InferenceGraphs."""
    (container,) = SERVICES[variant]["spec"]["predictor"]["containers"]
    assert container_env(container)["PROTOCOL"] == protocol


@pytest.mark.parametrize("variant", SERVICES)
def test_prometheus_scrapes_the_apps_metrics_through_kserves_aggregation(variant: str) -> None:
    service = SERVICES[variant]
    annotations = service["metadata"]["annotations"]
    (container,) = service["spec"]["predictor"]["containers"]
    assert annotations["serving.kserve.io/enable-prometheus-scraping"] == "true"
    # Without aggregation the pod's prometheus.io/port is the queue-proxy's own (9091).
    assert annotations["serving.kserve.io/enable-metric-aggregation"] == "true"
    # The queue-proxy fetches the app's metrics from here: the HTTP port and its /metrics route.
    assert annotations["prometheus.kserve.io/port"] == container_env(container)["RESNET_SERVE_PORT"]
    assert annotations["prometheus.kserve.io/path"] == "/metrics"
    from app.edge.routes import operations

    assert "/metrics" in {route.path for route in operations.router.routes}


@pytest.mark.parametrize("variant", SERVICES)
def test_the_deployment_mode_is_the_one_concurrency_scaling_needs(variant: str) -> None:
    """scaleMetric concurrency is a Knative (KPA) metric, and metric aggregation runs in the
    queue-proxy: both need Knative mode ("Serverless", which KServe 0.20 reads as "Knative")."""
    service = SERVICES[variant]
    assert service["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Serverless"
    assert service["spec"]["predictor"]["scaleMetric"] == "concurrency"


@pytest.mark.parametrize("variant", SERVICES)
def test_the_predictor_tolerates_the_gpu_taint_like_the_deployment(variant: str) -> None:
    deployment = yaml.safe_load((K8S_DIR / "deployment.yaml").read_text())
    expected = deployment["spec"]["template"]["spec"]["tolerations"]
    assert SERVICES[variant]["spec"]["predictor"]["tolerations"] == expected


def _request_panel_selectors() -> list[str]:
    dashboard = json.loads((REPO / "deploy/grafana/dashboards/resnet-serve.json").read_text())
    selectors = []
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            if re.search(r"resnet_serve_request(s_total|_duration_seconds)", target["expr"]):
                (selector,) = re.findall(r'route=~"((?:[^"\\]|\\.)*)"', target["expr"])
                selectors.append(selector.encode().decode("unicode_escape"))
    return selectors


def test_the_dashboards_request_panels_count_inference_only_never_kserves_probes() -> None:
    """KServe probes /v2/health/* (and clients poll /v2/models/<name>/ready): the request-rate and
    latency panels select the inference routes, so neither counts as work."""
    from app.edge.application import INFERENCE_ROUTERS
    from app.edge.grpc.servicer import SERVICE_NAME
    from app.edge.routes import model_info, operations, page, v2

    inference = {route.path for router in INFERENCE_ROUTERS for route in router.routes}
    inference.add(f"/{SERVICE_NAME}/ModelInfer")
    routers = (v2.router, operations.router, model_info.router, page.router)
    other = {route.path for router in routers for route in router.routes}
    other |= {f"/{SERVICE_NAME}/{m}" for m in ("ServerLive", "ServerReady", "ModelReady")}
    other |= {"/v2/health/live", "/v2/health/ready", "unmatched"}
    selectors = _request_panel_selectors()
    assert len(selectors) == 3  # requests/s, p50, p99
    for selector in selectors:
        assert {route for route in inference if not re.fullmatch(selector, route)} == set()
        assert {route for route in other if re.fullmatch(selector, route)} == set()
