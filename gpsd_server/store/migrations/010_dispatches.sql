-- 12319 hotline dispatches: a case location and the patrol car sent to it.
CREATE TABLE dispatches (
    id           bigserial PRIMARY KEY,
    lon          double precision NOT NULL,
    lat          double precision NOT NULL,
    vehicle_id   text        NOT NULL,
    distance_m   double precision,
    note         text        NOT NULL DEFAULT '',
    created_by   text        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX dispatches_by_time ON dispatches (created_at DESC);
