"""Which decoder a topic belongs to, and the key it carries; one parser for
every input path, with the configured prefixes.

======================================  ========  =========================
topic                                   path      key
======================================  ========  =========================
``{native}/{vehicle_id}/fix``           native    the vehicle id
``{jt808}/{clientid}/{phone}/up``       jt808     the terminal's phone
``{owntracks}/{user}/{device}``         owntracks ``user/device``
``{owntracks}/{user}/{device}/...``     ignored   (events, info: no position)
======================================  ========  =========================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Path = Literal["native", "jt808", "owntracks", "ignored"]


@dataclass(frozen=True, slots=True)
class Route:
    path: Path
    key: str


@dataclass(frozen=True, slots=True)
class TopicRouter:
    native: str = "fleet"
    jt808: str | None = "jt808"
    owntracks: str | None = "owntracks"

    def subscriptions(self) -> list[str]:
        topics = [f"{self.native}/+/fix"]
        if self.jt808:
            topics.append(f"{self.jt808}/+/+/up")
        if self.owntracks:
            topics.append(f"{self.owntracks}/+/+")
        return topics

    def route(self, topic: str) -> Route | None:
        """The path and key of a topic; None for a topic no decoder reads."""
        # Prefixes may contain "/" themselves: match them as strings first.
        for prefix, path in ((self.native, "native"), (self.jt808, "jt808"), (self.owntracks, "owntracks")):
            if prefix is None or not topic.startswith(prefix + "/"):
                continue
            parts = topic[len(prefix) + 1 :].split("/")
            if path == "native" and len(parts) == 2 and parts[1] == "fix":
                return Route("native", parts[0])
            if path == "jt808" and len(parts) == 3 and parts[2] == "up" and parts[1]:
                return Route("jt808", parts[1])
            if path == "owntracks" and len(parts) >= 2 and parts[0] and parts[1]:
                return Route("owntracks" if len(parts) == 2 else "ignored", f"{parts[0]}/{parts[1]}")
        return None
