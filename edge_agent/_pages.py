"""Resident memory the agent no longer needs: start-up-only code of the model runtime.

Creating onnxruntime's env and a first session runs registration code for every operator
the library has: about 18 MiB of the library's pages become resident, of which inference
needs about 7 MiB (docs/benchmarks.md). Those are clean pages of a file, so handing them
back to the kernel (``madvise(MADV_PAGEOUT)``, Linux >= 5.4) loses nothing: a page needed
again is read back on its first use, and the memory is free for the rest of the device
in the meantime. The model store calls this after it loaded or installed models.
"""

from __future__ import annotations

import ctypes
import logging
import os
from pathlib import Path
from typing import Final

__all__ = ["release_code_pages"]

log = logging.getLogger("edge_agent.models")

#: madvise(2) advice: reclaim these pages now
_MADV_PAGEOUT: Final = 21


def release_code_pages(library: Path) -> int:
    """Advise the kernel to reclaim the resident pages of ``library``'s read-only
    mappings (code and constants); return how many bytes were advised, 0 where the
    system does not support it."""
    target = os.path.realpath(library)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        madvise = libc.madvise
        with open("/proc/self/maps") as maps:
            lines = maps.readlines()
    except (OSError, AttributeError):
        return 0  # not Linux, or no /proc: nothing to do
    madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    madvise.restype = ctypes.c_int
    advised = 0
    for line in lines:
        fields = line.split(maxsplit=5)
        if len(fields) < 6 or "w" in fields[1] or fields[5].strip() != target:
            continue
        start, end = (int(x, 16) for x in fields[0].split("-"))
        if madvise(start, end - start, _MADV_PAGEOUT) == 0:
            advised += end - start
        else:  # EINVAL before Linux 5.4: the pages stay, as they always did
            log.debug("madvise(MADV_PAGEOUT) refused: errno %d", ctypes.get_errno())
            return advised
    return advised
