"""The benchmark harness works: its pieces start, and one tiny measurement runs end to end.

Nothing here asserts a timing: performance is measured by `make bench`, never in tests. What
is checked is that a broken harness cannot report figures: every body the load generators send
is accepted and stored, the SMTP sink records what it accepted, and the report renders.
"""

from __future__ import annotations

import smtplib
from pathlib import Path

import pytest
import redis

from bench.loadgen import WrkResult, paced, submission_body, wrk, wrk_available
from bench.measure import Figures
from bench.report import rows, table
from bench.stack import Bench, count_submissions, delivery_counts
from service.db import migrate

pytestmark = pytest.mark.integration


def smoke_wrk(url: str, mode: str, run: str) -> WrkResult:
    """One second of submit.lua on two connections: enough to see the harness work."""
    return wrk(
        url + "/f/contact",
        "submit.lua",
        seconds=1,
        connections=2,
        threads=1,
        script_args=[mode, run],
    )


def test_sink_records_each_accepted_message_by_message_id(tmp_path: Path) -> None:
    with Bench(tmp_path) as bench:
        with smtplib.SMTP("127.0.0.1", bench.sink.port, timeout=5) as smtp:
            for n in (1, 2, 2):
                smtp.sendmail(
                    "care@test.example",
                    ["admissions@test.example"],
                    f"Message-ID: <m{n}@test>\r\nSubject: hi\r\n\r\n.dot\r\nbody\r\n".encode(),
                )
        accepted = bench.sink.accepted()
        assert [a.message_id for a in accepted] == ["<m1@test>", "<m2@test>", "<m2@test>"]
        assert {a.recipient for a in accepted} == {"admissions@test.example"}
        assert bench.sink.duplicates() == 1
        bench.sink.stop()  # down: refused, as the backlog measurement needs
        with pytest.raises(OSError):
            smtplib.SMTP("127.0.0.1", bench.sink.port, timeout=2)


def test_load_generators_submit_accepted_stored_submissions(tmp_path: Path) -> None:
    with Bench(tmp_path) as bench:
        bench.fresh_database()
        _, url = bench.web()
        samples = paced(url + "/f/contact", 20, 0.5, submission_body("smoke"))
        assert [s.status for s in samples] == [202] * 10
        assert len({s.submission_id for s in samples}) == 10  # unique: none taken as duplicate
        stored = 10
        results = Figures()
        if wrk_available():
            for mode in ("json", "form"):
                result = smoke_wrk(url, mode, f"smoke-{mode}")
                assert result.requests > 0
                assert result.errors == 0  # 202 for JSON, 303 for the browser form
                stored += result.requests
                results.values[f"{mode}_sqlite"] = result
            results.values["baseline"] = [results.values["json_sqlite"]]
        with bench.engine() as engine:
            # wrk does not count the requests still in flight when its time is up.
            assert stored <= count_submissions(engine) <= stored + 2 * 2
    if results.values:
        report = table(rows({"ingest": results}))
        assert "1. Ingest, JSON, SQLite, 64 connections: accepted/s" in report
        assert "form-encoded" in report


@pytest.mark.skipif(not wrk_available(), reason="wrk is installed by `make bench`")
def test_floor_reference_stores_and_queues_every_accepted_submission(tmp_path: Path) -> None:
    with Bench(tmp_path) as bench:
        bench.fresh_database()
        migrate(bench.database_url)
        proc, url = bench.serve("floor", "bench.floor_app:create_floor_app", factory=True)
        result = smoke_wrk(url, "json", "smoke-floor")
        bench.stop(proc)  # the publisher sends what waits before it stops
        assert result.requests > 0
        assert result.errors == 0
        with bench.engine() as engine:
            stored = count_submissions(engine)
            total, _ = delivery_counts(engine)
        assert result.requests <= stored <= result.requests + 2
        assert total == 2 * stored  # the auto-reply and the admissions notification
        queued = redis.Redis.from_url(bench.redis.url)
        try:
            queues = ("urgent", "admissions", "autoreply", "backlog")
            messages = sum(int(queued.llen(name)) for name in queues)
        finally:
            queued.close()
        assert messages == stored  # one wake-up per submission
        report = table(rows({"ingest": Figures({"floor": result, "baseline": [result]})}))
        assert "the floor of our design" in report
