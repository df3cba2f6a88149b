"""The query section of ``twinsync bench`` at a few hundred twins, on a real SQLite file
and a real PostgreSQL: it runs end to end and what it measures is checked for
correctness (every query answered, the counts those of the data written), never for
speed."""

from __future__ import annotations

from pathlib import Path

from bench import QUERIES, fleet_ops, query_bench


def test_the_query_section_runs_on_both_stores_and_counts_right(tmp_path: Path) -> None:
    figures = query_bench(tmp_path, twins=300, runs=3)
    by_store: dict[str, dict[str, int]] = {}
    for r in figures["results"]:
        by_store.setdefault(r["backend"], {})[r["label"]] = r["matches"]
        assert r["p50"] <= r["p99"]
    assert set(by_store) == {"sqlite", "postgresql"}
    assert by_store["sqlite"] == by_store["postgresql"]  # the same answers on both
    assert len(by_store["sqlite"]) == len(QUERIES) + 1  # and the reference lookup
    twins = {op[1] for ops in fleet_ops(300, 1_800_000_000_000) for op in ops}
    assert figures["rows"]["twin_index"] == len(twins) == 300
    assert by_store["sqlite"]["everyone, newest first, page 50"] == 300
    assert by_store["sqlite"]["nothing matches, sorted by a field"] == 0
