"""Alerts: raised for the right conditions, e-mailed through Airflow's SMTP notifier, sent once.

The conditions are checked against test_kpi's and test_recon's computations from the feed files.
The e-mail goes through the real Airflow SmtpNotifier and SMTP hook to a real SMTP server that
the test runs on loopback (a few dozen lines of socketserver below: enough SMTP for smtplib).
"""

from __future__ import annotations

import json
import shutil
import socketserver
import threading
from email import message_from_bytes, policy
from pathlib import Path

import pytest

from conftest import run_pipeline
from oracles.alerts import expected_alert_keys
from oracles.kpi import Files
from oracles.recon import recon_history
from test_recon import query, reading

pytestmark = pytest.mark.slow

RECIPIENTS = ["middle-office@example.com", "risk@example.com"]


# --- a minimal SMTP server on loopback ---------------------------------------------------------

class _SmtpSession(socketserver.StreamRequestHandler):
    def reply(self, line: str) -> None:
        self.wfile.write((line + "\r\n").encode())

    def handle(self) -> None:
        self.reply("220 localhost test SMTP server")
        sender, recipients = None, []
        while line := self.rfile.readline():
            text = line.decode("utf-8", "replace").strip()
            verb, _, arg = text.partition(" ")
            verb = verb.upper()
            if verb == "EHLO":
                self.reply("250-localhost")
                self.reply("250 8BITMIME")
            elif verb == "HELO":
                self.reply("250 localhost")
            elif verb == "MAIL":
                sender, recipients = arg.partition(":")[2].strip().strip("<>"), []
                self.reply("250 OK")
            elif verb == "RCPT":
                recipients.append(arg.partition(":")[2].strip().strip("<>"))
                self.reply("250 OK")
            elif verb == "DATA":
                self.reply("354 End data with <CR><LF>.<CR><LF>")
                body = []
                while (data := self.rfile.readline()) not in (b".\r\n", b".\n", b""):
                    body.append(data[1:] if data.startswith(b"..") else data)  # undo dot-stuffing
                self.server.received.append({"from": sender, "to": recipients,
                                             "message": message_from_bytes(b"".join(body), policy=policy.default)})
                self.reply("250 OK queued")
            elif verb in ("RSET", "NOOP"):
                self.reply("250 OK")
            elif verb == "QUIT":
                self.reply("221 Bye")
                return
            else:
                self.reply("502 Command not implemented")


class SmtpServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _SmtpSession)
        self.received: list[dict] = []
        self.port = self.server_address[1]
        threading.Thread(target=self.serve_forever, daemon=True).start()


def html_of(message) -> str:
    return next(p.get_content() for p in message.walk() if p.get_content_type() == "text/html")


@pytest.fixture()
def smtp(monkeypatch):
    """An SMTP server on loopback, the Airflow connection midoffice_smtp to it, and recipients."""
    server = SmtpServer()
    monkeypatch.setenv("AIRFLOW_CONN_MIDOFFICE_SMTP", json.dumps({
        "conn_type": "smtp", "host": "127.0.0.1", "port": server.port,
        "extra": {"disable_tls": True, "disable_ssl": True, "from_email": "midoffice@localhost",
                  "retry_limit": 0, "timeout": 10}}))
    monkeypatch.setenv("MIDOFFICE_ALERT_TO", ", ".join(RECIPIENTS))
    yield server
    server.shutdown()
    server.server_close()


# --- what should be raised, from the files -------------------------------------------------------

@pytest.fixture(scope="module")
def sample(sample_run):
    return {"files": Files(sample_run["landing"]), "db": sample_run["home"] / "warehouse" / "marts.duckdb",
            "dates": sample_run["dates"], "recon": recon_history(sample_run["landing"], sample_run["dates"]),
            "kpis": {}, "run": sample_run}


SEVERITY = {"LIMIT_BREACH": "CRITICAL", "FEED_GATE_FAILED": "CRITICAL", "WORKLIST_P1": "CRITICAL",
            "WORKLIST_SUMMARY": "INFO", "FEED_LATE": "WARNING", "TARGET_MISSED": "WARNING",
            "LIMIT_CHANGE": "WARNING", "SIGNOFF_SUPERSEDED": "CRITICAL"}


def test_the_alerts_raised_match_the_files(sample):
    with reading(sample["db"]) as con:  # one connection: opening the lake costs more than a query
        check_alerts_against_the_files(sample, con)


def check_alerts_against_the_files(sample, con) -> None:
    kinds = set()
    worklist = {d: query(con, "SELECT * FROM bo_worklist WHERE as_of_date = ?", [d]) for d in sample["dates"]}
    for d in sample["dates"]:
        got = {r["alert_key"]: r for r in query(con, "SELECT * FROM alerts WHERE business_date = ?", [d])}
        expected, undecided = expected_alert_keys(sample, d, worklist)
        assert set(got) - undecided == expected, (d, sorted(set(got) ^ expected)[:10])
        kinds |= {r["alert_type"] for r in got.values()}
        assert all(r["severity"] == SEVERITY[r["alert_type"]] for r in got.values())
        # the summary and the single P1 alerts account for every open item once
        summarised = sum(int(r["measured_value"]) for r in got.values() if r["alert_type"] == "WORKLIST_SUMMARY")
        alone = sum(1 for r in got.values() if r["alert_type"] == "WORKLIST_P1")
        assert summarised + alone == len(worklist[d]), d
        # a missed target says whether it is new: new unless it was missed on the date before
        i = sample["dates"].index(d)
        for r in (r for r in got.values() if r["alert_type"] == "TARGET_MISSED"):
            before = query(con, "SELECT met FROM kpi_targets WHERE target_id = ? AND business_date = ?",
                           [r["subject_id"], sample["dates"][i - 1]]) if i else []
            assert r["is_new"] == (not before or before[0]["met"] is not False), (d, r["alert_key"])
            assert ("new today" in r["message"]) == r["is_new"]
    assert {"LIMIT_BREACH", "WORKLIST_SUMMARY", "TARGET_MISSED"} <= kinds  # the clean sample fails no gate
    # no alert lists the breaks one by one: far fewer alert rows than open items
    assert all(len(query(con, "SELECT 1 FROM alerts WHERE business_date = ?", [d])) < max(10, len(worklist[d]))
               for d in sample["dates"])


