"""Spam and floods: rate limits in real Redis, CAPTCHA against a real verifier on loopback, the
time trap, and quarantine that ops can list and release. Nobody real is ever dropped."""

from __future__ import annotations

import json
import socket
import threading
import time
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
import redis
from sqlalchemy import Engine, select

from service.config import DEFAULT_CONFIG_PATH, AppConfig, FormConfig, parse_config
from service.crypto import new_key
from service.models import (
    ACCEPTED,
    ADMISSIONS,
    AUTOREPLY,
    PENDING,
    QUARANTINED,
    RELEASED,
    deliveries,
    submissions,
)
from service.quarantine import QuarantineError, list_quarantined, release
from service.ratelimit import KEY_PREFIX, RateLimiter
from service.rates import Rate, parse_rate
from service.settings import Secret, Settings, SettingsError
from service.timetrap import issue_token
from tests.support.forms import person
from tests.support.stack import LiveServer, count_rows
from tests.support.verifier import Verifier
from workers.retention import purge

XHR = {"X-Requested-With": "XMLHttpRequest"}
SQLITE = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def config_with(**form: Any) -> AppConfig:
    """The built-in configuration with the `contact` form changed, plus a second form `other`."""
    raw = tomllib.loads(DEFAULT_CONFIG_PATH.read_text())
    raw["forms"]["contact"].update(form)
    raw["forms"]["other"] = {"title": "Other"}
    return parse_config(raw)


@contextmanager
def serve(
    settings: Settings, config: AppConfig | None = None
) -> Iterator[tuple[LiveServer, httpx.Client]]:
    live = LiveServer(settings, config).start()
    try:
        with httpx.Client(base_url=live.url, timeout=15) as http:
            yield live, http
    finally:
        live.stop()


def submission(engine: Engine, submission_id: str) -> dict[str, Any]:
    with engine.connect() as connection:
        row = (
            connection.execute(select(submissions).where(submissions.c.id == submission_id))
            .mappings()
            .one()
        )
    return dict(row)


def deliveries_of(engine: Engine, submission_id: str) -> list[dict[str, Any]]:
    with engine.connect() as connection:
        rows = (
            connection.execute(
                select(deliveries).where(deliveries.c.submission_id == submission_id)
            )
            .mappings()
            .all()
        )
    return [dict(r) for r in rows]


def someone(n: int, **overrides: Any) -> dict[str, Any]:
    """A different person each time (own email, phone and message), so only the address repeats."""
    fields: dict[str, Any] = {
        "email": f"person{n}@example.com",
        "phone": f"+1 415 555 {2600 + n:04d}",
        "message": f"Please call me back ({n}).",
    }
    return person(**{**fields, **overrides})


# --- rate limits -------------------------------------------------------------------------------


def test_rate_strings() -> None:
    assert parse_rate("10/minute") == Rate(10, 60)
    assert parse_rate("100 / hours") == Rate(100, 3600)
    assert parse_rate("5/30s") == Rate(5, 30)
    assert parse_rate("3/2h") == Rate(3, 7200)
    assert parse_rate("1/day") == Rate(1, 86400)
    assert parse_rate("off") is None and parse_rate("") is None
    for bad in ("ten/minute", "10", "10/fortnight", "10/0s", "-1/minute", "10/minute; drop"):
        with pytest.raises(ValueError):
            parse_rate(bad)


def test_unusable_rate_limits_are_refused_at_start() -> None:
    with pytest.raises(SettingsError, match="INTAKE_RATE_LIMIT"):
        Settings.from_env({"INTAKE_RATE_LIMIT": "ten per minute"})
    forms = {"x": FormConfig("x", "X", rate_limit="lots")}
    with pytest.raises(ValueError, match=r"forms\.x\.rate_limit"):
        RateLimiter(None, "10/minute", forms, lambda *parts: "h", 0.5)


@SQLITE
def test_address_limit_answers_429_as_json_and_as_a_page(
    settings: Settings, engine: Engine
) -> None:
    with serve(settings.with_overrides(rate_limit="3/minute")) as (_, http):
        statuses = [http.post("/f/contact", json=someone(n)).status_code for n in range(3)]
        refused = http.post("/f/contact", json=someone(3))
        page = http.post("/f/contact", data=someone(4))
    assert statuses == [202, 202, 202]
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    body = refused.json()
    assert body["ok"] is False and body["errors"][0]["code"] == "RATE_LIMITED"
    assert "(555) 010-0100" in body["errors"][0]["message"]
    assert page.status_code == 429 and "text/html" in page.headers["content-type"]
    assert 1 <= int(page.headers["retry-after"]) <= 60
    assert "(555) 010-0100" in page.text and "988" in page.text  # a way to reach a person now
    assert count_rows(engine)[0] == 3


