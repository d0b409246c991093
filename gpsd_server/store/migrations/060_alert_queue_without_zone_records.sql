-- Zone presence records (kind 'zone': one row per visit of a vehicle to a
-- zone, severity info) are most of ``alerts`` -- in the benchmark city nine
-- rows in ten, in the demo city's density tens of rows a second for 10,000
-- vehicles -- and they never leave the state 'open' (nobody works them). So
-- every index the desk reads was mostly zone records: the dashboard's count
-- of open and acked alerts scanned them all (233 ms with 2 M zone records,
-- less than a day of such a city, and growing with every day kept), the 7-day
-- violation trend read every zone record of the week (147 ms), the desk's
-- list stepped over them (22-43 ms). The desk's queries say ``kind <> 'zone'``;
-- these indexes say it too: 0.6-1.2 ms, 12-17 ms for the trend (measured
-- 2026-12-03, tools of the commit that added this file). A zone record no
-- longer costs an entry in the open-queue index either.
DROP INDEX IF EXISTS alerts_by_state;
CREATE INDEX alerts_queue ON alerts (state, ts DESC) WHERE state <> 'closed' AND kind <> 'zone';
CREATE INDEX alerts_desk_by_time ON alerts (ts DESC) WHERE kind <> 'zone';
