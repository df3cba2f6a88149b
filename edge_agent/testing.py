"""What tests and tools need beyond the agent's public API: its internals, named.

- the twin book and its parts: :class:`TwinBook` (pseudonymize, twin state, pending
  ops, key-rotation carry-over), :class:`ConsentGate` (consent per purpose, suppressed
  fields), :class:`Outbox` (the SQLite file the agent commits into) and
  :class:`DownlinkFreshness` with its windows (hub commands applied once, in order);
- the model runtime: onnxruntime's C API through ctypes (:class:`Runtime`,
  :func:`runtime`, :func:`find_library`, :data:`LIBRARY_ENV`, :class:`IOInfo`,
  :class:`Output`), sessions (:func:`open_session`), a verified model (:class:`Runner`,
  its :data:`INPUT` and :data:`OUTPUT` names) and :func:`release_code_pages`.

Nothing here is needed to run or use an agent: :class:`edge_agent.Agent` builds all of
it from its config. Importing this module does not load the onnxruntime library (only
:func:`runtime` does, on first use).
"""

from __future__ import annotations

from ._consent import ConsentGate
from ._freshness import COMMAND_WINDOW_MS, FIRST_CONTACT_SLACK_MS, DownlinkFreshness
from ._model_runner import INPUT, OUTPUT, Runner
from ._ort import LIBRARY_ENV, IOInfo, Output, Runtime, find_library, runtime
from ._ort_session import open_session
from ._outbox import Outbox
from ._pages import release_code_pages
from ._twin import TwinBook

__all__ = [
    "COMMAND_WINDOW_MS",
    "FIRST_CONTACT_SLACK_MS",
    "INPUT",
    "LIBRARY_ENV",
    "OUTPUT",
    "ConsentGate",
    "DownlinkFreshness",
    "IOInfo",
    "Outbox",
    "Output",
    "Runner",
    "Runtime",
    "TwinBook",
    "find_library",
    "open_session",
    "release_code_pages",
    "runtime",
]
