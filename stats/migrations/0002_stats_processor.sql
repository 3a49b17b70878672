-- What the stats processor adds to the initial schema.

-- Drill-down: the two parts of latency_ms (= queue_ms + inference_ms) as the worker measured them.
ALTER TABLE predictions
    ADD COLUMN queue_ms      double precision,
    ADD COLUMN inference_ms  double precision,
    ADD COLUMN batch_size    integer;

-- Latency histogram per model version and window, for percentiles: count of predictions whose
-- latency_ms <= le_ms and > the next lower bound (le_ms = 'Infinity' for the last bucket).
-- Same idempotency rule as window_stats: it changes only in the transaction that first
-- inserts the prediction.
CREATE TABLE window_latency (
    model_name     text NOT NULL,
    model_version  text NOT NULL,
    granularity    text NOT NULL CHECK (granularity IN ('minute', 'hour')),
    window_start   timestamptz NOT NULL,
    le_ms          double precision NOT NULL,
    count          bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (model_name, model_version, granularity, window_start, le_ms)
);

-- Feedback waiting for its prediction is kept for a bounded time (RS_STATS_UNMATCHED_RETENTION_S);
-- the purge finds it by age through this index.
CREATE INDEX feedback_unmatched_age ON feedback (recorded_at)
    WHERE matched_at IS NULL AND request_id IS NOT NULL;

-- The read side's time series and recent lists.
CREATE INDEX window_stats_series ON window_stats (granularity, window_start DESC);
