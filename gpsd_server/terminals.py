"""The JT/T 808 side of an ingest node, wired: the terminal registry and its
health, our TCP gateway (when ``[jt808] enabled``) and the command driver that
reaches terminals through it or through EMQX's gateway."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from gpsd_server.cityfolder import CityData
from gpsd_server.gateway.commands import TerminalCommands
from gpsd_server.gateway.health import TerminalHealth, TerminalRegistry
from gpsd_server.gateway.tcp import Jt808Gateway
from gpsd_server.settings import Jt808Settings
from gpsd_server.store.db import Database

Publish = Callable[[str, bytes], Awaitable[None]]


class Terminals:
    def __init__(self, settings: Jt808Settings, *, db: Database, publish: Publish) -> None:
        self._settings = settings
        self.registry = TerminalRegistry(auto_register=settings.auto_register)
        self.health = TerminalHealth(self.registry)
        self.gateway = (
            Jt808Gateway(publish, settings, registry=self.registry, health=self.health) if settings.enabled else None
        )
        self.commands = TerminalCommands(
            db=db, settings=settings, registry=self.registry, health=self.health, gateway=self.gateway,
            publish=publish if settings.downlink_mqtt else None,
        )  # fmt: skip
        if self.gateway is not None:
            self.gateway.on_ack, self.gateway.on_disconnect = self.commands.acked, self.commands.disconnected
            self.commands.counters = self.gateway.counters  # one set of counters on /metrics

    def use_city(self, data: CityData) -> None:
        self.registry.use_city(data.city)

    def start(self, tg: asyncio.TaskGroup) -> list[asyncio.Task[None]]:
        tasks = [tg.create_task(self.commands.run(), name="terminal-commands")]
        if self.gateway is not None:
            s = self._settings
            tasks.append(tg.create_task(self.gateway.serve(s.host, s.port), name="jt808-gateway"))
        return tasks
