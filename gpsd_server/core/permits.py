"""How far a muck truck is off its permit: the one definition that both the
live route-deviation rule and the permit-compliance report use, so a report
can never disagree with the alerts.

A point is measured against every route of the permits valid that day: the
margin is the smallest ``distance - corridor`` (corridor: the route's own
``corridor_m``, else ``[rules] corridor_m``). A point near the permit's
origin or destination site (inside it or within the zone exit band, the same
"near" the zone index reports) counts as on route by definition: loading and
tipping happen off the road.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping, Sequence

import msgspec

from gpsd_server.core.city import Permit


class Margin(msgspec.Struct, frozen=True, gc=False):
    """Made per fix of every permitted truck: a struct (0.05 µs), not a frozen dataclass (0.45)."""

    margin_m: float  # > 0: outside every corridor; -inf: at a permit site
    distance_m: float  # to the nearest permitted route (inf when none was measured)
    permit_id: str
    route_id: str

    @property
    def on_route(self) -> bool:
        return self.margin_m <= 0


def permit_margin(
    permits: Sequence[Permit],
    route_dist: Mapping[str, float],
    near: Collection[str],
    corridor_m: Callable[[str], float],
) -> Margin:
    margin, distance, permit_id, route_id = math.inf, math.inf, "", ""
    at_site = False
    for permit in permits:
        at_site = at_site or permit.origin in near or permit.destination in near
        for rid in permit.routes:
            d = route_dist.get(rid, math.inf)
            m = d - corridor_m(rid)
            if m < margin:
                margin, distance, permit_id, route_id = m, d, permit.id, rid
    if at_site or not permits:
        margin = -math.inf
    return Margin(margin, distance, permit_id, route_id)
