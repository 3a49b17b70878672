-- Statistics written by the stats processor and read by the gateway.
-- Idempotency by construction: every record has a unique key (request_id, feedback_id), and
-- aggregates change only in the transaction that first inserts that key.

CREATE TABLE predictions (
    request_id     text PRIMARY KEY,
    model_name     text NOT NULL,
    model_version  text NOT NULL,
    label          smallint NOT NULL CHECK (label IN (0, 1)),
    probability    double precision NOT NULL CHECK (probability BETWEEN 0 AND 1),
    source         text NOT NULL,
    worker_id      text NOT NULL,
    submitted_at   timestamptz NOT NULL,
    predicted_at   timestamptz NOT NULL,
    latency_ms     double precision NOT NULL,
    -- The label from feedback once it is matched; NULL while unlabelled.
    true_label     smallint CHECK (true_label IN (0, 1)),
    recorded_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX predictions_predicted_at ON predictions (predicted_at DESC);
CREATE INDEX predictions_model ON predictions (model_name, model_version);

CREATE TABLE feedback (
    feedback_id  text PRIMARY KEY,
    request_id   text,
    text         text,
    label        smallint NOT NULL CHECK (label IN (0, 1)),
    source       text NOT NULL,
    given_at     timestamptz NOT NULL,
    -- Set when this feedback was counted against its prediction (exactly once).
    matched_at   timestamptz,
    recorded_at  timestamptz NOT NULL DEFAULT now(),
    CHECK (request_id IS NOT NULL OR text IS NOT NULL)
);
CREATE INDEX feedback_unmatched ON feedback (request_id) WHERE matched_at IS NULL;

-- Aggregates per model version and time window (granularity 'minute' or 'hour').
CREATE TABLE window_stats (
    model_name      text NOT NULL,
    model_version   text NOT NULL,
    granularity     text NOT NULL CHECK (granularity IN ('minute', 'hour')),
    window_start    timestamptz NOT NULL,
    predictions     bigint NOT NULL DEFAULT 0,
    positives       bigint NOT NULL DEFAULT 0,
    latency_ms_sum  double precision NOT NULL DEFAULT 0,
    latency_ms_max  double precision NOT NULL DEFAULT 0,
    labelled        bigint NOT NULL DEFAULT 0,
    correct         bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (model_name, model_version, granularity, window_start)
);
