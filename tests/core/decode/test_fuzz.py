"""The decoder fuzzer at a small size: nothing escapes, every rejection has a
reason, and valid fixes interleaved with garbage all come back."""

from __future__ import annotations

import json

import pytest

from tools.fuzz_decoders import fuzz, main


def test_fuzz_20000_payloads() -> None:
    report = fuzz(20_000, seed=7)
    assert report.failure_count == 0, "\n".join(report.failures)
    assert report.interleaved_valid > 1000
    assert report.interleaved_returned == report.interleaved_valid
    assert report.fixes > 1000
    reasons = {r.split(":", 1)[1] for r in report.rejects}
    assert {"not_json", "wrong_type", "not_object", "ts_invalid", "position_missing", "oversize"} <= reasons


def test_deep_nesting_and_bad_utf8_are_not_json() -> None:
    from gpsd_server.core.decode.native import decode_native
    from gpsd_server.settings import IngestSettings

    limits = IngestSettings()
    for payload in (b"[" * 100_000, b'{"v\xaf3": 1}'):
        (err,) = decode_native("V1", payload, now=1.8e9, limits=limits)
        assert getattr(err, "reason", None) == "not_json"


@pytest.mark.parametrize(
    ("field", "reason"), [("ts", "ts_invalid"), ("lon", "position_invalid"), ("speed_kmh", "wrong_type")]
)
def test_integers_beyond_float_range_are_rejected_not_raised(field: str, reason: str) -> None:
    from gpsd_server.core.decode.native import decode_native
    from gpsd_server.settings import IngestSettings

    doc = {"ts": 1_800_000_000, "lon": 112.3, "lat": 28.5, field: "HUGE"}
    payload = json.dumps(doc).replace('"HUGE"', "1" + "7" * 400).encode()
    (err,) = decode_native("V1", payload, now=1.8e9, limits=IngestSettings())
    assert getattr(err, "reason", None) == reason


def test_command_reports_ok(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-n", "2000", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert "calls/s" in out and "rejections by reason" in out and "OK:" in out
