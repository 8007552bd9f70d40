"""Fair comparisons on fabricated runs: CIs and paired p-values equal hand-worked numbers, every stored metric
recomputes from accuracy_matrix.csv by the published formulas, replay at equal bytes, memory by kind and
budgets, roles and order from the registry, and the report's front page."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hywu_bench import pages, ranking, results, tables


def fabricate(out: Path, name: str, seed: int, R: list[list[float]], *, base: str | None = None,
              options: dict | None = None, role: str | None = None, stored: bool = True,
              metrics: dict | None = None, scenario: str = "split-toy") -> Path:
    """A complete run folder; `stored=False` writes no "strategy" entry in config.json, as older runs."""
    path = results.run_dir(out, scenario, name, seed)
    R = np.array(R, dtype=float)
    config = {"format_version": 1, "run_name": name,
              "spec": {"scenario": scenario, "strategy": base or name, "seed": seed}}
    if stored:
        config["strategy"] = {"name": base or name, "options": options or {}, **({"role": role} if role else {})}
    results.atomic_write_json(path / "config.json", config)
    results.atomic_write_text(path / "accuracy_matrix.csv", results.matrix_to_csv(np.full(len(R), 0.1), R))
    results.atomic_write_json(path / "metrics.json", {"train_seconds": 1.0, "samples_per_second": 100.0,
                                                      "trainable_parameters": 10, "stored_memory_bytes": 0,
                                                      **(metrics or {})})
    results.atomic_write_text(path / results.COMPLETE, "now\n")
    return path


# Final rows giving ACC = mean of the row: replay 0.7, 0.8, 0.9; ewc 0.5 on every seed; naive 0.55 twice.
REPLAY = [[[0.8, 0.0], [0.6, 0.8]], [[0.8, 0.2], [0.7, 0.9]], [[0.9, 0.1], [0.8, 1.0]]]
EWC = [[0.8, 0.0], [0.4, 0.6]]
NAIVE = [[[0.8, 0.0], [0.2, 0.9]], [[0.6, 0.1], [0.4, 0.7]]]
T_975_2 = 0.95 / math.sqrt(2 * 0.975 * 0.025)  # Student t quantile, 2 dof: (2p-1) / sqrt(2p(1-p)) = 4.3027


@pytest.fixture
def grid(tmp_path: Path) -> Path:
    for seed, R in enumerate(REPLAY):
        fabricate(tmp_path, "replay", seed, R)
        fabricate(tmp_path, "ewc", seed, EWC)
    for seed, R in enumerate(NAIVE):
        fabricate(tmp_path, "naive", seed, R)
    return tmp_path


def test_cis_and_paired_p_values_in_the_csv_equal_hand_computed_values(grid: Path) -> None:
    tables.write_tables(tables.load(grid), "split-toy", grid / "out")
    table = pd.read_csv(grid / "out" / "forgetting.csv").set_index("strategy")
    half = T_975_2 * 0.1 / math.sqrt(3)  # replay: mean 0.8, sample std 0.1, 3 seeds
    assert table.at["replay", "acc_ci_lo"] == pytest.approx(0.8 - half, abs=1e-5)  # the CSV keeps 6 digits
    assert table.at["replay", "acc_ci_hi"] == pytest.approx(0.8 + half, abs=1e-5)
    assert table.at["naive", "acc_ci_lo"] == pytest.approx(0.55) == table.at["naive", "acc_ci_hi"]  # no spread
    # Paired with the best (replay) on the seeds both ran. naive: d = (-0.15, -0.25), t = -4 with 1 dof
    # (Cauchy): p = 1 - 2 atan(4) / pi = 0.156. ewc: d = (-0.2, -0.3, -0.4), t = -sqrt(27) with 2 dof:
    # p = 1 - sqrt(27 / 29) = 0.035.
    assert table.at["naive", "acc_p"] == pytest.approx(1 - 2 * math.atan(4) / math.pi, abs=1e-6)
    assert table.at["ewc", "acc_p"] == pytest.approx(1 - math.sqrt(27 / 29), abs=1e-6)
    assert math.isnan(table.at["replay", "acc_p"])
    assert table["acc_tied"].to_dict() == {"replay": True, "ewc": False, "naive": True}
    assert table.at["ewc", "test"] == "t"
    for column in ("aia_mean", "aia_ci_lo", "plasticity_floor_mean", "plasticity_floor_ci_hi", "forgetting_p",
                   "memory_raw_inputs_mean", "memory_budget_bytes_mean", "budget_status", "equal_bytes_replay"):
        assert column in table.columns, column
    assert "paired t-test" in (grid / "out" / "forgetting.md").read_text()


def test_every_stored_metric_recomputes_from_the_stored_matrix(tmp_path: Path) -> None:
    R = [[0.9, 0.1, 0.0], [0.6, 0.8, 0.2], [0.5, 0.7, 0.95]]
    path = fabricate(tmp_path, "naive", 0, R)
    with (path / "accuracy_matrix.csv").open() as fh:
        rows = {row["row"]: [float(row[f"exp{j}"]) for j in range(3)] for row in csv.DictReader(fh)}
    b, M = rows["before"], [rows[f"after_exp{i}"] for i in range(3)]
    T = 3
    want = {  # the published formulas, written out
        "acc": sum(M[T - 1]) / T,
        "learning_acc": sum(M[j][j] for j in range(T)) / T,
        "bwt": sum(M[T - 1][j] - M[j][j] for j in range(T - 1)) / (T - 1),  # Lopez-Paz & Ranzato 2017
        "forgetting": sum(max(M[k][j] for k in range(j, T - 1)) - M[T - 1][j] for j in range(T - 1)) / (T - 1),
        "fwt": sum(M[j - 1][j] - b[j] for j in range(1, T)) / (T - 1),
        "aia": sum(sum(M[i][: i + 1]) / (i + 1) for i in range(T)) / T,  # Rebuffi et al. 2017
        "plasticity_floor": min(M[j][j] for j in range(T)),
    }
    assert want["forgetting"] == pytest.approx((0.9 - 0.5 + 0.8 - 0.7) / 2)
    assert want["aia"] == pytest.approx((0.9 + 0.7 + 2.15 / 3) / 3) and want["plasticity_floor"] == 0.8
    table = tables.forgetting_table(tables.load(tmp_path).frame).loc[("split-toy", "naive")]
    for key, value in want.items():
        assert table[f"{key}_mean"] == pytest.approx(value, abs=1e-6), key


@pytest.mark.parametrize("stored", [True, False], ids=["config-names-the-base", "base-from-the-run-name"])
def test_replay_at_equal_bytes_row_when_a_variant_is_within_5_percent(tmp_path: Path, stored: bool) -> None:
    for seed in (0, 1):
        fabricate(tmp_path, "hywu", seed, EWC, metrics={"stored_memory_bytes": 100_000})
        fabricate(tmp_path, "ewc", seed, EWC, metrics={"stored_memory_bytes": 3_000_000})
        for mem, size in ((100, 50_000), (400, 104_000), (420, 110_000)):
            fabricate(tmp_path, f"replay-mem_size{mem}", seed, REPLAY[seed], base="replay", stored=stored,
                      options={"mem_size": mem}, metrics={"stored_memory_bytes": size})
    table = tables.forgetting_table(tables.load(tmp_path).frame)
    near = table.droplevel("scenario")["equal_bytes_replay"]
    assert near["hywu"] == "replay-mem_size400"  # 4% away; mem_size420 is 10% away
    assert near["ewc"] == "" and near["replay-mem_size400"] == ""
    lines = tables.markdown(table).splitlines()
    at = next(k for k, line in enumerate(lines) if line.startswith("| hywu |"))
    assert lines[at + 1].startswith("| ↳ replay at equal bytes: replay-mem_size400 | 75.0 ± 7.1 [")
    assert "**" not in lines[at + 1]  # a reference row, never bold
    assert sum("equal bytes" in line for line in lines) == 1
    assert "equal bytes" not in tables.markdown(table, tables.COST_COLUMNS, equal_bytes=False)
    facts = pages._facts(tables.load(tmp_path), "split-toy", "forgetting")
    assert "At equal bytes, hywu 50.0 % against replay-mem_size400 75.0 %" in facts


def test_no_equal_bytes_row_without_a_variant_within_5_percent(tmp_path: Path) -> None:
    for seed in (0, 1):
        fabricate(tmp_path, "hywu", seed, EWC, metrics={"stored_memory_bytes": 100_000})
        fabricate(tmp_path, "replay-mem_size400", seed, REPLAY[seed], base="replay",
                  metrics={"stored_memory_bytes": 106_000})  # 6% away
    table = tables.forgetting_table(tables.load(tmp_path).frame)
    assert set(table["equal_bytes_replay"]) == {""}
    assert "equal bytes" not in tables.markdown(table)


def test_memory_by_kind_and_budget_status(tmp_path: Path) -> None:
    memory = {"raw_inputs": 1_000_000, "derived": 600_000, "model_state": 77_722, "extra_parameters": 5_000}
    budgeted = {"memory": memory, "stored_memory_bytes": 1_677_722, "memory_budget_bytes": 1_048_576}
    for seed in (0, 1):
        fabricate(tmp_path, "replay", seed, REPLAY[seed], metrics={**budgeted, "memory_budget_status": "over"})
        fabricate(tmp_path, "naive", seed, NAIVE[seed])  # an older run: no memory by kind, no budget
    fabricate(tmp_path, "hywu", 0, EWC, metrics={**budgeted, "memory_budget_status": "sized"})
    fabricate(tmp_path, "hywu", 1, EWC, metrics={**budgeted, "memory_budget_status": "over"})
    table = tables.forgetting_table(tables.load(tmp_path).frame).droplevel("scenario")
    assert table.at["replay", "memory_raw_inputs_mean"] == 1_000_000
    assert math.isnan(table.at["naive", "memory_derived_mean"]) and table.at["naive", "budget_status"] == ""
    assert table.at["hywu", "budget_status"] == "over in 1 of 2 seeds"
    rows = {r[0]: r for r in tables.format_rows(table, tables.COST_COLUMNS, tables.MARKDOWN)}
    assert rows["replay"][4:8] == ["976.6 KiB", "585.9 KiB", "75.9 KiB", "4.9 KiB"]
    assert rows["replay"][8] == "1.6 MiB (over)" and rows["replay"][9] == "1.0 MiB"
    assert rows["hywu"][8] == "1.6 MiB (over in 1 of 2 seeds)"
    assert rows["naive"][4] == "–" and rows["naive"][8] == "**0 B**"  # the least memory


def test_roles_come_from_the_registry_or_the_run_and_order_from_the_registry(tmp_path: Path) -> None:
    assert tables.order_strategies(["zzz", "hywu", "replay-mem_size500", "replay-mem_size50", "replay", "joint",
                                    "naive"]) == ["naive", "joint", "replay", "replay-mem_size50",
                                                  "replay-mem_size500", "hywu", "zzz"]
    info = ranking.methods(["joint", "lora-per-task", "lora-r4", "zzz"])
    assert [info[n].role for n in info] == ["reference", "oracle", "method", "method"]
    assert info["lora-r4"].base == "lora" and info["zzz"].base == "zzz"
    for seed in (0, 1):
        fabricate(tmp_path, "naive", seed, NAIVE[seed])
        fabricate(tmp_path, "replay", seed, REPLAY[seed])
        # A plugin's task-oracle, read without its plugin: its stored role keeps it out of the ranking.
        fabricate(tmp_path, "my-oracle", seed, [[1.0, 0.0], [1.0, 1.0]], role="oracle")
    rows = {r[0]: r for r in tables.format_rows(tables.forgetting_table(tables.load(tmp_path).frame),
                                                tables.FORGETTING_COLUMNS, tables.MARKDOWN)}
    assert rows["my-oracle‡"][1] == "100.0 ± 0.0 [100.0, 100.0]"  # the highest ACC, not bold
    assert rows["replay"][1].startswith("**75.0")


def test_the_front_page_opens_with_accuracy_per_method_and_scenario(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from hywu_bench import figures

    monkeypatch.setattr(figures, "write_figures", lambda *args: {})  # per-scenario figures: test_figures
    for seed in (0, 1, 2):
        fabricate(tmp_path, "naive", seed, EWC, scenario="split-a")
        fabricate(tmp_path, "replay", seed, REPLAY[seed], scenario="split-a")
        fabricate(tmp_path, "joint", seed, [[math.nan, math.nan], [0.95, 0.95]], scenario="split-a")
        # split-b had budgets: each method's run at the common budget stands for it.
        budget = {"memory_budget_bytes": 4096, "stored_memory_bytes": 4000, "memory_budget_status": "sized"}
        fabricate(tmp_path, "naive", seed, EWC, scenario="split-b")
        fabricate(tmp_path, "replay", seed, EWC, scenario="split-b")
        fabricate(tmp_path, "replay-mem_size16", seed, REPLAY[seed], base="replay", metrics=budget, scenario="split-b")
        fabricate(tmp_path, "hywu-anchors8", seed, NAIVE[seed % 2], base="hywu", scenario="split-b",
                  metrics={**budget, "memory_budget_status": "under"})
    rendered = pages.render(tmp_path, ["split-a", "split-b"])
    report = rendered.index.read_text()
    front = report[: report.index("\n## split-a")]
    assert front.index("## At a glance") < front.index("| Method | split-a | split-b (budget 4.0 KiB) |")
    assert front.index("| Method |") < front.index(
        "![Final accuracy against stored memory](_report/memory_frontiers.png)")
    lines = {line.split(" | ")[0].strip("| "): line.split(" | ")
             for line in front.splitlines() if line.startswith("| ")}
    assert lines["replay"][1] == (f"**80.0** [{80 - 100 * T_975_2 * 0.1 / 3 ** 0.5:.1f}, "
                                  f"{80 + 100 * T_975_2 * 0.1 / 3 ** 0.5:.1f}]")
    assert lines["replay"][2].endswith("(replay-mem_size16) |")
    assert lines["naive"][1].startswith("50.0 [50.0, 50.0]")  # 3 seeds, 0.2-0.4 below replay: p = 0.035
    assert lines["joint†"][1] == "95.0 [95.0, 95.0]" and lines["joint†"][2] == "– |"
    assert "(under)" in lines["hywu"][2] and "paired t-test over 3 seeds" in front
    assert (tmp_path / "_report" / "memory_frontiers.png").exists() and (tmp_path / "_report" / "headline.csv").exists()
    assert tables.MATRICES not in report and "after \\ exp" not in report  # matrices live on the scenario pages
    assert "after \\ exp" in (tmp_path / "split-a" / "_report" / "README.md").read_text()


def test_budgets_matched_seed_by_seed_pick_each_methods_run_at_them() -> None:
    """`memory_budget=match:hywu`: every other run of seed k had hywu's seed-k bytes as its budget."""
    rows = []
    for seed, bytes_ in enumerate((1000, 1100, 1200)):
        rows += [{"scenario": "s", "strategy": "hywu", "seed": seed, "acc": 0.6, "memory_budget_bytes": np.nan,
                  "budget_status": None},
                 {"scenario": "s", "strategy": "replay", "seed": seed, "acc": 0.5 + 0.1 * seed,
                  "memory_budget_bytes": bytes_, "budget_status": "sized"},
                 {"scenario": "s", "strategy": "replay-mem_size50", "seed": seed, "acc": 0.3,
                  "memory_budget_bytes": np.nan, "budget_status": None, "base": "replay"},
                 {"scenario": "s", "strategy": "ewc", "seed": seed, "acc": 0.2, "memory_budget_bytes": bytes_,
                  "budget_status": "over"}]
    per_run = pd.DataFrame(rows)
    long, budgets = ranking.headline(per_run, ["s"], ranking.frame_methods(per_run))
    assert budgets == {"s": 1100.0}
    assert dict(zip(long["row"], long["strategy"])) == {"replay": "replay", "ewc": "ewc", "hywu": "hywu"}
    picked = long.set_index("row")
    assert picked.at["replay", "mean"] == pytest.approx(0.6) and picked.at["ewc", "budget_status"] == "over"
    assert picked.at["hywu", "tied"] and picked.at["replay", "tied"] and not picked.at["ewc", "tied"]


