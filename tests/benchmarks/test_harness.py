"""The harness leaves its results behind as it goes, so a run stopped part-way keeps them."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import harness
from benchmarks.systems import RunSettings, System


class _NoLoad:
    """Stands in for the pool of load processes, which the stubbed systems never use."""

    def __init__(self, processes: int) -> None:
        pass

    def close(self) -> None:
        pass


def test_results_are_handed_on_after_each_system(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    systems = tuple(System(name, (), {}, "/health", False) for name in ("service", "null"))
    plan = harness.Plan(
        settings=RunSettings(tmp_path, "cpu", 1),
        inprocess=False,
        systems=systems,
        bodies=("multipart",),
        concurrency=(1,),
        warmup_s=1.0,
        duration_s=1.0,
        client_processes=1,
        logs=tmp_path,
    )
    monkeypatch.setattr(harness, "photo_jpegs", lambda: [b"jpeg"])
    monkeypatch.setattr(harness, "LoadGenerator", _NoLoad)
    monkeypatch.setattr(harness, "measure_system", lambda system, *rest: [{"system": system.name}])
    saved: list[list[str]] = []

    harness.run(plan, checkpoint=lambda r: saved.append([p["system"] for p in r["points"]]))

    assert saved == [["service"], ["service", "null"]]
