"""Alerts: what the `alerts` mart raised for a business date, sent once through an Airflow notifier.

The conditions live in SQL (transforms/alerts.sql: a failed feed gate, a limit in BREACH, a
reconciliation break older than 5 business dates, a missed target), so they are published and
audited with the marts. This module runs after publication: it reads the date's alerts from the
published warehouse and sends the ones not sent yet as one digest e-mail through Airflow's
SmtpNotifier (the Airflow SMTP connection `midoffice_smtp`).

No alert is sent twice for the same condition and date: a sent-ledger per business date,
<home>/lake/control/alerts/<date>.json, records every alert_key sent (with when and by which run).
It lives outside the published warehouse (which is replaced on every publication) and outside
build.duckdb (which has one writer, the build). The ledger is written right after the send
succeeds, under a file lock, so two runs of the same date cannot both send; a failed send records
nothing and the task's retry sends again.
"""

from __future__ import annotations

import fcntl
import html
import os
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from midoffice import control
from midoffice.config import Settings

SMTP_CONN_ID = "midoffice_smtp"
RECIPIENTS_ENV = "MIDOFFICE_ALERT_TO"  # comma-separated addresses
RECIPIENTS_VARIABLE = "midoffice_alert_recipients"  # Airflow Variable, the same format
LISTED_PER_TYPE = 50  # a digest lists this many alerts per type, then says how many more

# send(subject, html_content): delivers one message to the configured channel, raises on failure
Sender = Callable[[str, str], None]

ALERT_COLUMNS = ["business_date", "alert_key", "alert_type", "severity", "subject_id", "message",
                 "measured_value", "threshold", "run_id"]


class AlertConfigError(RuntimeError):
    """The alert channel is half configured (recipients without a usable connection, or the reverse)."""


def ledger_path(settings: Settings, business_date: str) -> Path:
    return settings.control / "alerts" / f"{business_date}.json"


def evaluate_alerts(settings: Settings, business_date: str, run_id: str) -> list[dict]:
    """The alerts raised for the date, as published in the `alerts` mart (severity first).

    `run_id` is the run asking; each alert carries the run that built it (`run_id`).
    """
    from midoffice import lake

    if not lake.exists(settings):
        return []
    con = lake.reader(settings, writable=(settings.tmp,))
    try:
        exists = con.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database() AND schema_name = 'main' "
            "AND table_name = 'alerts'"
        ).fetchone()[0]
        if not exists:
            return []
        rows = con.execute(
            f"SELECT {', '.join(ALERT_COLUMNS)} FROM alerts WHERE business_date = CAST(? AS DATE) "
            "ORDER BY severity = 'CRITICAL' DESC, alert_type, subject_id",
            [business_date],
        ).fetchall()
    finally:
        con.close()
    return [dict(zip(ALERT_COLUMNS, (str(r[0]),) + tuple(r[1:]))) for r in rows]


@contextmanager
def _locked_ledger(settings: Settings, business_date: str) -> Iterator[dict]:
    """The date's sent-ledger, held under an exclusive lock; written back when the block succeeds."""
    path = ledger_path(settings, business_date)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        ledger = control.read_json(path) or {"business_date": business_date, "sent": {}}
        before = dict(ledger["sent"])
        yield ledger
        if ledger["sent"] != before:
            control.write_json_atomic(path, ledger)


def compose_message(business_date: str, alerts: list[dict], earlier: int) -> tuple[str, str]:
    """Subject and HTML body of one digest of new alerts (data escaped; nothing templated)."""
    by_type: dict[str, list[dict]] = defaultdict(list)
    for a in alerts:
        by_type[a["alert_type"]].append(a)
    critical = sum(1 for a in alerts if a["severity"] == "CRITICAL")
    subject = (f"[midoffice] {business_date}: {len(alerts)} new alert{'s' if len(alerts) != 1 else ''}"
               + (f" ({critical} critical)" if critical else ""))
    parts = [f"<h2>midoffice alerts for business date {html.escape(business_date)}</h2>",
             f"<p>{len(alerts)} new alert(s)"
             + (f"; {earlier} raised for this date were already sent" if earlier else "") + ".</p>"]
    for alert_type in sorted(by_type, key=lambda t: (by_type[t][0]["severity"] != "CRITICAL", t)):
        items = by_type[alert_type]
        parts.append(f"<h3>{html.escape(alert_type)} ({html.escape(items[0]['severity'])}): {len(items)}</h3><ul>")
        parts += [f"<li>{html.escape(a['message'])}</li>" for a in items[:LISTED_PER_TYPE]]
        parts.append("</ul>")
        if len(items) > LISTED_PER_TYPE:
            parts.append(f"<p>… and {len(items) - LISTED_PER_TYPE} more: "
                         f"<code>SELECT * FROM alerts WHERE business_date = '{html.escape(business_date)}' "
                         f"AND alert_type = '{html.escape(alert_type)}'</code></p>")
    return subject, "\n".join(parts)


