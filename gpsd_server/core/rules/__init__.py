"""Supervision rules, one module per family.

Every rule has the shape ``rule(state, fix, ctx) -> (state, events)``: a
small per-vehicle state object in, the same (updated) object and a tuple of
events out. States are mutable and owned by the engine's per-vehicle record,
so the hot path allocates nothing when nothing happens. ``ctx`` is the
:class:`~gpsd_server.core.rules.base.FixContext` the engine built for the fix
(projected position, zones, route distances, settings). All durations are
measured in fix time, so replayed and backfilled data behave like live data.
"""
