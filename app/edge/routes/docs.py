"""/docs and /redoc that work offline: Swagger UI and ReDoc served from the app itself.

FastAPI's own pages load their JavaScript and CSS from a CDN, so on a machine without internet they
are blank. The ``fastapi-offline`` package ships those assets; they are mounted at ``/static/docs``
and the pages point there. ``create_app`` turns FastAPI's defaults off (``docs_url=None``,
``redoc_url=None``) and calls ``install_docs``.
"""

from __future__ import annotations

from importlib.resources import files

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

DOCS_ASSETS_URL = "/static/docs"
# Swagger UI would otherwise send the spec to validator.swagger.io for its badge.
SWAGGER_UI_PARAMETERS = {"validatorUrl": None}
# ReDoc shows its vendor's logo from cdn.redoc.ly; refused, the logo hides itself. Only images are
# restricted: both pages rely on inline scripts and styles.
DOCS_HEADERS = {"Content-Security-Policy": "img-src 'self' data:"}


def install_docs(app: FastAPI, docs_url: str = "/docs", redoc_url: str = "/redoc") -> None:
    """Mount the Swagger UI and ReDoc assets and add ``docs_url`` and ``redoc_url`` to ``app``."""
    assets = files("fastapi_offline") / "static"
    app.mount(DOCS_ASSETS_URL, StaticFiles(directory=str(assets)), name="docs-assets")

    def prefixed(request: Request, path: str) -> str:
        # root_path: behind a proxy that strips a prefix, the browser must ask with the prefix.
        return f"{request.scope.get('root_path', '').rstrip('/')}{path}"

    def asset(request: Request, name: str) -> str:
        return prefixed(request, f"{DOCS_ASSETS_URL}/{name}")

    schema_url = app.openapi_url
    if schema_url is None:
        raise ValueError("the docs pages need the app's OpenAPI schema (openapi_url is None)")

    def openapi_url(request: Request) -> str:
        return prefixed(request, schema_url)

    @app.get(docs_url, include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        page = get_swagger_ui_html(
            openapi_url=openapi_url(request),
            title=f"{app.title} - Swagger UI",
            swagger_js_url=asset(request, "swagger-ui-bundle.js"),
            swagger_css_url=asset(request, "swagger-ui.css"),
            swagger_favicon_url=asset(request, "favicon.png"),
            swagger_ui_parameters={**SWAGGER_UI_PARAMETERS, **(app.swagger_ui_parameters or {})},
        )
        page.headers.update(DOCS_HEADERS)
        return page

    @app.get(redoc_url, include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        page = get_redoc_html(
            openapi_url=openapi_url(request),
            title=f"{app.title} - ReDoc",
            redoc_js_url=asset(request, "redoc.standalone.js"),
            redoc_favicon_url=asset(request, "favicon.png"),
            with_google_fonts=False,
        )
        page.headers.update(DOCS_HEADERS)
        return page
