"""What the Dockerfile, Compose, Kubernetes and the app say about each other must agree.

Every value is parsed from the file that owns it, so a change in one place that is not made in the
others fails here instead of in a rollout.
"""

from __future__ import annotations

import functools
import importlib
import re
import tomllib

from starlette.routing import BaseRoute, Match

from app.serving.metrics import ServiceMetrics
from app.settings import Settings
from tests.conftest import CLI, demo_app
from tests.deploy.manifests import (
    REPO,
    compose_environment,
    container_env,
    exec_form,
    final_stage,
    image_env,
    interpolate,
    k8s_objects,
    only,
    read_compose,
    read_dockerfile,
    seconds,
)

INSTRUCTIONS = read_dockerfile()
IMAGE_ENV = image_env(INSTRUCTIONS, base_path="/usr/bin:/bin")
COMPOSE = read_compose()["services"]
K8S = k8s_objects()
POD_SPEC = K8S["Deployment"]["spec"]["template"]["spec"]
(CONTAINER,) = POD_SPEC["containers"]
DEFAULTS = Settings.model_fields


@functools.cache
def _routes() -> list[BaseRoute]:
    """The app's routes, from one build of the app (it loads the model)."""
    with demo_app() as app:
        return list(app.router.routes)


def _answers_get(path: str) -> bool:
    """Whether the app routes ``GET path`` to a handler (asked the way Starlette dispatches)."""
    scope = {"type": "http", "method": "GET", "path": path, "root_path": "", "headers": []}
    return any(route.matches(scope)[0] is Match.FULL for route in _routes())


def test_image_cmd_is_the_console_script_that_make_serve_and_the_tests_run() -> None:
    argv = exec_form(only(final_stage(INSTRUCTIONS), "CMD").args)
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    module, _, function = scripts[argv[0]].partition(":")
    assert callable(getattr(importlib.import_module(module), function))
    assert CLI.name == argv[0]  # the server the other tests start
    serve_recipe = re.search(r"^serve:.*\n\t(.+)$", (REPO / "Makefile").read_text(), re.M)[1]
    assert serve_recipe.split() == [f"$(BIN)/{argv[0]}", *argv[1:]]


def test_probe_and_scrape_paths_are_get_routes_of_the_app() -> None:
    assert not _answers_get("/no-such-route")
    for probe in ("startupProbe", "readinessProbe"):  # liveness asks gRPC (tests/api/test_grpc.py)
        assert _answers_get(CONTAINER[probe]["httpGet"]["path"]), probe
    annotations = K8S["Deployment"]["spec"]["template"]["metadata"]["annotations"]
    assert _answers_get(annotations["prometheus.io/path"])
    # The image's HEALTHCHECK runs `resnet-serve healthcheck`, which asks /health/ready; the
    # behaviour test proves that it does.
    assert _answers_get("/health/ready")


def test_hpa_scales_on_a_gauge_the_service_exports() -> None:
    (metric,) = K8S["HorizontalPodAutoscaler"]["spec"]["metrics"]
    name = metric["pods"]["metric"]["name"]
    exported = {family.name: family.type for family in ServiceMetrics().registry.collect()}
    assert exported.get(name) == "gauge", f"{name} is not a gauge on /metrics"


def test_expose_compose_kubernetes_and_the_app_default_agree_on_the_ports() -> None:
    port, grpc_port = DEFAULTS["port"].default, DEFAULTS["grpc_port"].default
    assert only(final_stage(INSTRUCTIONS), "EXPOSE").args == f"{port} {grpc_port}"
    assert IMAGE_ENV["RESNET_SERVE_PORT"] == str(port)
    assert IMAGE_ENV["RESNET_SERVE_GRPC_PORT"] == str(grpc_port)
    for service in COMPOSE.values():
        assert [p["target"] for p in service["ports"]] == [port, grpc_port]
    container_port, container_grpc_port = CONTAINER["ports"]
    assert container_port["containerPort"] == port
    assert container_grpc_port["containerPort"] == grpc_port
    assert container_env(CONTAINER)["RESNET_SERVE_PORT"] == str(port)
    assert container_env(CONTAINER)["RESNET_SERVE_GRPC_PORT"] == str(grpc_port)
    for probe in ("startupProbe", "readinessProbe"):
        assert CONTAINER[probe]["httpGet"]["port"] == container_port["name"], probe
    assert CONTAINER["livenessProbe"]["grpc"]["port"] == grpc_port
    service_port, service_grpc_port = K8S["Service"]["spec"]["ports"]
    assert service_port["targetPort"] == container_port["name"]
    assert service_grpc_port["targetPort"] == container_grpc_port["name"]
    annotations = K8S["Deployment"]["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(port)


def test_drain_timeout_is_shorter_than_every_grace_period() -> None:
    drain = DEFAULTS["drain_timeout_s"].default
    assert float(IMAGE_ENV["RESNET_SERVE_DRAIN_TIMEOUT_S"]) == drain
    for service in COMPOSE.values():
        compose_drain = float(compose_environment(service)["RESNET_SERVE_DRAIN_TIMEOUT_S"])
        assert compose_drain < seconds(interpolate(service["stop_grace_period"]))
    k8s_drain = float(container_env(CONTAINER)["RESNET_SERVE_DRAIN_TIMEOUT_S"])
    pre_stop = CONTAINER["lifecycle"]["preStop"]["sleep"]["seconds"]
    # Kubernetes counts the grace period from the start of preStop; SIGTERM comes after it.
    assert 0 < pre_stop < 15
    assert pre_stop + k8s_drain < POD_SPEC["terminationGracePeriodSeconds"]


def test_image_settings_are_valid_settings() -> None:
    settings = {
        key.removeprefix("RESNET_SERVE_").lower(): value
        for key, value in IMAGE_ENV.items()
        if key.startswith("RESNET_SERVE_")
    }
    assert set(settings) <= set(DEFAULTS), set(settings) - set(DEFAULTS)
    Settings(**settings)  # raises on a value the app would refuse at start-up
