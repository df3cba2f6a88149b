"""Key rotation on the device: the config names earlier keys; the twin book carries a
known customer over (and never an erased one), once, with a link for the hub."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from edge_agent import ConfigError, load_config
from edge_agent.testing import ConsentGate, TwinBook
from protocol import ConsentEntry, SignalIn, TwinLink, pseudonymize

from .conftest import Bundle

KEY1, KEY2 = b"\x01" * 32, b"\x02" * 32


def _signal(seq: int, subject: str) -> SignalIn:
    return SignalIn(
        seq=seq, ts=int(time.time() * 1000), subject=subject, name="coffee.brew", value=1
    )


def _apply(book: TwinBook, seq: int, subject: str) -> None:
    now = int(time.time() * 1000)
    assert book.apply(_signal(seq, subject), now, 86_400_000, 60_000).status == "accepted"


def test_a_known_customer_moves_to_the_new_epoch_once() -> None:
    old_book = TwinBook(KEY1, 1, gate=ConsentGate(True))
    _apply(old_book, 1, "ann")
    old = pseudonymize(KEY1, 1, "ann")
    old_book.gate.apply([ConsentEntry(old, 1, (("marketing", True),), "device", "v1")])
    book = TwinBook(
        KEY2, 2, gate=old_book.gate, values=dict(old_book.values), previous=((1, KEY1),)
    )
    _apply(book, 2, "ann")
    new = pseudonymize(KEY2, 2, "ann")
    assert book.links_pending == [TwinLink(old, new)]
    assert book.values[(new, "coffee.brews_total")] == 2
    assert not any(k[0] == old for k in book.values)
    assert book.gate.allows(new, "marketing")
    assert not book.gate.knows(old)
    _apply(book, 3, "ann")
    _apply(book, 4, "bob")  # never seen under the old key: nothing to carry
    assert len(book.links_pending) == 1


def test_an_erased_twin_is_not_carried_over() -> None:
    book = TwinBook(KEY1, 1, gate=ConsentGate(True))
    _apply(book, 1, "ann")
    old = pseudonymize(KEY1, 1, "ann")
    book.forget({old})
    rotated = TwinBook(KEY2, 2, gate=book.gate, erased=set(book.erased), previous=((1, KEY1),))
    _apply(rotated, 2, "ann")
    assert rotated.links_pending == []


def test_the_config_checks_previous_keys(bundle: Bundle, tmp_path: Path) -> None:
    (bundle.root / "brand.1.key").write_bytes(KEY1)
    ok = load_config(
        bundle.root / "agent.toml",
        {"pseudonym": {"epoch": 2, "previous": [{"epoch": 1, "key_file": "brand.1.key"}]}},
        environ={},
    )
    assert ok.keys().previous == ((1, KEY1),)
    with pytest.raises(ConfigError, match="older than epoch"):
        load_config(
            bundle.root / "agent.toml",
            {"pseudonym": {"previous": [{"epoch": 1, "key_file": "brand.1.key"}]}},
            environ={},
        )
    same = load_config(
        bundle.root / "agent.toml",
        {"pseudonym": {"epoch": 2, "previous": [{"epoch": 1, "key_file": "brand.key"}]}},
        environ={},
    )
    with pytest.raises(ConfigError, match="new key"):
        same.keys()
