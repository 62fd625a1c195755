-- Offers, their versions and when each was active live (services/rules/store.py).
CREATE TABLE IF NOT EXISTS {schema}.offers (
    id text PRIMARY KEY,
    active boolean NOT NULL DEFAULT false,
    current_version integer NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS {schema}.offer_versions (
    offer_id text NOT NULL REFERENCES {schema}.offers (id),
    version integer NOT NULL CHECK (version >= 1),
    body jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    author text,
    comment text,
    PRIMARY KEY (offer_id, version)
);
CREATE TABLE IF NOT EXISTS {schema}.offer_activations (
    id bigserial PRIMARY KEY,
    offer_id text NOT NULL REFERENCES {schema}.offers (id),
    active boolean NOT NULL,
    version integer NOT NULL,
    at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX IF NOT EXISTS offer_activations_offer ON {schema}.offer_activations (offer_id, id);
