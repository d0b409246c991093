"""Supervision rules, one module per family, in the order the engine runs them.

Zone presence (:mod:`.presence`) is a pre-stage: its result is part of the
read-only context every rule gets. The rules follow the contract of
:class:`~gpsd_server.core.rules.base.Rule`; offline (:mod:`.offline`) is the
link clock, driven by fixes and by the driver's tick. Adding a rule is one
module and one line here.
"""

from __future__ import annotations

from typing import Any

from gpsd_server.core.rules import alarms, cover, curfew, delivery, dumping, route, speed, zones
from gpsd_server.core.rules.base import Rule

RULES: tuple[Rule[Any], ...] = (
    zones.RULE,
    speed.RULE,
    route.RULE,
    curfew.RULE,
    dumping.LOADED_STOP,
    dumping.BODY_LIFT,
    cover.RULE,
    dumping.DRUM_REVERSE,
    delivery.RULE,
    alarms.RULE,
)

__all__ = ["RULES", "Rule"]
