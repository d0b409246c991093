-- 12319 cases (issue 17). `cases` holds each case as it is now; `case_events`
-- is its audit trail: append-only (a trigger refuses UPDATE, DELETE and
-- TRUNCATE) and sealed, each event carrying the SHA-256 of the previous one
-- and of itself (core/cases.py: audit_digest), so an edit that bypasses the
-- trigger still shows.
CREATE TABLE cases (
    id                 bigserial PRIMARY KEY,
    number             text        NOT NULL UNIQUE,  -- e.g. 20261201-0007, per local day of acceptance
    channel            text        NOT NULL CHECK (channel IN ('hotline', 'patrol', 'camera', 'info_point')),
    category           text        NOT NULL,
    priority           text        NOT NULL CHECK (priority IN ('urgent', 'high', 'normal')),
    description        text        NOT NULL DEFAULT '',
    address            text        NOT NULL DEFAULT '',  -- as the caller said it
    reporter           text        NOT NULL DEFAULT '',  -- who to call back
    lon                double precision NOT NULL,        -- WGS-84
    lat                double precision NOT NULL,
    place              text,                             -- district · grid · site or road, from the city's layers
    district_id        text,
    district           text,
    grid_id            text,
    grid               text,
    state              text        NOT NULL DEFAULT 'accepted'
                       CHECK (state IN ('accepted', 'dispatched', 'arrived', 'handled', 'called_back', 'closed',
                                        'cancelled')),
    vehicle_id         text,                             -- the patrol car on the case now
    accepted_at        timestamptz NOT NULL,
    accepted_by        text        NOT NULL,
    dispatched_at      timestamptz,                      -- the first dispatch (the arrive deadline runs from it)
    assigned_at        timestamptz,                      -- the current car's dispatch
    arrived_at         timestamptz,
    arrival_source     text        CHECK (arrival_source IN ('gps', 'manual')),
    arrival_distance_m double precision,
    on_site            boolean,                          -- arrived: is the car still there (GPS)
    handled_at         timestamptz,
    called_back_at     timestamptz,
    closed_at          timestamptz,
    cancelled_at       timestamptz,
    dispatch_id        bigint,                           -- dispatches.id of the current car's dispatch
    command_id         bigint,                           -- terminal_commands.id of the 0x8300 sent with it
    command_status     text,                             -- the status last written to the trail
    events             integer     NOT NULL DEFAULT 0,   -- events in the trail
    last_digest        bytea       NOT NULL,             -- digest of the newest event
    updated_at         timestamptz NOT NULL
);
CREATE INDEX cases_open ON cases (state, accepted_at) WHERE state NOT IN ('closed', 'cancelled');
CREATE INDEX cases_by_time ON cases (accepted_at DESC);
CREATE INDEX cases_by_vehicle ON cases (vehicle_id, accepted_at DESC);
CREATE INDEX cases_commands ON cases (command_id) WHERE command_id IS NOT NULL;

CREATE TABLE case_events (
    case_id      bigint      NOT NULL REFERENCES cases (id),
    seq          integer     NOT NULL,           -- 1, 2, ... per case
    kind         text        NOT NULL,           -- created, dispatched, reassigned, arrived, left, returned, handled,
                                                 -- called_back, closed, cancelled, note, terminal_<status>
    at           timestamptz NOT NULL,           -- when it happened (server clock; fix time for GPS findings)
    recorded_at  timestamptz NOT NULL,           -- when it was written
    by_name      text        NOT NULL,           -- the operator, or gps / terminal
    comment      text        NOT NULL DEFAULT '',
    data         jsonb       NOT NULL DEFAULT '{}',
    prev_digest  bytea       NOT NULL,
    digest       bytea       NOT NULL,
    PRIMARY KEY (case_id, seq)
);
-- What the fixes showed is written once, however often it is found again
-- (the fixes replayed after a restart).
CREATE UNIQUE INDEX case_events_gps_once ON case_events (case_id, kind, at) WHERE by_name = 'gps';

CREATE FUNCTION case_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'case_events is an audit trail: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER case_events_no_change BEFORE UPDATE OR DELETE ON case_events
    FOR EACH ROW EXECUTE FUNCTION case_events_append_only();
CREATE TRIGGER case_events_no_truncate BEFORE TRUNCATE ON case_events
    FOR EACH STATEMENT EXECUTE FUNCTION case_events_append_only();
CREATE TRIGGER cases_no_delete BEFORE DELETE ON cases
    FOR EACH ROW EXECUTE FUNCTION case_events_append_only();

-- The last case number handed out per local day.
CREATE TABLE case_counters (
    day  date PRIMARY KEY,
    last integer NOT NULL
);

-- A case's dispatches are 12319 dispatches too (GET /api/dispatch).
ALTER TABLE dispatches ADD COLUMN case_id bigint;
CREATE INDEX dispatches_by_case ON dispatches (case_id) WHERE case_id IS NOT NULL;
