"""The MQTT topic scheme: the only place topics are built or parsed.

``ts/v1/{brand}/{device}/{channel}`` for everything a single device sends or receives,
so a broker ACL can confine a device to ``ts/v1/{brand}/{device}/#``; and
``ts/v1/{brand}/broadcast/{channel}`` for messages to every device of a brand.
No personal data is ever part of a topic: devices and brands are provisioned names.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from ._errors import IdentifierError, TopicError
from ._ids import check_brand, check_device

__all__ = [
    "BROADCAST",
    "PREFIX",
    "Channel",
    "DeviceTopic",
    "broadcast_topic",
    "hub_subscriptions",
    "parse_topic",
    "topic",
]

PREFIX = "ts/v1"
BROADCAST = "broadcast"


class Channel(enum.StrEnum):
    """What a message on a device topic is for, and who sends it."""

    DELTA = "delta"  # device -> hub: twin ops, signed, QoS 1
    STATUS = "status"  # device -> hub: retained online/offline, last will
    ACK = "ack"  # hub -> device: seqs durably written (or rejected for good)
    DESIRED = "desired"  # hub -> device: desired configuration
    MODEL = "model"  # hub -> device, retained: the models the device should run
    OFFER = "offer"  # hub -> device: an offer of a strategy-lab experiment for its twins


@dataclass(frozen=True, slots=True)
class DeviceTopic:
    """A parsed device topic."""

    brand: str
    device: str
    channel: Channel


def topic(brand: str, device: str, channel: Channel) -> str:
    """Build the topic of one device's channel, validating both ids."""
    return f"{PREFIX}/{check_brand(brand)}/{check_device(device)}/{channel.value}"


def broadcast_topic(brand: str, channel: str) -> str:
    """The topic of a message to every device of ``brand`` (e.g. ``tombstone``)."""
    return f"{PREFIX}/{check_brand(brand)}/{BROADCAST}/{channel}"


def parse_topic(value: str) -> DeviceTopic:
    """Parse a device topic; raise :class:`TopicError` for anything else."""
    parts = value.split("/")
    if len(parts) != 5 or f"{parts[0]}/{parts[1]}" != PREFIX:
        raise TopicError(f"topic {value!r} is not ts/v1/<brand>/<device>/<channel>")
    try:
        brand = check_brand(parts[2])
        device = check_device(parts[3])
        channel = Channel(parts[4])
    except (IdentifierError, ValueError) as exc:
        raise TopicError(f"topic {value!r}: {exc}") from exc
    if device == BROADCAST:
        raise TopicError(f"topic {value!r} is a broadcast topic, not a device topic")
    return DeviceTopic(brand, device, channel)


def hub_subscriptions(group: str | None, brands: Sequence[str] = ()) -> list[str]:
    """Topic filters the hub subscribes to (a shared subscription when ``group`` is set).

    ``brands`` limits the hub to those tenants (e.g. one hub deployment per brand on a
    shared broker); empty means every brand.
    """
    tenants = [check_brand(b) for b in brands] or ["+"]
    filters = [
        f"{PREFIX}/{tenant}/+/{channel.value}"
        for tenant in tenants
        for channel in (Channel.DELTA, Channel.STATUS)
    ]
    if group:
        return [f"$share/{group}/{f}" for f in filters]
    return filters
