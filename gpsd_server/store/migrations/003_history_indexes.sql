-- History reads (issue 4). Additive only.
-- Replay and the violations report ask for one vehicle's (or a few vehicles')
-- alerts by fix time; alerts_by_time alone would scan every vehicle's alerts.
CREATE INDEX IF NOT EXISTS alerts_vehicle_ts ON alerts (vehicle_id, ts);
-- fixes needs nothing new: (vehicle_id, ts DESC) serves tracks, trips, replay
-- pages and per-vehicle COPY reads (scanned backwards for ascending order),
-- and TimescaleDB's default ts index serves fleet-wide day reports.
