"""gpu_check.json -> gpu_check.md: the steps, the targets and one table per measurement.

Kept short enough to read whole in a terminal (the device tool returns only the last 12,000
characters of a run's output), with the numbers that say what limits each figure side by side:
on-device model time against the full ``predict`` path, and the service against the null-model
ingress ceiling at the same concurrency.
"""

from __future__ import annotations

from benchmarks.report import markdown_table

MISSING = "not measured: see the step's log"
MAX_LISTED = 10  # mismatches listed by name; the rest are in correctness.json
H100_CONTEXT = (
    "H100 context for ResNet-50 224 px from the issue: compute bound ~120k img/s, HBM bound ~73k, "
    "TensorRT FP16 ~35k."
)


def _number(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _machine(machine: dict | None) -> str:
    if not machine:
        return "Machine: not recorded."
    described = (
        f"{machine['gpu']}, {machine['cpu']} ({machine['cores']} cores); Python "
        f"{machine['python']}, torch {machine['torch']} (CUDA {machine['cuda']}, cuDNN "
        f"{machine['cudnn']}), torchvision {machine['torchvision']}, fastapi {machine['fastapi']}, "
        f"uvicorn {machine['uvicorn']}, aiohttp {machine['aiohttp']}."
    )
    differences = machine.get("differs_from_lock")
    if not differences:
        return f"{described} torch and torchvision as the lock pins them."
    return (
        f"{described} **Measured on the machine's own build, not the lock's:** "
        f"{'; '.join(differences)}."
    )


def _steps(summary: dict) -> list[str]:
    rows = [[s["name"], s["result"], f"{s['seconds']} / {s['limit_s']}"] for s in summary["steps"]]
    tests = summary["tests"]
    lines = ["## Steps", "", *markdown_table(["step", "result", "seconds / limit"], rows)]
    if tests:
        passed = tests["tests"] - tests["failures"] - tests["errors"] - tests["skipped"]
        counts = (
            f"tests/gpu: {passed} passed, {tests['failures']} failed, {tests['errors']} errors, "
            f"{tests['skipped']} skipped."
        )
        failing = [f"Failing: {', '.join(tests['failing'])}."] if tests["failing"] else []
        lines += [" ".join([counts, *failing]), ""]
    return lines


def _targets(targets: list[dict]) -> list[str]:
    met = {None: "n/a", True: "yes", False: "no"}
    rows = [
        [t["name"], _number(t["value"]), f">= {t['goal']:,.0f}", met[t["met"]], t["where"]]
        for t in targets
    ]
    header = ["target", "img/s", "goal", "met", "where"]
    return ["## Targets", "", *markdown_table(header, rows), H100_CONTEXT, ""]


def _sweep(sweep: dict | None) -> list[str]:
    title = "## Model only: normalise -> forward -> softmax on the device, images/s"
    if not sweep:
        return [title, "", MISSING, ""]
    batches = sorted({p["batch"] for p in sweep["points"]})
    rows = []
    for best in sweep["best"]:
        rate = {p["batch"]: p["images_per_s"] for p in sweep["points"] if _key(p) == _key(best)}
        rows.append([*_key(best), *(_number(rate.get(b)) for b in batches), str(best["batch"])])
    header = ["model", "precision", "mode", *(str(b) for b in batches), "best batch"]
    setup = " ".join([f"{sweep['size']} px on {sweep['device']}.", *sweep["notes"]])
    return [title, "", setup, "", *markdown_table(header, rows), *_predict(sweep)]


def _key(point: dict) -> tuple[str, str, str]:
    return point["arch"], point["precision"], point["mode"]


def _predict(sweep: dict) -> list[str]:
    """The full ``predict`` path next to the on-device time of the same configuration."""
    on_device = {(*_key(p), p["batch"]): p for p in sweep["points"]}
    rows = []
    for p in sweep["predict"]:
        device = on_device.get((*_key(p), p["batch"]))
        share = p["images_per_s"] / device["images_per_s"] if device else None
        rows.append(
            [
                *_key(p),
                str(p["batch"]),
                str(p["batches_in_flight"]),
                _number(p["images_per_s"]),
                _number(p["ms_per_batch"], 2),
                _number(device and device["ms_per_batch"], 2),
                _number(share and 100 * share),
            ]
        )
    header = ["model", "precision", "mode", "batch", "in flight", "img/s", "ms/call"]
    header += ["on-device ms", "% of on-device img/s"]
    return [
        "The whole `ModelRunner.predict` (host uint8 -> pinned stack -> copy -> forward -> copy "
        "back), called from as many threads as batches in flight, at each best point:",
        "",
        *markdown_table(header, rows),
    ]


def _precision(precision: dict | None) -> list[str]:
    title = "## Precision: top-1 agreement and probability differences"
    if not precision:
        return [title, "", MISSING, ""]
    rows = [
        [
            r["model"],
            r["precision"],
            r["device"],
            str(r["images"]),
            _number(r["top1_agreement_pct"], 1),
            f"{_number(r['abstain_agreement_pct'], 1)} ({_number(r['reference_abstain_pct'], 1)})",
            f"{r['max_abs_diff']:.2e}",
            f"{r['mean_abs_diff']:.2e}",
            str(r["distinct_top1"]),
            f"{_number(r['accuracy_pct'], 1)} ({_number(r['reference_accuracy_pct'], 1)})",
        ]
        for r in precision["rows"]
    ]
    header = ["model", "precision", "device", "images", "top-1 agree %"]
    header += ["abstain agree % (fp32 CPU abstains %)", "max abs diff"]
    header += ["mean abs diff", "distinct top-1", "accuracy % (fp32 CPU)"]
    graphs = "CUDA graphs on" if precision["graphs"] else "No CUDA graphs"
    setup = " ".join([f"{graphs}; the reference is {precision['reference']}.", *precision["notes"]])
    return [title, "", setup, "", *markdown_table(header, rows)]


def _mib(before: float | None, after: float | None) -> str:
    if before is None and after is None:
        return "-"
    return f"{_number(before and before / 2**20)} -> {_number(after and after / 2**20)}"


def _memory(memory: dict | None) -> list[str]:
    """torch allocated / reserved, NVML's charge to the server, and host RSS: MiB before -> after."""
    keys = ("allocated_bytes", "reserved_bytes", "nvml_process_bytes", "rss_bytes")
    if not memory:
        return ["-"] * len(keys)
    return [_mib(memory["before"].get(key), memory["after"].get(key)) for key in keys]


def _counts(variant: dict) -> list[str]:
    """Requests, errors and mismatches of a variant that ran; dashes for one that did not."""
    if "requests" not in variant:
        return ["-"] * 3
    errors = sum(variant["errors"].values())
    return [str(variant["requests"]), str(errors), str(len(variant["mismatches"]))]


def _correctness(correctness: dict | None) -> list[str]:
    title = "## Correctness: served top-1 against the CPU path, under concurrent load"
    if not correctness:
        return [title, "", MISSING, ""]
    uploads = ", ".join(f"{count} {kind}" for kind, count in correctness["uploads"].items())
    setup = (
        f"Uploads: {uploads}; each sent {correctness['repeats']} time(s) by "
        f"{correctness['clients']} concurrent clients. Reference: {correctness['reference']}, "
        f"right on {_number(correctness.get('reference_accuracy_pct'), 1)}% of the drawn classes, "
        f"{correctness.get('near_ties', '-')} near ties. Goal: 0 mismatches, one tolerated only "
        f"where the reference's top-1 led by less than {correctness['tie_margin']:g}."
    )
    rows = [
        [
            v["name"],
            ", ".join(f"{k}={value}" for k, value in v["settings"].items()),
            v["result"],
            *_counts(v),
            *_memory(v.get("memory")),
        ]
        for v in correctness["variants"]
    ]
    header = ["variant", "settings", "result", "requests", "errors", "mismatches"]
    header += ["torch allocated MiB", "torch reserved MiB", "NVML process MiB", "RSS MiB"]
    graphs = correctness.get("graphs_on_vs_off", {}).get("result", "not compared")
    wrong = [
        f"- {v['name']}: {m['image']} served {m['served']}, CPU path {m['expected']} "
        f"(margin {_number(m['reference_margin'], 3)}{', tolerated' if m['tolerated'] else ''})"
        for v in correctness["variants"]
        for m in v.get("mismatches", [])
    ]
    if len(wrong) > MAX_LISTED:
        wrong[MAX_LISTED:] = [f"- and {len(wrong) - MAX_LISTED} more (correctness.json)"]
    return [
        title,
        "",
        setup,
        "",
        *markdown_table(header, rows),
        f"CUDA graphs on against off, same requests: {graphs}.",
        "",
        *([*wrong, ""] if wrong else []),
    ]


def _http(http: dict | None) -> list[str]:
    title = "## End to end over HTTP: one photo-like 500x375 JPEG per request"
    if not http:
        return [title, "", MISSING, ""]
    config = http["config"]
    rows = [
        [
            p["system"],
            p["body"],
            str(p["concurrency"]),
            _number(p["images_per_s"]),
            _number(p["p50_ms"], 1),
            _number(p["p99_sent_ms"], 1),
            _number(p["mean_batch"], 1),
            _number(p["server_cpu_ms_per_image"], 2),
            str(sum(p["errors"].values())),
        ]
        for p in http["points"]
    ]
    header = ["system", "body", "c", "img/s", "p50 ms", "p99 ms, all sent", "mean batch"]
    header += ["server CPU ms/img"]
    return [
        title,
        "",
        f"`{http['command']}`; {config['duration_s']:g} s measured per point, "
        f"{config['client_processes']} load processes on the same machine. p99 is over every "
        "request sent in the window, a failed one counted as the client's timeout. "
        + "; ".join(f"{name}: {text}" for name, text in config["systems"].items())
        + ".",
        "",
        *markdown_table([*header, "errors"], rows),
    ]


def render(summary: dict) -> str:
    """The whole summary as Markdown, the targets near the top."""
    lines = [
        f"# GPU check ({summary['profile']}), {summary['generated']}",
        "",
        _machine(summary["machine"]),
        "",
        *_targets(summary["targets"]),
        *_steps(summary),
        *_sweep(summary["model_sweep"]),
        *_correctness(summary["correctness"]),
        *_precision(summary["precision"]),
        *_http(summary["http"]),
    ]
    return "\n".join(lines).rstrip() + "\n"
