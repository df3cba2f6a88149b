"""openapi: the hub's OpenAPI 3.1 document, one module per area of the API.

``document()`` assembles it; ``OPERATIONS`` lists every documented route (a route the
hub serves without one fails tests/hub/test_openapi.py); ``serve_document`` answers
``GET /v1/openapi.json``.
"""

from __future__ import annotations

from ._document import OPERATIONS, document, document_bytes, serve_document
from ._schema import Operation, Param

__all__ = ["OPERATIONS", "Operation", "Param", "document", "document_bytes", "serve_document"]
