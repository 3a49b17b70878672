-- A label given with a review is feedback, and a later feedback corrects an earlier one.

-- The label the sender gave with the request (predictions schema version 2), and which
-- feedback the current true_label came from: the latest (given_at, feedback_id) wins.
ALTER TABLE predictions
    ADD COLUMN user_label             smallint CHECK (user_label IN (0, 1)),
    ADD COLUMN true_label_given_at    timestamptz,
    ADD COLUMN true_label_feedback_id text;

-- Until now the earliest feedback given was the true label: record it as the current one.
UPDATE predictions AS p
SET true_label_given_at = f.given_at, true_label_feedback_id = f.feedback_id
FROM (SELECT DISTINCT ON (request_id) request_id, given_at, feedback_id
      FROM feedback
      WHERE request_id IS NOT NULL AND matched_at IS NOT NULL
      ORDER BY request_id, given_at, feedback_id) AS f
WHERE p.request_id = f.request_id AND p.true_label IS NOT NULL;

-- How many predictions came with a label from their sender, per model version and window.
ALTER TABLE window_stats ADD COLUMN with_user_label bigint NOT NULL DEFAULT 0;
