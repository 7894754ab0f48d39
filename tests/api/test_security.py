"""The secure surface against real servers: bearer keys on inference only, CORS only where configured,
and a tampered weights file refused at start-up."""

from __future__ import annotations

import base64
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.edge.api_keys import ApiKeysError, load_api_keys
from app.settings import Settings
from tests.conftest import DEMO_BUNDLE, ServerProcess, demo_app, encode, known_image

KEY_A = "key-alpha-7f3c9e"
KEY_B = "key-beta-19d2aa"
FILE_KEY = "key-from-file-5b80c4"
WRONG_KEY = "key-wrong-e61d03"
ALLOWED_ORIGIN = "https://app.example.com"
OTHER_ORIGIN = "https://evil.example.net"
JPEG = encode(known_image("star", 1))


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """Keys from both sources (with blanks to strip) and one CORS origin: one server for the module."""
    folder = tmp_path_factory.mktemp("keyed-server")
    keys_file = folder / "api-keys"
    keys_file.write_text(f"\n  {FILE_KEY}  \n\n")
    env = {
        "RESNET_SERVE_MODEL_DIR": str(DEMO_BUNDLE),
        "RESNET_SERVE_MAX_BATCH_SIZE": "4",
        "RESNET_SERVE_API_KEYS": f"{KEY_A}, ,{KEY_B}",
        "RESNET_SERVE_API_KEYS_FILE": str(keys_file),
        "RESNET_SERVE_CORS_ORIGINS": ALLOWED_ORIGIN,
    }
    server = ServerProcess(env, folder / "server.log").start()
    try:
        yield server.wait_ready()
    finally:
        server.stop()


def _predict(server: ServerProcess, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(
        server.url + "/predict",
        files={"file": ("x.jpg", JPEG, "image/jpeg")},
        headers=headers,
        timeout=30,
    )


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _preflight(server: ServerProcess, origin: str) -> httpx.Response:
    return httpx.options(
        server.url + "/predict",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization",
        },
    )


def _cors_headers(response: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.startswith("access-control-")}


