"""Exception reports: a dead letter told in plain words to every configured channel.

On-call get a Sentry issue per cause (fingerprinted by stage + error kind + normalised message);
ops get an e-mail and/or a Slack-compatible webhook; the salesperson gets a note and a sync
status on the Zoho record. Each channel is tried independently and its delivery attempts are
kept as data (the `alert_deliveries` table, beside the letter), so a retry re-sends only
what failed.
"""

from __future__ import annotations

import re
import smtplib
import ssl
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

import httpx
import structlog

from schemas.errors import SyncError
from schemas.wire import dumps, loads
from workers import catalog
from workers.app import app
from workers.deadletter import AlertDelivery, DeadLetter, DeadLetterStore, describe
from workers.policies import HOUSEKEEPING
from workers.redact import redact
from workers.redis import get_redis
from workers.settings import Settings, get_settings

log = structlog.get_logger("zxsync.alerts")

STARTUP_CHECK = "zxsync.startup_check"
WHAT_FAILED = catalog.what_failed()  # per task, declared with it in workers/catalog.py
# Xero's and Zoho's own messages -> what to do; the first match wins.
ADVICE = [
    (
        r"Account code '([^']*)' is not a valid code",
        "Xero has no usable account code {0}: set sales_account_code for connection {conn} to one "
        "of the organisation's revenue accounts, then replay.",
    ),
    (
        r"TaxType code (\S+) does not exist|TaxType '([^']*)'",
        "Map the Zoho tax to one of the Xero organisation's TaxTypes in connection {conn}'s "
        "tax_types, then replay.",
    ),
    (r"archived", "Un-archive the contact in Xero (Contacts > Archived > Restore), then replay."),
    (
        r"Organisation is not subscribed to currency (\w+)",
        "Enable currency {0} in Xero (Settings > Currencies), then replay.",
    ),
    (
        r"Invoice # must be unique",
        "Another Xero invoice already has this number: check for a manual duplicate, then replay.",
    ),
    (
        r"cannot be edited|not of valid status for modification",
        "Xero no longer allows changes to this document (paid, credited or voided): make the "
        "change in Xero by hand, or raise a credit note.",
    ),
    (
        r"INVALID_DATA|MANDATORY_NOT_FOUND",
        "Zoho refused the field named above: check the custom fields in README 'Zoho setup'.",
    ),
]
SYNC_ERROR_MAX = 2000
REPORT_BACKOFF_MAX_SECONDS = 300.0


@dataclass(frozen=True)
class ExceptionReport:
    """What failed, for which document, why, what to do and how to replay: plain words."""

    title: str
    why: str
    what_to_do: str
    replay: str
    letter: DeadLetter

    def text(self) -> str:
        return (
            f"{self.title}\n\nWhy: {self.why}\n\nWhat to do: {self.what_to_do}\n\n"
            f"Once fixed: {self.replay}"
        )


def build_report(letter: DeadLetter) -> ExceptionReport:
    """Pure: turn a dead letter into the words people read."""
    what = WHAT_FAILED.get(letter.stage, f"Stage {letter.stage} failed")
    if letter.error_kind == "total_differs":  # the invoice exists: say so
        what = "The Xero invoice's total differs from Zoho's"
    document = f"Zoho {letter.module} {letter.record_id}" if letter.record_id else "a relay's job"
    title = f"{what} for {document} (connection {letter.connection or 'unknown'})"
    why = letter.error + (f" [field: {letter.field}]" if letter.field else "")
    return ExceptionReport(
        title=title,
        why=why,
        what_to_do=advice_for(letter),
        replay=f"zxsync dlq replay {letter.id}",
        letter=letter,
    )


def advice_for(letter: DeadLetter) -> str:
    for pattern, advice in ADVICE:
        match = re.search(pattern, letter.error)
        if match:
            groups = [g for g in match.groups() if g] or [""]
            return advice.format(*groups, conn=letter.connection)
    if letter.hint:
        return letter.hint
    if letter.error_kind in {"transient", "rate_limited", "server_error", "transport", "timeout"}:
        return (
            f"Xero/Zoho kept failing after {letter.attempts} attempts: check their status "
            "pages and this worker's network, then replay."
        )
    return "Read the error above; fix the data in Zoho or the connection settings, then replay."


def fingerprint(letter: DeadLetter) -> list[str]:
    """One Sentry issue per cause: ids, numbers and quoted values do not split issues."""
    normalised = re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", letter.error)
    normalised = re.sub(r"\d[\d.,-]*", "N", normalised)
    return [letter.stage, letter.error_kind, normalised]


