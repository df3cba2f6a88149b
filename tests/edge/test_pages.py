"""After loading models the store hands the runtime's start-up-only code pages back to
the kernel; the models keep answering exactly as before (pages come back on use)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from edge_agent import BUILTIN_MODELS


def test_loading_models_releases_the_runtimes_start_up_code(tmp_path: Path) -> None:
    # A fresh process: the library's pages must not be resident from earlier tests.
    script = textwrap.dedent(
        """
        import json, os, random, sys
        from pathlib import Path
        from edge_agent.testing import open_session, release_code_pages, runtime
        from edge_agent import ModelStore
        from protocol import SigningKey

        def resident(path):
            total, inside = 0, False
            for line in open("/proc/self/smaps"):
                if "-" in line.split(" ", 1)[0] and len(line.split()) >= 5:
                    inside = line.split()[-1] == path
                elif inside and line.startswith("Rss:"):
                    total += int(line.split()[1])
            return total

        lib = os.path.realpath(runtime().library)
        models = sorted(Path(sys.argv[1]).glob("*.onnx"))
        sessions = [open_session(p.read_bytes()) for p in models]
        before = resident(lib)
        advised = release_code_pages(runtime().library)
        after = resident(lib)
        # The store does the same after it loaded its models, and still predicts.
        store = ModelStore(Path(sys.argv[2]), "coffee", {}, builtin=Path(sys.argv[1]))
        rng = random.Random(7)
        width = len(store.manifest("segment").inputs)
        segments = [store.segment([rng.random() for _ in range(width)]) for _ in range(50)]
        print(json.dumps({"before": before, "after": after, "advised": advised,
                          "segments": [s[0] for s in segments if s], "lib": resident(lib)}))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script, str(BUILTIN_MODELS), str(tmp_path / "models")],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "ORT_DISABLE_TELEMETRY": "1"},
    )
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["advised"] > 10 * 2**20  # the library's read-only mappings
    assert got["before"] > 10 * 1024  # KiB resident after env + sessions
    assert got["after"] < got["before"] / 2
    assert len(got["segments"]) == 50
    assert got["lib"] < got["before"]  # what inference pulled back is a fraction
