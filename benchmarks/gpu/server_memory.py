"""A running server's memory, read from outside it: what torch holds, what the driver charges, RSS.

The server is a process of its own, so ``torch.cuda.memory_allocated`` here would read this
process's allocator, not the server's. Instead: the server's own ``/metrics`` gauges (torch's
allocated and reserved bytes on the model's device, exported on CUDA only), NVML's per-process
usage for the server's processes (which also counts the CUDA context and nvJPEG's buffers, outside
torch's allocator), and the resident host memory of its process group.
"""

from __future__ import annotations

import urllib.request
from contextlib import suppress

import torch
from prometheus_client.parser import text_string_to_metric_families

from benchmarks.observe import group_rss_bytes, group_stats

GAUGES = {
    "allocated_bytes": "resnet_serve_gpu_memory_allocated_bytes",
    "reserved_bytes": "resnet_serve_gpu_memory_reserved_bytes",
}


def torch_gauges(base_url: str) -> dict[str, float | None]:
    """The server's torch allocator figures from ``GET /metrics``; None where it exports none."""
    with urllib.request.urlopen(base_url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    values = {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    return {key: values.get(name) for key, name in GAUGES.items()}


def nvml_bytes(pids: set[int]) -> dict[str, int | None]:
    """GPU memory NVML charges to ``pids`` on device 0, and the device's total in use.

    None where there is no NVML (no pynvml, no driver) and, for the processes, where NVML lists
    none of them (in a container it may list host pids, which differ from ours).
    """
    found: dict[str, int | None] = {"nvml_process_bytes": None, "nvml_device_used_bytes": None}
    try:
        import pynvml  # nvidia-ml-py: locked for Linux, carried to the GPU machine in .whl/
    except ImportError:
        return found
    with suppress(pynvml.NVMLError):
        pynvml.nvmlInit()
        try:
            device = pynvml.nvmlDeviceGetHandleByIndex(0)
            found["nvml_device_used_bytes"] = pynvml.nvmlDeviceGetMemoryInfo(device).used
            processes = pynvml.nvmlDeviceGetComputeRunningProcesses(device)
            ours = [p.usedGpuMemory or 0 for p in processes if p.pid in pids]
            found["nvml_process_bytes"] = sum(ours) if ours else None
        finally:
            pynvml.nvmlShutdown()
    return found


def sample(base_url: str, group: int) -> dict[str, float | int | None]:
    """Everything above for the server at ``base_url`` whose process group is ``group``."""
    memory: dict[str, float | int | None] = {"rss_bytes": group_rss_bytes(group)}
    memory |= torch_gauges(base_url)
    if torch.cuda.is_available():
        memory |= nvml_bytes(set(group_stats(group)))
    return memory
