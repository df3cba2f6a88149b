"""The pair the demo and the tests start: mosquitto + influxd in one temporary directory."""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path
from types import TracebackType

from ._influxd import Influxd
from ._mosquitto import Mosquitto

__all__ = ["LocalServices"]


class LocalServices:
    """mosquitto + influxd in one temporary directory; a context manager.

    ``keep=True`` leaves the directory (logs, data) behind for inspection.
    """

    def __init__(self, root: Path | None = None, *, keep: bool = False) -> None:
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if root is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="twinsync-services-")
            root = Path(self._tmp.name)
        self.root = root
        self.keep = keep
        self.mosquitto = Mosquitto(root / "mosquitto")
        self.influxd = Influxd(root / "influxd")

    def start(self) -> LocalServices:
        """Start both services (in parallel-friendly order: influxd takes longer)."""
        try:
            self.influxd.start()
            self.mosquitto.start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop both and remove the temporary directory unless ``keep``."""
        self.mosquitto.stop()
        self.influxd.stop()
        if self._tmp is not None and not self.keep:
            with contextlib.suppress(OSError):
                self._tmp.cleanup()

    def __enter__(self) -> LocalServices:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
