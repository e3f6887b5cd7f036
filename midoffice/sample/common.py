"""What every part of the sample shares: random streams, the day axis sentinel, currencies."""

from __future__ import annotations

import numpy as np

HISTORY_DAYS = 300  # business days of price / fx history in the first delivery
SENT = np.int32(1 << 30)  # "no event" day

# random streams (per date: default_rng([seed, day + 1, stream]))
S_SETUP, S_CLIENTS, S_TRADES, S_SETTLE, S_POS, S_PRICES, S_ACT, S_GL, S_FAULTS, S_DELIV = range(10)
# Part 2's reference terms (bond terms, volumes) draw from their own stream, so that adding them
# left every Part 1 figure of a seed as it was.
S_TERMS = 10
# Client portfolios by risk profile (midoffice/sample/portfolios.py), their own stream too.
S_PORTFOLIOS = 11

CURRENCIES = ["USD", "EUR", "GBP", "JPY", "CHF", "CAD", "AUD"]
ASSET_CLASSES = ["EQUITY", "BOND", "FUND", "COMMODITY", "FX"]


def _rng(seed: int, day: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), int(day) + 1, int(stream)])
