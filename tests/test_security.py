"""Web security over real HTTP: CORS, origin checks, security headers, trusted hosts, the
published OpenAPI description, and markup that stays inert in our pages."""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from service.config import DEFAULT_CONFIG_PATH, AppConfig, parse_config
from service.db import migrate
from service.security import foreign_post, normalize_origin, origin_set
from service.settings import Settings
from tests.support.forms import person
from tests.support.stack import LiveServer, count_rows

ALLOWED = "https://www.example.org"  # the test settings' INTAKE_ALLOWED_ORIGINS
EVIL = "https://evil.example"
XHR = {"X-Requested-With": "XMLHttpRequest"}


def guarded_config() -> AppConfig:
    raw = tomllib.loads(DEFAULT_CONFIG_PATH.read_text())
    raw["forms"]["guarded"] = {"title": "Guarded", "require_origin": True}
    return parse_config(raw)


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """SQLite only: nothing here depends on the database."""
    url = f"sqlite:///{tmp_path / 'intake.db'}"
    migrate(url)
    return url


@contextmanager
def serve(settings: Settings, config: AppConfig | None = None) -> Iterator[httpx.Client]:
    live = LiveServer(settings, config).start()
    try:
        with httpx.Client(base_url=live.url, timeout=15) as http:
            yield http
    finally:
        live.stop()


@pytest.fixture
def http(settings: Settings) -> Iterator[httpx.Client]:
    with serve(settings, guarded_config()) as client:
        yield client


def allow_headers(response: httpx.Response) -> list[str]:
    return [name for name in response.headers if name.lower().startswith("access-control-allow")]


# --- CORS ----------------------------------------------------------------------------------------


def test_preflight_from_an_allowed_origin(http: httpx.Client) -> None:
    response = http.options(
        "/f/contact",
        headers={
            "Origin": ALLOWED,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type, x-requested-with",
        },
    )
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == ALLOWED
    assert response.headers["access-control-allow-methods"] == "POST"
    assert "x-requested-with" in response.headers["access-control-allow-headers"]
    assert "access-control-allow-credentials" not in response.headers
    assert "Origin" in response.headers["vary"]


@pytest.mark.parametrize(
    ("origin", "method", "request_headers"),
    [
        (EVIL, "POST", ""),
        ("null", "POST", ""),
        ("https://www.example.org.evil.example", "POST", ""),
        ("http://www.example.org", "POST", ""),  # another scheme is another origin
        (ALLOWED, "PUT", ""),
        (ALLOWED, "DELETE", ""),
        (ALLOWED, "POST", "authorization"),
        (ALLOWED, "POST", "content-type, cookie"),
    ],
)
def test_other_preflights_get_no_allow_header(
    http: httpx.Client, origin: str, method: str, request_headers: str
) -> None:
    headers = {"Origin": origin, "Access-Control-Request-Method": method}
    if request_headers:
        headers["Access-Control-Request-Headers"] = request_headers
    response = http.options("/f/contact", headers=headers)
    assert response.status_code == 403
    assert allow_headers(response) == []


def test_simple_post_from_allowed_origin_is_readable_without_credentials(
    http: httpx.Client,
) -> None:
    response = http.post("/f/contact", json=person(), headers={"Origin": ALLOWED})
    assert response.status_code == 202
    assert response.headers["access-control-allow-origin"] == ALLOWED
    assert "Retry-After" in response.headers["access-control-expose-headers"]
    assert "access-control-allow-credentials" not in response.headers
    assert "Origin" in response.headers["vary"]


def test_post_from_other_origin_is_not_readable(http: httpx.Client) -> None:
    response = http.post("/f/contact", json=person(), headers={"Origin": EVIL})
    # The form does not require its origin, so the post is stored; the page cannot read the answer.
    assert response.status_code == 202
    assert allow_headers(response) == []


def test_no_cors_outside_the_form_endpoint(http: httpx.Client) -> None:
    for path in ("/healthz", "/openapi.json"):
        response = http.get(path, headers={"Origin": ALLOWED})
        assert allow_headers(response) == [], path
    preflight = http.options(
        "/readyz", headers={"Origin": ALLOWED, "Access-Control-Request-Method": "GET"}
    )
    assert allow_headers(preflight) == []


# --- origin checks -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Origin": ALLOWED}, 202),
        ({"Origin": "HTTPS://WWW.EXAMPLE.ORG"}, 202),
        ({"Origin": "http://testserver.example"}, 202),  # our own form page (public_url)
        ({"Sec-Fetch-Site": "same-origin"}, 202),
        ({"Sec-Fetch-Site": "same-site"}, 202),
        ({}, 202),  # not a browser: nothing to check (the rate limit applies)
        ({"Origin": EVIL}, 403),
        ({"Origin": "null"}, 403),
        ({"Origin": "https://www.example.org.evil.example"}, 403),
        ({"Origin": "https://www.example.org:8443"}, 403),
        ({"Sec-Fetch-Site": "cross-site"}, 403),
        ({"Origin": EVIL, "Sec-Fetch-Site": "same-origin"}, 403),  # Origin wins
    ],
)
def test_form_requiring_its_origin(
    http: httpx.Client, engine: Engine, headers: dict[str, str], status: int
) -> None:
    response = http.post("/f/guarded", json=person(), headers=headers)
    assert response.status_code == status
    if status == 403:
        assert response.json()["errors"][0]["code"] == "ORIGIN_NOT_ALLOWED"
        assert "(555) 010-0100" in response.json()["errors"][0]["message"]
        assert count_rows(engine) == (0, 0)


