"""Deterministic sample-feed generator (DOMAIN.md §3 feeds, §6 `midoffice generate`).

One module per feed family (reference, market, front_office, back_office), the --faults
injections (faults), file rendering and the manifest (files), and the simulated firm that ties
them together (world).
"""

from midoffice.sample.world import generate

__all__ = ["generate"]
