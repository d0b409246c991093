-- Every accepted fix, once per (vehicle, fix time). A hypertable on ts when
-- TimescaleDB is present (the migration runner calls create_hypertable),
-- otherwise a plain table with the same columns and indexes.
CREATE TABLE fixes (
    vehicle_id   text             NOT NULL,
    ts           timestamptz      NOT NULL,  -- fix time (terminal clock)
    received_at  timestamptz      NOT NULL,  -- server receipt time
    lon          double precision NOT NULL,  -- WGS-84
    lat          double precision NOT NULL,
    speed_kmh    real,
    heading      real,
    alt_m        real,
    sats         smallint,
    hdop         real,
    ignition     boolean,
    alarm        bigint           NOT NULL DEFAULT 0,  -- JT/T 808 alarm DWORD
    status       bigint           NOT NULL DEFAULT 0,  -- JT/T 808 status DWORD
    sensors      jsonb,                                -- cover_closed, loaded, lift, drum
    mileage_km   double precision,
    source       text             NOT NULL DEFAULT 'native',
    flags        smallint         NOT NULL DEFAULT 0   -- FixFlag bits: 1 late, 2 backfill, 4 invalid, 8 jump, 16 filtered
);
-- The uniqueness rule: a repeated fix is stored once. It also serves every
-- per-vehicle time-range read.
CREATE UNIQUE INDEX fixes_vehicle_ts ON fixes (vehicle_id, ts DESC);

CREATE TABLE vehicles (
    id               text PRIMARY KEY,
    plate            text,
    class            text NOT NULL DEFAULT 'other',
    company          text,
    terminal         text,
    last_ts          timestamptz,
    last_received_at timestamptz,
    last_lon         double precision,
    last_lat         double precision,
    last_speed_kmh   real,
    last_heading     real,
    last_alarm       bigint,
    last_status      bigint,
    last_sensors     jsonb,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
