-- Alerts raised by the rule engine. A lasting condition is one row: the
-- start event inserts it (ended_ts NULL), the end event sets ended_ts and
-- merges its details. ``state`` is the operator's workflow, independent of
-- whether the condition has ended: open -> acked -> closed.
CREATE TABLE alerts (
    id          uuid PRIMARY KEY,
    vehicle_id  text        NOT NULL,
    kind        text        NOT NULL,
    key         text        NOT NULL,  -- identifies the condition within the vehicle
    severity    text        NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
    zone_id     text,
    route_id    text,
    ts          timestamptz NOT NULL,  -- fix time of the start
    raised_at   timestamptz NOT NULL,  -- server time when raised
    lon         double precision,
    lat         double precision,
    ended_ts    timestamptz,           -- fix time of the end; NULL while the condition lasts
    ended_at    timestamptz,
    details     jsonb       NOT NULL DEFAULT '{}',
    state       text        NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'acked', 'closed')),
    acked_by    text,
    acked_at    timestamptz,
    closed_by   text,
    closed_at   timestamptz,
    comment     text
);
-- Re-processing the same fixes (after a crash, a replayed spool) raises nothing twice.
CREATE UNIQUE INDEX alerts_once ON alerts (vehicle_id, key, ts);
CREATE UNIQUE INDEX alerts_one_active ON alerts (vehicle_id, key) WHERE ended_ts IS NULL;
CREATE INDEX alerts_by_time ON alerts (ts DESC);
CREATE INDEX alerts_by_state ON alerts (state, ts DESC) WHERE state <> 'closed';

-- API tokens, stored as SHA-256 digests; the token itself is shown once.
CREATE TABLE api_tokens (
    id          serial PRIMARY KEY,
    name        text        NOT NULL,
    role        text        NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
    digest      bytea       NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);