@pytest.mark.parametrize(
    "headers",
    [None, {"Authorization": f"Basic {KEY_A}"}, {"Authorization": "Bearer"}],
    ids=["no header", "basic scheme", "empty bearer"],
)
def test_predict_without_a_bearer_key_is_401_with_www_authenticate(
    keyed_server: ServerProcess, headers: dict[str, str] | None
) -> None:
    response = _predict(keyed_server, headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["error"]["code"] == "unauthorized"
    assert "Authorization: Bearer" in response.json()["error"]["message"]


def test_predict_with_a_wrong_key_is_401(keyed_server: ServerProcess) -> None:
    for wrong in (WRONG_KEY, KEY_A + "x", KEY_A[:-1], f"{KEY_A},{KEY_B}"):
        response = _predict(keyed_server, _bearer(wrong))
        assert response.status_code == 401, wrong
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json() == {"error": {"code": "unauthorized", "message": "invalid API key"}}


@pytest.mark.parametrize("key", [KEY_A, KEY_B, FILE_KEY], ids=["first", "second", "from file"])
def test_predict_with_any_configured_key_is_classified(
    keyed_server: ServerProcess, key: str
) -> None:
    response = _predict(keyed_server, _bearer(key))
    assert response.status_code == 200, response.text
    assert response.json()["results"][0]["predictions"][0]["label"] == "star"


INFERENCE_CALLS = {
    "/predict": {"files": {"file": ("x.jpg", JPEG, "image/jpeg")}},
    "/explain": {"files": {"file": ("x.jpg", JPEG, "image/jpeg")}},
    "/v2/models/demo/infer": {
        "json": {
            "inputs": [
                {
                    "name": "IMAGE",
                    "shape": [1],
                    "datatype": "BYTES",
                    "data": [base64.b64encode(JPEG).decode()],
                }
            ]
        }
    },
}
INFERENCE_CALLS["/v2/models/demo/versions/1/infer"] = INFERENCE_CALLS["/v2/models/demo/infer"]


@pytest.mark.parametrize("path", INFERENCE_CALLS)
def test_every_inference_route_needs_a_key_and_takes_any_configured_one(
    keyed_server: ServerProcess, path: str
) -> None:
    def post(headers: dict[str, str] | None) -> httpx.Response:
        return httpx.post(
            keyed_server.url + path, headers=headers, timeout=30, **INFERENCE_CALLS[path]
        )

    for headers in (None, _bearer(WRONG_KEY)):
        refused = post(headers)
        assert refused.status_code == 401, (path, refused.text)
        assert refused.headers["www-authenticate"] == "Bearer"
    assert post(_bearer(FILE_KEY)).status_code == 200


def test_operations_routes_and_docs_stay_open_without_a_key(keyed_server: ServerProcess) -> None:
    for path in (
        "/health",
        "/health/live",
        "/health/ready",
        "/metrics",
        "/docs",
        "/openapi.json",
        "/model",
        "/v2/health/ready",
        "/v2/models/demo",
    ):
        assert keyed_server.get(path).status_code == 200, path


def test_openapi_documents_the_bearer_scheme_on_predict_only(keyed_server: ServerProcess) -> None:
    spec = keyed_server.get("/openapi.json").json()
    assert spec["components"]["securitySchemes"]["ApiKey"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "One of the keys in RESNET_SERVE_API_KEYS or RESNET_SERVE_API_KEYS_FILE.",
    }
    assert spec["paths"]["/predict"]["post"]["security"] == [{"ApiKey": []}]
    assert "security" not in spec["paths"]["/health/ready"]["get"]


def test_keys_never_reach_the_log(keyed_server: ServerProcess) -> None:
    _predict(keyed_server, _bearer(KEY_A))
    _predict(keyed_server, _bearer(WRONG_KEY))
    logs = keyed_server.logs()
    assert "ready:" in logs
    for key in (KEY_A, KEY_B, FILE_KEY, WRONG_KEY):
        assert key not in logs


def test_preflight_from_a_configured_origin_is_allowed(keyed_server: ServerProcess) -> None:
    response = _preflight(keyed_server, ALLOWED_ORIGIN)
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    assert set(response.headers["access-control-allow-methods"].split(", ")) == {"GET", "POST"}
    assert "authorization" in response.headers["access-control-allow-headers"].lower()


def test_preflight_from_another_origin_gets_no_allow_origin(keyed_server: ServerProcess) -> None:
    response = _preflight(keyed_server, OTHER_ORIGIN)
    assert "access-control-allow-origin" not in response.headers


def test_cross_origin_401_is_readable_by_the_allowed_origin(keyed_server: ServerProcess) -> None:
    response = _predict(keyed_server, {"Origin": ALLOWED_ORIGIN})
    assert response.status_code == 401
    assert response.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    exposed = response.headers["access-control-expose-headers"].lower().split(", ")
    assert exposed == [
        "x-request-id",
        "x-explained-label",
        "x-explained-index",
        "x-explained-score",
    ]


def test_without_keys_predict_is_open(demo_server: ServerProcess) -> None:
    response = _predict(demo_server)
    assert response.status_code == 200, response.text
    assert "security" not in demo_server.get("/openapi.json").json()["paths"]["/predict"]["post"]


def test_without_origins_there_are_no_cors_headers(demo_server: ServerProcess) -> None:
    preflight = _preflight(demo_server, ALLOWED_ORIGIN)
    assert preflight.status_code == 405
    assert _cors_headers(preflight) == {}
    assert _cors_headers(_predict(demo_server, {"Origin": ALLOWED_ORIGIN})) == {}


def test_tampered_weights_stop_start_up_with_one_line_naming_the_file(
    start_server, tmp_path: Path
) -> None:
    bundle = Path(shutil.copytree(DEMO_BUNDLE, tmp_path / "tampered"))
    weights = bundle / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01
    weights.write_bytes(bytes(data))

    server = start_server(model_dir=bundle)
    assert server.process.wait(60) == 3
    logs = server.logs()
    assert "Traceback" not in logs
    (line,) = [line for line in logs.splitlines() if str(weights) in line]
    assert line.endswith(
        f"start-up failed: {weights}: does not match the sha256 recorded in model.json "
        "(tampered or corrupted); refusing to load"
    )


def test_missing_keys_file_stops_start_up_naming_the_file(start_server, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-keys"
    server = start_server(api_keys_file=missing)
    assert server.process.wait(60) == 3
    assert f"{missing}: cannot read the API keys file (No such file or directory)" in server.logs()


def test_keys_file_without_a_key_is_refused_rather_than_serving_open(tmp_path: Path) -> None:
    empty = tmp_path / "keys"
    empty.write_text("\n   \n")
    with (
        pytest.raises(ApiKeysError, match="holds no key; refusing to serve without auth"),
        demo_app(api_keys_file=empty),
    ):
        pass


def test_keys_are_the_union_of_both_sources_without_blanks(tmp_path: Path) -> None:
    keys_file = tmp_path / "keys"
    keys_file.write_text(f"{FILE_KEY}\n\n {KEY_B} \n")
    settings = Settings(api_keys=f" {KEY_A},,{KEY_B} ,", api_keys_file=keys_file)
    assert load_api_keys(settings) == {KEY_A, KEY_B, FILE_KEY}
    assert load_api_keys(Settings(api_keys=" , ")) == frozenset()
