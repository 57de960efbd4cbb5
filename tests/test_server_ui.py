"""The chat page, the offline API docs, `GET /config` and CORS, over ASGI."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from html.parser import HTMLParser
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from memory.settings import Settings
from server.app import create_app
from tests.plugins.server import running

_URL = re.compile(r"""(?:https?:)?//[^\s"'<>`)]+""", re.IGNORECASE)
_ORIGIN = "https://app.example.org"


class _Links(HTMLParser):
    """Every `src` and `href` of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.links += [v for k, v in attrs if k in ("src", "href") and v]


def links(html: str) -> list[str]:
    parser = _Links()
    parser.feed(html)
    return parser.links


def external_urls(text: str) -> list[str]:
    """Absolute or protocol-relative URLs in `text` (a page, a script, a style sheet)."""
    return [u for u in _URL.findall(text) if not u.startswith("//#")]


@pytest.fixture
async def client(request: pytest.FixtureRequest) -> AsyncIterator[httpx.AsyncClient]:
    overrides: dict[str, Any] = getattr(request, "param", {})
    settings = Settings(database_url="memory://", embeddings="none", **overrides)
    async with running(create_app(settings)) as http:
        yield http


async def test_chat_page_and_its_files_name_no_other_origin(client: httpx.AsyncClient) -> None:
    page = await client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "connect-src 'self'" in page.headers["content-security-policy"]
    assert external_urls(page.text) == []
    assets = [link for link in links(page.text) if not link.startswith("data:")]
    assert sorted(assets) == ["static/app.css", "static/app.js"]
    for asset, kind in (("static/app.js", "text/javascript"), ("static/app.css", "text/css")):
        served = await client.get(f"/{asset}")
        assert served.status_code == 200
        assert served.headers["content-type"].startswith(kind)
        assert external_urls(served.text) == [], asset


async def test_chat_page_script_writes_no_markup(client: httpx.AsyncClient) -> None:
    script = (await client.get("/static/app.js")).text
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in script


async def test_static_route_serves_only_the_page_files(client: httpx.AsyncClient) -> None:
    for path in ("/static/missing.js", "/static/..%2Fapp.py", "/static/index.html"):
        assert (await client.get(path)).status_code == 404, path


async def test_docs_load_swagger_ui_from_this_server(client: httpx.AsyncClient) -> None:
    docs = await client.get("/docs")
    assert docs.status_code == 200
    assert external_urls(docs.text) == []
    assert '"validatorUrl": null' in docs.text
    kinds = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}
    found = links(docs.text)
    assert len(found) == 3
    for link in found:
        assert link.startswith("/docs/assets/"), link
        served = await client.get(link)
        assert served.status_code == 200, link
        assert served.headers["content-type"].startswith(kinds[link[link.rfind(".") :]]), link
        assert int(served.headers["content-length"]) > 500
    assert (await client.get("/docs/assets/index.html")).status_code == 404
    assert (await client.get("/redoc")).status_code == 404
    assert (await client.get("/openapi.json")).json()["paths"]["/config"]


async def test_config_names_the_offline_model_in_development_mode(
    client: httpx.AsyncClient,
) -> None:
    config = (await client.get("/config")).json()
    assert config["model"] == "offline"
    assert config["offline"] is True
    assert config["dev_mode"] is True
    assert config["user"] == "local"


@pytest.mark.parametrize(
    "client", [{"api_keys": "k1=acme/sam", "model": "openai:gpt-4o-mini"}], indirect=True
)
async def test_config_needs_a_key_when_keys_are_set(client: httpx.AsyncClient) -> None:
    assert (await client.get("/config")).status_code == 401
    assert (await client.get("/")).status_code == 200  # the page itself asks for the key
    config = (await client.get("/config", headers={"Authorization": "Bearer k1"})).json()
    assert config == {
        "model": "openai:gpt-4o-mini",
        "offline": False,
        "dev_mode": False,
        "tenant": "acme",
        "user": "sam",
        "version": "0.1.0",
    }


@pytest.mark.parametrize(
    "client", [{"cors_origins": f"{_ORIGIN}, http://localhost:5173"}], indirect=True
)
async def test_cors_answers_a_configured_origin(client: httpx.AsyncClient) -> None:
    simple = await client.get("/threads", headers={"Origin": _ORIGIN})
    assert simple.headers["access-control-allow-origin"] == _ORIGIN
    assert "content-location" in simple.headers["access-control-expose-headers"].lower()
    preflight = await client.options(
        "/threads/t1/runs/stream",
        headers={
            "Origin": "http://localhost:5173",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, x-api-key, content-type",
            "Access-Control-Request-Private-Network": "true",
        },
    )
    assert preflight.status_code == 200, preflight.text
    assert preflight.headers["access-control-allow-origin"] == "http://localhost:5173"
    assert preflight.headers["access-control-allow-private-network"] == "true"
    allowed = preflight.headers["access-control-allow-headers"].lower()
    assert {"authorization", "x-api-key", "content-type"} <= {h.strip() for h in allowed.split(",")}
    other = await client.get("/threads", headers={"Origin": "https://elsewhere.example.org"})
    assert "access-control-allow-origin" not in other.headers


async def test_no_cors_headers_without_configured_origins(client: httpx.AsyncClient) -> None:
    simple = await client.get("/threads", headers={"Origin": _ORIGIN})
    assert simple.status_code == 200
    assert not [h for h in simple.headers if h.startswith("access-control-")]
    preflight = await client.options(
        "/threads",
        headers={"Origin": _ORIGIN, "Access-Control-Request-Method": "POST"},
    )
    assert not [h for h in preflight.headers if h.startswith("access-control-")]


@pytest.mark.parametrize(
    "origin", ["app.example.org", "https://app.example.org/", "https://a.org/x"]
)
def test_a_cors_origin_with_a_path_or_no_scheme_is_refused(origin: str) -> None:
    with pytest.raises(ValidationError, match="CORS origin"):
        Settings(cors_origins=origin)


def test_cors_origins_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMORY_AGENT_CORS_ORIGINS", f" {_ORIGIN} ,, *")
    assert Settings().cors_origin_list == [_ORIGIN, "*"]
