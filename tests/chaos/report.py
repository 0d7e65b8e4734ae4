"""The chaos report: one row per scenario run, printed at the end of the session and written
to test-artifacts/chaos-report.md (the README keeps a copy of the full run)."""

from __future__ import annotations

import platform
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

REPORT_PATH = Path("test-artifacts") / "chaos-report.md"  # relative to the repository root


@dataclass
class ScenarioResult:
    scenario: str  # the scenario's number and name
    variant: str  # the database and any variant, from the test's parameters
    faults: list[str]
    submissions: int = 0  # answered 2xx
    refused: int = 0  # answered 503 (and verified to have written nothing)
    emails: int = 0  # auto-replies and admissions notifications owed for the 2xx answers
    sent: int = 0
    failed_with_fallback: int = 0  # admissions notifications failed for good, fallback notified
    failed_recorded: int = 0  # auto-replies refused for good, recorded as failed
    attempts: int = 0
    failed_attempts: int = 0
    lost: int = 0
    window_duplicates: int = 0  # the documented after-DATA window: counted, at most one each
    other_duplicates: int = 0  # anything else sent twice (must be 0)
    drain_seconds: float | None = None  # from the fault clearing to nothing open
    bound_seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems


@dataclass
class Report:
    full: bool
    results: list[ScenarioResult] = field(default_factory=list)

    def add(self, result: ScenarioResult) -> None:
        self.results.append(result)

    def markdown(self) -> str:
        mode = "full (`make chaos`)" if self.full else "short (inside `make test`)"
        lines = [
            "# Chaos report",
            "",
            f"Mode: {mode}. Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on "
            f"{platform.system()} {platform.machine()}, Python {platform.python_version()}.",
            "",
            "Oracle, for every scenario: every submission answered 2xx ends with exactly one "
            "auto-reply (when it had an email) and exactly one admissions notification, all "
            "with distinct Message-IDs, or is recorded as failed with the fallback notified; "
            "nothing is left open once the fault clears, within the stated bound. The only "
            "duplicates allowed are in the after-DATA window (the SMTP server has the whole "
            "message but the worker could not record it): at most one per message, same "
            "Message-ID.",
            "",
            "Columns: submissions answered 2xx and 503; emails owed to the 2xx answers (an "
            "admissions notification each, an auto-reply when they gave an email); sent; failed "
            "for good with the fallback notified; lost; duplicates inside the after-DATA window "
            "and outside it; delivery attempts (of which failed); time from the fault clearing "
            "to nothing open, and the bound the scenario allows.",
            "",
            "| # | Scenario | Variant | Faults injected | 2xx | 503 | Owed | Sent | Fallback "
            "| Lost | Dup. window | Dup. other | Attempts (failed) | Drain | Bound | Result |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for index, r in enumerate(sorted(self.results, key=_order), 1):
            drain = "not drained" if r.drain_seconds is None else f"{r.drain_seconds:.1f} s"
            failed = str(r.failed_with_fallback)
            if r.failed_recorded:
                failed += f" (+{r.failed_recorded} auto-reply refused, recorded)"
            lines.append(
                f"| {index} | {r.scenario} | {r.variant} | {'; '.join(r.faults)} "
                f"| {r.submissions} | {r.refused} | {r.emails} | {r.sent} | {failed} "
                f"| {r.lost} | {r.window_duplicates} | {r.other_duplicates} "
                f"| {r.attempts} ({r.failed_attempts}) | {drain} | {r.bound_seconds:.0f} s "
                f"| {'pass' if r.passed else 'FAIL'} |"
            )
        totals = (
            sum(r.submissions for r in self.results),
            sum(r.lost for r in self.results),
            sum(r.window_duplicates for r in self.results),
            sum(r.other_duplicates for r in self.results),
        )
        lines += [
            "",
            f"Totals: {len(self.results)} scenario runs, {totals[0]} submissions answered 2xx, "
            f"{totals[1]} lost, {totals[2]} duplicates in the after-DATA window, "
            f"{totals[3]} other duplicates.",
        ]
        problems = [(r, p) for r in self.results for p in r.problems]
        if problems:
            lines += ["", "## Problems", ""]
            lines += [f"- {r.scenario} [{r.variant}]: {p}" for r, p in problems]
        return "\n".join(lines) + "\n"

    def write(self, root: Path) -> Path:
        path = root / REPORT_PATH
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.markdown())
        return path


def _order(result: ScenarioResult) -> tuple[int, str, str]:
    """The issue's scenario numbers ("1a.", "6c.", "9."), then the variant."""
    number = result.scenario.split(".", 1)[0]
    digits = "".join(c for c in number if c.isdigit())
    return (int(digits) if digits else 99, number, result.variant)
