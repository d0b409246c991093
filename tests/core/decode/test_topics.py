"""One topic router for every input path, with the configured prefixes."""

from __future__ import annotations

import pytest

from gpsd_server.core.decode import Decoder
from gpsd_server.core.decode.topics import Route, TopicRouter
from gpsd_server.errors import DecodeError
from gpsd_server.model import Fix
from gpsd_server.settings import IngestSettings


def test_native_jt808_and_owntracks_topics_route_to_their_decoders() -> None:
    r = TopicRouter()
    assert r.route("fleet/MT-001/fix") == Route("native", "MT-001")
    assert r.route("jt808/13800138000/013800138000/up") == Route("jt808", "013800138000")
    assert r.route("owntracks/zhang.wei/pixel7") == Route("owntracks", "zhang.wei/pixel7")


def test_owntracks_sub_topics_are_not_positions_and_other_topics_no_route() -> None:
    r = TopicRouter()
    assert r.route("owntracks/zhang.wei/pixel7/event") == Route("ignored", "zhang.wei/pixel7")
    assert r.route("owntracks/zhang.wei/pixel7/info") == Route("ignored", "zhang.wei/pixel7")
    assert r.route("jt808/13800138000/013800138000/dn") is None
    assert r.route("jt808/x/up") is None
    assert r.route("fleet/a/b/fix") is None
    assert r.route("elsewhere/v1/fix") is None


def test_prefixes_are_configurable_and_may_contain_slashes() -> None:
    r = TopicRouter(native="city/a/fleet", jt808="gw808", owntracks="ot")
    assert r.route("city/a/fleet/V1/fix") == Route("native", "V1")
    assert r.route("gw808/c/138/up") == Route("jt808", "138")
    assert r.route("ot/a/b") == Route("owntracks", "a/b")
    assert r.route("owntracks/a/b") is None
    assert TopicRouter(jt808=None, owntracks=None).subscriptions() == ["fleet/+/fix"]
    assert r.subscriptions() == ["city/a/fleet/+/fix", "gw808/+/+/up", "ot/+/+"]


def test_a_decoder_that_fails_on_an_input_refuses_the_message_and_goes_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """A defect of ours on some input (int() on a superscript digit, 2026-12-06)
    ended the server, and each restart again as the broker redelivered it:
    now the message is refused with a reason (its payload goes to the dead
    letters) and the next one is decoded."""
    import gpsd_server.core.decode as decode

    def broken(key: str, payload: bytes, **kw: object) -> list[Fix | DecodeError]:
        if b"boom" in payload:
            raise ValueError("invalid literal for int() with base 10: '0\u00b2'")
        return real(key, payload, **kw)  # type: ignore[arg-type]

    real = decode.decode_native
    monkeypatch.setattr(decode, "decode_native", broken)
    d = Decoder(TopicRouter(), IngestSettings())
    (bad,) = d.decode("fleet/V1/fix", b'{"boom": 1}', 1.7e9)
    assert isinstance(bad, DecodeError) and bad.reason == "decoder_error"
    assert "ValueError" in bad.detail and "native" in bad.detail
    (good,) = d.decode("fleet/V1/fix", b'{"ts": 1700000000, "lon": 112.3, "lat": 28.5}', 1.7e9)
    assert isinstance(good, Fix)