# --- sending ----------------------------------------------------------------------------------------

def home_with_published(sample_run, tmp_path: Path):
    """Settings on a new home holding a copy of the sample's published lake (sample_run is shared)."""
    from conftest import copy_published
    from midoffice.config import settings_from

    settings = settings_from(sample_run["landing"], tmp_path / "home")
    copy_published(sample_run["home"], settings.home)
    return settings


def test_an_alert_email_is_received_once_per_condition_and_date(sample, smtp, tmp_path):
    from midoffice.alerts import ledger_path, notify

    settings = home_with_published(sample["run"], tmp_path)
    day = sample["dates"][-1]
    raised = {r["alert_key"]: r for r in query(settings.home, "SELECT * FROM alerts WHERE business_date = ?", [day])}
    assert raised

    first = notify(settings, day, "test_alerts__1")
    assert (first["raised"], first["sent"]) == (len(raised), len(raised))
    assert len(smtp.received) == 1
    mail = smtp.received[0]
    assert sorted(mail["to"]) == sorted(RECIPIENTS) and mail["from"] == "midoffice@localhost"
    assert day in mail["message"]["Subject"] and f"{len(raised)} new alert" in mail["message"]["Subject"]
    body = html_of(mail["message"])
    for kind in {r["alert_type"] for r in raised.values()}:
        assert f"{kind} (" in body
    breaches = [r for r in raised.values() if r["alert_type"] == "LIMIT_BREACH"]
    assert all(r["subject_id"] in body for r in breaches)

    again = notify(settings, day, "test_alerts__2")                     # a rerun of the date
    assert (again["raised"], again["sent"], again["already_sent"]) == (len(raised), 0, len(raised))
    assert len(smtp.received) == 1
    ledger = json.loads(ledger_path(settings, day).read_text())
    assert set(ledger["sent"]) == set(raised)
    assert {v["run_id"] for v in ledger["sent"].values()} == {"test_alerts__1"}

    earlier = sample["dates"][-2]                                        # another date is another condition
    assert notify(settings, earlier, "test_alerts__3")["sent"] > 0
    assert len(smtp.received) == 2 and earlier in smtp.received[1]["message"]["Subject"]


def test_a_failed_send_records_nothing_and_the_next_run_sends(sample, tmp_path):
    from midoffice.alerts import ledger_path, send_alerts

    settings = home_with_published(sample["run"], tmp_path)
    day = sample["dates"][-1]

    def down(subject: str, html: str) -> None:
        raise ConnectionRefusedError("SMTP server down")

    with pytest.raises(ConnectionRefusedError):
        send_alerts(settings, day, "test_alerts__down", down)
    assert not ledger_path(settings, day).exists()
    sent = []
    summary = send_alerts(settings, day, "test_alerts__up", lambda s, h: sent.append(s))
    assert len(sent) == 1 and summary["sent"] == summary["raised"] > 0


def test_a_failed_gate_raises_an_alert_that_is_mailed_once(sample, smtp, tmp_path, airflow_home):
    """Through the real DAG: the targets file of the last date arrives corrupted (checksum mismatch)."""
    from midoffice.alerts import notify
    from midoffice.config import settings_from
    from midoffice.restate import record_reason

    run = sample["run"]
    landing, home = tmp_path / "landing", tmp_path / "home"
    shutil.copytree(run["landing"], landing)
    shutil.copytree(run["home"], home)
    day = run["dates"][-1]
    with (landing / day / "targets.csv").open("a") as fh:
        fh.write("TGT-999,ACTIVE_CLIENTS_MIN,ALL,1\n")

    def run_and_notify(run_id: str) -> None:
        # the date is published (the sample ran it): running it again is a restatement, with a reason
        record_reason(settings_from(landing, home), [day], "targets redelivered", by="test")
        outcome = run_pipeline(landing, home, [day])[0]
        assert "targets" in outcome.failed_gates
        if not dag_notifies():
            notify(settings_from(landing, home), day, run_id)

    run_and_notify("test_alerts__gate_1")
    alerts = {r["alert_key"]: r for r in query(home, "SELECT * FROM alerts WHERE business_date = ?", [day])}
    gate = alerts["FEED_GATE_FAILED:targets"]
    assert gate["severity"] == "CRITICAL" and "targets" in gate["message"]
    assert len(smtp.received) == 1
    body = html_of(smtp.received[0]["message"])
    assert "FEED_GATE_FAILED" in body and "Feed targets failed its gate" in body

    run_and_notify("test_alerts__gate_2")                                # the same date again
    assert len(smtp.received) == 1


def dag_notifies() -> bool:
    """Whether the warehouse DAG has the notify task (then the run itself sends the alerts)."""
    from midoffice.runner import load_dags

    return "notify" in load_dags()[1].task_ids
