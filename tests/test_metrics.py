"""Metrics read over real HTTP: counted by the web app, by a real Celery worker's prefork children
(merged from multiprocess files), and the state gauges read from the database and Redis."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine
from starlette.requests import Request

from service import metrics
from service.db import utcnow
from service.endpoints.metrics import allowed
from service.localredis import free_port
from service.settings import Secret, Settings
from tests.support.forms import person
from tests.support.smtp import SmtpSink
from tests.support.stack import ROOT, LiveServer, ServiceProcess, delivery_states, wait_until

SQLITE = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    found: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def scrape(url: str, token: str = "") -> Samples:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = httpx.get(url, headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return parse(response.text)


def settled(engine: Engine) -> bool:
    states = delivery_states(engine)
    return bool(states) and set(states) <= {"sent", "failed"}


@SQLITE
@pytest.mark.integration
def test_web_and_worker_counts_reach_metrics(
    server: LiveServer,
    client: httpx.Client,
    settings: Settings,
    smtp: SmtpSink,
    engine: Engine,
    tmp_path: Path,
) -> None:
    port = free_port()
    worker = ServiceProcess(
        settings,
        ["worker", "--concurrency", "2", "--metrics-port", str(port)],
        tmp_path / "worker.log",
    ).start()
    try:
        before = scrape(f"{server.url}/metrics")
        assert client.post("/f/contact", json=person()).status_code == 202
        assert client.post("/f/contact", json=person(email="nope", consent=None)).status_code == 422
        assert client.post("/f/no-such-form", json=person()).status_code == 404
        smtp.wait_for(2)
        wait_until(lambda: settled(engine))
        after = scrape(f"{server.url}/metrics")
        from_worker = scrape(f"http://127.0.0.1:{port}/metrics")
    finally:
        worker.stop()

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    # Counted by the web app in this process.
    assert delta("intake_submissions_total", form="contact", outcome="accepted") == 1
    assert delta("intake_submissions_total", form="contact", outcome="invalid") == 1
    assert delta("intake_rejections_total", reason="TYPE_EMAIL") == 1
    assert delta("intake_rejections_total", reason="FORM_NOT_FOUND") == 1
    assert not any("no-such-form" in str(key) for key in after)
    # Counted by the worker's pool children, read back from their files: by the worker's own
    # endpoint, and by the web's /metrics (which adds what this test process counted itself).
    assert value(from_worker, "intake_deliveries_total", kind="admissions", outcome="sent") == 1
    assert value(from_worker, "intake_deliveries_total", kind="autoreply", outcome="sent") == 1
    assert value(from_worker, "intake_time_to_admissions_seconds_count") == 1
    assert value(from_worker, "intake_time_to_admissions_seconds_bucket", le="+Inf") == 1
    assert delta("intake_deliveries_total", kind="admissions", outcome="sent") == 1
    assert delta("intake_deliveries_total", kind="autoreply", outcome="sent") == 1
    assert delta("intake_time_to_admissions_seconds_count") == 1
    # Read from the database and Redis at scrape time; the worker's endpoint leaves them out.
    assert value(after, "intake_deliveries_by_state", state="sent") == 2
    assert value(after, "intake_failed_deliveries") == 0
    assert value(after, "intake_queue_depth", queue="admissions") == 0
    assert value(after, "intake_state_source_up", source="broker") == 1
    assert not any(name == "intake_failed_deliveries" for name, _ in from_worker)


@SQLITE
def test_state_gauges_follow_the_database_and_the_queue(settings: Settings, engine: Engine) -> None:
    from tests.test_ops import add_delivery, add_submission
    from workers.celery_app import DELIVER_TASK, create_celery

    sid = add_submission(engine, created_at=utcnow() - timedelta(minutes=5))
    add_delivery(engine, sid, state="failed")
    add_delivery(engine, sid, state="pending", created_at=utcnow() - timedelta(minutes=5))
    add_submission(engine, status="quarantined", reason="honeypot")
    app = create_celery(settings, include_tasks=False)
    app.send_task(DELIVER_TASK, args=["x"], queue="backlog")
    app.close()
    samples = parse(metrics.render(metrics.scrape_registry(settings, engine)).decode())
    assert value(samples, "intake_failed_deliveries") == 1
    assert value(samples, "intake_quarantined_submissions") == 1
    assert value(samples, "intake_queue_depth", queue="backlog") == 1
    assert value(samples, "intake_oldest_open_delivery_age_seconds") >= 300
    assert value(samples, "intake_state_source_up", source="database") == 1

    down = settings.with_overrides(
        redis_url=f"redis://127.0.0.1:{free_port()}/0",
        database_url=f"sqlite:///{settings.var_dir}/missing/none.db",
    )
    from service.db import make_engine

    broken = make_engine(down.database_url)
    samples = parse(metrics.render(metrics.scrape_registry(down, broken)).decode())
    broken.dispose()
    assert value(samples, "intake_state_source_up", source="database") == 0
    assert value(samples, "intake_state_source_up", source="broker") == 0


def test_delivery_counts_retries_and_time_to_admissions() -> None:
    own = metrics.process_metrics()
    before = parse(metrics.render(own.registry).decode())
    sent_at = utcnow()
    metrics.count_delivery("admissions", "sent", 3, sent_at - timedelta(seconds=20), sent_at)
    metrics.count_delivery("autoreply", "retrying", 1, sent_at, sent_at)
    after = parse(metrics.render(own.registry).decode())

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("intake_deliveries_total", kind="admissions", outcome="sent") == 1
    assert delta("intake_deliveries_total", kind="autoreply", outcome="retrying") == 1
    assert delta("intake_delivery_retries_total", kind="admissions") == 1
    assert delta("intake_delivery_retries_total", kind="autoreply") == 0
    assert delta("intake_time_to_admissions_seconds_bucket", le="15.0") == 0
    assert delta("intake_time_to_admissions_seconds_bucket", le="30.0") == 1


COUNT_ONE = """
import sys, time
from service.settings import Settings
from service.metrics import count_submission, prepare_multiprocess
prepare_multiprocess(Settings(var_dir=sys.argv[1]), sys.argv[2])
count_submission("contact", "accepted")
print("counted", flush=True)
time.sleep(float(sys.argv[3]))
"""


def test_processes_add_up_and_dead_ones_are_cleared(tmp_path: Path) -> None:
    settings = Settings(var_dir=str(tmp_path / "var"))
    env = {k: v for k, v in os.environ.items() if k != metrics.MULTIPROC_ENV}
    root = metrics.metrics_root(settings)

    def start(role: str, linger: float = 0) -> subprocess.Popen[bytes]:
        args = [sys.executable, "-c", COUNT_ONE, settings.var_dir, role, str(linger)]
        return subprocess.Popen(args, env=env, cwd=ROOT, stdout=subprocess.PIPE if linger else None)

    def accepted() -> float:
        samples = parse(metrics.render(metrics.scrape_registry(settings)).decode())
        return value(samples, "intake_submissions_total", form="contact", outcome="accepted")

    assert start("web").wait() == 0
    assert start("web").wait() == 0  # the first one's folder went with it: this one counts alone
    assert accepted() == 1
    running = start("web", linger=60)
    try:
        assert running.stdout is not None and running.stdout.readline() == b"counted\n"
        assert accepted() == 1  # the running one counted; the finished one's folder is gone
        assert start("worker").wait() == 0
        assert (root / f"web-{running.pid}").is_dir()  # a running process keeps its counts
        assert accepted() == 2
    finally:
        running.kill()
        running.wait()
        if running.stdout is not None:
            running.stdout.close()


def _request(client: tuple[str, int], headers: dict[str, str] | None = None) -> Request:
    raw = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    return Request({"type": "http", "method": "GET", "headers": raw, "client": client})


def test_access_rules() -> None:
    loopback = ("127.0.0.1", 5000)
    assert allowed(_request(loopback), "", ()) is None
    assert allowed(_request(("::1", 5000)), "", ()) is None
    for refused in (
        _request(("203.0.113.9", 5000)),
        _request(loopback, {"X-Forwarded-For": "203.0.113.9"}),
        _request(loopback, {"Forwarded": "for=203.0.113.9"}),
    ):
        answer = allowed(refused, "", ())
        assert answer is not None and answer.status_code == 403
    behind_proxy = allowed(_request(loopback), "", ("127.0.0.0/8",))
    assert behind_proxy is not None and behind_proxy.status_code == 403

    token = "s3cret-token"
    remote = ("203.0.113.9", 5000)
    assert allowed(_request(remote, {"Authorization": f"Bearer {token}"}), token, ()) is None
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {token}"}):
        answer = allowed(_request(loopback, headers), token, ())
        assert answer is not None and answer.status_code == 401
        assert answer.headers["www-authenticate"] == "Bearer"
        assert json.loads(bytes(answer.body))["code"] == "UNAUTHORIZED"


@SQLITE
def test_token_over_http(settings: Settings) -> None:
    live = LiveServer(settings.with_overrides(metrics_token=Secret("tok"))).start()
    try:
        assert httpx.get(f"{live.url}/metrics").status_code == 401
        assert "intake_failed_deliveries" in str(scrape(f"{live.url}/metrics", token="tok"))
    finally:
        live.stop()


def _read_until(sock: socket.socket, marker: bytes) -> bytes:
    data = b""
    while marker not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


@SQLITE
@pytest.mark.integration
def test_intake_web_drains_a_request_in_flight_on_sigterm(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    """`intake web` as a process: its counters go to files (multiprocess mode), and on SIGTERM
    a request it has started is answered before it exits."""
    import signal

    port = free_port()
    web = ServiceProcess(
        settings.with_overrides(metrics_token=Secret("tok")),
        ["web", "--port", str(port)],
        tmp_path / "web.log",
    ).start(ready="Application startup complete")
    try:
        base = f"http://127.0.0.1:{port}"
        assert httpx.post(f"{base}/f/contact", json=person()).status_code == 202
        samples = scrape(f"{base}/metrics", token="tok")
        assert value(samples, "intake_submissions_total", form="contact", outcome="accepted") == 1
        assert list((Path(settings.var_dir) / "metrics").glob(f"web-{web.pid}/counter_*.db"))

        body = json.dumps(person(name="Second Person")).encode()
        with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
            sock.sendall(
                b"POST /f/contact HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Type: application/json\r\nExpect: 100-continue\r\n"
                b"Content-Length: %d\r\n\r\n" % len(body)
            )
            assert b"100 Continue" in _read_until(sock, b"\r\n\r\n")  # the app awaits the body
            web.signal(signal.SIGTERM)
            web.wait_for_log("Shutting down")
            sock.sendall(body)
            answer = _read_until(sock, b'"ok"')
        assert answer.startswith(b"HTTP/1.1 202"), answer
        assert web.process is not None
        web.process.wait(20)
    finally:
        web.stop()
    assert sum(delivery_states(engine).values()) == 4  # both submissions stored
