"""glibc's malloc thresholds for large CPU tensors (semtts.host_memory)."""

import os
import subprocess
import sys

import pytest

from semtts.host_memory import keep_freed_memory

# a layer's work on 40 MB tensors, repeated: the page faults of its last three runs. glibc serves torch's
# aligned allocations from freed heap memory once the heap holds enough of it (after a few runs)
STEADY_FAULTS = """
import resource, torch
from semtts.host_memory import keep_freed_memory
print(keep_freed_memory())
x = torch.ones(10 * 2**20)
def work():
    return float((torch.nn.functional.leaky_relu(x, 0.1) + x)[-1])
for _ in range(9):
    work()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(3):
    work()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def steady_faults(setting: str | None) -> tuple[str, int]:
    env = {k: v for k, v in os.environ.items() if k != "SEMTTS_GLIBC_MALLOC"}
    if setting:
        env["SEMTTS_GLIBC_MALLOC"] = setting
    done = subprocess.run([sys.executable, "-c", STEADY_FAULTS], capture_output=True, text=True, env=env,
                          timeout=120, check=True)
    kept, faults = done.stdout.split()
    return kept, int(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt (Linux)")
def test_freed_tensor_memory_is_reused_without_page_faults():
    kept, faults = steady_faults(None)
    assert kept == "True" and faults < 1000  # reused heap memory: no new pages
    kept, faults = steady_faults("default")
    assert kept == "False" and faults > 30000  # glibc's default: a fresh mmap per tensor, a fault per 4 KB page


def test_environment_leaves_glibc_as_it_is(monkeypatch):
    monkeypatch.setenv("SEMTTS_GLIBC_MALLOC", "default")
    assert keep_freed_memory() is False
