"""Prometheus view of the server's counters, read at scrape time from :class:`~gpsd_server.status.Status`."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from gpsd_server.status import Status


def registry(status: Status) -> CollectorRegistry:
    reg = CollectorRegistry()
    reg.register(_Collector(status))
    return reg


class _Collector(Collector):
    def __init__(self, status: Status) -> None:
        self._s = status

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        s = self._s
        p, wr, hub = s.pipeline, s.writer, s.hub
        w = wr.stats
        yield CounterMetricFamily("gpsd_mqtt_messages", "MQTT messages received", value=s.broker.messages_in)
        yield CounterMetricFamily("gpsd_fixes_accepted", "Fixes accepted by the decoders", value=p.fixes_accepted)
        yield CounterMetricFamily("gpsd_fixes_late", "Fixes older than the vehicle's last", value=p.fixes_late)
        yield CounterMetricFamily(
            "gpsd_fixes_nofix", "Alarm/status messages without a position (rules only)", value=p.fixes_nofix
        )
        yield CounterMetricFamily(
            "gpsd_engine_errors", "Batches the rules failed on (stored without their events)", value=p.engine_errors
        )
        filtered = CounterMetricFamily(
            "gpsd_fixes_filtered", "Filter stage outcomes: drift, outlier_<reason>, released, outlier_confirmed",
            labels=["reason"],
        )  # fmt: skip
        for reason, n in sorted(s.filters.total.items()):
            filtered.add_metric([reason], n)
        yield filtered
        rej = CounterMetricFamily("gpsd_rejected", "Rejected payloads or batch items", labels=["reason"])
        for reason, n in sorted(p.rejects.total.items()):
            rej.add_metric([reason], n)
        yield rej
        yield GaugeMetricFamily("gpsd_db_queue_rows", "Fixes waiting for the database", value=wr.queued_rows)
        yield CounterMetricFamily("gpsd_db_rows_inserted", "New rows in fixes", value=w.rows_inserted)
        yield CounterMetricFamily("gpsd_db_duplicates", "Repeated fixes stored once", value=w.duplicates)
        yield CounterMetricFamily("gpsd_db_write_failures", "Failed write attempts (retried)", value=w.failures)
        yield CounterMetricFamily(
            "gpsd_db_write_refused", "Batches the database refused (not an outage): spooled", value=w.refused
        )
        yield GaugeMetricFamily("gpsd_db_last_batch_seconds", "Duration of the last batch write", value=w.last_batch_s)
        yield GaugeMetricFamily(
            "gpsd_db_available", "0 while the writer spools (database away)", value=int(wr.database_available)
        )
        yield CounterMetricFamily("gpsd_db_outages", "Times the writer switched to the spool", value=w.outages)
        yield GaugeMetricFamily("gpsd_spool_bytes", "Bytes in the disk spool", value=wr.spool_bytes)
        yield GaugeMetricFamily(
            "gpsd_spool_backlog_bytes", "Spooled bytes not yet replayed", value=wr.spool_backlog_bytes
        )
        yield GaugeMetricFamily("gpsd_spool_max_bytes", "Size limit of the disk spool", value=wr.spool_max_bytes)
        yield GaugeMetricFamily(
            "gpsd_spool_full", "1 while the spool is full (intake held back)", value=int(wr.spool_full)
        )
        yield CounterMetricFamily("gpsd_spool_full_events", "Times the spool was found full", value=w.spool_full_events)
        yield CounterMetricFamily("gpsd_spool_rows", "Fixes made durable in the spool", value=w.rows_spooled)
        yield CounterMetricFamily("gpsd_spool_replayed_rows", "Fixes replayed from the spool", value=w.rows_replayed)
        yield GaugeMetricFamily(
            "gpsd_flow_control_active", "1 while intake waits for the writer queue", value=int(wr.flow_control_active)
        )
        yield GaugeMetricFamily("gpsd_ws_clients", "Connected websocket clients", value=hub.client_count)
        yield CounterMetricFamily(
            "gpsd_ws_clients_dropped", "Slow websocket clients dropped", value=hub.clients_dropped
        )
        yield GaugeMetricFamily(
            "gpsd_mqtt_connected", "1 when connected to the broker", value=int(s.broker.is_connected)
        )
        if s.http is not None:
            yield GaugeMetricFamily(
                "gpsd_http_connections", "Open HTTP and websocket connections", value=s.http.open_connections
            )
            refused = CounterMetricFamily(
                "gpsd_http_refused", "HTTP connections refused or closed by a limit", labels=["reason"]
            )
            for reason in ("limit_concurrency", "header_timeout"):
                refused.add_metric([reason], s.http.refused.get(reason, 0))
            yield refused
        if s.tokens is not None:
            yield CounterMetricFamily(
                "gpsd_ws_revoked_closed", "Websockets closed because their token was revoked",
                value=s.tokens.revoked_closed,
            )  # fmt: skip
        raised = CounterMetricFamily("gpsd_alerts", "Alerts raised by kind", labels=["kind"])
        for kind, n in sorted(s.ledger.raised.items()):
            raised.add_metric([kind], n)
        yield raised
        if s.gateway is not None:
            gw = CounterMetricFamily("gpsd_jt808_gateway_events", "JT/T 808 gateway outcomes", labels=["reason"])
            for reason, n in sorted(s.gateway.counters.items()):
                gw.add_metric([reason], n)
            yield gw