def test_foreign_origin_refusal_is_a_page_for_browsers(http: httpx.Client) -> None:
    response = http.post("/f/guarded", data=person(), headers={"Origin": EVIL})
    assert response.status_code == 403
    assert "text/html" in response.headers["content-type"]
    assert "(555) 010-0100" in response.text and "988" in response.text


def test_origin_helpers() -> None:
    assert normalize_origin("https://WWW.Example.org/") == "https://www.example.org"
    assert normalize_origin("https://www.example.org/path") == ""
    assert normalize_origin("javascript:alert(1)") == ""
    assert normalize_origin("null") == ""
    allowed = origin_set(["https://www.example.org", "not an origin"])
    assert allowed == frozenset({"https://www.example.org"})
    from starlette.datastructures import Headers

    assert foreign_post(Headers({"origin": "null"}), allowed)
    assert not foreign_post(Headers({}), allowed)


# --- headers on every answer ---------------------------------------------------------------------


def test_json_answers_carry_nosniff_and_referrer_policy(http: httpx.Client) -> None:
    for response in (
        http.post("/f/contact", json=person()),
        http.post("/f/contact", json={"name": "x"}),
        http.post("/f/nope", json=person()),
        http.get("/healthz"),
        http.get("/openapi.json"),
    ):
        assert response.headers["x-content-type-options"] == "nosniff", response.url
        assert response.headers["referrer-policy"] == "no-referrer", response.url


def test_every_html_answer_has_a_strict_policy(http: httpx.Client) -> None:
    pages = [
        http.post("/f/contact", data={"name": "Sam", "consent": "on"}),  # 422 page
        http.post("/f/nope", data=person()),  # 404 page
        http.get("/thanks"),
    ]
    for response in pages:
        assert "text/html" in response.headers["content-type"]
        policy = response.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in policy and "default-src 'none'" in policy
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"


def test_redirect_after_success_leaks_nothing(http: httpx.Client) -> None:
    response = http.post("/f/contact", data=person())
    assert response.status_code == 303
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["cache-control"] == "no-store"


def test_framework_answers_get_headers_too(http: httpx.Client) -> None:
    for response in (http.put("/f/contact", json=person()), http.get("/no/such/page")):
        assert response.status_code in (404, 405)
        assert response.headers["x-content-type-options"] == "nosniff"


def test_untrusted_host_is_refused(settings: Settings) -> None:
    with serve(settings.with_overrides(trusted_hosts=("forms.example.org",))) as http:
        refused = http.post("/f/contact", json=person(), headers={"Host": "evil.example"})
        allowed = http.post("/f/contact", json=person(), headers={"Host": "forms.example.org"})
    assert refused.status_code == 400
    assert refused.headers["x-content-type-options"] == "nosniff"
    assert allowed.status_code == 202


# --- inert markup --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        "<script>alert(1)</script>",
        '"><img src=x onerror=alert(1)>',
        "javascript:alert(1)",
        "{{7*7}}{% if 1 %}x{% endif %}",
    ],
)
def test_typed_values_are_inert_in_the_error_page(http: httpx.Client, payload: str) -> None:
    response = http.post(
        "/f/contact",
        data={"name": payload, "message": payload, "email": "bad@", "consent": "on"},
        headers={"Referer": "javascript:alert(1)"},
    )
    assert response.status_code == 422
    assert "<script>alert" not in response.text
    assert "<img src=x" not in response.text
    assert 'href="javascript:' not in response.text
    if "{{" in payload:
        assert "49" not in response.text.split("<main", 1)[1].split("</main>", 1)[0]


# --- the published description --------------------------------------------------------------------


def test_openapi_describes_the_endpoint(http: httpx.Client) -> None:
    response = http.get("/openapi.json")
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    assert document["openapi"].startswith("3.")
    operation = document["paths"]["/f/{form}"]["post"]
    assert set(operation["requestBody"]["content"]) == {
        "application/json",
        "application/x-www-form-urlencoded",
        "multipart/form-data",
    }
    assert {"202", "303", "400", "404", "413", "415", "422", "429", "503"} <= set(
        operation["responses"]
    )
    assert "Retry-After" in operation["responses"]["429"]["headers"]
    assert operation["parameters"][0]["schema"]["enum"] == ["contact", "guarded"]
    submission = document["components"]["schemas"]["Submission"]
    assert submission["properties"]["message"]["maxLength"] == 5000
