"""docker-compose.yml, checked against the Compose specification and for what it must say."""

from __future__ import annotations

import re
import subprocess

import yaml

from tests.deploy.manifests import (
    COMPOSE_FILE,
    REPO,
    compose_environment,
    healthcheck,
    interpolate,
    read_compose,
    read_dockerfile,
    seconds,
    venv_tool,
)

SERVICES = read_compose()["services"]
GPU, CPU = SERVICES["resnet-serve"], SERVICES["resnet-serve-cpu"]
(MONITORING_FILE,) = (REPO / path for path in read_compose()["include"])
MONITORING = read_compose(MONITORING_FILE)["services"]


def test_compose_file_validates_against_the_compose_specification() -> None:
    result = subprocess.run(
        [
            venv_tool("check-jsonschema"),
            "--builtin-schema",
            "vendor.compose-spec",
            COMPOSE_FILE,
            MONITORING_FILE,
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_default_service_reserves_one_nvidia_gpu() -> None:
    devices = GPU["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    assert compose_environment(GPU)["RESNET_SERVE_DEVICE"] == "cuda"
    assert "profiles" not in GPU  # `docker compose up` starts it


def test_cpu_variant_is_a_profile_without_a_gpu_reservation() -> None:
    assert CPU["profiles"] == ["cpu"]
    assert "deploy" not in CPU
    assert compose_environment(CPU)["RESNET_SERVE_DEVICE"] == "cpu"
    # Apart from the device, both variants serve with the same settings.
    gpu_env = compose_environment(GPU) | {"RESNET_SERVE_DEVICE": "cpu"}
    assert compose_environment(CPU) == gpu_env


def test_port_is_published_on_loopback_unless_told_otherwise() -> None:
    for service in (GPU, CPU):
        for port in service["ports"]:  # HTTP and gRPC
            assert interpolate(port["host_ip"]) == "127.0.0.1"
            assert port["host_ip"] == "${RESNET_SERVE_PUBLISH_IP:-127.0.0.1}"  # documented switch


def test_models_are_mounted_read_only_and_the_root_filesystem_is_read_only() -> None:
    for service in (GPU, CPU):
        mounts = {volume["target"]: volume for volume in service["volumes"]}
        assert mounts["/models"]["type"] == "bind"
        assert mounts["/models"]["read_only"] is True
        assert mounts["/tmp"]["type"] == "tmpfs"
        assert service["read_only"] is True
        assert compose_environment(service)["RESNET_SERVE_MODEL_DIR"] == "/models/demo"


def test_restart_logging_and_healthcheck_match_the_image() -> None:
    options, argv = healthcheck(read_dockerfile())
    for service in (GPU, CPU):
        assert service["restart"] == "unless-stopped"
        assert service["stop_signal"] == "SIGTERM"
        assert service["logging"]["driver"] == "json-file"
        assert set(service["logging"]["options"]) == {"max-size", "max-file"}
        check = service["healthcheck"]
        assert check["test"] == ["CMD", *argv]
        for option in ("interval", "timeout", "start-period", "start-interval"):
            assert seconds(check[option.replace("-", "_")]) == seconds(options[option]), option
        assert check["retries"] == int(options["retries"])


def test_monitoring_profile_scrapes_the_service_into_a_provisioned_grafana_on_loopback() -> None:
    assert set(MONITORING) == {"prometheus", "grafana"}
    for service in MONITORING.values():
        assert service["profiles"] == ["monitoring"]  # plain `docker compose up` leaves it out
        assert re.fullmatch(r"[\w/.-]+:v?\d+\.\d+\.\d+", service["image"])  # a pinned release
        assert all(port["host_ip"] == "127.0.0.1" for port in service["ports"])
    mounts = {
        volume["target"]: MONITORING_FILE.parent / volume["source"]
        for service in MONITORING.values()
        for volume in service["volumes"]
        if volume["type"] == "bind"
    }
    scrape = yaml.safe_load(mounts["/etc/prometheus/prometheus.yml"].read_text())
    (job,) = scrape["scrape_configs"]
    (targets,) = job["static_configs"]
    assert targets["targets"] == [f"{name}:8000" for name in SERVICES]
    provisioning = mounts["/etc/grafana/provisioning"]
    (source,) = yaml.safe_load((provisioning / "datasources/prometheus.yml").read_text())[
        "datasources"
    ]
    assert source["url"] == "http://prometheus:9090"
    assert [port["target"] for port in MONITORING["prometheus"]["ports"]] == [9090]
    (provider,) = yaml.safe_load((provisioning / "dashboards/dashboards.yml").read_text())[
        "providers"
    ]
    dashboards = mounts[provider["options"]["path"]]
    assert (dashboards / "resnet-serve.json").is_file()
