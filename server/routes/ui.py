"""The chat page at `/` and the API docs at `/docs`, every asset served from this package."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse
from swagger_ui_bundle import swagger_ui_path

router = APIRouter(include_in_schema=False)

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
SWAGGER_DIR = Path(str(swagger_ui_path))
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".png": "image/png",
    ".svg": "image/svg+xml",
}
#: The chat page's files, by name: only these are served, nothing else in the folder.
STATIC_FILES = {p.name: p for p in STATIC_DIR.iterdir() if p.suffix in _TYPES}
#: The Swagger UI files the docs page loads.
SWAGGER_FILES = {
    name: SWAGGER_DIR / name
    for name in ("swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png")
}
# The page loads its own script and style and talks to this origin only; the policy makes
# the browser refuse anything else, so nothing the page shows can pull in a request.
_PAGE_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_NO_CACHE = {"Cache-Control": "no-cache"}


def _file(path: Path) -> FileResponse:
    return FileResponse(path, media_type=_TYPES[path.suffix], headers=_NO_CACHE)


@router.get("/")
async def chat_page() -> FileResponse:
    """The chat page."""
    response = _file(STATIC_FILES["index.html"])
    response.headers["Content-Security-Policy"] = _PAGE_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@router.get("/static/{name}")
async def static_file(name: str) -> FileResponse:
    """One of the chat page's files."""
    path = STATIC_FILES.get(name)
    if path is None or name == "index.html":
        raise HTTPException(status_code=404, detail="not found")
    return _file(path)


@router.get("/docs")
async def swagger_ui(request: Request) -> HTMLResponse:
    """Swagger UI, loading its script and style from this server."""
    root = request.scope.get("root_path", "").rstrip("/")
    return get_swagger_ui_html(
        openapi_url=f"{root}{request.app.openapi_url}",
        title=f"{request.app.title} - API docs",
        swagger_js_url=f"{root}/docs/assets/swagger-ui-bundle.js",
        swagger_css_url=f"{root}/docs/assets/swagger-ui.css",
        swagger_favicon_url=f"{root}/docs/assets/favicon-32x32.png",
        # The default validator badge asks a public service to validate the schema.
        swagger_ui_parameters={"validatorUrl": None},
    )


@router.get("/docs/assets/{name}")
async def swagger_asset(name: str) -> FileResponse:
    """A Swagger UI asset, from the swagger-ui-bundle package."""
    path = SWAGGER_FILES.get(name)
    if path is None:
        raise HTTPException(status_code=404, detail="not found")
    return FileResponse(
        path, media_type=_TYPES[path.suffix], headers={"Cache-Control": "max-age=86400"}
    )
