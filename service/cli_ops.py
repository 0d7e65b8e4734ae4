"""The operating commands of `intake`: see what happens (status, failed, quarantine), mend it
(retry, purge, rotate-key) and check the setup (check-config, send-test).

They print a table for people and, with --json, one JSON document for scripts. None of them
shows personal data unless asked (--show-personal): ids, states, counts and codes.
"""

from __future__ import annotations

import json
import sys

import click

from service import ops
from service.cli_support import (
    database,
    duration,
    emit,
    json_option,
    load_app_config,
    load_settings,
    pairs,
    table,
)
from service.config import ConfigError, load_config
from service.settings import Settings, SettingsError

# Seeing what happens ------------------------------------------------------------------------


@click.command()
@json_option
def status(as_json: bool) -> None:
    """Queues, deliveries by state, oldest pending, failed, quarantined, time to admissions."""
    settings = load_settings()
    with database(settings) as engine:
        found = ops.status(engine, settings)

    def human() -> None:
        click.echo(f"Intake status at {found.at:%Y-%m-%d %H:%M:%S} UTC\n")
        broker_down = all(depth is None for depth in found.queues.values())
        click.echo("Queues (messages waiting)" + ("  BROKER NOT ANSWERING" if broker_down else ""))
        table(["queue", "waiting"], list(found.queues.items()))
        click.echo("\nDeliveries")
        table(["state", "count"], list(found.counts.deliveries.items()))
        latency = found.admissions
        click.echo("")
        pairs(
            [
                ("oldest pending", duration(found.counts.oldest_open_seconds)),
                ("failed", f"{found.counts.failed}  (intake failed)"),
                ("quarantined", f"{found.counts.quarantined}  (intake quarantine list)"),
                (
                    "time to admissions (last hour)",
                    f"{latency.count} sent, p50 {duration(latency.p50_seconds)}, "
                    f"p95 {duration(latency.p95_seconds)}",
                ),
            ]
        )

    emit(as_json, found.as_dict(), human)


@click.command()
@click.option("--limit", default=100, show_default=True, type=int, help="Newest first, at most.")
@click.option(
    "--show-personal",
    is_flag=True,
    help="Show recipients and unmasked server replies (they can hold a person's address).",
)
@json_option
def failed(limit: int, show_personal: bool, as_json: bool) -> None:
    """List deliveries that failed for good, with the reason. `intake retry` sends them again."""
    settings = load_settings()
    with database(settings) as engine:
        rows = ops.failed_deliveries(engine, limit=limit, personal=show_personal)

    def human() -> None:
        headers = ["delivery", "submission", "kind", "attempts", "code", "failed at", "reason"]
        if show_personal:
            headers.append("recipients")
        table(
            headers,
            [
                [
                    r.id,
                    r.submission_id,
                    r.kind,
                    r.attempts,
                    r.code,
                    f"{r.failed_at:%Y-%m-%d %H:%M}",
                    r.reason,
                    *([", ".join(r.recipients)] if show_personal else []),
                ]
                for r in rows
            ],
        )

    emit(as_json, [r.as_dict() for r in rows], human)


@click.command()
@click.argument("ids", nargs=-1)
@click.option("--all-failed", is_flag=True, help="Retry every failed delivery.")
@click.option(
    "--all-retrying",
    is_flag=True,
    help="Send every delivery waiting for a retry now, instead of after its backoff.",
)
@json_option
def retry(ids: tuple[str, ...], all_failed: bool, all_retrying: bool, as_json: bool) -> None:
    """Send failed deliveries again: back to pending (attempts kept) and queued for a worker.

    Recipients that refused are tried again; those that already received it are not. Fix the
    cause first (`intake failed` says what it was). After an outage, --all-retrying sends the
    deliveries that are waiting out their backoff now.
    """
    if sum([bool(ids), all_failed, all_retrying]) != 1:
        raise click.UsageError("give delivery ids, --all-failed or --all-retrying (one of them)")
    settings = load_settings()
    with database(settings) as engine:
        if all_retrying:
            result = ops.RetryResult(ops.hurry_retrying(engine), {})
        else:
            result = ops.retry_failed(engine, None if all_failed else ids)
        published = ops.publish(engine, settings, result.jobs)
    data = {
        "retried": [delivery_id for delivery_id, _ in result.jobs],
        "published": published,
        "skipped": result.skipped,
    }

    def human() -> None:
        table(["delivery", "queue"], result.jobs)
        for delivery_id, why in result.skipped.items():
            click.echo(f"  skipped {delivery_id}: {why}")
        if published < len(result.jobs):
            click.echo(
                f"  the broker took {published} of {len(result.jobs)}; the sweeper queues the "
                "rest within INTAKE_SWEEP_INTERVAL_SECONDS"
            )
        done = "brought forward" if all_retrying else "set back to pending"
        click.echo(f"{len(result.jobs)} delivery(ies) {done}")

    emit(as_json, data, human)
    if result.skipped:
        sys.exit(1)


