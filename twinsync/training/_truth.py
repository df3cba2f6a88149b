"""What the simulator knows and a device does not: the labels training and evaluation use.

One place reads firmware_sim's ground truth (personas, churn per product, when a
customer started to wind a product down, injected anomalies with their size and kind,
genuine large events), so the rest of the trainer never touches the truth by accident:
features come from :func:`._dataset.replay` (the device's own clock, zone and losses),
labels from here.
"""

from __future__ import annotations

from functools import cache

from firmware_sim import Fleet, SimDevice
from protocol import HEARTBEAT_PRODUCTS

__all__ = ["Truth", "device_zone"]


def device_zone(dev: SimDevice) -> str:
    """The time zone the device is configured with (what its agent knows; may be UTC
    although the household lives elsewhere: a device left on its factory setting)."""
    return dev.tz or "UTC"


class Truth:
    """Ground-truth labels of one fleet."""

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        self._device = cache(fleet.truth)

    def persona(self, subject: str) -> str:
        """The customer's persona (their main one if blended; segments are scored on it)."""
        return self.fleet.customer(subject).persona

    def churn_ms(self, subject: str, product: str) -> int | None:
        """When the customer stops using ``product`` (None: not in the data)."""
        return self.fleet.customer(subject).churns(product)

    def segment_group(self, subject: str, device_id: str) -> str:
        """How plainly the device's data can show the customer's persona: ``own`` (their
        uses are theirs: a device of one user, or one that tells its users apart, and a
        pure persona), ``blended`` (a customer between two personas), ``shared`` (a
        shared device that files uses under the account holder or mixes users up: its
        features describe a household). Segment accuracy is reported per group."""
        dev = self.fleet.device_map[device_id]
        if len(dev.users) > 1 and dev.attribution != "per_user":
            return "shared"
        return "blended" if self.fleet.customer(subject).blend else "own"

    def engagement(self, subject: str, product: str, at_ms: int) -> float:
        """The customer's use of ``product`` at ``at_ms`` relative to their usual use, by
        their churn ramp alone (1.0: not winding down; life events not counted). No
        device knows it; the evaluation uses it for the churn ceiling."""
        return self.fleet.customer(subject).engagement(at_ms, product)

    def disengaging(self, subject: str, product: str, at_ms: int) -> bool:
        """Whether the customer has started to wind down ``product`` at ``at_ms``."""
        customer = self.fleet.customer(subject)
        for churn in customer.product_churn:
            if churn.product == product:
                return at_ms >= churn.disengage_ms
        return customer.disengage_ms is not None and at_ms >= customer.disengage_ms

    def disengage_ms(self, subject: str, product: str) -> int | None:
        """When the customer starts to wind ``product`` down (None: never)."""
        customer = self.fleet.customer(subject)
        for churn in customer.product_churn:
            if churn.product == product:
                return churn.disengage_ms
        return customer.disengage_ms

    def anomalies(self, device_id: str) -> dict[int, tuple[str, str, int]]:
        """Firmware seq -> (size class, kind, episode) of the device's injected anomalies."""
        labels = self._device(device_id).anomalies
        return {seq: (a.size, a.kind, a.episode) for seq, a in labels.items()}

    def genuine_events(self, device_id: str) -> frozenset[int]:
        """Firmware seqs of genuine large events (not anomalies: a refill, a window)."""
        return frozenset(s for e in self._device(device_id).genuine for s in e.seqs)

    @staticmethod
    def reports_while_on(product: str) -> bool:
        """Whether the product's devices report on their own while on."""
        return product in HEARTBEAT_PRODUCTS
