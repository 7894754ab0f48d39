"""The web page at ``/``: choose or drop images, see their top classes, ask for a heat map.

The page is three static files in ``app/static`` (no build step, nothing from another origin), served
from here with a Content-Security-Policy that lets it talk to this server only. It calls the public
API like any client: ``GET /model``, ``POST /predict``, ``POST /explain``. Open like the docs: the
inference routes it calls enforce API keys themselves; the page only shows a key field when they do.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse, HTMLResponse

from app.edge.routes.dependencies import ServiceDep
from app.settings import Settings

router = APIRouter(include_in_schema=False)

STATIC_DIR = Path(__file__).resolve().parents[2] / "static"
ASSETS_URL = "static/page"  # relative in the HTML, so the page also works under a path prefix
ASSETS = {"page.js": "text/javascript; charset=utf-8", "page.css": "text/css; charset=utf-8"}
# blob: for the thumbnails (read from the chosen files) and the heat maps (fetched as blobs).
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
KEY_FIELD_OFF = 'data-api-keys="off"'


@cache
def _index_html() -> str:
    return (STATIC_DIR / "index.html").read_text(encoding="utf-8")


def api_keys_configured(settings: Settings) -> bool:
    """Whether inference routes need a key. A keys file, once named, holds at least one key:
    ``load_api_keys`` stops start-up otherwise."""
    inline = settings.api_keys.get_secret_value().split(",")
    return settings.api_keys_file is not None or any(key.strip() for key in inline)


@router.get("/")
async def index(service: ServiceDep) -> HTMLResponse:
    html = _index_html()
    if api_keys_configured(service.settings):
        html = html.replace(KEY_FIELD_OFF, 'data-api-keys="on"', 1)
    return HTMLResponse(html, headers=SECURITY_HEADERS)


@router.get(f"/{ASSETS_URL}/{{name}}")
async def asset(name: str) -> FileResponse:
    """One of the page's own files; an allow-list, so no path from the URL reaches the disk."""
    media_type = ASSETS.get(name)
    if media_type is None:
        raise HTTPException(404, f"no page asset {name!r}")
    return FileResponse(STATIC_DIR / name, media_type=media_type, headers=SECURITY_HEADERS)