def send_alerts(settings: Settings, business_date: str, run_id: str, send: Sender) -> dict:
    """Send the date's alerts not sent before as one message; record them in the sent-ledger."""
    started_at = control.utc_now()
    alerts = evaluate_alerts(settings, business_date, run_id)
    with _locked_ledger(settings, business_date) as ledger:
        new = [a for a in alerts if a["alert_key"] not in ledger["sent"]]
        if new:
            subject, body = compose_message(business_date, new, earlier=len(alerts) - len(new))
            send(subject, body)  # raises on failure: nothing is recorded, a retry sends again
            sent_at = control.utc_now()
            for a in new:
                ledger["sent"][a["alert_key"]] = {"sent_at": sent_at, "run_id": run_id,
                                                  "alert_type": a["alert_type"], "severity": a["severity"]}
    summary = {"business_date": business_date, "run_id": run_id, "raised": len(alerts),
               "already_sent": len(alerts) - len(new), "sent": len(new),
               "sent_keys": [a["alert_key"] for a in new]}
    control.record_stage(settings, run_id, business_date, "notify", "SUCCESS", started_at,
                         rows_in=len(alerts), rows_out=len(new),
                         message=f"{len(new)} alert(s) sent, {summary['already_sent']} already sent")
    return summary


# --- the channel: Airflow's SMTP notifier ------------------------------------------------------

def alert_recipients() -> list[str]:
    """Recipients from $MIDOFFICE_ALERT_TO, else the Airflow Variable midoffice_alert_recipients."""
    value = os.environ.get(RECIPIENTS_ENV)
    if not value:
        try:
            from airflow.sdk import Variable

            value = Variable.get(RECIPIENTS_VARIABLE, default=None)
        except Exception:  # no Airflow context or metadata DB: the variable is simply not set
            value = None
    return [a.strip() for a in (value or "").replace(";", ",").split(",") if a.strip()]


def smtp_sender(to: list[str], smtp_conn_id: str = SMTP_CONN_ID, from_email: str | None = None) -> Sender:
    """A Sender that mails through Airflow's SmtpNotifier and the SMTP connection `smtp_conn_id`.

    The connection (host, port, login, TLS extras, `from_email`) is Airflow's: an
    AIRFLOW_CONN_MIDOFFICE_SMTP variable, a secrets backend or the metadata DB.
    """
    if not to:
        raise AlertConfigError("no alert recipients")

    def send(subject: str, html_content: str) -> None:
        from airflow.providers.smtp.notifications.smtp import SmtpNotifier

        # notify() directly: subject and body are final, never rendered as Jinja templates
        SmtpNotifier(to=to, from_email=from_email, subject=subject, html_content=html_content,
                     smtp_conn_id=smtp_conn_id).notify({})

    return send


def notify(settings: Settings, business_date: str, run_id: str, smtp_conn_id: str = SMTP_CONN_ID) -> dict:
    """The DAG's notify task: send the date's new alerts by e-mail when recipients are configured.

    Without recipients nothing is sent and nothing is recorded (the alerts stay in the published
    `alerts` table and are sent by the first run that has a channel).
    """
    to = alert_recipients()
    if not to:
        alerts = evaluate_alerts(settings, business_date, run_id)
        return {"business_date": business_date, "run_id": run_id, "raised": len(alerts), "sent": 0,
                "channel": f"none: set {RECIPIENTS_ENV} or the Airflow Variable {RECIPIENTS_VARIABLE}"}
    summary = send_alerts(settings, business_date, run_id, smtp_sender(to, smtp_conn_id))
    summary["channel"] = f"e-mail via Airflow connection {smtp_conn_id} to {len(to)} recipient(s)"
    return summary
