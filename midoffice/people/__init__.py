"""What people did: append-only records kept outside the rebuildable warehouse (midoffice.people.store)."""
