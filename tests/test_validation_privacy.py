"""What a sender wrote never reaches the validation results' HTML unescaped, and personal data never
reaches them at all (issue 22, attack 3). Real GX engine, real Data Docs, real DuckDB regexes."""

from __future__ import annotations

import datetime as dt
import re

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

DAY = "2026-01-05"
SCRIPT = "<script>alert(5)</script>"
HOSTILE_EMAILS = ["a\u00a0b@example.com", "a\u2003b@example.com", "a\x85b@example.com", "a\tb@example.com",
                  "a b@example.com", "ab@exa\u00a0mple.com", "a@b@example.com", "ab@examplecom",
                  "ab@example.com", "o'brien+x@example.co.uk", "Ünïcode@example.com"]


def test_ingest_and_gx_judge_every_email_alike():
    """DuckDB (RE2: \\s is ASCII) and GX (Python re: \\s is Unicode) disagreed on U+00A0, U+2003,
    \\x85: a record passed ingest and then failed GX, which printed it into the Data Docs."""
    from midoffice.contracts import get_feed
    from midoffice.suites import load_suite

    pattern = next(c.pattern for c in get_feed("clients").columns if c.name == "email")
    gx_regex = next(e["kwargs"]["regex"] for e in load_suite("clients")["expectations"]
                    if e["kwargs"].get("column") == "email" and "regex" in e["kwargs"])
    con = duckdb.connect()
    for email in HOSTILE_EMAILS:
        in_duckdb = con.execute("SELECT regexp_full_match(?, ?)", [email, pattern]).fetchone()[0]
        in_python = re.search(gx_regex, email) is not None  # as GX's pandas engine applies it
        assert in_duckdb == in_python, repr(email)
    assert [e for e in HOSTILE_EMAILS if re.search(gx_regex, e)] == ["ab@example.com", "o'brien+x@example.co.uk"]


@pytest.mark.parametrize("pattern", [r"[^@\s]+@x", r"\w+", r"\d{3}", r"\bX", r"a\S"])
def test_a_contract_pattern_that_the_two_engines_read_differently_is_refused(tmp_path, pattern):
    import yaml

    from midoffice.contracts import ContractError, load_contracts

    contract = {"books": {"file": "books.csv", "format": "csv", "kind": "reference", "deadline": "06:00",
                          "key": ["book"], "description": "x",
                          "columns": [{"name": "book", "type": "VARCHAR", "pattern": pattern, "description": "x"}]}}
    path = tmp_path / "feeds.yaml"
    path.write_text(yaml.safe_dump(contract))
    with pytest.raises(ContractError, match="read differently"):
        load_contracts(path)


def _staged_clients(settings) -> None:
    """A staged client partition as ingest would have left it, with one e-mail that only the old,
    engine-dependent pattern let through and a client type that is a script."""
    path = settings.staged_partition("clients", DAY)
    path.parent.mkdir(parents=True, exist_ok=True)
    two = lambda v: [v, v]  # noqa: E731
    pq.write_table(pa.table({
        "client_id": ["C1", "C2"], "legal_name": ["Ann Example", "Bob Example"],
        "email": ["ann\u00a0example@example.com", "bob@example.com"],
        "client_type": ["INDIVIDUAL", SCRIPT], "segment": two("RETAIL"), "country": two("GB"),
        "birth_or_incorporation_date": two(dt.date(1980, 1, 1)), "onboarding_date": two(dt.date(2020, 1, 1)),
        "kyc_status": two("APPROVED"), "risk_profile": two("BALANCED"), "relationship_manager_id": two("RM1"),
        "status": two("ACTIVE"), "updated_at": two(dt.datetime(2026, 1, 1)),
    }), path)


def test_personal_data_and_a_senders_script_never_reach_the_validation_results_unescaped(tmp_path):
    from midoffice.config import settings_from
    from midoffice.validate import build_data_docs, validate_feed

    home = tmp_path / "home"
    settings = settings_from(home, home)
    _staged_clients(settings)
    result = validate_feed(settings, DAY, "clients", "privacy-test")
    failed = {f["rule"]: f for f in result["failed"]}
    assert not result["success"] and {"email:pattern", "client_type:values"} <= set(failed)
    assert failed["email:pattern"]["unexpected_count"] == 1            # counted...
    assert failed["email:pattern"]["partial_unexpected_list"] == []    # ...never listed
    index = build_data_docs(settings, DAY)

    staged = settings.staged_partition("clients", DAY)
    written = [p for p in home.rglob("*") if p.is_file() and p != staged]
    assert any(p.suffix == ".html" and "validations" in p.parts for p in written)
    for path in written:
        text = path.read_bytes().decode("utf-8", errors="replace")
        assert "ann\u00a0example" not in text and "ann\\u00a0example" not in text, path
        if path.suffix == ".html":
            assert SCRIPT not in text, path
    pages = [p.read_text() for p in index.parent.rglob("*.html") if "clients" in p.parts]
    assert any("&lt;script&gt;alert(5)&lt;/script&gt;" in page for page in pages)  # shown, as text


def test_the_validation_results_work_with_no_network(tmp_path):
    """Issue 21: the Data Docs loaded Bootstrap and jQuery from CDNs; offline the pages were
    unstyled and the index's list empty. Every script, style and image is now local."""
    import re
    import shutil
    import subprocess

    from midoffice.config import settings_from
    from midoffice.validate import build_data_docs, validate_feed

    home = tmp_path / "home"
    settings = settings_from(home, home)
    _staged_clients(settings)
    validate_feed(settings, DAY, "clients", "offline-test")
    index = build_data_docs(settings, DAY)
    pages = sorted(index.parent.rglob("*.html"))
    assert len(pages) > 10
    for page in pages:
        text = page.read_text()
        assert not re.search(r'<(script|link|img)\b[^>]*(src|href)="https?://', text, re.I), page
        assert not re.search(r"url\(\s*'?https?://", text), page
        for ref in re.findall(r'<(?:script|link)\b[^>]*(?:src|href)="([^"]*static/offline/[^"]+)"', text):
            assert (page.parent / ref).is_file(), (page, ref)  # (GX's own favicon link is off by a folder)
    for css in index.parent.rglob("*.css"):
        assert not re.search(r"url\(\s*'?https?://", css.read_text()), css
    chromium = shutil.which("chromium")
    if chromium:  # the index's list is drawn by its scripts: the row of the validation must be there
        dom = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom",
                              "--virtual-time-budget=3000", index.as_uri()], capture_output=True, text=True,
                             timeout=120).stdout
        assert "ge-index-page-table-validation-links-item" in dom and "offline-test" in dom
