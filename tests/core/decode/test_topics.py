"""One topic router for every input path, with the configured prefixes."""

from __future__ import annotations

from gpsd_server.core.decode.topics import Route, TopicRouter


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
