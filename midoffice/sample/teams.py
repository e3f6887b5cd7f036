"""The `teams` feed (DOMAIN §7.3): the sample firm's worklist routing rules.

Plausible for the sample's books, custodians and currencies: settlement fails by the settlement
currency's region, recon and position breaks by custodian (the ones the Euroclear and Clearstream
desks handle), product-control and risk items to those functions, client controls to onboarding
and advisory, feed failures to data operations, and a catch-all last so that no item is unowned.
No random draw: the rules are the firm's set-up, the same on every date.
"""

from __future__ import annotations

import pyarrow as pa

from midoffice.sample.files import _quote_needed

# team_id, name, item_type, scope_type, scope_id (priority_order: the position in the list, x 10)
RULES: list[tuple[str, str, str, str, str]] = [
    ("SETTLE_EMEA", "Settlements EMEA", "SETTLEMENT_FAIL", "CURRENCY", "EUR"),
    ("SETTLE_EMEA", "Settlements EMEA", "SETTLEMENT_FAIL", "CURRENCY", "GBP"),
    ("SETTLE_EMEA", "Settlements EMEA", "SETTLEMENT_FAIL", "CURRENCY", "CHF"),
    ("SETTLE_APAC", "Settlements APAC", "SETTLEMENT_FAIL", "CURRENCY", "JPY"),
    ("SETTLE_APAC", "Settlements APAC", "SETTLEMENT_FAIL", "CURRENCY", "AUD"),
    ("SETTLE_AMER", "Settlements Americas", "SETTLEMENT_FAIL", "*", "*"),
    ("RECON_ICSD", "Reconciliations ICSD", "RECON_BREAK", "CUSTODIAN", "EUROCLEAR"),
    ("RECON_ICSD", "Reconciliations ICSD", "RECON_BREAK", "CUSTODIAN", "CLEARSTREAM"),
    ("RECON_ICSD", "Reconciliations ICSD", "POSITION_BREAK", "CUSTODIAN", "EUROCLEAR"),
    ("RECON_ICSD", "Reconciliations ICSD", "POSITION_BREAK", "CUSTODIAN", "CLEARSTREAM"),
    ("TRADE_SUPPORT_FICC", "Trade Support FICC", "RECON_BREAK", "ASSET_CLASS", "BOND"),
    ("TRADE_SUPPORT_FICC", "Trade Support FICC", "RECON_BREAK", "ASSET_CLASS", "FX"),
    ("TRADE_SUPPORT_FICC", "Trade Support FICC", "RECON_BREAK", "ASSET_CLASS", "COMMODITY"),
    ("TRADE_SUPPORT_EQ", "Trade Support Equities", "RECON_BREAK", "*", "*"),
    ("ASSET_SERVICING", "Asset Servicing", "POSITION_BREAK", "*", "*"),
    ("PRODUCT_CONTROL", "Product Control", "PNL_BREAK", "*", "*"),
    ("PRODUCT_CONTROL", "Product Control", "IPV_BREAK", "*", "*"),
    ("RISK_CONTROL", "Market Risk Control", "LIMIT_BREACH", "*", "*"),
    ("RISK_CONTROL", "Market Risk Control", "LIMIT_CHANGE_REVIEW", "*", "*"),
    ("CLIENT_ONBOARDING", "Client Onboarding and KYC", "KYC_EXCEPTION", "*", "*"),
    ("ADVISORY_OVERSIGHT", "Advisory Oversight", "SUITABILITY", "*", "*"),
    ("DATA_OPERATIONS", "Data Operations", "FEED_FAILURE", "*", "*"),
    ("MIDDLE_OFFICE", "Middle Office Control", "*", "*", "*"),
]


def teams_columns() -> list[pa.Array]:
    """The rules as the columns of teams.csv (contracts/feeds.yaml)."""
    cols = list(zip(*RULES))
    return [_quote_needed(pa.array(list(c))) for c in cols] + [
        pa.array([str(10 * (i + 1)) for i in range(len(RULES))])]
