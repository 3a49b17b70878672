-- The drift monitor's checks: one row per model version, feature and check of its window
-- (the monitor replica that ran it, since each replica watches its own partitions).
-- feature "accuracy": live accuracy over the last labelled predictions (score = accuracy).
CREATE TABLE IF NOT EXISTS drift_checks (
    monitor        text             NOT NULL,
    model_version  text             NOT NULL,
    feature        text             NOT NULL,
    checked_at     timestamptz      NOT NULL,
    window_size    integer          NOT NULL CHECK (window_size > 0),
    score          double precision NOT NULL,
    p_value        double precision,
    alarm          boolean          NOT NULL,
    PRIMARY KEY (monitor, model_version, feature, checked_at)
);
CREATE INDEX IF NOT EXISTS drift_checks_latest
    ON drift_checks (model_version, feature, checked_at DESC);

-- The live-accuracy check reads each version's most recently labelled predictions.
CREATE INDEX IF NOT EXISTS predictions_recently_labelled
    ON predictions (model_version, true_label_given_at DESC) WHERE true_label IS NOT NULL;
