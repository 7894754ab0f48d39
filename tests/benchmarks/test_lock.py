"""requirements/bench.lock: the dev environment's exact pins plus the benchmark's own packages."""

from __future__ import annotations

import re
from pathlib import Path

REQUIREMENTS = Path(__file__).resolve().parents[2] / "requirements"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*==[^\s;\\]+)", re.M)


def _pins(lock: str) -> set[str]:
    return set(PIN.findall((REQUIREMENTS / lock).read_text()))


def test_bench_lock_keeps_every_dev_pin_and_adds_the_bench_extra() -> None:
    dev, bench = _pins("dev.lock"), _pins("bench.lock")

    assert dev <= bench, f"bench.lock moves {sorted(dev - bench)}"
    assert {p.split("==")[0] for p in bench} >= {"aiohttp", "litserve"}
    assert "litserve" in {p.split("==")[0] for p in bench - dev}  # aiohttp: tritonclient's too


def test_bench_lock_names_no_package_index() -> None:
    assert "://" not in (REQUIREMENTS / "bench.lock").read_text()