@SQLITE
def test_invalid_posts_do_not_use_up_the_limit(settings: Settings) -> None:
    with serve(settings.with_overrides(rate_limit="2/minute")) as (_, http):
        for _ in range(5):
            assert http.post("/f/contact", json=someone(0, email="typo@")).status_code == 422
        assert http.post("/f/contact", json=someone(0)).status_code == 202
        assert http.post("/f/contact", json=someone(1)).status_code == 202
        assert http.post("/f/contact", json=someone(2)).status_code == 429


@SQLITE
def test_email_and_phone_limits_follow_a_person_across_addresses(
    settings: Settings, redis_url: str
) -> None:
    limited = settings.with_overrides(rate_limit="2/minute", trusted_proxies=("127.0.0.1",))
    with serve(limited) as (_, http):

        def post(n: int, **fields: Any) -> httpx.Response:
            return http.post(
                "/f/contact",
                json=someone(n, **fields),
                headers={"X-Forwarded-For": f"203.0.113.{n}"},
            )

        same_email = [post(n, email="jordan.rivera@example.com").status_code for n in range(3)]
        same_phone = [post(10 + n, phone="(415) 555-2671").status_code for n in range(3)]
        others = [post(20 + n).status_code for n in range(3)]
    assert same_email == [202, 202, 429]
    assert same_phone == [202, 202, 429]
    assert others == [202, 202, 202]  # each from its own address, with its own email and phone

    keys = [k.decode() for k in redis.Redis.from_url(redis_url).keys(f"{KEY_PREFIX}*")]
    assert keys
    joined = "\n".join(keys)
    for personal in ("jordan", "example.com", "4155552671", "203.0.113"):
        assert personal not in joined  # counters are keyed hashes, never the value


@SQLITE
def test_form_limit_overrides_the_default(settings: Settings) -> None:
    config = config_with(rate_limit="1/minute")
    with serve(settings.with_overrides(rate_limit="5/minute"), config) as (_, http):
        contact = [http.post("/f/contact", json=someone(n)).status_code for n in range(2)]
        other = [http.post("/f/other", json=someone(10 + n)).status_code for n in range(3)]
    assert contact == [202, 429]
    assert other == [202, 202, 202]


@SQLITE
def test_limit_lifts_when_the_window_ends(settings: Settings) -> None:
    with serve(settings.with_overrides(rate_limit="1/1s")) as (_, http):
        assert http.post("/f/contact", json=someone(0)).status_code == 202
        refused = http.post("/f/contact", json=someone(1))
        assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
        deadline = time.monotonic() + 10
        n = 2
        while http.post("/f/contact", json=someone(n)).status_code == 429:
            assert time.monotonic() < deadline, "the window never ended"
            time.sleep(0.2)
            n += 1


@SQLITE
def test_rate_limit_fails_open_when_redis_is_down(
    settings: Settings, redis_server: Any, engine: Engine
) -> None:
    redis_server.stop()
    try:
        with serve(settings.with_overrides(rate_limit="1/minute")) as (_, http):
            statuses = [http.post("/f/contact", json=someone(n)).status_code for n in range(3)]
    finally:
        redis_server.start()
    assert statuses == [202, 202, 202]
    assert count_rows(engine)[0] == 3


