"""A simulated JT/T 808 terminal: connects over TCP, registers (2011, 2013 or
2019 layout), authenticates, reports locations, and answers the platform's
commands (0x8300 text, 0x8201 position query, 0x8103 parameters) the way a
terminal does. Used by the tests and by the fleet simulator.

    python tools/jt808_terminal.py --port 7611 --phone 13800138000 --count 20 [--register-2011]

Library use::

    async with SimulatedTerminal("13800138000", edition=2019) as t:
        await t.connect("127.0.0.1", 7611)
        code = await t.register(plate="粤B12345")
        await t.authenticate(code)
        await t.report(location(ts, lon=114.05, lat=22.54, speed_kmh=30, alarm=1))
        header, command = await t.next_command()
        await t.acknowledge(header)  # 0x0001 result 0 (0x0201 with a position for 0x8201)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import time
from types import TracebackType

from gpsd_server.core.jt808 import downlink as dl
from gpsd_server.core.jt808 import frame as jt808
from gpsd_server.core.jt808 import messages as m
from gpsd_server.core.jt808.frame import Edition, Frame, Header

STATUS_ACC = 1 << 0
STATUS_POSITIONED = 1 << 1
STATUS_SOUTH = 1 << 2
STATUS_WEST = 1 << 3


def location(
    ts: float,
    lon: float,
    lat: float,
    *,
    speed_kmh: float = 0.0,
    heading: float = 0.0,
    alt_m: float = 0.0,
    alarm: int = 0,
    status: int = STATUS_ACC | STATUS_POSITIONED,
    mileage_km: float | None = None,
    sats: int | None = None,
) -> m.Location:
    """A 0x0200 body from everyday units (hemisphere bits set from the signs)."""
    status |= (STATUS_SOUTH if lat < 0 else 0) | (STATUS_WEST if lon < 0 else 0)
    extras: list[tuple[int, bytes]] = []
    if mileage_km is not None:
        extras.append((m.EXTRA_MILEAGE, round(mileage_km * 10).to_bytes(4, "big")))
    if sats is not None:
        extras.append((m.EXTRA_SATELLITES, bytes([sats])))
    return m.Location(
        alarm=alarm,
        status=status,
        latitude=round(abs(lat) * 1e6),
        longitude=round(abs(lon) * 1e6),
        altitude=round(alt_m) & 0xFFFF,
        speed=round(speed_kmh * 10),
        direction=round(heading) % 360,
        time=m.posix_to_bcd_time(ts),
        extras=tuple(extras),
    )


class TerminalError(Exception):
    """The platform refused or did not answer."""


class SimulatedTerminal:
    """One terminal on one TCP connection; every request waits for its answer."""

    def __init__(self, phone: str, *, edition: Edition = 2013, timeout_s: float = 5.0) -> None:
        self.phone, self.edition, self.timeout_s = phone, edition, timeout_s
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._splitter = jt808.FrameSplitter()
        self._inbox: list[Frame] = []
        self._sn = 0
        self.shown: list[str] = []  # texts of the 0x8300 messages received ("on the screen")
        self.params: dict[int, int | str] = {}  # parameters set by 0x8103

    async def __aenter__(self) -> SimulatedTerminal:
        return self

    async def __aexit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        await self.close()

    async def connect(self, host: str, port: int, *, local_addr: str | None = None) -> None:
        """``local_addr``: the loopback address to connect from (127.0.0.x), so
        tests can stand for terminals on different networks."""
        bind = (local_addr, 0) if local_addr else None
        self._reader, self._writer = await asyncio.open_connection(host, port, local_addr=bind)

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(ConnectionError):
                await self._writer.wait_closed()
            self._writer = None

    def header(self, msg_id: int, **fields: int) -> Header:
        sn, self._sn = self._sn, (self._sn + 1) & 0xFFFF
        return Header(msg_id, self.phone, sn, self.edition, **fields)

    async def send_raw(self, data: bytes) -> None:
        """Bytes as they are: for malformed frames in tests."""
        if self._writer is None:
            raise TerminalError("not connected")
        self._writer.write(data)
        await self._writer.drain()

    async def request(self, message: m.Message) -> dl.Downlink:
        """Send one message and return the platform's answer to it."""
        header = self.header(message.msg_id)
        body = message.encode(self.edition)
        await self.send_raw(jt808.encode_frame(header, body))
        return await self.answer_to(header.msg_sn)

    async def answer_to(self, msg_sn: int) -> dl.Downlink:
        async with asyncio.timeout(self.timeout_s):
            while True:
                for frame in self._inbox:
                    answer = dl.decode_downlink(frame.header, frame.body)
                    if isinstance(answer, dl.PlatformResponse | dl.RegisterResponse) and answer.reply_sn == msg_sn:
                        self._inbox.remove(frame)
                        return answer
                await self._read_more()

    async def next_command(self, timeout_s: float | None = None) -> tuple[Header, dl.Command]:
        """The next platform command (0x8300, 0x8201, 0x8103) sent to this terminal."""
        async with asyncio.timeout(timeout_s or self.timeout_s):
            while True:
                for received in self.received_commands():
                    return received
                await self._read_more()

    def received_commands(self) -> list[tuple[Header, dl.Command]]:
        """Commands already read (while waiting for answers), oldest first."""
        out: list[tuple[Header, dl.Command]] = []
        for frame in list(self._inbox):
            command = dl.decode_downlink(frame.header, frame.body)
            if isinstance(command, dl.TextMessage | dl.PositionQuery | dl.SetParameters):
                self._inbox.remove(frame)
                if isinstance(command, dl.TextMessage):
                    self.shown.append(command.text)
                elif isinstance(command, dl.SetParameters):
                    self.params.update(command.params)
                out.append((frame.header, command))
        return out

    async def acknowledge(self, command: Header, result: int = m.RESULT_OK, position: m.Location | None = None) -> None:
        """Answer a command as a terminal does: 0x0201 with ``position`` for a
        position query, else 0x0001 with ``result``."""
        if command.msg_id == dl.POSITION_QUERY:
            loc = position or location(time.time(), 114.0579, 22.5431)
            body = command.msg_sn.to_bytes(2, "big") + loc.encode(self.edition)
            await self.send_raw(jt808.encode_frame(self.header(0x0201), body))
            return
        answer = m.TerminalResponse(command.msg_sn, command.msg_id, result)
        await self.send_raw(jt808.encode_frame(self.header(answer.msg_id), answer.encode(self.edition)))

    async def _read_more(self) -> None:
        if self._reader is None:
            raise TerminalError("not connected")
        data = await self._reader.read(4096)
        if not data:
            raise TerminalError("platform closed the connection")
        self._inbox += [f for f in self._splitter.feed(data) if isinstance(f, Frame)]

    async def register(self, plate: str = "粤B00001", plate_color: int = 2, *, layout_2011: bool = False) -> str:
        """Register (0x0100) and return the auth code; ``layout_2011`` sends the
        JT/T 808-2011 body (8-byte model) that older trucks still use."""
        layout: m.RegisterLayout = 2011 if layout_2011 else self.edition
        message = m.Register(44, 300, "GPSD", "SIM-808", self.phone[-7:], plate_color, plate, layout)
        answer = await self.request(message)
        if not isinstance(answer, dl.RegisterResponse) or answer.result != m.RESULT_OK:
            raise TerminalError(f"register refused: {answer}")
        return answer.auth_code

    async def authenticate(self, code: str) -> None:
        layout = 2019 if self.edition == 2019 else 2013
        await self._expect_ok(m.Authenticate(code, "860000000000001", "1.0", layout))

    async def heartbeat(self) -> None:
        await self._expect_ok(m.Heartbeat())

    async def report(self, loc: m.Location) -> None:
        await self._expect_ok(loc)

    async def report_batch(self, locations: list[m.Location], *, backfill: bool = True) -> None:
        kind = m.BATCH_BACKFILL if backfill else m.BATCH_NORMAL
        await self._expect_ok(m.LocationBatch(kind, tuple(locations)))

    async def _expect_ok(self, message: m.Message) -> None:
        answer = await self.request(message)
        if not isinstance(answer, dl.PlatformResponse) or answer.result != m.RESULT_OK:
            raise TerminalError(f"{type(message).__name__} refused: {answer}")


