-- The lag monitor's chart history (services/lagmonitor/history_store.py): one row per
-- successful sample and cluster, the point the page draws (per-group lag, worst time
-- lag and status, per-service throughput) as JSON. Rows older than LAGMONITOR_HISTORY_S
-- are deleted as new ones arrive, so the table stays bounded.
CREATE TABLE IF NOT EXISTS {schema}.lag_history (
    cluster    text NOT NULL,
    sampled_at double precision NOT NULL,
    point      jsonb NOT NULL,
    PRIMARY KEY (cluster, sampled_at)
);
