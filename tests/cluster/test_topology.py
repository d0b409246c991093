"""Names on the broker: MQTT subscriptions as AMQP bindings and back."""

from __future__ import annotations

from gpsd_server.cluster import topology
from gpsd_server.settings import ClusterSettings


def test_subscriptions_become_topic_bindings_and_routing_keys_become_topics_again() -> None:
    assert topology.routing_keys(["fleet/+/fix", "jt808/+/+/up", "owntracks/+/+"]) == [
        "fleet.*.fix",
        "jt808.*.*.up",
        "owntracks.*.*",
    ]
    # The MQTT plugin turns "/" into "."; the pipeline reads the terminal's own topic.
    assert topology.topic_of("fleet.MT-001.fix") == "fleet/MT-001/fix"
    assert topology.topic_of("jt808.gw1.013800000001.up") == "jt808/gw1/013800000001/up"


def test_partition_queue_names_sort_in_partition_order() -> None:
    s = ClusterSettings(queue_prefix="gpsd.ingest.p")
    names = [topology.queue_name(s, p) for p in range(12)]
    assert names[0] == "gpsd.ingest.p00" and names == sorted(names)
