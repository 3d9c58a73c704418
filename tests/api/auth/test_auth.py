"""Authentication off by default, on by setting: API keys (Bearer, X-API-Key), HTTP Basic, CORS."""

from __future__ import annotations

import base64
from collections.abc import Callable

import openai
import pytest
from fastapi.testclient import TestClient
from openai import OpenAI

from _servers import Server, shared
from framepack_api.api.auth import AuthMiddleware, Caller
from framepack_api.settings import Settings

KEYS = ["sk-first", "sk-second"]
USER = ("xebio", "20251001")
ORIGIN = "http://app.example"
ROUTES = ["/queue", "/v1/videos", "/api/video-generation/", "/docs", "/openapi.json"]


@pytest.fixture
def secured(make_client: Callable[..., TestClient]) -> TestClient:
    return make_client(api_keys=KEYS, basic_auth_users=[":".join(USER)], cors_origins=[ORIGIN])


@pytest.fixture(scope="session")
def keyed_server() -> Server:
    """API only (no worker); keys given the way an operator would: a comma-separated variable."""
    return shared("keyed", workers=0, env={"FRAMEPACK_API_API_KEYS": ",".join(KEYS)})


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_off_by_default(make_client: Callable[..., TestClient]) -> None:
    with make_client() as client:
        for route in ROUTES:
            assert client.get(route).status_code == 200, route
        assert "access-control-allow-origin" not in client.get("/queue", headers={"Origin": ORIGIN}).headers


@pytest.mark.parametrize("route", ROUTES)
def test_refused_without_credentials(secured: TestClient, route: str) -> None:
    with secured as client:
        r = client.get(route)
    assert r.status_code == 401
    assert r.headers.get_list("www-authenticate") == ['Bearer realm="framepack-api"',
                                                      'Basic realm="framepack-api", charset="UTF-8"']


def test_refusal_bodies_follow_each_dialect(secured: TestClient) -> None:
    with secured as client:
        native = client.get("/queue").json()
        v1 = client.get("/v1/videos", headers={"Authorization": "Bearer sk-wrong"}).json()
    assert native == {"detail": "Missing credentials: send an API key (Authorization: Bearer or X-API-Key) "
                                "or HTTP Basic."}
    assert v1 == {"error": {"message": "Incorrect API key provided.", "type": "invalid_request_error",
                            "param": None, "code": "invalid_api_key"}}


@pytest.mark.parametrize(("headers", "ok"), [
    ({"Authorization": f"Bearer {KEYS[0]}"}, True),
    ({"Authorization": f"bearer {KEYS[1]}"}, True),
    ({"X-API-Key": KEYS[1]}, True),
    (basic(*USER), True),
    ({"Authorization": "Bearer sk-firs"}, False),  # a prefix of a key
    ({"Authorization": f"Bearer {KEYS[0]}x"}, False),
    ({"Authorization": "Bearer "}, False),
    ({"X-API-Key": "nope"}, False),
    ({"X-API-Key": "", "Authorization": f"Bearer {KEYS[0]}"}, False),  # a wrong X-API-Key is not skipped
    (basic(USER[0], "wrong"), False),
    (basic("other", USER[1]), False),
    ({"Authorization": f"Basic {KEYS[0]}"}, False),  # not base64 of user:password
    ({"Authorization": "Basic !!!"}, False),
    ({"Authorization": f"Token {KEYS[0]}"}, False),
])
def test_credentials(secured: TestClient, headers: dict[str, str], ok: bool) -> None:
    with secured as client:
        r = client.get("/v1/videos", headers=headers)
    assert r.status_code == (200 if ok else 401), r.text
    if ok:
        assert r.json()["object"] == "list"


def test_health_stays_open(secured: TestClient) -> None:
    with secured as client:
        r = client.get("/health")
    # Open without credentials; 503 only because this app has no worker (degraded, not refused).
    assert r.status_code == 503 and r.json()["database"] is True
    assert r.json()["reasons"] == ["no live worker"]


def test_cors_preflight_and_refusals_carry_cors_headers(secured: TestClient) -> None:
    with secured as client:
        preflight = client.options("/v1/videos", headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST",
                                                          "Access-Control-Request-Headers": "authorization"})
        refused = client.get("/queue", headers={"Origin": ORIGIN})
        other = client.get("/queue", headers={"Origin": "http://evil.example", **basic(*USER)})
    assert preflight.status_code == 200 and preflight.headers["access-control-allow-origin"] == ORIGIN
    assert refused.status_code == 401 and refused.headers["access-control-allow-origin"] == ORIGIN
    assert other.status_code == 200 and "access-control-allow-origin" not in other.headers


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FRAMEPACK_API_API_KEYS", "a, b")
    monkeypatch.setenv("FRAMEPACK_API_BASIC_AUTH_USERS", '["u:p:with:colons"]')
    monkeypatch.setenv("FRAMEPACK_API_CORS_ORIGINS", "['http://x']")  # how `serve` passes lists on
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert (settings.api_keys, settings.basic_auth_users, settings.cors_origins) == (
        ["a", "b"], ["u:p:with:colons"], ["http://x"])
    middleware = AuthMiddleware(lambda *a: None, api_keys=[], basic_users=settings.basic_auth_users)  # type: ignore[arg-type]
    headers = {"authorization": basic("u", "p:with:colons")["Authorization"]}
    assert middleware.check(headers) == Caller("user:u", admin=False)  # the password may contain ":"
    with pytest.raises(ValueError, match="user:password"):
        AuthMiddleware(lambda *a: None, api_keys=[], basic_users=["no-colon"])  # type: ignore[arg-type]


def test_the_sdk_with_and_without_the_right_key(keyed_server: Server) -> None:
    good = OpenAI(base_url=f"{keyed_server.url}/v1", api_key=KEYS[1], max_retries=0)
    video = good.videos.create(prompt="keyed", seconds="0.5")
    assert video.status == "queued" and good.videos.retrieve(video.id).id == video.id
    bad = OpenAI(base_url=f"{keyed_server.url}/v1", api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as err:
        bad.videos.list()
    assert err.value.status_code == 401 and err.value.code == "invalid_api_key"
    assert good.videos.delete(video.id).deleted is True
