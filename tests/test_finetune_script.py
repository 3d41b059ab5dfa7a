"""benchmarks/finetune.py's result files: a later run merges into an earlier one's (``--merge``),
each algorithm keeps its own command and commit, and hand-written notes survive a rewrite."""

from __future__ import annotations

import argparse
import json

import pytest

from conftest import load_benchmark_script


@pytest.fixture(scope="module")
def ft():
    return load_benchmark_script("finetune")


def entry(scores, commit):
    curve = [{"step": 5000 * i, "normalized_score": s, "return_mean": 10.0 * s} for i, s in enumerate(scores)]
    return {"curves": [curve], "seconds": 12.0, "command": f"python finetune.py ({commit})", "commit": commit,
            "budget": "b", "date": "2026-01-01"}


def test_merge_keeps_earlier_algorithms_and_notes(ft, tmp_path):
    first = argparse.Namespace(merge=None, out=str(tmp_path), dataset="toy")
    stem = ft.write_results(first, {"iql": entry([50.0, 70.0, 90.0], "aaa")})
    md = stem.with_suffix(".md")
    md.write_text(md.read_text() + "\n## Notes\n\nIQL dipped once.\n")

    entries = ft.load_entries(str(stem.with_suffix(".json")), "toy")
    entries["awac"] = entry([40.0, 40.0, 60.0], "bbb")
    later = argparse.Namespace(merge=str(stem.with_suffix(".json")), out="elsewhere", dataset="toy")
    assert ft.write_results(later, entries) == stem  # written over the earlier run's files
    text = md.read_text()
    # regret: mean over the online evaluations (step > 0) of 1 - score/100
    assert "| iql | 1 | 50.0 | 90.0 ± 0.0 | 0.200 | 12 | aaa |" in text
    assert "| awac | 1 | 40.0 | 60.0 ± 0.0 | 0.500 | 12 | bbb |" in text
    assert "python finetune.py (aaa)" in text and "python finetune.py (bbb)" in text
    assert text.count("## Notes") == 1 and text.rstrip().endswith("IQL dipped once.")
    assert stem.with_suffix(".csv").read_text().count("\n") == 1 + 3 + 3
    assert set(json.loads(stem.with_suffix(".json").read_text())["entries"]) == {"iql", "awac"}


def test_merge_rejects_another_dataset_and_incomplete_entries(ft, tmp_path):
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"dataset": "toy", "entries": {"iql": entry([1.0], "a")}}))
    with pytest.raises(SystemExit, match="holds dataset 'toy'"):
        ft.load_entries(str(path), "hopper")
    path.write_text(json.dumps({"dataset": "toy", "entries": {"iql": {"curves": []}}}))
    with pytest.raises(SystemExit, match=r"\['iql'\] lack curves"):
        ft.load_entries(str(path), "toy")
    path.write_text("{not json")
    with pytest.raises(SystemExit, match="cannot read it as JSON"):
        ft.load_entries(str(path), "toy")
