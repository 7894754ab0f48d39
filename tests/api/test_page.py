"""The web page, the offline /docs and /redoc, and GET /model, against a real server."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import pytest
from fastapi.testclient import TestClient

from tests.conftest import DEMO_BUNDLE, ServerProcess, demo_app

CONTENT_TYPES = {".js": "javascript", ".css": "text/css", ".png": "image/png"}


class _LinkCollector(HTMLParser):
    """Every ``src`` and ``href`` in a document: what a browser would fetch or follow."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [value for name, value in attrs if name in ("src", "href") and value]


def linked_urls(html: str) -> list[str]:
    collector = _LinkCollector()
    collector.feed(html)
    return collector.urls


def assert_same_origin(urls: list[str]) -> None:
    for url in urls:
        parts = urlsplit(url)
        assert parts.scheme in ("", "data"), f"{url} leaves the server"
        assert not parts.netloc, f"{url} names another host"


def assert_served(server: ServerProcess, page_path: str, url: str) -> str:
    """Fetch ``url`` as the browser would from ``page_path``; return its content type."""
    response = server.get(urlsplit(urljoin(server.url + page_path, url)).path)
    assert response.status_code == 200, f"{url}: {response.status_code} {response.text[:200]}"
    assert response.content
    return response.headers["content-type"]


def test_page_references_only_same_origin_assets_and_serves_them(
    demo_server: ServerProcess,
) -> None:
    response = demo_server.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in response.headers["content-security-policy"]
    urls = [url for url in linked_urls(response.text) if not url.startswith("data:")]
    assert_same_origin(urls)
    assert {"static/page/page.js", "static/page/page.css"} <= set(urls)
    for url in urls:  # the assets and the footer's links (docs, redoc, model)
        content_type = assert_served(demo_server, "/", url)
        for suffix, expected in CONTENT_TYPES.items():
            if url.endswith(suffix):
                assert expected in content_type, f"{url}: {content_type}"
    assert 'data-api-keys="off"' in response.text


def test_page_asset_route_serves_only_the_page_files(demo_server: ServerProcess) -> None:
    for path in ("/static/page/index.html", "/static/page/nothing.js", "/static/page/..%2Fmain.py"):
        response = demo_server.get(path)
        assert response.status_code == 404, path
        assert response.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize(
    ("path", "assets"),
    [
        ("/docs", {"swagger-ui-bundle.js", "swagger-ui.css", "favicon.png"}),
        ("/redoc", {"redoc.standalone.js", "favicon.png"}),
    ],
)
def test_docs_load_every_asset_from_this_server(
    demo_server: ServerProcess, path: str, assets: set[str]
) -> None:
    response = demo_server.get(path)
    assert response.status_code == 200
    assert "http://" not in response.text and "https://" not in response.text  # no CDN, no fonts
    urls = linked_urls(response.text)
    assert_same_origin(urls)
    assert {url.rsplit("/", 1)[-1] for url in urls} == assets
    for url in urls:
        assert url.startswith("/static/docs/")
        content_type = assert_served(demo_server, path, url)
        assert CONTENT_TYPES["." + url.rsplit(".", 1)[-1]] in content_type, f"{url}: {content_type}"


def test_docs_point_swagger_ui_at_this_servers_openapi(demo_server: ServerProcess) -> None:
    html = demo_server.get("/docs").text
    assert "'/openapi.json'" in html
    assert '"validatorUrl": null' in html  # no spec sent to validator.swagger.io
    assert demo_server.get("/openapi.json").status_code == 200


def test_model_describes_the_served_bundle(demo_server: ServerProcess) -> None:
    manifest = json.loads((DEMO_BUNDLE / "model.json").read_text())
    response = demo_server.get("/model")
    assert response.status_code == 200
    body = response.json()
    assert (body["name"], body["version"]) == ("demo", "1")  # a plain bundle is version 1
    assert body["arch"] == manifest["arch"]
    assert body["labels"] == manifest["labels"]  # in output order: index i is labels[i]
    assert body["num_classes"] == len(manifest["labels"]) == 9
    assert body["input_size"] == manifest["preprocessing"]["input_size"] == 112
    assert body["preprocessing"] == manifest["preprocessing"]
    assert body["weights_sha256"] == manifest["weights_sha256"]
    assert body["provenance"]["epochs"] == manifest["provenance"]["epochs"]
    assert body["provenance"]["metrics"] == manifest["provenance"]["metrics"]
    assert (
        body["temperature"] == manifest["calibration"]["temperature"]
    )  # the demo ships calibrated
    assert body["abstain_threshold"] == manifest["calibration"]["abstain_threshold"]
    assert body["abstain_labels"] == manifest["abstain_labels"] == ["clutter"]
    assert "/model" in demo_server.get("/openapi.json").json()["paths"]


def test_model_needs_no_key_even_while_warming_up() -> None:
    # No lifespan (TestClient outside `with`): the model is loaded but never warmed up.
    with demo_app(api_keys="secret-key") as app:
        response = TestClient(app).get("/model")
    assert response.status_code == 200  # not 401: the route is open even with keys configured
    assert response.json()["name"] == "demo"


def test_page_shows_the_api_key_field_only_when_keys_are_configured() -> None:
    for api_keys, expected in (("", 'data-api-keys="off"'), ("k1,k2", 'data-api-keys="on"')):
        with demo_app(api_keys=api_keys) as app:
            response = TestClient(app).get("/")
        assert response.status_code == 200
        assert expected in response.text
