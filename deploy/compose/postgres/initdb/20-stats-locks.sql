-- Runs once, when the PostgreSQL volume is first initialised (docker-entrypoint-initdb.d), and
-- takes effect when the server starts for good right after: each stats transaction holds one
-- advisory lock per request_id of its batch (stats/db.py), up to RS_STATS_BATCH_MAX (2000), and
-- every processor writes a predictions and a feedback batch at once. The shared lock table holds
-- max_locks_per_transaction x (max_connections + workers) locks: 64 x ~120 by default, too few
-- for a few processors; 256 costs ~8 MiB of shared memory.
ALTER SYSTEM SET max_locks_per_transaction = 256;
