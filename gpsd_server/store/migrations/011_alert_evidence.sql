-- Alerts that stand as evidence (issue 12): where the condition ended, the
-- place in the city's own words, and a short number per local day.
ALTER TABLE alerts
    ADD COLUMN end_lon double precision,
    ADD COLUMN end_lat double precision,
    ADD COLUMN place   text,
    ADD COLUMN number  text;  -- e.g. 20261201-0042, by the local day it was raised
-- The last number handed out per local day.
CREATE TABLE alert_counters (
    day  date PRIMARY KEY,
    last integer NOT NULL
);
CREATE UNIQUE INDEX alerts_number ON alerts (number) WHERE number IS NOT NULL;
-- Alerts still waiting for their number (numbered in the transaction that inserts them).
CREATE INDEX alerts_unnumbered ON alerts (raised_at) WHERE number IS NULL AND kind <> 'zone';
