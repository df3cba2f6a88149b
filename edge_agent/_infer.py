"""infer: features and model predictions for the twins on this device.

Sits between consent and delta: every accepted signal updates its customer's
:class:`protocol.FeatureState` and, for gauges, the device's
:class:`protocol.SignalBaseline`; the anomaly model scores each gauge reading, and the
segment and churn models re-score a customer at most every ``every_ms`` of signal time.
What comes out are twin field values (``<product>.segment``, ``.churn_risk``,
``.anomalies_total`` and the ``*_model`` refs beside them, the features themselves as
``<product>.f_<feature>``, and the behaviour tags ``<product>.tag_<name>`` with the
catalog ref ``<product>.tags_ref``) that the twin book turns into ops like any other. Raw behaviour
never leaves the device: only these values do.

State (feature buckets, baselines, last scoring time) is JSON-able and is persisted by the
outbox in the same transaction as the ops it led to, so a restart resumes with the same
features the models had.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from protocol import (
    FEATURE_FIELDS,
    MODEL_FIELDS,
    TAGS_REF_FIELDS,
    Coverage,
    FeatureState,
    LocalTime,
    Scalar,
    SchemaError,
    SignalBaseline,
    feature_names,
    is_baselined,
)

if TYPE_CHECKING:
    from ._models import ModelStore
    from ._tags import TagBook

__all__ = ["STATE_FIELD", "ModelRunner"]

#: pseudo field under which a twin's model state is persisted (never a catalog field)
STATE_FIELD = "_models"
#: pseudo twin holding the device-wide anomaly baselines
_DEVICE = "_device"


class ModelRunner:
    """Feature state and predictions of one device (one product).

    ``zone``: the household's time zone (``[device] timezone``): features count days,
    dayparts and weekends on its local clock, and the anomaly baselines know each
    reading's local hour. The device's coverage (the hours it
    reported in, whoever the signal was about) is shared by its customers' features.
    """

    def __init__(
        self,
        store: ModelStore,
        product: str,
        every_ms: int,
        zone: str = "UTC",
        *,
        tags: TagBook | None = None,
    ) -> None:
        self.store = store
        #: the behaviour tag catalog, evaluated on the vector the models score (None: no tags)
        self.tags = tags
        self.product = product
        self.every_ms = every_ms
        self.clock = LocalTime(zone)
        self._coverage = Coverage(self.clock)
        self._features: dict[str, FeatureState] = {}
        self._scored: dict[str, int] = {}
        self._baselines: dict[str, SignalBaseline] = {}
        self._dirty: set[str] = set()
        self._field = {name: MODEL_FIELDS[(product, name)] for name in _OUTPUTS}
        self._names = feature_names(product)
        self._features_fields = [FEATURE_FIELDS[(product, n)] for n in self._names]

    def restore(self, values: dict[tuple[str, str], Any]) -> None:
        """Load persisted state (the twin book's values after the outbox loaded them)."""
        device = values.get((_DEVICE, STATE_FIELD))
        if isinstance(device, dict):
            try:
                # The coverage first: every customer's features read it.
                self._coverage = Coverage.from_state(device["coverage"], self.clock)
                self._baselines = {
                    name: SignalBaseline.from_state(name, s, self.clock)
                    for name, s in device["baselines"].items()
                }
            except (SchemaError, KeyError, TypeError, ValueError, AttributeError):
                pass  # a state from an older agent: the device's baselines start afresh
        for (twin, field), state in values.items():
            if field != STATE_FIELD or not isinstance(state, dict) or twin == _DEVICE:
                continue
            try:
                self._features[twin] = FeatureState.from_state(
                    state["features"], self.clock, self._coverage
                )
                self._scored[twin] = int(state["scored_ms"])
            except (SchemaError, KeyError, TypeError, ValueError):
                continue  # a state from an older agent: start that twin afresh

    def rescore(self, twin: str) -> None:
        """Score ``twin`` at its next signal (e.g. its consent changed, so outputs that
        were withheld may now be kept, or the other way round)."""
        self._scored.pop(twin, None)

    def knows(self, twin: str) -> bool:
        """Whether feature state is kept for ``twin``."""
        return twin in self._features

    def rename(self, old: str, new: str) -> None:
        """Carry ``old``'s feature state over to ``new`` (key rotation: same customer)."""
        if old in self._features:
            self._features[new] = self._features.pop(old)
            self._scored[new] = self._scored.pop(old)
            self._dirty.discard(old)
            self._dirty.add(new)

    def forget(self, twin: str) -> None:
        """Drop everything kept about ``twin`` (it was erased)."""
        self._features.pop(twin, None)
        self._scored.pop(twin, None)
        self._dirty.discard(twin)

    def observe(
        self, twin: str, signal: str, ts_ms: int, value: Scalar
    ) -> list[tuple[str, Scalar]]:
        """Account one accepted signal; return the model fields that change with it."""
        out: list[tuple[str, Scalar]] = []
        if self._coverage.observe(ts_ms):  # the device was on, whoever the signal is about
            self._dirty.add(_DEVICE)
        features = self._features.get(twin)
        if features is None:
            features = self._features[twin] = FeatureState(self.product, self.clock, self._coverage)
        features.update(signal, ts_ms, value)
        self._dirty.add(twin)
        if is_baselined(signal) and not isinstance(value, bool | str):
            baseline = self._baselines.get(signal)
            if baseline is None:
                baseline = self._baselines[signal] = SignalBaseline(signal, self.clock)
            scored = self.store.anomaly(baseline.observe(float(value), ts_ms))
            self._dirty.add(_DEVICE)
            if scored is not None:
                _score, flagged, ref = scored
                if flagged:
                    out.append((self._field["anomalies_total"], 1))
                out.append((self._field["anomaly_model"], ref))
        last = self._scored.get(twin)
        if last is None or ts_ms - last >= self.every_ms or ts_ms < last:
            self._scored[twin] = ts_ms
            vector = features.vector(ts_ms)
            # Rounded: the twin needs the gist, and tiny wiggles would each cost an op.
            out += [(self._features_fields[i], round(v, 4)) for i, v in enumerate(vector)]
            segment = self.store.segment(vector)
            if segment is not None:
                out += [
                    (self._field["segment"], segment[0]),
                    (self._field["segment_model"], segment[1]),
                ]
                # Inside the segment just given (the twin book turns only a change into
                # an op); same purpose as the segment, so withheld with it.
                micro = self.store.micro(vector, segment[0])
                if micro is not None:
                    out += [
                        (self._field["micro_segment"], micro[0]),
                        (self._field["micro_model"], micro[1]),
                    ]
            churn = self.store.churn(vector)
            if churn is not None:
                out += [
                    (self._field["churn_risk"], round(churn[0], 4)),
                    (self._field["churn_model"], churn[1]),
                ]
            if self.tags is not None:
                catalog = self.tags.catalog
                held = catalog.evaluate(self.product, dict(zip(self._names, vector, strict=True)))
                out += [*held.items(), (TAGS_REF_FIELDS[self.product], catalog.ref)]
        return out

    def take_state(self) -> list[tuple[str, dict[str, Any]]]:
        """(twin, state) of everything changed since the last call, for the outbox."""
        rows: list[tuple[str, dict[str, Any]]] = []
        for twin in self._dirty:
            if twin == _DEVICE:
                baselines = {n: b.to_state() for n, b in self._baselines.items()}
                rows.append((twin, {"baselines": baselines, "coverage": self._coverage.to_state()}))
            elif twin in self._features:
                state = {
                    "features": self._features[twin].to_state(),
                    "scored_ms": self._scored[twin],
                }
                rows.append((twin, state))
        self._dirty.clear()
        return rows


_OUTPUTS = (
    "segment",
    "segment_model",
    "micro_segment",
    "micro_model",
    "churn_risk",
    "churn_model",
    "anomalies_total",
    "anomaly_model",
)
