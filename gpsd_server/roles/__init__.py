"""The two roles a node plays: ingest (fixes in, rules, durable writes, live
data out) and api (HTTP, websockets, the page). ``gpsd-server run`` is both
in one process; ``gpsd-server ingest`` and ``gpsd-server api`` are one each,
with the broker between them (``[cluster]``)."""
