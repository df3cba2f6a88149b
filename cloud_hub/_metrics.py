"""A minimal Prometheus registry: counters and gauges with labels, text exposition 0.0.4."""

from __future__ import annotations

from collections import defaultdict

__all__ = ["Metrics"]

_Labels = tuple[tuple[str, str], ...]


class _Family:
    def __init__(self, name: str, kind: str, help_: str) -> None:
        self.name, self.kind, self.help = name, kind, help_
        self.values: dict[_Labels, float] = defaultdict(float)


class Metrics:
    """Named counters and gauges; ``render()`` gives the /metrics body."""

    def __init__(self) -> None:
        self._families: dict[str, _Family] = {}
        for name, kind, help_ in _DECLARED:
            self._families[name] = _Family(name, kind, help_)

    @staticmethod
    def declared() -> dict[str, str]:
        """Every metric the hub can emit: name -> kind (``counter`` or ``gauge``)."""
        return {name: kind for name, kind, _help in _DECLARED}

    def inc(self, name: str, amount: float = 1, **labels: str) -> None:
        """Add ``amount`` to counter ``name``."""
        self._families[name].values[tuple(sorted(labels.items()))] += amount

    def set(self, name: str, value: float, **labels: str) -> None:
        """Set gauge ``name``."""
        self._families[name].values[tuple(sorted(labels.items()))] = value

    def get(self, name: str, **labels: str) -> float:
        """Current value (0 if never touched); with no labels, the sum over all labels."""
        family = self._families[name]
        if labels:
            return family.values.get(tuple(sorted(labels.items())), 0.0)
        return sum(family.values.values())

    def render(self) -> str:
        """Prometheus text format."""
        out: list[str] = []
        for f in self._families.values():
            out.append(f"# HELP {f.name} {f.help}\n# TYPE {f.name} {f.kind}\n")
            for labels, value in sorted(f.values.items()):
                lbl = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
                out.append(f"{f.name}{{{lbl}}} {value:g}\n" if lbl else f"{f.name} {value:g}\n")
        return "".join(out)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


_DECLARED = (
    ("twinsync_hub_messages_total", "counter", "MQTT messages received, by kind"),
    ("twinsync_hub_rejected_total", "counter", "Messages rejected, by reason"),
    ("twinsync_hub_deltas_written_total", "counter", "Deltas durably written"),
    ("twinsync_hub_ops_written_total", "counter", "Twin ops (field values) durably written"),
    ("twinsync_hub_lines_written_total", "counter", "Line-protocol lines durably written"),
    ("twinsync_hub_write_batches_total", "counter", "InfluxDB write batches"),
    ("twinsync_hub_write_errors_total", "counter", "Failed InfluxDB writes (retried)"),
    ("twinsync_hub_acks_sent_total", "counter", "Ack messages published to devices"),
    ("twinsync_hub_model_sets_published_total", "counter", "Model sets published to devices"),
    ("twinsync_hub_rollout_errors_total", "counter", "Model rollout passes that failed"),
    ("twinsync_hub_stream_dropped_total", "counter", "Live events not delivered to streams"),
    ("twinsync_hub_erased_ops_dropped_total", "counter", "Ops for erased twins dropped"),
    ("twinsync_hub_blocked_ops_dropped_total", "counter", "Ops of objected/suppressed fields"),
    ("twinsync_hub_retention_swept_ms", "gauge", "Unix ms of the last sweep, by field class"),
    (
        "twinsync_hub_twin_links_total",
        "counter",
        "Twin links (key rotation) by state reached and reason",
    ),
    ("twinsync_hub_aliased_ops_total", "counter", "Ops of an old twin id stored under its new id"),
    (
        "twinsync_hub_retired_epoch_ops_dropped_total",
        "counter",
        "Ops for twins of a retired key epoch dropped",
    ),
    ("twinsync_hub_webhooks_total", "counter", "Webhook deliveries, by result"),
    ("twinsync_hub_trigger_events_total", "counter", "Trigger events recorded at ingest"),
    (
        "twinsync_hub_trigger_webhooks_total",
        "counter",
        "Trigger webhook deliveries, by result",
    ),
    (
        "twinsync_hub_trigger_streams_dropped_total",
        "counter",
        "Trigger event streams ended by the hub, by reason (slow_client)",
    ),
    ("twinsync_hub_api_refused_total", "counter", "API requests answered 4xx/5xx, by status"),
    ("twinsync_hub_api_connections", "gauge", "Open API connections (probe ones included)"),
    ("twinsync_hub_api_max_connections", "gauge", "The API's connection cap in force"),
    (
        "twinsync_hub_api_connections_refused_total",
        "counter",
        "API connections closed at once because the cap was reached",
    ),
    (
        "twinsync_hub_api_connections_cut_total",
        "counter",
        "API connections closed by the hub, by reason (body_timeout, probe_lifetime)",
    ),
    (
        "twinsync_hub_task_restarts_total",
        "counter",
        "Background loops restarted after an unexpected error, by task",
    ),
    ("twinsync_hub_batch_seconds_total", "counter", "Seconds spent writing batches"),
    (
        "twinsync_hub_index_seconds_total",
        "counter",
        "Seconds spent merging written batches into the twin query index",
    ),
    ("twinsync_hub_index_ops_total", "counter", "Ops merged into the twin query index"),
    (
        "twinsync_hub_index_ops_dropped_total",
        "counter",
        "Written ops the index left out: erased, blocked or moved since they were checked",
    ),
    ("twinsync_hub_queue_depth", "gauge", "Messages waiting between MQTT and the writer"),
    ("twinsync_hub_mqtt_connected", "gauge", "1 when connected to the broker"),
    ("twinsync_hub_store_up", "gauge", "1 when the last InfluxDB request succeeded"),
    ("twinsync_hub_device_skew_ms", "gauge", "Last measured device clock skew (sent - received)"),
    (
        "twinsync_hub_segment_share_alerts",
        "gauge",
        "Segments whose share moved beyond normal variation at the last check, by product",
    ),
)