def test_the_budget_of_a_comparison_is_the_plain_strategies_not_its_variants() -> None:
    """hywu,replay,replay[memory_budget=128KiB,2MiB] with match:hywu: one run name per budget, and the
    comparison's budget is the one the plain `replay` got (hywu's bytes), not the largest variant's."""
    rows = []
    for seed in range(3):
        rows += [{"scenario": "s", "strategy": "hywu", "seed": seed, "acc": 0.7, "memory_budget_bytes": np.nan,
                  "base": "hywu"},
                 {"scenario": "s", "strategy": "replay", "seed": seed, "acc": 0.3, "memory_budget_bytes": 212800,
                  "base": "replay"}]
        rows += [{"scenario": "s", "strategy": f"replay-memory_budget{label}", "seed": seed, "acc": 0.5,
                  "memory_budget_bytes": at, "base": "replay"}
                 for label, at in (("128KiB", 131072), ("2MiB", 2097152))]
    per_run = pd.DataFrame(rows)
    assert ranking.budget(per_run) == 212800
    long, _ = ranking.headline(per_run, ["s"], ranking.frame_methods(per_run))
    assert dict(zip(long["row"], long["strategy"])) == {"replay": "replay", "hywu": "hywu"}
    without_plain = per_run[per_run["strategy"] != "replay"]  # only variants: the largest of the tie
    assert ranking.budget(without_plain) == 2097152


def test_variants_are_ordered_by_their_numbers_with_byte_units() -> None:
    names = ["replay-memory_budget2MiB", "replay-memory_budget128KiB", "replay", "replay-memory_budget512KiB",
             "replay-mem_size1000", "replay-mem_size200", "replay-memory_budget1.5MiB"]
    assert ranking.order(names) == ["replay", "replay-mem_size200", "replay-mem_size1000",
                                    "replay-memory_budget128KiB", "replay-memory_budget512KiB",
                                    "replay-memory_budget1.5MiB", "replay-memory_budget2MiB"]
