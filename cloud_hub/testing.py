"""What tests and tools need beyond the hub's public API: its internals, named.

- :func:`seal_downlink` signs a hub-to-device message with a hub key, so a test can
  forge, capture and replay downlinks exactly as the hub makes them;
- :func:`supervise` is the restart loop every background task of the hub runs under.

Nothing here is needed to run or use a hub.
"""

from __future__ import annotations

from ._downlink import seal_downlink
from ._supervise import supervise

__all__ = ["seal_downlink", "supervise"]
