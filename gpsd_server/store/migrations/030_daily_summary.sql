-- Daily mileage without scanning a fleet-day of fixes (issue 15.6): the track
-- writer keeps, per vehicle and UTC hour, what the mileage report needs, inside
-- each batch's transaction (gpsd_server/store/batch.py). A report sums a local
-- day's hours and bridges consecutive hours with the step from one hour's last
-- fix to the next hour's first, so the result equals the scan of the fixes.
-- Only usable fixes count (not late, invalid, jump or filtered), as in the scan.
-- Hours, not local days: the writer needs no time zone and a late fix makes it
-- recompute one hour (<= 360 fixes at 10 s), not a day.
CREATE TABLE fix_hours (
    vehicle_id      text             NOT NULL,
    hour            timestamptz      NOT NULL,  -- date_trunc('hour', ts), UTC
    fixes           integer          NOT NULL,
    first_ts        timestamptz      NOT NULL,
    first_lon       double precision NOT NULL,
    first_lat       double precision NOT NULL,
    last_ts         timestamptz      NOT NULL,
    last_lon        double precision NOT NULL,
    last_lat        double precision NOT NULL,
    last_speed_kmh  real,
    inner_m         double precision NOT NULL,  -- steps between consecutive fixes of this hour
    inner_driving_s double precision NOT NULL,  -- driving seconds of those steps ([rules] moving_kmh, [history] gap_s)
    max_speed_kmh   real,
    PRIMARY KEY (vehicle_id, hour)
) WITH (fillfactor = 50, autovacuum_vacuum_scale_factor = 0.01);  -- HOT room: a live hour changes every batch
CREATE INDEX fix_hours_by_hour ON fix_hours (hour);

-- The step length of core.history.step_lengths_m (equirectangular on the mean latitude).
CREATE FUNCTION gpsd_step_m(lon0 float8, lat0 float8, lon1 float8, lat1 float8) RETURNS float8
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN 6371008.8 * sqrt((radians(lon1 - lon0) * cos(radians((lat0 + lat1) / 2))) ^ 2 + radians(lat1 - lat0) ^ 2);

-- vehicles gets one update per vehicle per batch (its last position): leave
-- room in each page for HOT updates, and vacuum the small, hot table often.
ALTER TABLE vehicles SET (fillfactor = 50, autovacuum_vacuum_scale_factor = 0.0, autovacuum_vacuum_threshold = 20000);
