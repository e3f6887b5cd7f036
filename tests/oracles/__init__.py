"""Independent oracles: the marts recomputed in plain Python from the delivered landing files.

One module per area; the tests compare the published marts with these. They read the files only
(csv, json, pyarrow for the Parquet feeds), never the project's SQL or core tables, so
that a fault in the SQL cannot hide in the expectation as well.
"""
