"""Part 2's reference data (DOMAIN §7): optional columns and control parameters.

Optional columns: a sender that does not send the new columns keeps loading (they are null),
one that sends them is held to their rules; a missing required column still fails the file.
Control parameters: what core.param answers is checked against the precedence written out here
in plain Python over the defaults file and the delivered rows. Real files, real ingest and GX,
real DuckDB; no Airflow.
"""

from __future__ import annotations

import csv
import io
import json
import hashlib
import shutil
from datetime import date
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from conftest import generate_landing

DAY = "2026-03-02"
OPTIONAL = ["coupon_rate", "issue_date", "maturity_date", "coupon_frequency", "adv_quantity"]


@pytest.fixture(scope="module")
def landing(tmp_path_factory) -> Path:
    return generate_landing(tmp_path_factory.mktemp("part2ref") / "landing", DAY, 1, 200, seed=5)


def _deliver_instruments(landing: Path, root: Path, edit) -> tuple:
    """A copy of the landing whose instruments.csv is rewritten by `edit(rows, header)`."""
    from midoffice.config import settings_from

    copy = root / "landing"
    shutil.copytree(landing, copy)
    path = copy / DAY / "instruments.csv"
    reader = csv.DictReader(io.StringIO(path.read_text()))
    header, rows = edit(list(reader), list(reader.fieldnames))
    out = io.StringIO()
    writer = csv.DictWriter(out, header, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    path.write_text(out.getvalue())
    manifest = json.loads((copy / DAY / "_manifest.json").read_text())
    manifest["feeds"]["instruments"].update(rows=len(rows), sha256=hashlib.sha256(path.read_bytes()).hexdigest())
    (copy / DAY / "_manifest.json").write_text(json.dumps(manifest))
    return settings_from(copy, root / "home"), rows


def _ingest_and_gate(settings) -> tuple[dict, dict]:
    from midoffice.ingest import ingest_feed
    from midoffice.stages import validate_and_gate

    ingested = ingest_feed(settings, DAY, "instruments", "part2-test")
    return ingested, validate_and_gate(settings, DAY, "instruments", "part2-test")


def test_instruments_without_the_optional_columns_load_with_nulls_and_pass_the_gate(landing, tmp_path):
    settings, rows = _deliver_instruments(
        landing, tmp_path, lambda rows, header: ([h for h in header if h not in OPTIONAL], rows))
    ingested, gate = _ingest_and_gate(settings)
    assert ingested["status"] == "LOADED" and ingested["quarantined_rows"] == 0, ingested
    assert "optional columns not sent" in ingested["schema_note"] and "adv_quantity" in ingested["schema_note"]
    staged = pq.read_table(settings.staged_partition("instruments", DAY)).to_pylist()
    assert len(staged) == len(rows)
    assert all(r[c] is None for r in staged for c in OPTIONAL)
    assert gate["gate"] == "PASS", gate


def test_a_sent_optional_column_is_held_to_its_rules(landing, tmp_path):
    def break_bonds(rows, header):
        bonds = [r for r in rows if r["asset_class"] == "BOND"]
        bonds[0]["coupon_frequency"] = "3"          # not 1, 2 or 4
        bonds[1]["maturity_date"] = bonds[1]["issue_date"]  # matures when issued
        equity = next(r for r in rows if r["asset_class"] == "EQUITY")
        equity["coupon_rate"] = "0.05"              # bond terms on an equity
        return header, rows

    settings, rows = _deliver_instruments(landing, tmp_path, break_bonds)
    ingested, _ = _ingest_and_gate(settings)
    assert ingested["status"] == "LOADED"
    rules = dict(ingested["rules"])
    assert rules.get("coupon_frequency_known") == 1, rules
    assert rules.get("bond_matures_after_issue") == 1, rules
    assert rules.get("bond_terms_complete") == 1, rules
    assert ingested["quarantined_rows"] == 3


def test_a_missing_required_column_still_fails_the_file(landing, tmp_path):
    settings, _ = _deliver_instruments(
        landing, tmp_path, lambda rows, header: ([h for h in header if h != "currency"], rows))
    ingested, _ = _ingest_and_gate(settings)
    assert ingested["status"] != "LOADED"
    assert "missing ['currency']" in ingested["error"] and "instruments.csv" in ingested["error"]


# --- control parameters --------------------------------------------------------------------

def test_the_contract_lists_every_control_parameter():
    from midoffice.contracts import control_parameters, get_feed

    assert set(get_feed("control_parameters").column("parameter").values) == set(control_parameters())


def _expected(defaults: dict, delivered: list[tuple], parameter: str, scope: str):
    """DOMAIN §7.2 as contracts/control_parameters.yaml states it: the delivered row for the
    scope, else the delivered ALL row, else the default for the scope, else the default for ALL."""
    feed = {(p, s): v for p, s, v in delivered}
    own = defaults.get(parameter, {})
    for candidate in (feed.get((parameter, scope)), feed.get((parameter, "ALL")), own.get(scope), own.get("ALL")):
        if candidate is not None:
            return candidate
    return None


def test_core_param_resolves_delivered_rows_over_defaults(tmp_path):
    from midoffice.contracts import control_parameters, read_yaml
    from midoffice.config import CONTROL_PARAMETERS_FILE
    from midoffice.warehouse import create_schema, refresh_control_parameters

    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    create_schema(con)
    delivered = [("IPV_TOLERANCE_PCT", "BOND", 0.004), ("STALE_PRICE_DAYS", "ALL", 3.0),
                 ("SLA_BUSINESS_DAYS", "ALL", 4.0), ("SLA_BUSINESS_DAYS", "RECON_BREAK", 6.0)]
    older = [("P1_VALUE_USD", "ALL", 1.0)]  # a later delivery replaces the whole file
    for day, rows in (("2026-03-02", older), ("2026-03-03", delivered)):
        con.executemany("INSERT INTO core.control_parameters (business_date, parameter, scope_id, value) "
                        "VALUES (?, ?, ?, ?)", [(day, *r) for r in rows])
    con.execute("SET VARIABLE as_of_date = DATE '2026-03-03'")
    refresh_control_parameters(con)
    defaults = {name: raw.get("defaults") or {} for name, raw in read_yaml(CONTROL_PARAMETERS_FILE).items()}
    scopes = ["ALL", "BOND", "EQUITY", "FX", "RECON_BREAK", "PNL_BREAK", "SETTLEMENT_FAIL", "OTHER"]
    checked = 0
    for name, parameter in control_parameters().items():
        for scope in scopes:
            macro = "core.param_text" if parameter.is_text else "core.param"
            got = con.execute(f"SELECT {macro}(?, ?)", [name, scope]).fetchone()[0]
            want = _expected(defaults, delivered, name, scope)
            assert got == (None if want is None else (str(want) if parameter.is_text else float(want))), (name, scope)
            checked += 1
    assert checked == len(scopes) * len(control_parameters())
    # spot checks of what the precedence means
    assert con.execute("SELECT core.param('IPV_TOLERANCE_PCT', 'EQUITY')").fetchone()[0] == 0.005
    assert con.execute("SELECT core.param('SLA_BUSINESS_DAYS', 'PNL_BREAK')").fetchone()[0] == 4.0
    assert con.execute("SELECT core.param('P1_VALUE_USD', 'ALL')").fetchone()[0] == 5_000_000
    assert con.execute("SELECT core.param_text('SVAR_WINDOW_START', 'ALL')").fetchone()[0] is None


def test_the_sample_delivers_the_documented_defaults(landing):
    from midoffice.contracts import control_parameters

    rows = list(csv.DictReader((landing / DAY / "control_parameters.csv").open()))
    want = {(p, s): (v, t) for cp in control_parameters().values() for p, s, v, t in cp.default_rows()}
    got = {(r["parameter"], r["scope_id"]): (float(r["value"]) if r["value"] else None, r["text_value"] or None)
           for r in rows}
    # and the stressed VaR window, which has no default (DOMAIN §11.3: the sample's crisis)
    svar = got.pop(("SVAR_WINDOW_START", "ALL"))
    assert svar[0] is None and date.fromisoformat(svar[1]) < date.fromisoformat(DAY)
    assert got == want
