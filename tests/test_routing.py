"""Routing: first matching rule, the default, on-call for urgent, webhooks, the person's wishes."""

from __future__ import annotations

from service.config import parse_config
from service.routing import leads, plan_deliveries, queue_for, wake_up
from service.settings import Settings

SETTINGS = Settings(admissions_email=("desk@x.org",), oncall_email=("oncall@x.org",))
CONFIG = parse_config(
    {
        "forms": {"contact": {}},
        "routes": [
            {"name": "es", "when": {"language": "es"}, "to": ["es@x.org"]},
            {
                "name": "crm",
                "when": {"form": "contact", "program": "detox"},
                "to": ["detox@x.org"],
                "webhook": {"url": "https://crm.x.org/h", "secret": "s"},
            },
        ],
    }
)


def kinds(plan):  # type: ignore[no-untyped-def]
    return [(p.kind, p.recipients) for p in plan]


def test_default_route_and_autoreply() -> None:
    plan = plan_deliveries(CONFIG, SETTINGS, "contact", {"email": "p@y.org"}, "en", urgent=False)
    assert kinds(plan) == [("admissions", ("desk@x.org",)), ("autoreply", ("p@y.org",))]


def test_first_match_wins_and_webhook_rides_along() -> None:
    person = {"program": "detox", "email": "p@y.org"}
    spanish = plan_deliveries(CONFIG, SETTINGS, "contact", person, "es", urgent=False)
    assert kinds(spanish)[0] == ("admissions", ("es@x.org",))
    english = plan_deliveries(CONFIG, SETTINGS, "contact", person, "en", urgent=False)
    assert kinds(english) == [
        ("admissions", ("detox@x.org",)),
        ("webhook", ("https://crm.x.org/h",)),
        ("autoreply", ("p@y.org",)),
    ]


def test_urgent_adds_oncall_and_jumps_the_queue() -> None:
    plan = plan_deliveries(CONFIG, SETTINGS, "contact", {"email": "p@y.org"}, "en", urgent=True)
    assert plan[0].recipients == ("desk@x.org", "oncall@x.org")
    assert {p.priority for p in plan} == {0}
    assert queue_for(0) == "urgent" and queue_for(0, backlog=True) == "urgent"
    assert queue_for(1) == "admissions" and queue_for(2) == "autoreply"
    assert queue_for(1, backlog=True) == "backlog"


def test_no_autoreply_when_email_is_not_safe() -> None:
    plan = plan_deliveries(
        CONFIG, SETTINGS, "contact", {"email": "p@y.org", "email_ok": False}, "en", urgent=False
    )
    assert [p.kind for p in plan] == ["admissions"]


def test_a_new_submission_wakes_one_worker_for_its_most_urgent_delivery() -> None:
    rows = [
        {"submission_id": "s", "id": "reply", "priority": 2},
        {"submission_id": "s", "id": "desk", "priority": 1},
        {"submission_id": "s", "id": "crm", "priority": 1},
    ]
    assert wake_up(rows) == [("crm", "admissions")]  # the lowest id among equals
    urgent = [
        {"submission_id": "s", "id": "a", "priority": 2},
        {"submission_id": "s", "id": "b", "priority": 0},
    ]
    assert wake_up(urgent) == [("b", "urgent")]
    assert wake_up([]) == []  # quarantined: nothing to send


def test_leads_are_one_per_submission_most_urgent_first() -> None:
    triples = [
        ("s1", "d3", 2),
        ("s2", "d9", 1),
        ("s1", "d2", 1),
        ("s1", "d1", 1),
        ("s3", "d5", 0),
        ("s2", "d4", 2),
    ]
    assert leads(triples) == [("d5", 0), ("d1", 1), ("d9", 1)]
    assert leads(reversed(triples)) == leads(triples)  # arrival order does not matter
    assert leads([]) == []
