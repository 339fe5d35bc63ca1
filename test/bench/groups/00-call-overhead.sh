# The fixed cost of calling into the extension (the library/SQL version
# check and the fmgr call), against a built-in function of the same shape.
bench_title "call overhead: idempotency.version() vs pg_catalog.version()"
bench_variant ours 1 <<'PGB'
SELECT idempotency.version();
PGB
bench_variant builtin 1 <<'PGB'
SELECT pg_catalog.version();
PGB
bench_ratio ours builtin 0.90
bench_run
