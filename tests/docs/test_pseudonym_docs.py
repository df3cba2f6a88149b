"""docs/architecture.md, "The twin id (pseudonym), exactly": the formula and the worked
example are what the code computes, and enough to re-implement it.

The example is read from the document. Each twin id is recomputed twice: with
``protocol.pseudonymize``, and with :func:`_as_written`, the four steps implemented from
the document's words with the standard library only.
"""

from __future__ import annotations

import ast
import hashlib
import hmac
import re
import unicodedata

from _markdown import REPO

from protocol import normalise_subject, pseudonymize

DOC = REPO / "docs/architecture.md"


def _section() -> str:
    text = DOC.read_text()
    start = text.index("### The twin id (pseudonym), exactly")
    end = text.find("\n#", start + 1)
    return text[start : end if end > 0 else len(text)]


def _as_written(key: bytes, epoch: int, subject: str) -> str:
    """The document's four steps, nothing from protocol."""
    text = unicodedata.normalize("NFC", subject.strip())
    if "@" in text:
        text = text.casefold()
    message = b"twinsync/twin/v1" + b"\x00" + text.encode("utf-8")
    mac = hmac.new(key, message, hashlib.sha256).digest()
    return f"{epoch}-{mac[:16].hex()}"


def test_worked_example_is_what_the_code_and_the_written_formula_compute() -> None:
    """Every row of the example table: the normalised form and the twin id from both
    implementations equal the document's; so do the message and MAC it quotes."""
    section = _section()
    key = bytes.fromhex(re.search(r"brand key `([0-9a-f]{64})`", section).group(1))  # type: ignore[union-attr]
    epoch = int(re.search(r"epoch `(\d+)`", section).group(1))  # type: ignore[union-attr]
    rows = re.findall(r"^\| `(\"[^`]*\")`[^|]*\| `([^`]*)`[^|]*\| `([^`]*)` \|$", section, re.M)
    assert len(rows) >= 3, "the example table is missing"
    for literal, normalised, twin in rows:
        subject = ast.literal_eval(literal)
        assert normalise_subject(subject) == normalised, literal
        assert pseudonymize(key, epoch, subject) == twin, literal
        assert _as_written(key, epoch, subject) == twin, literal
    message_hex, mac_hex = re.search(  # type: ignore[union-attr]
        r"the message is\s+`([0-9a-f]+)`.*?HMAC-SHA256\s+`([0-9a-f]{64})`", section, re.S
    ).groups()
    first = ast.literal_eval(rows[0][0])
    message = b"twinsync/twin/v1\x00" + normalise_subject(first).encode()
    assert message.hex() == message_hex
    assert hmac.new(key, message, hashlib.sha256).hexdigest() == mac_hex


def test_privacy_threat_model_states_the_same_formula() -> None:
    """docs/privacy.md's one-line formula names the separator and the hex encoding and
    points to the exact specification."""
    text = (REPO / "docs/privacy.md").read_text()
    start = text.index("## Threat model of the pseudonym")
    line = text[start : text.index("\n\n", text.index("The twin id is", start))]
    assert "\\x00" in line or "NUL" in line, line
    assert "hex" in line, line
    assert "docs/architecture.md" in line, line
