"""results.json -> one PNG: images/s and p99 latency against concurrency, one line per system.

Drawn on matplotlib's Agg canvas without pyplot, as ``app.training.plots`` does: no global figure
state and no GUI backend.
"""

from __future__ import annotations

from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def plot(results: dict, path: Path) -> Path:
    """Draw one row per body type (throughput left, p99 right) and save it to ``path``."""
    bodies = list(dict.fromkeys(p["body"] for p in results["points"]))
    figure = Figure(figsize=(12, 4.2 * len(bodies)), layout="constrained")
    axes = figure.subplots(len(bodies), 2, squeeze=False)
    systems = list(dict.fromkeys(p["system"] for p in results["points"]))
    colours = {system: f"C{i}" for i, system in enumerate(systems)}  # the same in every panel
    levels = results["config"]["concurrency"]
    ceiling = results.get("inprocess")
    for row, body in zip(axes, bodies, strict=True):
        throughput, p99 = row
        for system in systems:
            points = [p for p in results["points"] if (p["system"], p["body"]) == (system, body)]
            if not points:
                continue
            style = {"marker": "o", "label": system, "color": colours[system]}
            x = [p["concurrency"] for p in points]
            throughput.plot(x, [p["images_per_s"] for p in points], **style)
            p99.plot(x, [p["p99_ms"] for p in points], **style)
        if ceiling:
            throughput.axhline(
                ceiling["best_images_per_s"],
                color="grey",
                linestyle="--",
                label=f"in-process, batch {ceiling['best_batch']}",
            )
        p99.set_yscale("log")
        for axis, label in ((throughput, "images/s"), (p99, "p99 latency (ms)")):
            axis.set_xscale("log", base=2)
            axis.set_xticks(levels, [str(c) for c in levels])
            axis.set_xlabel("concurrent clients")
            axis.set_ylabel(label)
            axis.set_title(f"{label}, {body} bodies")
            axis.grid(True, alpha=0.3)
            axis.legend(fontsize="small")
    figure.suptitle(f"{results['machine']['cpu']}, {results['machine']['gpu']}", fontsize="small")
    FigureCanvasAgg(figure)
    figure.savefig(path, dpi=110)
    return path
