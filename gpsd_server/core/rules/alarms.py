"""Terminal alarm bits (JT/T 808 alarm DWORD) as named alerts.

An alert starts when a bit becomes set and ends when it is cleared, so a
bit that stays set over many fixes is one alert. Which bits raise alerts is
``[rules] alarm_bits``. SOS and tampering (antenna cut or shorted, main power
cut) are critical; the rest are warnings. Key ``alarm:<name>``. Needs no
position: it also runs on fixes whose position is unusable.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from gpsd_server.core.rules.base import NO_EVENTS, Events, FixContext, OpenAlert, RestoreContext, Rule
from gpsd_server.model import Event, Severity

PREFIX = "alarm:"

ALARM_NAMES: dict[int, str] = {
    0: "sos",
    1: "overspeed",
    2: "fatigue_driving",
    3: "danger_warning",
    4: "gnss_fault",
    5: "antenna_disconnected",
    6: "antenna_short_circuit",
    7: "main_power_low",
    8: "main_power_cut",
    9: "lcd_fault",
    10: "tts_fault",
    11: "camera_fault",
    12: "ic_card_fault",
    13: "overspeed_prewarning",
    14: "fatigue_prewarning",
    15: "illegal_driving",
    16: "tyre_pressure",
    17: "right_turn_blind_spot",
    18: "daily_driving_time_exceeded",
    19: "overtime_parking",
    20: "area_in_out",
    21: "route_in_out",
    22: "segment_drive_time",
    23: "route_deviation",
    24: "vss_fault",
    25: "fuel_abnormal",
    26: "stolen",
    27: "illegal_ignition",
    28: "illegal_displacement",
    29: "collision",
    30: "rollover_warning",
    31: "illegal_door_open",
}
BIT_OF = {name: bit for bit, name in ALARM_NAMES.items()}
TAMPERING_BITS = frozenset({5, 6, 8})


def alarm_kind(bit: int) -> tuple[str, Severity]:
    if bit == 0:
        return "sos", "critical"
    if bit in TAMPERING_BITS:
        return "tampering", "critical"
    return "terminal_alarm", "warning"


@cache
def alarm_mask(bits: tuple[int, ...]) -> int:
    """The watched bits as one int (cached: the rule runs on every fix)."""
    mask = 0
    for bit in bits:
        mask |= 1 << bit
    return mask


@dataclass(slots=True)
class AlarmState:
    bits: int = 0  # the watched bits as last seen


class TerminalAlarms(Rule[AlarmState]):
    name = "terminal_alarms"
    keys = (PREFIX,)
    always_run = True  # reads the alarm word, which the rest match does not compare
    position_free = True

    def new_state(self) -> AlarmState:
        return AlarmState()

    def step(self, state: AlarmState, ctx: FixContext) -> Events:
        alarm = ctx.fix.alarm
        if not alarm and not state.bits:  # nearly every fix: no alarm set, none was
            return NO_EVENTS
        bits = alarm & alarm_mask(ctx.settings.alarm_bits)
        if bits == state.bits:
            return NO_EVENTS
        events: list[Event] = []
        changed = bits ^ state.bits
        for bit in range(32):
            if changed >> bit & 1:
                kind, severity = alarm_kind(bit)
                name = ALARM_NAMES[bit]
                if bits >> bit & 1:
                    events.append(ctx.event(kind, "start", PREFIX + name, severity, alarm=name, bit=bit))
                else:
                    events.append(ctx.event(kind, "end", PREFIX + name, severity, alarm=name, bit=bit))
        state.bits = bits
        return tuple(events)

    def restore(self, state: AlarmState, alert: OpenAlert, ctx: RestoreContext) -> None:
        bit = BIT_OF.get(alert.key.removeprefix(PREFIX))
        if bit is not None:
            state.bits |= 1 << bit


RULE = TerminalAlarms()
