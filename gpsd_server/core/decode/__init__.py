"""Decoders: every input path's payload -> ``Fix`` values or ``DecodeError``s.

:class:`Decoder` is the one entry point: it routes a topic (:mod:`.topics`)
to the native, JT/T 808 (EMQX gateway JSON) or OwnTracks decoder with the
terminal registries of the loaded city. Pure: the driver passes ``now``.
"""

from __future__ import annotations

from collections.abc import Iterable

from gpsd_server.core.city import City
from gpsd_server.core.decode.jt808 import decode_jt808, terminal_registry
from gpsd_server.core.decode.native import decode_native
from gpsd_server.core.decode.owntracks import decode_owntracks
from gpsd_server.core.decode.topics import Route, TopicRouter
from gpsd_server.errors import DecodeError
from gpsd_server.model import Fix
from gpsd_server.settings import IngestSettings

ROUTES_KEPT = 100_000  # topics whose route is remembered (one or two per terminal); then start over


class Decoder:
    def __init__(
        self,
        router: TopicRouter,
        limits: IngestSettings,
        *,
        jt808_auto_register: bool = False,
        owntracks_max_accuracy_m: float = 500.0,
    ) -> None:
        self.router = router
        self.limits = limits
        self._auto_register = jt808_auto_register
        self._max_accuracy_m = owntracks_max_accuracy_m
        self._terminals: dict[str, str] = {}
        self._devices: dict[str, str] = {}
        # A terminal publishes on the same topic all day: its route is parsed once.
        self._routes: dict[str, Route] = {}

    def use_city(self, city: City) -> None:
        """The terminal registries (JT/T 808 phones, OwnTracks devices) of a (re)loaded city."""
        vehicles = list((city.vehicles or {}).values())
        self.use_registry(
            ((v.terminal, v.id) for v in vehicles if v.terminal), ((v.owntracks, v.id) for v in vehicles if v.owntracks)
        )

    def use_registry(self, terminals: Iterable[tuple[str, str]], devices: Iterable[tuple[str, str]]) -> None:
        self._terminals = terminal_registry(terminals)
        self._devices = dict(devices)

    def decode(self, topic: str, payload: bytes, now: float) -> list[Fix | DecodeError]:
        route = self._routes.get(topic)
        if route is None:
            route = self.router.route(topic)
            if route is None:
                return [DecodeError("unknown_topic", "no decoder for this topic")]
            if len(self._routes) >= ROUTES_KEPT:  # bounded whatever topics arrive
                self._routes.clear()
            self._routes[topic] = route
        try:
            if route.path == "native":
                return decode_native(route.key, payload, now=now, limits=self.limits)
            if route.path == "jt808":
                return decode_jt808(
                    route.key, payload, now=now, limits=self.limits, terminals=self._terminals,
                    auto_register=self._auto_register,
                )  # fmt: skip
            if route.path == "owntracks":
                return decode_owntracks(
                    route.key, payload, now=now, limits=self.limits, devices=self._devices,
                    max_accuracy_m=self._max_accuracy_m,
                )  # fmt: skip
        except Exception as exc:  # noqa: BLE001 -- pure code: whatever it raises is about this input
            # A decoder's own defect on some input: the message is refused with a
            # reason and kept as a dead letter, the server goes on. Raised, it
            # ended the server and, redelivered from its session, every restart
            # (a JT/T 808 time with a superscript digit, 2026-12-06).
            return [DecodeError("decoder_error", f"{route.path} decoder: {type(exc).__name__}: {str(exc)[:160]}")]
        return []  # OwnTracks event/info sub-topics: not positions


__all__ = ["DecodeError", "Decoder", "TopicRouter"]
