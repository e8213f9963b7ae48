"""Shared helpers of the benchmark scripts: machine description, timing and
JSON-lines output. Every benchmark prints one JSON object per measurement
with the machine, the torch version and the device."""

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch

__all__ = ["code_version", "machine_info", "host_memory_as_commands", "median_ms", "emit"]


def code_version() -> str:
    """The git commit of the semtts code that runs (``+dirty`` with local changes to
    ``semtts/`` or ``hparams/``), or ``unknown`` outside a git checkout."""
    import semtts

    root = Path(semtts.__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no",
                                "--", "semtts", "hparams"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + ("+dirty" if dirty else "")


def machine_info(device: torch.device) -> dict[str, Any]:
    """Describe the machine and the device a measurement ran on (and the code's commit)."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {
        "host": platform.node(),
        "cpu": cpu,
        "cpu_cores": os.cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": str(device),
        "semtts": code_version(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def host_memory_as_commands() -> dict[str, str]:
    """Set glibc's malloc as semtts's commands do (:func:`semtts.host_memory.keep_freed_memory`;
    ``SEMTTS_GLIBC_MALLOC=default`` leaves it as it is) and say which for the records."""
    from semtts.host_memory import keep_freed_memory

    return {"glibc_malloc": "keep" if keep_freed_memory() else "default"}


def median_ms(fn: Callable[[], Any], device: torch.device, warmup: int = 3, iters: int = 10) -> float:
    """Median wall time of ``fn()`` in milliseconds after ``warmup`` calls,
    synchronising the device around every call."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(iters):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times)


def device_busy_ms(events) -> float:
    """The time the GPU was busy in ``events`` (a profile's raw events), in ms: the union of the
    intervals of its kernels, copies and sets. Annotation ranges (``record_function`` regions, the
    optimizers' step ranges) also carry device times; they span the kernels they launched and the
    idle gaps between them, so they are left out, and overlapping kernels count once.

    >>> from types import SimpleNamespace as Event
    >>> from torch.autograd import DeviceType
    >>> kernel = lambda start, end: Event(device_type=DeviceType.CUDA, is_user_annotation=False,
    ...                                   time_range=Event(start=start, end=end))
    >>> region = Event(device_type=DeviceType.CUDA, is_user_annotation=True, time_range=Event(start=0, end=9000))
    >>> device_busy_ms([kernel(0, 1000), kernel(500, 2000), region, kernel(4000, 5000)])
    3.0
    """
    spans = sorted((e.time_range.start, e.time_range.end) for e in events
                   if e.device_type == torch.autograd.DeviceType.CUDA and not e.is_user_annotation)
    busy_us, end = 0.0, float("-inf")
    for start, stop in spans:
        if stop > end:
            busy_us += stop - max(start, end)
            end = stop
    return busy_us / 1000


def gpu_busy_ms(step: Callable[[], Any], steps: int) -> float:
    """Run ``step`` ``steps`` times under the profiler (CUDA activity only) and return
    the GPU's busy time per step (:func:`device_busy_ms`): the floor of a step's time
    once the host costs nothing."""
    from torch.profiler import ProfilerActivity, profile

    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(steps):
            step()
        torch.cuda.synchronize()
    return device_busy_ms(prof.events()) / steps


def emit(record: dict[str, Any], out: str | None = None) -> None:
    """Print one JSON line (and append it to ``out`` when given)."""
    line = json.dumps(record, sort_keys=False)
    print(line, flush=True)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        with open(out, "a") as f:
            f.write(line + "\n")
    sys.stdout.flush()