@contextmanager
def black_hole() -> Iterator[int]:
    """A TCP port that accepts connections and never answers: a hung Redis."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except TimeoutError:
                continue
            except OSError:
                return

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(2)
        for connection in held:
            connection.close()
        listener.close()


@SQLITE
def test_rate_limit_fails_open_when_redis_hangs(settings: Settings, engine: Engine) -> None:
    with black_hole() as port:
        hung = settings.with_overrides(
            rate_limit="1/minute", redis_url=f"redis://127.0.0.1:{port}/0"
        )
        with serve(hung) as (_, http):
            statuses = [http.post("/f/contact", json=someone(n)).status_code for n in range(3)]
    assert statuses == [202, 202, 202]
    assert count_rows(engine)[0] == 3


# --- CAPTCHA -------------------------------------------------------------------------------------


@pytest.fixture
def verifier() -> Iterator[Verifier]:
    server = Verifier(hang_seconds=2.0).start()
    yield server
    server.stop()


def captcha_config(verifier: Verifier, provider: str = "turnstile") -> AppConfig:
    return config_with(
        captcha={
            "provider": provider,
            "secret": "s3cret",
            "site_key": "site",
            "verify_url": verifier.url,
        }
    )


@SQLITE
@pytest.mark.parametrize(
    ("provider", "field"),
    [
        ("turnstile", "cf-turnstile-response"),
        ("hcaptcha", "h-captcha-response"),
        ("recaptcha", "g-recaptcha-response"),
    ],
)
def test_captcha_pass_delivers(
    settings: Settings, engine: Engine, verifier: Verifier, provider: str, field: str
) -> None:
    with serve(settings, captcha_config(verifier, provider)) as (_, http):
        response = http.post("/f/contact", json=person(**{field: "token-123"}))
    assert response.status_code == 202
    row = submission(engine, response.json()["id"])
    assert row["status"] == ACCEPTED
    assert len(deliveries_of(engine, row["id"])) == 2
    assert verifier.requests == [
        {"secret": "s3cret", "response": "token-123", "remoteip": "127.0.0.1"}
    ]
    assert "token-123" not in json.dumps(row, default=str)  # the token is not personal data we keep


@SQLITE
@pytest.mark.parametrize("token", ["token-123", ""])
def test_captcha_refusal_quarantines_and_looks_like_success(
    settings: Settings, engine: Engine, verifier: Verifier, token: str
) -> None:
    verifier.mode = "fail"
    with serve(settings, captcha_config(verifier)) as (_, http):
        api = http.post("/f/contact", json=person(**{"cf-turnstile-response": token}))
        browser = http.post(
            "/f/contact", data=person(message="other", **{"cf-turnstile-response": token})
        )
    assert api.status_code == 202
    assert browser.status_code == 303 and browser.headers["location"].endswith("/thanks")
    row = submission(engine, api.json()["id"])
    assert row["status"] == QUARANTINED and row["quarantine_reason"] == "captcha"
    assert deliveries_of(engine, row["id"]) == []
    assert len(verifier.requests) == (2 if token else 0)  # no token: nothing to ask


@SQLITE
@pytest.mark.parametrize("mode", ["hang", "error", "garbage", "bad_secret"])
def test_captcha_outage_holds_the_person_for_review(
    settings: Settings, engine: Engine, verifier: Verifier, mode: str
) -> None:
    verifier.mode = mode
    quick = settings.with_overrides(captcha_timeout_seconds=0.5)
    with serve(quick, captcha_config(verifier)) as (_, http):
        response = http.post("/f/contact", json=person(**{"cf-turnstile-response": "t"}))
    assert response.status_code == 202
    row = submission(engine, response.json()["id"])
    assert row["status"] == QUARANTINED and row["quarantine_reason"] == "captcha_unavailable"
    assert row["payload"]  # kept whole, to be released


@SQLITE
def test_urgent_message_is_never_held_by_a_captcha(
    settings: Settings, engine: Engine, verifier: Verifier
) -> None:
    verifier.mode = "fail"
    with serve(settings, captcha_config(verifier)) as (_, http):
        response = http.post("/f/contact", json=person(message="I want to end my life"))
    row = submission(engine, response.json()["id"])
    assert row["status"] == ACCEPTED and row["urgent"] is True
    assert len(deliveries_of(engine, row["id"])) == 2
    assert verifier.requests == []


# --- time trap and honeypots ---------------------------------------------------------------------


@SQLITE
def test_time_trap_quarantines_with_the_reason(settings: Settings, engine: Engine) -> None:
    secret = settings.secret_key.reveal().encode()
    now = time.time()
    cases = {
        "good": (issue_token(secret, "contact", now=now - 60), ACCEPTED, None),
        "fast": (issue_token(secret, "contact", now=now), QUARANTINED, "too_fast"),
        "old": (issue_token(secret, "contact", now=now - 3 * 86400), QUARANTINED, "token_expired"),
        "forged": (
            issue_token(b"not our key", "contact", now=now - 60),
            QUARANTINED,
            "token_invalid",
        ),
        "other form": (issue_token(secret, "other", now=now - 60), QUARANTINED, "token_invalid"),
        "garbage": ("t1.abc.def", QUARANTINED, "token_invalid"),
    }
    with serve(settings, config_with()) as (_, http):
        answers = {
            name: http.post("/f/contact", json=person(_ts=token, message=f"case {name}"))
            for name, (token, _, _) in cases.items()
        }
        urgent = http.post(
            "/f/contact", json=person(_ts=cases["fast"][0], message="he overdosed, not breathing")
        )
    for name, (_, status, reason) in cases.items():
        assert answers[name].status_code == 202, name
        row = submission(engine, answers[name].json()["id"])
        assert (row["status"], row["quarantine_reason"]) == (status, reason), name
    assert submission(engine, urgent.json()["id"])["status"] == ACCEPTED


@SQLITE
def test_missing_token_counts_only_when_the_form_requires_one(
    settings: Settings, engine: Engine
) -> None:
    with serve(settings, config_with()) as (_, http):
        relaxed = http.post("/f/contact", json=person())
    with serve(settings, config_with(require_time_token=True)) as (_, http):
        strict = http.post("/f/contact", json=person(message="again"))
    assert submission(engine, relaxed.json()["id"])["status"] == ACCEPTED
    row = submission(engine, strict.json()["id"])
    assert (row["status"], row["quarantine_reason"]) == (QUARANTINED, "token_missing")


@SQLITE
def test_configured_honeypot_fields_quarantine(settings: Settings, engine: Engine) -> None:
    config = config_with(honeypot_fields=["_gotcha", "website_url"])
    with serve(settings, config) as (_, http):
        trapped = http.post("/f/contact", json=person(website_url="http://spam.example"))
        empty = http.post("/f/contact", json=person(website_url="", message="empty trap"))
    row = submission(engine, trapped.json()["id"])
    assert (row["status"], row["quarantine_reason"]) == (QUARANTINED, "honeypot")
    assert "spam.example" not in (row["payload"] or "")  # the trap's content is not kept
    assert submission(engine, empty.json()["id"])["status"] == ACCEPTED


# --- quarantine for ops --------------------------------------------------------------------------


def test_quarantine_is_listed_without_personal_data_and_released_once(
    settings: Settings, engine: Engine
) -> None:
    keyed = settings.with_overrides(encryption_key=Secret(new_key()))
    config = config_with()
    with serve(keyed, config) as (_, http):
        held = http.post("/f/contact", json=person(_gotcha="autofill"))
        kept = http.post("/f/contact", json=person(message="not held"))
    held_id = held.json()["id"]

    items = list_quarantined(engine)
    assert [(i.id, i.form, i.reason, i.purged) for i in items] == [
        (held_id, "contact", "honeypot", False)
    ]
    assert items[0].age_seconds >= 0
    assert "Jordan" not in repr(items) and "example.com" not in repr(items)

    released = release(engine, keyed, config, held_id)
    assert released.submission_id == held_id
    rows = deliveries_of(engine, held_id)
    assert sorted(d["kind"] for d in rows) == [ADMISSIONS, AUTOREPLY]
    assert all(d["state"] == PENDING for d in rows)
    assert sorted(j[0] for j in released.jobs) == sorted(d["id"] for d in rows)
    assert {q for _, q in released.jobs} == {"admissions", "autoreply"}
    assert submission(engine, held_id)["status"] == RELEASED
    assert list_quarantined(engine) == []

    with pytest.raises(QuarantineError, match="released"):
        release(engine, keyed, config, held_id)
    with pytest.raises(QuarantineError, match="accepted"):
        release(engine, keyed, config, kept.json()["id"])
    with pytest.raises(QuarantineError, match="no submission"):
        release(engine, keyed, config, "0" * 32)
    assert len(deliveries_of(engine, held_id)) == 2  # the refusals wrote nothing


@SQLITE
def test_purged_quarantine_cannot_be_released(settings: Settings, engine: Engine) -> None:
    config = config_with()
    with serve(settings, config) as (_, http):
        held = http.post("/f/contact", json=person(_gotcha="bot")).json()["id"]
    from datetime import timedelta

    from service.db import utcnow

    assert purge(engine, settings, now=utcnow() + timedelta(days=settings.quarantine_days + 1)) == 1
    items = list_quarantined(engine)
    assert [(i.id, i.purged) for i in items] == [(held, True)]
    with pytest.raises(QuarantineError, match="purged"):
        release(engine, settings, config, held)
    assert deliveries_of(engine, held) == []
