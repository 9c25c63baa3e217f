"""The raw bench's kernel count of the workers' memory (bench/parts/common.py `MemoryCgroup`):
a process started through its prefix is charged there, each page once, from its first page."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from parts.common import MemoryCgroup

# a parent that touches 64 MiB, then forks a child that touches 32 MiB of its own: summed VmRSS
# would count the parent's pages twice (the child maps them), the cgroup once
ALLOCATE = """
import os, time
heap = bytearray(64 * 2**20)
pid = os.fork()
if pid == 0:
    mine = bytearray(32 * 2**20)
    time.sleep(1.0)
    os._exit(0)
time.sleep(1.0)
os.waitpid(pid, 0)
"""


def test_a_process_started_through_the_prefix_and_its_fork_are_charged_once_each_page() -> None:
    cgroup = MemoryCgroup.create("zxs-test-bench")
    if cgroup is None:
        pytest.skip("no memory cgroup can be made here (needs root and a cgroup file system)")
    try:
        process = subprocess.Popen([*cgroup.prefix, sys.executable, "-c", ALLOCATE])
        while process.poll() is None:
            cgroup.sample()
            time.sleep(0.02)
        assert process.returncode == 0
        assert 64 + 32 <= cgroup.peak_anon < 64 * 2 + 32
        assert cgroup.peak_working_set >= cgroup.peak_anon
        assert cgroup.peak_charged() >= cgroup.peak_working_set
    finally:
        cgroup.remove()
    assert not cgroup.path.exists()