def report_to_sentry(report: ExceptionReport) -> None:
    # imported only where Sentry is configured: sentry_sdk and urllib3 cost every worker
    # process 3.1 MiB otherwise (issue #19)
    import sentry_sdk

    letter = report.letter
    with sentry_sdk.new_scope() as scope:
        scope.fingerprint = fingerprint(letter)
        for key, value in (
            ("connection", letter.connection),
            ("module", letter.module),
            ("record_id", letter.record_id),
            ("stage", letter.stage),
            ("error_kind", letter.error_kind),
        ):
            scope.set_tag(key, value)
        scope.set_context(
            "dead_letter",
            {
                "id": letter.id,
                "field": letter.field,
                "attempts": letter.attempts,
                "replay": report.replay,
            },
        )
        sentry_sdk.capture_message(report.text(), level="error")


def post_webhook(url: str, report: ExceptionReport) -> None:
    """Slack-compatible JSON: `text` for any receiver, `blocks` for Slack."""
    body = {
        "text": report.text(),
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": report.title[:150]}},
            {"type": "section", "text": {"type": "mrkdwn", "text": f"*Why:* {report.why}"}},
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": f"*What to do:* {report.what_to_do}"},
            },
            {"type": "context", "elements": [{"type": "mrkdwn", "text": f"`{report.replay}`"}]},
        ],
    }
    httpx.post(url, json=body, timeout=10).raise_for_status()


def smtp_tls_context(settings: Settings) -> ssl.SSLContext:
    """STARTTLS that checks the server's certificate and name against the system's CAs
    (SSL_CERT_FILE adds a private CA): smtplib's default context checks neither, so anyone on
    the path could read the SMTP password. ZXS_SMTP_VERIFY=false turns it off for a lab."""
    context = ssl.create_default_context()
    if not settings.zxs_smtp_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def send_email(settings: Settings, subject: str, text: str) -> None:
    message = EmailMessage()
    message["Subject"] = subject[:200]
    message["From"] = settings.zxs_smtp_from
    message["To"] = settings.zxs_alert_email_to
    message.set_content(text)
    with smtplib.SMTP(settings.zxs_smtp_host, settings.zxs_smtp_port, timeout=10) as smtp:
        if settings.zxs_smtp_starttls:
            smtp.starttls(context=smtp_tls_context(settings))
        if settings.zxs_smtp_user:
            smtp.login(settings.zxs_smtp_user, settings.zxs_smtp_password.get_secret_value())
        smtp.send_message(message)


def note_on_zoho(report: ExceptionReport) -> None:
    """Tell the salesperson on the record itself: a note plus Xero_Sync_Status = Failed."""
    from workers.context import build_context

    letter = report.letter
    zoho = build_context(letter.connection).zoho
    zoho.add_note(letter.module, letter.record_id, "Xero sync failed", report.text())
    zoho.update_records(
        letter.module,
        [
            {
                "id": letter.record_id,
                "Xero_Sync_Status": "Failed",
                "Xero_Sync_Error": redact(f"{report.why} | {report.what_to_do}")[:SYNC_ERROR_MAX],
            }
        ],
    )


def channels(settings: Settings, letter: DeadLetter) -> list[str]:
    """The channels configured for this letter (Zoho only when there is a record to note)."""
    names = []
    if settings.sentry_dsn.get_secret_value():
        names.append("sentry")
    if settings.zxs_alert_webhook_url.get_secret_value():
        names.append("webhook")
    if settings.zxs_smtp_host and settings.zxs_alert_email_to:
        names.append("email")
    if letter.record_id and letter.connection and letter.stage != "zxsync.ingest":
        names.append("zoho")
    return names


def deliver(report: ExceptionReport, channel: str, settings: Settings) -> None:
    if channel == "sentry":
        report_to_sentry(report)
    elif channel == "webhook":
        post_webhook(settings.zxs_alert_webhook_url.get_secret_value(), report)
    elif channel == "email":
        send_email(settings, f"[zxsync] {report.title}", report.text())
    elif channel == "zoho":
        note_on_zoho(report)


