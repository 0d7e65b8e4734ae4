"""Who hears about a submission: the auto-reply, admissions recipients by rule, webhooks."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from service.config import AppConfig
from service.models import ADMISSIONS, AUTOREPLY, WEBHOOK
from service.settings import Settings

# Delivery priorities (lower is sooner) and the Celery queue each is published to. Workers drain
# queues in this order, so an urgent or fresh inquiry never waits behind a backlog of retries.
URGENT_PRIORITY = 0
ADMISSIONS_PRIORITY = 1
AUTOREPLY_PRIORITY = 2
QUEUES = ("urgent", "admissions", "autoreply", "backlog")


@dataclass(frozen=True)
class PlannedDelivery:
    kind: str
    channel: str  # email | webhook
    recipients: tuple[str, ...]
    route: str
    priority: int


def queue_for(priority: int, *, backlog: bool = False) -> str:
    """The queue a delivery is published on; re-queued work goes behind fresh work unless urgent."""
    if priority <= URGENT_PRIORITY:
        return "urgent"
    if backlog:
        return "backlog"
    return "admissions" if priority == ADMISSIONS_PRIORITY else "autoreply"


def wake_up(deliveries: Sequence[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """What to publish for a new submission: one message, for its lead delivery (`leads`), on
    that delivery's queue. The worker that claims it takes the submission's other due deliveries
    along (workers.delivery.claim), so a message for each of them would only run a task that
    finds nothing to do. If this message is lost, the sweeper publishes the submission again,
    by the same rule."""
    chosen = leads((str(d["submission_id"]), str(d["id"]), int(d["priority"])) for d in deliveries)
    return [(delivery_id, queue_for(priority)) for delivery_id, priority in chosen]


def leads(deliveries: Iterable[tuple[str, str, int]]) -> list[tuple[str, int]]:
    """From (submission id, delivery id, priority) triples, each submission's lead delivery as
    (delivery id, priority), most urgent first: its lowest priority, and the lowest id among
    equals (any of them would do; one rule keeps the web and the sweeper alike)."""
    best: dict[str, tuple[int, str]] = {}
    for submission_id, delivery_id, priority in deliveries:
        candidate = (priority, delivery_id)
        if submission_id not in best or candidate < best[submission_id]:
            best[submission_id] = candidate
    return [(delivery_id, priority) for priority, delivery_id in sorted(best.values())]


def route_facts(form: str, person: dict[str, Any], language: str, urgent: bool) -> dict[str, str]:
    return {
        "form": form,
        "program": str(person.get("program", "")),
        "state": str(person.get("state", "")),
        "for_whom": str(person.get("for_whom", "")),
        "language": language,
        "urgent": "true" if urgent else "false",
    }


def _unique(addresses: tuple[str, ...]) -> tuple[str, ...]:
    seen: dict[str, str] = {}
    for address in addresses:
        seen.setdefault(address.lower(), address)
    return tuple(seen.values())


def plan_deliveries(
    config: AppConfig,
    settings: Settings,
    form: str,
    person: dict[str, Any],
    language: str,
    urgent: bool,
) -> list[PlannedDelivery]:
    """The messages one accepted submission produces, in the order they matter."""
    facts = route_facts(form, person, language, urgent)
    route = next((r for r in config.routes if r.matches(facts)), None)
    recipients = route.to if route and route.to else settings.admissions_email
    route_name = route.name if route else "default"
    if urgent:
        recipients = recipients + settings.oncall_email
    priority = URGENT_PRIORITY if urgent else ADMISSIONS_PRIORITY
    plan = [PlannedDelivery(ADMISSIONS, "email", _unique(recipients), route_name, priority)]
    if route and route.webhook:
        plan.append(PlannedDelivery(WEBHOOK, "webhook", (route.webhook.url,), route.name, priority))
    if person.get("email") and person.get("email_ok", True):
        reply_priority = URGENT_PRIORITY if urgent else AUTOREPLY_PRIORITY
        plan.append(
            PlannedDelivery(AUTOREPLY, "email", (person["email"],), route_name, reply_priority)
        )
    return plan
