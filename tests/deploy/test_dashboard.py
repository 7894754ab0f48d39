"""The Grafana dashboard asks only for metrics that a real server exports, under these names.

A renamed metric would otherwise leave a panel saying "No data" and no test failing. The names are
read from the dashboard's PromQL, the exposition from a running server's /metrics.
"""

from __future__ import annotations

import json
import re
from importlib.metadata import version

import httpx

from tests.conftest import ServerProcess, encode, known_image
from tests.deploy.manifests import REPO

DASHBOARD = REPO / "deploy" / "grafana" / "dashboards" / "resnet-serve.json"
# Exported on CUDA only (utilisation also needs NVML), so absent from a CPU server's /metrics.
GPU_ONLY = frozenset(
    {
        "resnet_serve_gpu_memory_allocated_bytes",
        "resnet_serve_gpu_memory_reserved_bytes",
        "resnet_serve_gpu_utilization_ratio",
    }
)
# PromQL words that look like metric names: modifiers and binary operators.
PROMQL_KEYWORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset"}
    | {"and", "or", "unless"}
)
LABEL_VALUES = re.compile(r"label_values\(\s*([a-zA-Z_:][\w:]*)")  # Grafana's, not PromQL


def metric_names(expr: str) -> set[str]:
    """Every metric name selected in a PromQL expression (functions, labels and windows left out)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # label values and regexes
    expr = re.sub(r"\{[^}]*\}", " ", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", " ", expr)  # range windows, Grafana's $__rate_interval
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    # An identifier followed by "(" is a function or an aggregation; numbers never match.
    words = re.findall(r"(?<![\w:.$])([a-zA-Z_:][\w:]*)\b(?!\s*\()", expr)
    return set(words) - PROMQL_KEYWORDS


def dashboard_metrics() -> set[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    names: set[str] = set()
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            names |= metric_names(target["expr"])
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            names |= set(LABEL_VALUES.findall(variable["definition"]))
    return names


def post_image(server: ServerProcess, body: bytes) -> httpx.Response:
    return httpx.post(
        server.url + "/predict", files={"file": ("x.jpg", body, "image/jpeg")}, timeout=30
    )


def test_metric_names_are_read_from_promql_without_functions_labels_or_windows() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le) (rate(a_seconds_bucket{route!~"/health.*"}'
        "[$__rate_interval]))) / on (instance) group_left b_total offset 5m"
    )
    assert metric_names(expr) == {"a_seconds_bucket", "b_total"}


def test_dashboard_has_a_panel_for_each_dashboard_question() -> None:
    assert dashboard_metrics() >= {
        "resnet_serve_requests_total",
        "resnet_serve_request_duration_seconds_bucket",
        "resnet_serve_images_total",
        "resnet_serve_batch_size_bucket",
        "resnet_serve_queue_depth",
        "resnet_serve_requests_in_flight",
        "resnet_serve_admission_saturation_ratio",
        "resnet_serve_rejected_requests_total",
        "resnet_serve_gpu_memory_allocated_bytes",
        "resnet_serve_gpu_memory_reserved_bytes",
    }


def test_every_dashboard_metric_is_on_a_running_servers_metrics(
    demo_server: ServerProcess,
) -> None:
    assert post_image(demo_server, encode(known_image("star", 7))).status_code == 200
    assert post_image(demo_server, b"not an image").status_code == 400
    exposed = set(demo_server.metrics())
    wanted = dashboard_metrics()
    assert all(name.startswith("resnet_serve_") for name in wanted), wanted
    if demo_server.get("/health/ready").json()["device"].startswith("cuda"):
        assert wanted <= exposed, wanted - exposed  # utilisation too: nvidia-ml-py is locked
    else:
        assert wanted - GPU_ONLY <= exposed, wanted - GPU_ONLY - exposed
        assert not GPU_ONLY & exposed  # no GPU series at all on a CPU server


def test_bad_image_is_counted_as_a_bad_image_rejection(demo_server: ServerProcess) -> None:
    before = demo_server.rejections()
    assert set(before) == {
        "overloaded",
        "deadline",
        "too_large",
        "bad_request",
        "bad_image",
        "unauthorized",
        "draining",
        "not_ready",
        "internal",
        "slow_reader",
    }
    answer = post_image(demo_server, b"not an image")
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "invalid_image"
    assert post_image(demo_server, encode(known_image("ring", 8))).status_code == 200
    after = demo_server.rejections()
    assert {reason: after[reason] - before[reason] for reason in before} == {
        reason: 1.0 if reason == "bad_image" else 0.0 for reason in before
    }


def test_model_build_and_start_up_times_are_exported(demo_server: ServerProcess) -> None:
    samples = demo_server.metrics()
    (model,) = samples["resnet_serve_model_info"]
    health = demo_server.get("/health/ready").json()
    assert dict(model) == {
        "model": "demo",
        "version": "1",  # a plain bundle is version 1
        "arch": "resnet18",
        "num_classes": "9",
        "device": health["device"],
        "precision": health["precision"],
    }
    (build,) = samples["resnet_serve_build_info"]
    assert dict(build)["version"] == version("resnet-serve")
    assert samples["resnet_serve_model_load_seconds"][()] > 0
    assert samples["resnet_serve_warmup_seconds"][()] > 0
