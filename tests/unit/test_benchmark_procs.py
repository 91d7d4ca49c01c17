"""The benchmark harness starts every worker on an empty data directory."""

from __future__ import annotations

import subprocess
from pathlib import Path

from benchmarks.procs import Children, Deployment
from heatstream.inventory import synthetic_inventory


class _Recording(Children):
    """Children that records what it would start instead of starting it."""

    def __init__(self) -> None:
        super().__init__()
        self.started: list[list[str]] = []

    def start(self, argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
        self.started.append(argv)
        return None  # type: ignore[return-value]


def test_a_worker_starts_on_an_empty_datadir_even_in_a_reused_workdir(tmp_path: Path) -> None:
    # What an earlier run with the same --workdir leaves: a table database whose
    # offsets belong to a broker (in memory) that no longer exists.
    datadir = tmp_path / "worker" / "state-1"
    stale = datadir / "v1" / "tables" / "processor-state-0.db"
    stale.mkdir(parents=True)
    (stale / "CURRENT").write_text("MANIFEST-000005\n")
    dep = Deployment("127.0.0.1:9", "bwabc123.", 8, synthetic_inventory(2, 1), tmp_path / "worker")
    children = _Recording()
    children.worker(dep, datadir, tmp_path / "worker" / "worker.log")
    assert not datadir.exists()
    (argv,) = children.started
    assert argv[argv.index("--datadir") + 1] == str(datadir)
