"""benchmarks.side_by_side end to end, briefly: two models on a real server, every phase answered,
so a change to what it drives (the repository, ?model=) fails here rather than on a benchmark day."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.side_by_side import PHASES, main


def test_a_short_run_answers_every_phase_on_both_models(tmp_path: Path) -> None:
    assert main(["--duration", "1", "--clients", "2", "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    phases = results["phases"]
    assert list(phases) == list(PHASES)
    assert set(phases["one"]) == {"a"} and set(phases["split"]) == {"a", "b"}
    for phase in phases.values():
        for point in phase.values():
            assert set(point["statuses"]) == {"200"} and point["images_per_s"] > 0
    assert "| quiet | b | 1 |" in (tmp_path / "results.md").read_text()
