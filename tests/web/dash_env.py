"""What tests/web's hub holds (built by the ``dash`` fixture, conftest.py)."""

from __future__ import annotations

import json
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: a twin text field a customer's device could carry (64 characters at most)
XSS = '<img src=x onerror="window.__xss=1">'


@dataclass
class Dash:
    """The hub the pages are loaded from, and what the tests know it holds."""

    url: str
    brand: str
    token: str  # every scope
    read_token: str  # scope read only
    other_brand: str
    other_token: str
    other_twin: str
    xss_twin: str
    tmp: Path

    def api(self, path: str, token: str | None = None) -> Any:
        """GET ``path`` of the hub with ``token`` (the brand's full key by default)."""
        req = urllib.request.Request(
            self.url + path, headers={"Authorization": f"Bearer {token or self.token}"}
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read())
