"""Who the caller is: bearer JWTs (a shared secret or a JWKS), a trusted gateway, and ids as
identity providers issue them."""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from pydantic import ValidationError

from agent import OfflineChatModel, build_graph
from agent.namespaces import InvalidIdError, Owner, user_memories
from memory.errors import UnavailableError
from memory.sessions import SessionManager
from memory.settings import Settings
from memory.stores import aopen_backends
from server.app import create_app
from server.auth import AuthConfigError, UnauthorizedError
from server.tokens import JwtAuthenticator
from tests.plugins.server import Api, fresh_id, running
from tests.test_server_isolation import _apply

SECRET = "s" * 40
ISSUER = "https://idp.example.org/"
AUDIENCE = "memory-agent"


def mint(claims: dict[str, Any] | None = None, *, key: Any = SECRET, **header: Any) -> str:
    """A token with a valid issuer, audience and an hour to live, changed by `claims`."""
    now = int(time.time())
    body = {"sub": "alice", "tenant": "acme", "iss": ISSUER, "aud": AUDIENCE, "exp": now + 3600}
    body.update(claims or {})
    algorithm = header.pop("alg", "HS256")
    return jwt.encode(
        {k: v for k, v in body.items() if v is not None}, key, algorithm, headers=header
    )


def headers(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


@pytest.fixture
def hs256() -> JwtAuthenticator:
    return JwtAuthenticator(secret=SECRET, issuer=ISSUER, audience=AUDIENCE, leeway_seconds=5)


async def test_a_valid_token_names_the_tenant_and_user(hs256: JwtAuthenticator) -> None:
    owner = await hs256.authenticate(headers(mint()))
    assert (owner.tenant, owner.user) == ("acme", "alice")
    # x-api-key, as the LangGraph SDKs send it, carries a token too.
    assert (await hs256.authenticate({"x-api-key": mint({"sub": "bob"})})).user == "bob"


@pytest.mark.parametrize(
    ("claims", "header", "reason"),
    [
        ({"exp": int(time.time()) - 60}, {}, "token expired"),
        ({"nbf": int(time.time()) + 600}, {}, "token not yet valid"),
        ({"iss": "https://evil.example.org/"}, {}, "wrong issuer"),
        ({"aud": "someone-else"}, {}, "wrong audience"),
        ({"exp": None}, {}, "lacks a required claim"),
        ({"sub": None}, {}, "lacks the user claim 'sub'"),
        ({"tenant": None}, {}, "lacks the tenant claim 'tenant'"),
        ({}, {"key": "t" * 40}, "wrong signature"),
    ],
)
async def test_a_bad_token_is_refused_saying_why(
    hs256: JwtAuthenticator, claims: dict[str, Any], header: dict[str, Any], reason: str
) -> None:
    with pytest.raises(UnauthorizedError, match=reason):
        await hs256.authenticate(headers(mint(claims, **header)))


async def test_missing_malformed_and_unsigned_tokens_are_refused(
    hs256: JwtAuthenticator,
) -> None:
    with pytest.raises(UnauthorizedError, match="missing token"):
        await hs256.authenticate({})
    with pytest.raises(UnauthorizedError, match="malformed token"):
        await hs256.authenticate(headers("not.a.jwt"))
    unsigned = jwt.encode({"sub": "alice", "tenant": "acme"}, None, algorithm="none")
    with pytest.raises(UnauthorizedError, match="algorithm 'none' is not accepted"):
        await hs256.authenticate(headers(unsigned))


def _from(**settings: Any) -> JwtAuthenticator:
    return JwtAuthenticator.from_settings(Settings(auth="jwt", jwt_secret=SECRET, **settings))


async def test_claims_the_settings_name_and_the_default_tenant() -> None:
    auth = _from(jwt_tenant_claim="org", jwt_user_claim="uid")
    owner = await auth.authenticate(headers(mint({"org": 7, "uid": 42, "aud": None})))
    assert (owner.tenant, owner.user) == ("7", "42")
    with pytest.raises(UnauthorizedError, match="lacks the tenant claim 'org'"):
        await auth.authenticate(headers(mint({"uid": 42, "aud": None})))
    fallback = _from(jwt_user_claim="uid", jwt_default_tenant="shop")
    owner = await fallback.authenticate(headers(mint({"tenant": None, "uid": 42, "aud": None})))
    assert (owner.tenant, owner.user) == ("shop", "42")


async def test_issuer_and_audience_are_checked_only_when_set() -> None:
    token = mint({"iss": "https://other.example/", "aud": "other"})
    assert (await _from().authenticate(headers(token))).user == "alice"
    with pytest.raises(UnauthorizedError, match="wrong issuer"):
        await _from(jwt_issuer=ISSUER).authenticate(headers(token))
    with pytest.raises(UnauthorizedError, match="wrong audience"):
        await _from(jwt_audience=AUDIENCE).authenticate(headers(token))


async def test_leeway_accepts_a_token_just_expired() -> None:
    token = mint({"exp": int(time.time()) - 5, "aud": None})
    assert (await _from(jwt_leeway_seconds=30).authenticate(headers(token))).user == "alice"
    with pytest.raises(UnauthorizedError, match="token expired"):
        await _from(jwt_leeway_seconds=0).authenticate(headers(token))


class _Jwks:
    """A JWKS served on 127.0.0.1 by a thread; `keys` can be changed (rotated) at any time."""

    def __init__(self) -> None:
        self.keys: list[dict[str, Any]] = []
        self.fetches = 0
        self.delay = 0.0
        jwks = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                jwks.fetches += 1
                time.sleep(jwks.delay)
                body = json.dumps({"keys": jwks.keys}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/.well-known/jwks.json"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def publish(self, kid: str, private: Any, alg: str) -> None:
        jwk = json.loads(jwt.get_algorithm_by_name(alg).to_jwk(private.public_key()))
        self.keys.append({**jwk, "kid": kid, "alg": alg, "use": "sig"})

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def jwks() -> Iterator[_Jwks]:
    served = _Jwks()
    yield served
    served.close()


def _rsa() -> Any:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


async def test_jwks_keys_verify_and_a_rotated_key_is_fetched_once(jwks: _Jwks) -> None:
    first, second, ecdsa = _rsa(), _rsa(), ec.generate_private_key(ec.SECP256R1())
    jwks.publish("k1", first, "RS256")
    auth = JwtAuthenticator.from_settings(
        Settings(
            auth="jwt",
            jwt_jwks_url=jwks.url,
            jwt_issuer=ISSUER,
            jwt_audience=AUDIENCE,
            jwt_jwks_refresh_seconds=1,
        )
    )
    assert (await auth.authenticate(headers(mint(key=first, alg="RS256", kid="k1")))).user
    assert jwks.fetches == 1
    # An unknown kid fetches the JWKS again, at most once per refresh interval: the
    # rotated key is picked up.
    jwks.publish("k2", second, "RS256")
    with pytest.raises(UnauthorizedError, match="unknown signing key"):
        await auth.authenticate(headers(mint(key=second, alg="RS256", kid="k2")))
    assert jwks.fetches == 1
    await asyncio.sleep(1.1)
    jwks.publish("k3", ecdsa, "ES256")
    token = mint({"sub": "bob"}, key=second, alg="RS256", kid="k2")
    assert (await auth.authenticate(headers(token))).user == "bob"
    assert (await auth.authenticate(headers(mint(key=ecdsa, alg="ES256", kid="k3")))).user
    assert jwks.fetches == 2
    # A kid still unknown is refused without another fetch within the refresh interval.
    for _ in range(3):
        with pytest.raises(UnauthorizedError, match="unknown signing key"):
            await auth.authenticate(headers(mint(key=second, alg="RS256", kid="k9")))
    assert jwks.fetches == 2
    # A token signed by another key under a known kid is refused.
    with pytest.raises(UnauthorizedError, match="wrong signature"):
        await auth.authenticate(headers(mint(key=_rsa(), alg="RS256", kid="k1")))


async def test_jwks_mode_refuses_hs256_and_a_mismatched_algorithm(jwks: _Jwks) -> None:
    private = _rsa()
    jwks.publish("k1", private, "RS256")
    auth = JwtAuthenticator.from_settings(Settings(auth="jwt", jwt_jwks_url=jwks.url))
    # Algorithm confusion: an HS256 token "signed" with the public key's PEM.
    with pytest.raises(UnauthorizedError, match="algorithm 'HS256' is not accepted"):
        await auth.authenticate(headers(mint(key=SECRET, kid="k1")))
    with pytest.raises(UnauthorizedError, match="algorithm 'none' is not accepted"):
        await auth.authenticate(headers(jwt.encode({"sub": "a"}, None, algorithm="none")))
    ecdsa = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(UnauthorizedError, match="does not match its key"):
        await auth.authenticate(headers(mint(key=ecdsa, alg="ES256", kid="k1")))


async def test_an_unreachable_or_hung_jwks_is_a_503_within_the_timeout(jwks: _Jwks) -> None:
    token = headers(mint(key=_rsa(), alg="RS256", kid="k1"))
    refused = JwtAuthenticator.from_settings(
        Settings(auth="jwt", jwt_jwks_url="http://127.0.0.1:9/jwks")
    )
    with pytest.raises(UnavailableError, match="could not be read"):
        await refused.authenticate(token)
    jwks.delay = 3.0
    hung = JwtAuthenticator.from_settings(
        Settings(auth="jwt", jwt_jwks_url=jwks.url, jwt_jwks_timeout_seconds=0.3)
    )
    with pytest.raises(UnavailableError, match="could not be read"):
        await asyncio.wait_for(hung.authenticate(token), timeout=2.5)


@pytest.mark.parametrize(
    ("settings", "says"),
    [
        ({"auth": "jwt"}, "exactly one of MEMORY_AGENT_JWT_SECRET"),
        ({"auth": "jwt", "jwt_secret": SECRET, "jwt_jwks_url": "https://x/j"}, "exactly one"),
        ({"auth": "jwt", "jwt_secret": "short"}, "at least 32 characters"),
        ({"auth": "jwt", "jwt_jwks_url": "file:///etc/passwd"}, "must be an http"),
        ({"auth": "gateway"}, "needs MEMORY_AGENT_GATEWAY_SECRET"),
        ({"auth": "jwt", "jwt_secret": SECRET, "api_keys": "k=a/b"}, "only read in keys mode"),
        ({"auth": "ldap"}, "use keys, jwt, gateway or package"),
    ],
)
def test_a_bad_combination_of_auth_settings_is_refused(settings: dict[str, Any], says: str) -> None:
    with pytest.raises(ValidationError, match=says):
        Settings(database_url="memory://", **settings)


@asynccontextmanager
async def _served(**auth: Any) -> AsyncIterator[Api]:
    settings = Settings(
        database_url="memory://", embeddings="none", sweep_interval_seconds=3600, **auth
    )
    app = create_app(settings)
    async with running(app) as client:
        yield Api(app=app, client=client)


async def test_jwt_mode_over_http_answers_401_with_the_reason() -> None:
    async with _served(auth="jwt", jwt_secret=SECRET, jwt_issuer=ISSUER) as api:
        missing = await api.client.get("/threads")
        assert missing.status_code == 401
        assert "missing token" in missing.json()["detail"]
        searched = await api.client.post(
            "/langgraph/threads/search",
            json={},
            headers=headers(mint({"exp": int(time.time()) - 3600, "aud": None})),
        )
        assert searched.status_code == 401
        assert "token expired" in searched.json()["detail"]
        config = await api.client.get("/config", headers=headers(mint({"aud": None})))
        assert config.status_code == 200, config.text
        assert config.json()["dev_mode"] is False
        metrics = await api.client.get("/metrics")
        assert metrics.status_code == 401


async def test_users_of_two_tenants_from_tokens_see_only_their_own() -> None:
    people = {"alice": ("acme", "alice@acme.example"), "bob": ("globex", "bob@globex.example")}
    async with _served(auth="jwt", jwt_secret=SECRET) as api:
        api.keys = {
            name: mint({"tenant": tenant, "sub": sub, "aud": None})
            for name, (tenant, sub) in people.items()
        }
        api.owners = people
        marks = {name: f"zq{uuid.uuid4().hex[:12]}" for name in people}
        thread = fresh_id("t")
        ops: list[tuple[Any, ...]] = [
            ("create", "alice", thread),
            ("run", "alice", thread),
            ("remember", "alice", "k1", None),
            ("remember", "alice", "k2", thread),
            ("create", "bob", thread),
            ("run", "bob", thread),
        ]
        for user in people:
            for suffix in ("", "/messages", "/state", "/history", "/memories"):
                ops.append(("read", user, thread, suffix))
            ops += [("list", user), ("recall", user, "k1", None), ("recall", user, "k2", thread)]
            ops.append(("search", user, "alice" if user == "bob" else "bob"))
        for op in ops:
            response = await _apply(api, op, marks)
            assert response.status_code < 500, (op, response.text)
            if op[0] in ("create", "run", "remember"):
                assert response.status_code in (200, 201), (op, response.text)
            if op[0] == "run":
                assert marks[op[1]] in response.text
            other = "bob" if op[1] == "alice" else "alice"
            assert marks[other] not in response.text, op
            assert people[other][1] not in response.text, op
        # The same on /langgraph: bob's search and reads never show alice's thread.
        created = await api.request(
            "alice", "POST", "/langgraph/threads", json={"metadata": {"m": marks["alice"]}}
        )
        assert created.status_code == 200, created.text
        lg_thread = created.json()["thread_id"]
        waited = await api.request(
            "alice",
            "POST",
            f"/langgraph/threads/{lg_thread}/runs/wait",
            json={
                "assistant_id": "agent",
                "input": {
                    "messages": [{"role": "user", "content": f"my code is {marks['alice']}"}]
                },
            },
        )
        assert waited.status_code == 200, waited.text
        assert marks["alice"] in waited.text
        for method, url, body in (
            ("POST", "/langgraph/threads/search", {"limit": 100}),
            ("GET", f"/langgraph/threads/{lg_thread}", None),
            ("GET", f"/langgraph/threads/{lg_thread}/state", None),
            ("POST", "/langgraph/store/items/search", {"namespace_prefix": []}),
        ):
            seen = await api.request("bob", method, url, json=body)
            assert seen.status_code in (200, 404), (url, seen.text)
            assert marks["alice"] not in seen.text, url
            assert lg_thread not in seen.text or seen.status_code == 404, url
        mine = await api.request("alice", "GET", f"/langgraph/threads/{lg_thread}")
        assert mine.status_code == 200


async def test_gateway_mode_needs_the_shared_secret() -> None:
    async with _served(
        auth="gateway",
        gateway_secret="gw-secret",
        gateway_tenant_header="X-Org",
        gateway_user_header="X-Auth-User",
    ) as api:
        ids = {"X-Org": "acme", "X-Auth-User": "42"}
        missing = await api.client.get("/config", headers=ids)
        assert missing.status_code == 401
        assert "missing gateway secret" in missing.json()["detail"]
        wrong = await api.client.get("/config", headers={**ids, "X-Gateway-Secret": "guess"})
        assert wrong.status_code == 401
        assert "wrong gateway secret" in wrong.json()["detail"]
        no_user = await api.client.get(
            "/config", headers={"X-Org": "acme", "X-Gateway-Secret": "gw-secret"}
        )
        assert no_user.status_code == 401
        assert "X-Auth-User" in no_user.json()["detail"]
        good = await api.client.get("/config", headers={**ids, "X-Gateway-Secret": "gw-secret"})
        assert good.status_code == 200, good.text
        assert "42" in good.text
        run = await api.client.post(
            "/threads/t1/runs",
            json={"message": "my name is Sam"},
            headers={**ids, "X-Gateway-Secret": "gw-secret"},
        )
        assert run.status_code == 200, run.text
        other = await api.client.get(
            "/threads/t1",
            headers={**ids, "X-Auth-User": "43", "X-Gateway-Secret": "gw-secret"},
        )
        assert other.status_code == 404


#: Ids as identity providers issue them, and pairs an unescaped `/` or `.` would merge.
PROVIDER_IDS: tuple[tuple[Any, Any], ...] = (
    (7, 42),
    ("acme.example", "sam.o'neil+x@example.com"),
    ("acme", "auth0|abc"),
    (str(uuid.uuid4()), "Zoë Ünal"),
    ("a/b", "c"),
    ("a", "b/c"),
    ("a.b", "c"),
    ("a%2Eb", "c"),
    ("*", "[x]"),
)


@pytest.fixture(params=["sqlite", "postgres", "redis"])
def id_backend(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ids.sqlite'}"
    return request.getfixturevalue(f"{request.param}_url")


def test_integer_ids_are_their_digits_and_other_types_say_so() -> None:
    owner = Owner(tenant=1, user=42)  # type: ignore[arg-type]
    assert (owner.tenant, owner.user) == ("1", "42")
    assert owner == Owner("1", "42")
    with pytest.raises(TypeError, match="tenant must be a string"):
        Owner(tenant=1.5, user="a")  # type: ignore[arg-type]
    for bad in ("", "x" * 257, "a\nb"):
        with pytest.raises(InvalidIdError):
            Owner(tenant="acme", user=bad)
    # Ids allowed before escaping existed keep their keys.
    assert Owner("acme", "sam@x:1_2-3").thread_key("t") == "acme/sam@x:1_2-3/t"
    assert user_memories("acme", "sam") == ("memories", "acme", "sam")
    keys = {Owner(str(t), str(u)).thread_key("t") for t, u in PROVIDER_IDS}
    assert len(keys) == len(PROVIDER_IDS)


async def test_provider_ids_through_the_python_api(id_backend: str) -> None:
    settings = Settings(embeddings="none")
    thread = fresh_id("t")
    async with aopen_backends(id_backend, settings=settings) as backends:
        graph = build_graph(backends.checkpointer, backends.store, chat_model=OfflineChatModel())
        sessions = SessionManager.from_settings(graph, settings)
        # Fresh ids per run of the test: the Postgres and Redis servers are shared.
        run = uuid.uuid4().hex[:6]
        owners = [Owner(f"{t}{run}", f"{u}") for t, u in PROVIDER_IDS]
        owners.append(Owner(tenant=int(time.time() * 1000), user=42))  # type: ignore[arg-type]
        for number, owner in enumerate(owners):
            await sessions.arun(
                owner, thread, [{"role": "user", "content": f"my name is Name{number}"}]
            )
            await sessions.asave_memory(owner, "k", {"n": number})
        totals: set[int] = set()
        for number, owner in enumerate(owners):
            result = await sessions.arun(
                owner, thread, [{"role": "user", "content": "what is my name?"}]
            )
            assert f"Name{number}" in result.reply, (owner, result.reply)
            assert (await sessions.aget_memory(owner, "k"))["value"] == {"n": number}
            values = [m["value"] for m in await sessions.alist_memories(owner, limit=100)]
            assert [v for v in values if isinstance(v, dict) and "n" in v] == [{"n": number}]
            listed, total = await sessions.alist(owner)
            assert ([t["thread_id"] for t in listed], total) == ([thread], 1), owner
            totals.add((await sessions.aget_messages(owner, thread))[1])
        assert len(totals) == 1  # two owners on one key would show both transcripts
        await sessions.aerase(owners[4])  # "a/b" + run, "c"
        assert (await sessions.alist(owners[4]))[1] == 0
        assert (await sessions.aget_messages(owners[5], thread))[1] in totals


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
async def test_provider_ids_over_http(
    kind: str, tmp_path: Any, request: pytest.FixtureRequest
) -> None:
    url = (
        f"sqlite:///{tmp_path / 'http.sqlite'}"
        if kind == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    settings = Settings(
        database_url=url,
        embeddings="none",
        sweep_interval_seconds=3600,
        auth="gateway",
        gateway_secret="gw-secret",
    )
    tenant = f"tenant.{uuid.uuid4().hex[:6]}"
    people = {"email": "sam.o'neil@example.com", "numeric": "1234567", "auth0": "auth0|abc"}
    app = create_app(settings)
    async with running(app) as client:
        for name, user in people.items():
            ids = {"X-Tenant-Id": tenant, "X-User-Id": user, "X-Gateway-Secret": "gw-secret"}
            ran = await client.post(
                "/threads/t1/runs", json={"message": f"my name is {name}"}, headers=ids
            )
            assert ran.status_code == 200, ran.text
            put = await client.put("/memories/k", json={"value": {"who": name}}, headers=ids)
            assert put.status_code == 200, put.text
        for name, user in people.items():
            ids = {"X-Tenant-Id": tenant, "X-User-Id": user, "X-Gateway-Secret": "gw-secret"}
            asked = await client.post(
                "/threads/t1/runs", json={"message": "what is my name?"}, headers=ids
            )
            assert f"Your name is {name}" in asked.json()["reply"], asked.text
            mine = await client.get("/memories/k", headers=ids)
            assert mine.json()["value"] == {"who": name}
            config = await client.get("/config", headers=ids)
            assert (config.json()["tenant"], config.json()["user"]) == (tenant, user)


async def test_a_langgraph_sdk_auth_handler_names_the_caller() -> None:
    async with _served(auth="tests.sdkauth:auth") as api:
        refused = await api.client.get("/threads", headers={"Authorization": "Bearer guess"})
        assert refused.status_code == 401
        assert refused.json()["detail"] == "no such user token"
        sam = {"Authorization": "Bearer user:bakery:sam@bakery.example"}
        config = await api.client.get("/config", headers=sam)
        assert config.status_code == 200, config.text
        assert (config.json()["tenant"], config.json()["user"]) == ("bakery", "sam@bakery.example")
        ran = await api.client.post("/threads/t1/runs", json={"message": "hi"}, headers=sam)
        assert ran.status_code == 200, ran.text
        other = {"Authorization": "Bearer user:bakery:ann"}
        assert (await api.client.get("/threads/t1", headers=other)).status_code == 404
        lg = await api.client.post("/langgraph/threads/search", json={}, headers=other)
        assert lg.status_code == 200 and lg.json() == []


@pytest.mark.parametrize(
    ("path", "says"),
    [
        ("tests.sdkauth:missing", "cannot be imported"),
        ("tests.nosuchmodule:auth", "cannot be imported"),
        ("tests.sdkauth:not_auth", "is not a langgraph_sdk.Auth"),
        ("tests.sdkauth:no_handler", "no @auth.authenticate handler"),
        ("tests.sdkauth:wants_request", "asks for ['request']"),
    ],
)
def test_an_auth_object_that_cannot_be_served_is_refused(path: str, says: str) -> None:
    with pytest.raises(AuthConfigError, match=re.escape(says)):
        create_app(Settings(database_url="memory://", embeddings="none", auth=path))


@pytest.mark.parametrize(
    ("metadata", "wanted", "passes"),
    [
        ({"org": "red", "x": 1}, {"org": "red"}, True),
        ({"org": "blue"}, {"org": "red"}, False),
        ({}, {"org": "red"}, False),
        ({"org": "red"}, {"org": {"$eq": "red"}}, True),
        ({"tags": ["a", "b"]}, {"tags": {"$contains": "a"}}, True),
        ({"tags": ["a", "b"]}, {"tags": {"$contains": ["a", "c"]}}, False),
        ({"tags": "a"}, {"tags": {"$contains": "a"}}, False),
        ({"org": "red"}, None, True),
        ({"org": "red"}, {}, True),
    ],
)
def test_an_auth_handlers_filter_matches_metadata(
    metadata: dict[str, Any], wanted: dict[str, Any] | None, passes: bool
) -> None:
    from server.sdk_auth import matches

    assert matches(metadata, wanted) is passes


async def test_on_handlers_deny_with_403_and_their_own_status() -> None:
    """`False` and an `AssertionError` are a 403 naming the resource and action; an
    `Auth.exceptions.HTTPException` keeps its status and detail; no handler allows."""
    from langgraph_sdk import Auth

    from server.sdk_auth import OPEN, Policy

    auth = Auth()

    @auth.on.threads.delete
    async def never(ctx: Any, value: Any) -> bool:
        return False

    @auth.on.threads.update
    async def teapot(ctx: Any, value: Any) -> None:
        raise Auth.exceptions.HTTPException(status_code=418, detail="not today")

    @auth.on.store.put
    async def checked(ctx: Any, value: Any) -> None:
        assert value["key"] != "secret", "no secrets"

    policy = Policy(auth, None, ())
    assert await OPEN.check("threads", "delete", {}) is None
    assert await policy.check("threads", "read", {}) is None  # no handler for it
    assert await policy.check("store", "put", {"key": "fine"}) is None
    from fastapi import HTTPException

    for resource, action, value, code, detail in [
        ("threads", "delete", {}, 403, "threads delete: forbidden by the auth policy"),
        ("threads", "update", {}, 418, "not today"),
        ("store", "put", {"key": "secret"}, 403, "no secrets"),
    ]:
        with pytest.raises(HTTPException) as refused:
            await policy.check(resource, action, value)
        # (pytest adds its own explanation to an assert's message in this module)
        first_line = str(refused.value.detail).splitlines()[0]
        assert (refused.value.status_code, first_line) == (code, detail)