@click.group(invoke_without_command=True)
@click.pass_context
def quarantine(context: click.Context) -> None:
    """Submissions held for review (honeypot, time trap, CAPTCHA): list them, release them.

    With no subcommand: the list.
    """
    if context.invoked_subcommand is None:
        context.invoke(quarantine_list)


@quarantine.command("list")
@click.option("--limit", default=200, show_default=True, type=int, help="Oldest first, at most.")
@json_option
def quarantine_list(limit: int = 200, as_json: bool = False) -> None:
    """Quarantined submissions, oldest first: id, form, reason and age (no personal data)."""
    from service.quarantine import list_quarantined

    settings = load_settings()
    with database(settings) as engine:
        items = list_quarantined(engine, limit=limit)
    data = [
        {
            "id": i.id,
            "form": i.form,
            "reason": i.reason,
            "created_at": i.created_at.isoformat(),
            "age_seconds": i.age_seconds,
            "purged": i.purged,
        }
        for i in items
    ]
    rows = [
        [i.id, i.form, i.reason, duration(i.age_seconds), "purged" if i.purged else ""]
        for i in items
    ]
    emit(as_json, data, lambda: table(["submission", "form", "reason", "age", ""], rows))


@quarantine.command("release")
@click.argument("ids", nargs=-1, required=True)
@json_option
def quarantine_release(ids: tuple[str, ...], as_json: bool) -> None:
    """Release quarantined submissions: their emails are created and queued, as if they had
    passed the checks when they arrived."""
    from service.quarantine import QuarantineError, release

    settings = load_settings()
    config = load_app_config(settings)
    released: dict[str, list[str]] = {}
    refused: dict[str, str] = {}
    with database(settings) as engine:
        for submission_id in dict.fromkeys(ids):
            try:
                done = release(engine, settings, config, submission_id)
            except QuarantineError as exc:
                refused[submission_id] = str(exc)
                continue
            ops.publish(engine, settings, done.jobs)
            released[submission_id] = [delivery_id for delivery_id, _ in done.jobs]

    def human() -> None:
        for submission_id, created in released.items():
            click.echo(f"  released {submission_id}: {len(created)} delivery(ies) queued")
        for submission_id, why in refused.items():
            click.echo(f"  not released {submission_id}: {why}")

    emit(as_json, {"released": released, "refused": refused}, human)
    if refused:
        sys.exit(1)


# Mending and checking -----------------------------------------------------------------------


@click.command()
@json_option
def purge(as_json: bool) -> None:
    """Erase personal fields past retention now (beat also does this hourly).

    INTAKE_RETENTION_DAYS for delivered submissions, INTAKE_QUARANTINE_DAYS for quarantined
    ones; a submission with deliveries still open is kept until they finish.
    """
    from workers.retention import purge as purge_expired

    settings = load_settings()
    with database(settings) as engine:
        count = purge_expired(engine, settings)
    emit(
        as_json,
        {"purged": count},
        lambda: click.echo(f"personal fields erased from {count} submission(s)"),
    )


