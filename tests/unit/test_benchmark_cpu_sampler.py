"""The live benchmark's CPU sampler, on real processes: one spinning, one asleep."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from benchmarks.procs import CpuSampler

SPIN = "import time\nend = time.time() + 3\nwhile time.time() < end: pass"


def test_sampler_tells_a_spinning_process_from_a_sleeping_one(tmp_path: Path) -> None:
    spinning = subprocess.Popen([sys.executable, "-c", SPIN])
    sleeping = subprocess.Popen(["sleep", "3"])
    try:
        sampler = CpuSampler({"spin": spinning.pid, "sleep": sleeping.pid}, period_s=0.2)
        begin = time.time()
        sampler.start()
        time.sleep(1.5)
        sampler.stop()
        end = time.time()
    finally:
        spinning.kill()
        sleeping.kill()
        spinning.wait()
        sleeping.wait()
    cores = sampler.cores(begin, end)
    # A busy loop uses up to one core (less on a loaded machine); `sleep`, none.
    assert 0.2 < cores["spin"] <= 1.1
    assert cores["sleep"] < 0.05
    assert sampler.cores(end + 1, end + 2) == {}  # no samples there: no figure

    sampler.save(tmp_path / "cpu.csv")
    header, *rows = (tmp_path / "cpu.csv").read_text().splitlines()
    assert header == "t_s,spin,sleep"
    assert len(rows) == len(sampler.samples) - 1 >= 5
    assert max(float(row.split(",")[1]) for row in rows) > 0.2


def test_a_process_that_exits_keeps_the_cpu_it_had() -> None:
    spinning = subprocess.Popen([sys.executable, "-c", SPIN.replace("3", "0.6")])
    sampler = CpuSampler({"spin": spinning.pid}, period_s=0.2).start()
    spinning.wait()
    time.sleep(0.5)  # samples after it is gone (and reaped)
    sampler.stop()
    used = [cpu["spin"] for _, cpu in sampler.samples]
    assert used[-1] > 0.2
    assert used == sorted(used)  # never falls back to 0: no negative cores in cpu.csv
