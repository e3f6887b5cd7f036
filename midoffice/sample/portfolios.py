"""Client portfolios that look like a wealth manager's book (issue 25, client controls).

A client's holdings follow its risk profile, as an adviser builds them: a CONSERVATIVE client
holds most of its wealth in funds and spreads the rest over several names; an AGGRESSIVE one
holds a few names and little in funds. A few clients (LEGACY_SHARE) keep one large legacy
position (inherited shares, an employer's stock): they are the exceptions the suitability
control exists to find, so that a breach of the risk profile is an exception (a few per cent of
clients), not the rule.

Draws come from the portfolio stream S_PORTFOLIOS (keyed by the date and the clients), never
from the caller's stream, so that the client file, trades and settlements keep their draws.
"""

from __future__ import annotations

import numpy as np

from midoffice.sample.common import S_PORTFOLIOS

# per risk profile (CONSERVATIVE, BALANCED, GROWTH, AGGRESSIVE): direct names (least, Poisson
# mean of the rest), funds held, and the share of wealth in funds
DIRECT_NAMES = np.array([[7, 4], [6, 4], [5, 3], [3, 3]])
FUNDS_HELD = np.array([2, 2, 1, 1])
FUND_SHARE = np.array([0.6, 0.4, 0.2, 0.1])
LEGACY_SHARE = 0.04  # clients with one legacy position of 50 to 80 % of their portfolio
FUND, FX = 2, 4  # asset class indexes (midoffice.sample.common.ASSET_CLASSES)


def portfolio_rng(seed: int, g: int, clients: np.ndarray) -> np.random.Generator:
    first = int(clients[0]) if len(clients) else -1
    return np.random.default_rng([int(seed), int(g) + 1, S_PORTFOLIOS, first + 1, len(clients)])


def client_holdings(rng: np.random.Generator, clients: np.ndarray, segment: np.ndarray, risk: np.ndarray,
                    asset_class: np.ndarray, popularity: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(client, instrument, share of the client's wealth) of each holding, shares summing to 1 per
    client; `segment` and `risk` are indexed by client, `asset_class` and `popularity` by instrument."""
    if len(clients) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    prof = risk[clients].astype(np.int64)
    institutional = segment[clients] == 2
    n_direct = DIRECT_NAMES[prof, 0] + rng.poisson(DIRECT_NAMES[prof, 1]) * np.where(institutional, 2, 1)
    funds_ok = asset_class == FUND
    n_funds = FUNDS_HELD[prof] if funds_ok.any() else np.zeros(len(clients), np.int64)
    fund_share = np.where(n_funds > 0, FUND_SHARE[prof], 0.0)
    pop = 1.0 / (popularity + 8.0)
    w_direct = np.where((asset_class == FX) | funds_ok, 0.0, pop)
    w_fund = np.where(funds_ok, pop, 0.0)
    hc_d = np.repeat(clients, n_direct)
    hi_d = rng.choice(len(asset_class), len(hc_d), p=w_direct / w_direct.sum())
    hc_f = np.repeat(clients, n_funds)
    hi_f = rng.choice(len(asset_class), len(hc_f), p=w_fund / w_fund.sum()) if len(hc_f) else np.zeros(0, np.int64)
    # weights within each sleeve: gamma(4) draws normalised (a Dirichlet), so no name dominates
    raw_d, raw_f = rng.gamma(4.0, 1.0, len(hc_d)), rng.gamma(4.0, 1.0, len(hc_f))
    pos = {c: k for k, c in enumerate(clients)}
    idx_d = np.array([pos[c] for c in hc_d], np.int64)
    idx_f = np.array([pos[c] for c in hc_f], np.int64)
    tot_d = np.bincount(idx_d, weights=raw_d, minlength=len(clients))
    tot_f = np.bincount(idx_f, weights=raw_f, minlength=len(clients))
    share_d = raw_d / tot_d[idx_d] * (1.0 - fund_share[idx_d])
    share_f = raw_f / np.where(tot_f[idx_f] > 0, tot_f[idx_f], 1.0) * fund_share[idx_f]
    # the exceptions: one direct name of a few clients is a legacy position
    legacy = rng.random(len(clients)) < LEGACY_SHARE
    size = rng.uniform(0.5, 0.8, len(clients))
    first_direct = np.r_[0, np.cumsum(n_direct)[:-1]]
    share_d = share_d * np.where(legacy[idx_d], 1.0 - size[idx_d], 1.0)
    share_f = share_f * np.where(legacy[idx_f], 1.0 - size[idx_f], 1.0)
    lead = first_direct[legacy]
    share_d[lead] += size[legacy]
    hc, hi, share = np.concatenate([hc_d, hc_f]), np.concatenate([hi_d, hi_f]), np.concatenate([share_d, share_f])
    # the same instrument drawn twice for a client is one holding
    key = hc.astype(np.int64) * len(asset_class) + hi
    uniq, inv = np.unique(key, return_inverse=True)
    summed = np.bincount(inv, weights=share)
    return uniq // len(asset_class), uniq % len(asset_class), summed