@click.command("send-test")
@click.option(
    "--to",
    "recipients",
    multiple=True,
    help="Recipient (repeatable). Default: INTAKE_ADMISSIONS_EMAIL.",
)
@json_option
def send_test(recipients: tuple[str, ...], as_json: bool) -> None:
    """Send a test email through the configured SMTP server, to check host, TLS and login."""
    from workers.retry import DeliveryError

    settings = load_settings()
    config = load_app_config(settings)
    to = list(recipients or settings.admissions_email)
    target = f"{settings.smtp_host}:{settings.smtp_port} ({settings.smtp_security})"
    try:
        sent = ops.send_test_email(settings, config, to)
    except DeliveryError as exc:
        if as_json:
            click.echo(json.dumps({"ok": False, "code": exc.code, "reason": exc.reason}))
            sys.exit(1)
        raise click.ClickException(f"SMTP {target} did not take the message: {exc.reason}") from exc
    data = {"ok": not sent.refused and not sent.deferred, **sent.__dict__}

    def human() -> None:
        click.echo(f"sent through {target}, Message-ID {sent.message_id}")
        for address in sent.accepted:
            click.echo(f"  accepted  {address}")
        for address, reply in {**sent.refused, **sent.deferred}.items():
            click.echo(f"  refused   {address}: {reply}")

    emit(as_json, data, human)
    if not data["ok"]:
        sys.exit(1)


@click.command("check-config")
@click.option("--strict", is_flag=True, help="Exit 1 on warnings too.")
@json_option
def check_config(strict: bool, as_json: bool) -> None:
    """Validate the settings and the TOML configuration; print the effective routing.

    Warns about what looks unfinished: the fictional 555-01xx phone number, example.* addresses,
    no encryption key. Exit status 1 on errors (and on warnings with --strict).
    """
    try:
        settings = Settings.from_env()
        config = load_config(settings.config)
    except (SettingsError, ConfigError) as exc:
        problem = str(exc)
        emit(
            as_json, {"errors": [problem], "warnings": []}, lambda: click.echo(f"error: {problem}")
        )
        sys.exit(1)
    report = ops.config_report(settings, config)

    def human() -> None:
        click.echo(f"configuration: {report.source}")
        click.echo(f"forms: {', '.join(report.forms)}\n")
        click.echo("Routing (first matching rule wins)")
        table(
            ["#", "name", "when", "to", "webhook"],
            [[r.order, r.name, r.when, ", ".join(r.to), r.webhook] for r in report.routes],
        )
        for error in report.errors:
            click.echo(f"error: {error}")
        for warning in report.warnings:
            click.echo(f"warning: {warning}")
        if not report.errors:
            click.echo("\nconfiguration is valid" + (" (with warnings)" if report.warnings else ""))

    emit(as_json, report.as_dict(), human)
    if report.errors or (strict and report.warnings):
        sys.exit(1)


@click.command("rotate-key")
@click.option("--generate", is_flag=True, help="Only print a new key, and how to roll it out.")
@json_option
def rotate_key(generate: bool, as_json: bool) -> None:
    """Re-seal every stored submission with the newest INTAKE_ENCRYPTION_KEY (the first listed).

    Roll-out: put a new key first in INTAKE_ENCRYPTION_KEY (old keys after it, comma-separated),
    restart web and workers, run this, then remove the old keys.
    """
    from service.crypto import new_key

    if generate:
        key = new_key()
        emit(
            as_json,
            {"key": key},
            lambda: click.echo(
                f"{key}\n\nPut it first: INTAKE_ENCRYPTION_KEY={key},<current keys>\n"
                "restart web and workers, run `intake rotate-key`, then drop the old keys."
            ),
        )
        return
    settings = load_settings()
    with database(settings) as engine:
        try:
            result = ops.rotate_keys(engine, settings)
        except ops.OpsError as exc:
            raise click.ClickException(str(exc)) from exc
    data = {
        "resealed": result.resealed,
        "unreadable": result.unreadable,
        "changed_meanwhile": result.changed_meanwhile,
    }

    def human() -> None:
        click.echo(f"{result.resealed} submission(s) re-sealed with the newest key")
        if result.changed_meanwhile:
            click.echo(f"{result.changed_meanwhile} changed meanwhile; run again to cover them")
        if result.unreadable:
            click.echo(
                f"{len(result.unreadable)} no configured key opens (keep the old key until "
                f"they are purged): {', '.join(result.unreadable[:20])}"
            )

    emit(as_json, data, human)
    if result.unreadable or result.changed_meanwhile:
        sys.exit(1)


def register(group: click.Group) -> None:
    """Add the operating commands to the `intake` group (cli.py calls this)."""
    for command in (status, failed, retry, quarantine, purge, send_test, check_config, rotate_key):
        group.add_command(command)