async def _drive(args: argparse.Namespace) -> None:
    """Drive a circle of ~1 km around the start point, one fix per interval."""
    async with SimulatedTerminal(args.phone, edition=args.edition) as terminal:
        await terminal.connect(args.host, args.port)
        await terminal.authenticate(await terminal.register(plate=args.plate, layout_2011=args.register_2011))
        for i in range(args.count):
            angle = 2 * math.pi * i / max(args.count, 1)
            lon = args.lon + 0.01 * math.cos(angle)
            lat = args.lat + 0.01 * math.sin(angle)
            heading = math.degrees(angle) + 90
            await terminal.report(location(time.time(), lon, lat, speed_kmh=30, heading=heading, sats=12))
            print(f"{args.phone}: fix {i + 1}/{args.count} {lon:.6f},{lat:.6f}")
            for header, command in terminal.received_commands():
                print(f"{args.phone}: command {header.msg_id:#06x} {command}")
                await terminal.acknowledge(header, position=location(time.time(), lon, lat))
            await asyncio.sleep(args.interval)


def main() -> None:
    parser = argparse.ArgumentParser(description="A simulated JT/T 808 terminal")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7611)
    parser.add_argument("--phone", default="13800138000")
    parser.add_argument("--edition", type=int, choices=(2013, 2019), default=2013)
    parser.add_argument("--plate", default="粤B00001")
    parser.add_argument("--count", type=int, default=10)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--lon", type=float, default=114.0579)
    parser.add_argument("--lat", type=float, default=22.5431)
    parser.add_argument("--register-2011", action="store_true", help="register with the JT/T 808-2011 body")
    asyncio.run(_drive(parser.parse_args()))


if __name__ == "__main__":
    main()
