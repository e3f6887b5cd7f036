"""How the pack writes numbers and words: short money, percentages, counts and plurals."""

from __future__ import annotations

import math


def fmt_usd(x) -> str:
    """Money in the pack's short form: 1.23 bn, 45.60 m, 7.89 k, 512."""
    if x is None:
        return "n/a"
    for unit, div in (("bn", 1e9), ("m", 1e6), ("k", 1e3)):
        if abs(x) >= div:
            return f"{x / div:,.2f} {unit}"
    return f"{x:,.0f}"


def fmt_pct(x, digits: int = 1) -> str:
    return "n/a" if x is None else f"{x * 100:.{digits}f} %"


def fmt_count(x) -> str:
    return "n/a" if x is None else f"{int(x):,}"


def fmt_ratio(x) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def fmt_plain(x) -> str:
    return "" if x is None else str(x)


def num_attr(x) -> str:
    """The unrounded value for data-value (repr keeps every digit of a float)."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return ""
    return repr(float(x)) if isinstance(x, float) else str(x)


def plural(n: int, word: str, many: str | None = None) -> str:
    """'1 row', '2 rows', '1,204 rows'; `many` for irregular plurals ('1 day in breach')."""
    return f"{n:,} {word if n == 1 else (many or word + 's')}"
