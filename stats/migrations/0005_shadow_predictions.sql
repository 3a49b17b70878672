-- A challenger in shadow: its predictions on the same requests as production, never answered
-- to anyone. One row per request and challenger version (a replay or a retry adds nothing).
-- Compared with production by joining predictions on request_id at read time; the true label
-- is production's row's (the latest feedback wins there).
CREATE TABLE IF NOT EXISTS shadow_predictions (
    request_id     text             NOT NULL,
    model_name     text             NOT NULL,
    model_version  text             NOT NULL,
    label          smallint         NOT NULL CHECK (label IN (0, 1)),
    probability    double precision NOT NULL CHECK (probability BETWEEN 0 AND 1),
    worker_id      text             NOT NULL,
    predicted_at   timestamptz      NOT NULL,
    recorded_at    timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (request_id, model_version)
);
-- The read model groups one challenger version at a time.
CREATE INDEX IF NOT EXISTS shadow_predictions_version
    ON shadow_predictions (model_name, model_version);