def report_connection_problem(
    settings: Settings, connection: str, exc: BaseException, what_to_do: str
) -> list[str]:
    """An exception report for a connection the start-up check could not check (no document,
    nothing to replay): Sentry, webhook and e-mail, each on its own; the channels reached."""
    kind, message, hint, field = describe(exc)
    letter = DeadLetter(
        stage=STARTUP_CHECK,
        connection=connection,
        module="",
        record_id="",
        error_kind=kind,
        error=redact(message),
        hint=hint,
        field=field,
        attempts=1,
        payload="{}",
        traceback="",
        failed_at=_now(),
    )
    report = ExceptionReport(
        title=f"Start-up check failed (connection {connection}): the worker serves the other "
        "connections",
        why=letter.error,
        what_to_do=what_to_do,
        replay="zxsync check",
        letter=letter,
    )
    reached = []
    for channel in channels(settings, letter):
        try:
            deliver(report, channel, settings)
            reached.append(channel)
        except Exception as failure:  # a report channel down must not stop the start-up
            log.warning(
                "alert.delivery_failed",
                connection=connection,
                channel=channel,
                error=redact(f"{type(failure).__name__}: {failure}"),
            )
    return reached


class Undelivered(SyncError):
    """A report channel failed: the report task is retried for the failed channels alone."""

    kind = "undelivered"
    retryable = True


# retried by the retry policy (workers/policies) with its backoff, up to 5 minutes apart; never
# dead-lettered: a report of a report's failure would fail the same way
@app.task(
    name="zxsync.report_dead_letter",
    bind=True,
    max_retries=5,
    backoff_max=REPORT_BACKOFF_MAX_SECONDS,
    dead_letter=False,
)
def report_dead_letter(task: Any, letter_id: str) -> dict[str, str]:
    """Send the exception report of one dead letter; failed channels are retried, alone."""
    settings = get_settings()
    letters = DeadLetterStore(get_redis())
    letter = letters.get(letter_id)
    if letter is None:
        return {}
    report = build_report(letter)
    done = {channel for channel, d in letters.deliveries(letter_id).items() if d.ok}
    failed: dict[str, str] = {}
    attempt = task.request.retries + 1
    for channel in channels(settings, letter):
        if channel in done:
            continue
        try:
            deliver(report, channel, settings)
        except Exception as exc:  # each channel is independent: record it and go on
            failed[channel] = redact(f"{type(exc).__name__}: {exc}")
        letters.record_delivery(
            letter_id,
            AlertDelivery(
                channel=channel,
                ok=channel not in failed,
                at=_now(),
                attempt=attempt,
                error=failed.get(channel, ""),
            ),
        )
    if failed:
        log.warning("alert.delivery_failed", dead_letter=letter_id, failed=failed)
        raise Undelivered(f"dead letter {letter_id}: not delivered to {', '.join(sorted(failed))}")
    return failed


@app.task(name="zxsync.dlq_digest", **HOUSEKEEPING)
def dlq_digest() -> dict[str, int]:
    """Daily digest of open dead letters per connection, to the webhook and e-mail."""
    settings = get_settings()
    letters = DeadLetterStore(get_redis()).list(count=100_000)
    counts = Counter(letter.connection or "unknown" for letter in letters)
    if not counts:
        return {}
    lines = [f"{conn}: {n} open" for conn, n in sorted(counts.items())]
    text = (
        "Open dead letters (zxsync dlq list to see them, zxsync dlq replay ID once fixed):\n"
        + "\n".join(lines)
    )
    if settings.zxs_alert_webhook_url.get_secret_value():
        httpx.post(
            settings.zxs_alert_webhook_url.get_secret_value(), json={"text": text}, timeout=10
        ).raise_for_status()
    if settings.zxs_smtp_host and settings.zxs_alert_email_to:
        send_email(settings, f"[zxsync] {sum(counts.values())} open dead letters", text)
    return dict(counts)


def init_sentry(settings: Settings) -> None:
    """Sentry for on-call, with Celery's integration and every event redacted."""
    dsn = settings.sentry_dsn.get_secret_value()
    if not dsn:
        return
    import sentry_sdk
    from sentry_sdk.integrations.celery import CeleryIntegration

    sentry_sdk.init(
        dsn=dsn,
        environment=settings.sentry_environment,
        integrations=[CeleryIntegration()],
        before_send=_before_send,
        send_default_pii=False,
    )


def _before_send(event: Any, hint: dict[str, Any]) -> Any:
    """Drop Celery's automatic task-failure events (our dead-letter report is the one issue per
    cause) and redact credentials from what remains."""
    mechanisms = [
        (value.get("mechanism") or {}).get("type")
        for value in (event.get("exception") or {}).get("values", [])
    ]
    if "celery" in mechanisms:
        return None
    return loads(redact(dumps(event)))


def _now() -> str:
    return datetime.now(UTC).isoformat()
