"""Shared fixtures. Tests are imported with --import-mode=importlib (avalanche installs a top-level
`tests` package into site-packages, so never import this folder as `tests.*`)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _isolated_data_root(tmp_path, monkeypatch):
    """No test reads or writes the user's real data cache unless it sets HYWU_BENCH_DATA itself."""
    monkeypatch.setenv("HYWU_BENCH_DATA", str(tmp_path / "data"))


@pytest.fixture
def fashion_mnist():
    """Tests on real Fashion-MNIST read Debian's dataset-fashion-mnist package (.ci/run installs it; the
    default data root is a fresh temporary folder). Elsewhere they skip, saying how to install it."""
    from scenarios.datasets import DEBIAN_FASHION_MNIST

    if not (DEBIAN_FASHION_MNIST / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip("needs Fashion-MNIST: apt-get install dataset-fashion-mnist (Debian/Ubuntu), or put the "
                    "idx files under $HYWU_BENCH_DATA/FashionMNIST/raw")
    return DEBIAN_FASHION_MNIST


@pytest.fixture(autouse=True)
def _restore_registries():
    """Plugins register into the process-wide registries: put them back as they were after each test."""
    from hywu_bench.registry import SCENARIOS, STRATEGIES, load_builtins

    load_builtins()
    saved = [(r, dict(r._entries), dict(r._aliases)) for r in (SCENARIOS, STRATEGIES)]
    yield
    for registry, entries, aliases in saved:
        registry._entries, registry._aliases = entries, aliases


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tiny models run faster on one thread, and much faster when other processes share the cores."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# The executor tests' grid: 2 strategies x 2 seeds on split-digits, long enough (50 epochs per experience,
# about a second of training per run) that a job can be killed or preempted in the middle of a run.
EXECUTOR_GRID = dict(scenario="split-digits", strategies=["naive", "lwf"], seeds=[0])  # two runs: one killed, one kept
EXECUTOR_SETS = ["epochs=50", "device=cpu"]
TIMING_COLUMNS = ("train_seconds", "samples_per_second")  # wall-clock costs differ between any two runs


@pytest.fixture(scope="session")
def executor_grid(tmp_path_factory):
    """The executor tests' grid run here with the local executor, one torch thread (as every job and task
    of the tests uses): (its results folder, its tables folder, the grid, the --set pairs)."""
    import torch

    from hywu_bench import sweep, tables

    out = tmp_path_factory.mktemp("local-grid")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = sweep.compare(**EXECUTOR_GRID, out=out / "results", sets=EXECUTOR_SETS, write_report=False)
    finally:
        torch.set_num_threads(threads)
    assert all(o.ok for o in result.outcomes), [o.error for o in result.outcomes]
    written = out / "tables"
    tables.write_tables(tables.load(out / "results"), EXECUTOR_GRID["scenario"], written)
    return out / "results", written, EXECUTOR_GRID, EXECUTOR_SETS


@pytest.fixture
def grid_args():
    """The `hywu-bench compare` arguments of an executor test's grid (add --executor and its options)."""

    def args(grid: dict, sets: list[str], out) -> list[str]:
        out_args = ["compare", "--scenario", grid["scenario"], "--strategies", ",".join(grid["strategies"]),
                    "--seeds", ",".join(map(str, grid["seeds"])), "--out", str(out), "-q"]
        for pair in sets:
            out_args += ["--set", pair]
        return out_args

    return args


@pytest.fixture
def assert_same_tables():
    """Every CSV table of a report folder equals the reference's, cost columns aside; probe cosines to 1e-6."""
    import pandas as pd

    def check(report_folder, reference_folder) -> None:
        names = sorted(p.name for p in reference_folder.glob("*.csv"))
        assert names and names == sorted(p.name for p in report_folder.glob("*.csv"))
        for name in names:
            got, want = pd.read_csv(report_folder / name), pd.read_csv(reference_folder / name)
            drop = [c for c in want.columns if c.startswith(TIMING_COLUMNS)]
            pd.testing.assert_frame_equal(got.drop(columns=drop), want.drop(columns=drop), check_exact=False,
                                          rtol=0, atol=1e-6, obj=name)

    return check


# An edited scenario file between two sweeps: every executor must refuse it as the local runner does.
EDITED_SEQUENCE = """name = "two-digits"
[defaults]
dataset = "digits"
train_size = 200
test_size = 100
[[experience]]
classes = [0, 1]
[[experience]]
classes = [{second}]
"""
EDITED_REFUSAL = "a complete run with a different configuration exists at"


def _edited_file_is_refused(tmp_path, *executor_args: str) -> None:
    """Two identical compares of a scenario file (run, then reused), then the file edited: refused."""
    from typer.testing import CliRunner

    from hywu_bench import results
    from hywu_bench.cli import app
    from hywu_bench.config import resolve_spec

    path = tmp_path / "stream.toml"
    path.write_text(EDITED_SEQUENCE.format(second="2, 3"))
    out = tmp_path / "results"
    args = ["compare", "--scenario", "sequence", "--strategies", "naive", "--seeds", "0", "--out", str(out),
            "--set", f"scenario.path={path}", "--set", "epochs=1", "-q", *executor_args]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0 and "1 skipped (already complete)" in again.output, again.output

    path.write_text(EDITED_SEQUENCE.format(second="2, 3, 4"))  # the same file name, another stream
    edited = CliRunner().invoke(app, args)
    assert edited.exit_code == 1, edited.output
    assert EDITED_REFUSAL in edited.output and "1 failed" in edited.output, edited.output
    spec = resolve_spec(flags={"scenario": "sequence", "strategy": "naive", "seed": 0, "epochs": 1},
                        sets=[f"scenario.path={path}"])
    assert results.verdict(spec, out).kind == "conflict"  # the stored run is untouched, and still refused


@pytest.fixture
def edited_file_is_refused():
    return _edited_file_is_refused


class _Crash(Exception):
    pass


class _CrashAfterSecond:
    """A progress reporter that raises once experience 1 is stored, as a killed process would leave it."""

    def start(self, spec, info): ...
    def epoch(self, experience, epoch, n_epochs): ...
    def finish(self): ...

    def experience(self, experience, accuracies, seconds):
        if experience == 1:
            raise _Crash


@pytest.fixture
def crash_after_second_experience():
    """`crash(spec, out)`: run `spec` into `out` and die right after its second experience is stored (its
    checkpoint written), so that `run(spec, out, resume=True)` has something to resume."""
    from hywu_bench.runner import run

    def crash(spec, out) -> None:
        with pytest.raises(_Crash):
            run(spec, out, reporter=_CrashAfterSecond())

    return crash
