"""A customer's twin ids, recomputed from the identifier the brand knows them by.

There is no table from twins back to people: a data-subject request names the customer
(an e-mail address, an account id), and the hub computes their pseudonym under every key
epoch it holds for the brand (``protocol.pseudonymize``, as the devices do). The raw
identifier is used in memory for that and forgotten: it is never stored or logged.
"""

from __future__ import annotations

from pathlib import Path

from cloud_hub._errors import CloudHubError, RequestError
from protocol import TwinSyncError, check_brand, pseudonymize

__all__ = ["Subjects"]


class Subjects:
    """Twin ids of a subject, from the brands' keys in the hub's secrets directory."""

    def __init__(self, secrets_dir: Path) -> None:
        self._secrets = Path(secrets_dir)

    def twins(self, brand: str, subject: str) -> list[str]:
        """The subject's twin id under every key epoch held for ``brand``.

        Raises RequestError: ``bad_brand``, ``unknown_brand`` (404: no key for the brand),
        ``bad_subject`` (nothing left once normalised); CloudHubError when a key file is
        unusable (the hub's own failure)."""
        try:
            folder = self._secrets / "brands" / check_brand(brand)
        except TwinSyncError as exc:
            raise RequestError(str(exc), reason=exc.reason) from None
        keys = sorted(folder.glob("*.key"))
        if not keys:
            raise RequestError(
                f"no pseudonymization key for brand {brand}", reason="unknown_brand", status=404
            )
        twins = []
        for path in keys:
            if not path.stem.isdigit():
                continue
            try:
                twins.append(pseudonymize(path.read_bytes(), int(path.stem), subject))
            except TwinSyncError as exc:
                if exc.reason == "bad_subject":
                    raise RequestError(str(exc), reason=exc.reason) from None
                raise CloudHubError(
                    f"brand {brand}'s key of epoch {path.stem} is unusable: {exc}",
                    reason=exc.reason,
                ) from None
        return twins
