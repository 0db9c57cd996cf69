"""The speed-accuracy frontier: its schedules, budgets and Pareto front on hand-made cases, and the command end to end."""

import json
import math
import shutil

import pytest
from PIL import Image

from dyffusion.cli.main import main
from dyffusion.evaluation.frontier import (
    FrontierRow,
    best_per_budget,
    frontier_schedules,
    matched_budgets,
    pareto_front,
)
from dyffusion.method.schedule import StepSchedule


def test_schedules_of_a_schedule_without_artificial_steps():
    # h = 5: steps 0..4 are all dynamical; 2 and 3 of them evenly spaced, then all, then all plus the midpoints.
    assert frontier_schedules(StepSchedule(5)) == {
        "2 of 5 dynamical": [0, 4],
        "3 of 5 dynamical": [0, 2, 4],
        "dynamical": [0, 1, 2, 3, 4],
        "all x2": [0, 0.5, 1, 1.5, 2, 2.5, 3, 3.5, 4],
    }


def test_schedules_of_a_schedule_with_artificial_steps():
    # h = 3, k = 2: times 0, 1/3, 2/3, 1, 2; dynamical steps 0, 3, 4; artificial 1, 2 (every:2 adds step 2).
    assert frontier_schedules(StepSchedule(3, "before_t1_only", 2), subdivisions=(2, 3)) == {
        "2 of 3 dynamical": [0, 4],
        "dynamical": [0, 3, 4],
        "every:2": [0, 2, 3, 4],
        "all": [0, 1, 2, 3, 4],
        "all x2": [step / 2 for step in range(9)],
        "all x3": [step / 3 for step in range(13)],
    }


@pytest.mark.parametrize("schedule", [StepSchedule(2), StepSchedule(16), StepSchedule(7, "before_t1_only", 25),
                                      StepSchedule(4, "linear", 3)])
def test_schedules_run_from_two_steps_to_fractional_ones(schedule):
    named = frontier_schedules(schedule)
    lists = list(named.values())
    assert lists[0] == [0, schedule.last_step]
    assert [len(steps) for steps in lists] == sorted({len(steps) for steps in lists})  # distinct, coarse to fine
    for steps in lists:
        assert steps[0] == 0 and steps[-1] == schedule.last_step
        assert all(a < b for a, b in zip(steps, steps[1:]))
    assert named["dynamical"] == schedule.dynamical_steps
    assert named.get("all", named["dynamical"]) == list(range(schedule.num_steps))
    assert lists[-1] == [step / 2 for step in range(2 * schedule.last_step + 1)]


def row(sampler, evaluations, crps):
    return FrontierRow(sampler, f"{sampler}-{evaluations}", [0, 1], evaluations, crps, crps**2, 1.0, 0.1)


# Worked out by hand: cold A(10, 0.5) B(20, 0.3) E(40, 0.25) F(80, 0.22); heun C(20, 0.35) D(40, 0.2).
ROWS = [row("cold", 10, 0.5), row("cold", 20, 0.3), row("heun", 20, 0.35), row("heun", 40, 0.2),
        row("cold", 40, 0.25), row("cold", 80, 0.22)]
A, B, C, D, E, F = ROWS


def test_best_per_budget_and_pareto_front_of_hand_made_rows():
    assert best_per_budget(ROWS) == [(10, A), (20, B), (40, D), (80, D)]
    assert pareto_front(ROWS) == [A, B, D]  # C loses to B, E to D, F to D


def test_samplers_compared_at_matched_budgets():
    # Budget 10 is cold's alone; from 20 on both samplers can spend it.
    assert matched_budgets(ROWS, ["cold", "heun"]) == [(20, {"cold": B, "heun": C}), (40, {"cold": E, "heun": D}),
                                                      (80, {"cold": F, "heun": D})]


def test_diverged_settings_neither_win_nor_sit_on_the_front():
    diverged = row("heun", 5, math.nan)
    assert pareto_front([*ROWS, diverged]) == [A, B, D]
    assert best_per_budget([*ROWS, diverged]) == best_per_budget(ROWS)
    ties = [row("cold", 10, 0.3), row("heun", 20, 0.3)]
    assert pareto_front(ties) == [ties[0]] and best_per_budget(ties) == [(10, ties[0]), (20, ties[0])]


def test_frontier_command_on_a_tiny_run(tiny_run, spring_data, tmp_path, capsys):
    out = tmp_path / "frontier"
    assert main(["frontier", str(tiny_run), "--data", str(spring_data), "--out", str(out), "--members", "2",
                 "--rollout", "8", "--inits", "1", "--samplers", "cold,heun", "--refine"]) == 0
    printed = capsys.readouterr().out
    result = json.loads((out / "frontier.json").read_text())
    rows = result["rows"]
    schedules = frontier_schedules(StepSchedule(4))  # the tiny run: h = 4, no extra steps
    assert [(r["sampler"], r["schedule"], r["steps"]) for r in rows] == [
        (sampler, name, steps) for sampler in ("cold", "heun") for name, steps in schedules.items()]
    progress = [line for line in printed.splitlines() if line.startswith("[")]
    assert len(progress) == len(rows) and progress[-1].startswith(f"[{len(rows)}/{len(rows)}] heun")
    assert (result["members"], result["rollout"], result["initial_conditions"], result["refine"]) == (2, 8, 1, True)

    # Counted by hand from SPEC section 5, per horizon with L steps: cold calls F at each step, I once at step 0
    # and twice at every later step but the last, and refines lead times 1..3 (3 calls of I): 3L - 3 + 3;
    # heun calls F at each step and again at each interval's end (2L - 1), I twice as often as cold (2 + 4(L - 2)),
    # and refines as cold: 6L - 7 + 3. Two horizons make the rollout of 8.
    for r in rows:
        steps = len(r["steps"])
        expected = 2 * (3 * steps if r["sampler"] == "cold" else 6 * steps - 4)
        assert r["network_evaluations"] == pytest.approx(expected), r
        assert all(math.isfinite(r[key]) and r[key] >= 0 for key in ("crps", "mse", "ssr", "seconds_per_forecast"))

    best = result["best_per_budget"]
    assert [entry["budget"] for entry in best] == sorted({r["network_evaluations"] for r in rows})
    for entry in best:
        affordable = [r["crps"] for r in rows if r["network_evaluations"] <= entry["budget"]]
        assert entry["crps"] == min(affordable) and entry["network_evaluations"] <= entry["budget"]
    front = result["pareto_front"]
    assert front[0]["network_evaluations"] == min(r["network_evaluations"] for r in rows)
    assert all(a["crps"] > b["crps"] for a, b in zip(front, front[1:]))  # more evaluations buy a lower CRPS

    table = (out / "frontier.md").read_text()
    assert sum(line.startswith(("| cold |", "| heun |")) for line in table.splitlines()) == len(rows)
    assert "Best setting per budget" in table and "| budget | cold | heun | lowest |" in table
    with Image.open(out / "frontier.png") as image:
        assert image.format == "PNG" and image.size == (1320, 504)


def test_bad_frontier_input_gets_one_clear_line(tiny_run, spring_data, tmp_path, capsys):
    out = tmp_path / "frontier"
    assert main(["frontier", str(tiny_run), "--data", str(spring_data), "--out", str(out),
                 "--samplers", "cold,euler"]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "unknown sampler euler" in error[0]

    baseline = tmp_path / "dropout-run"  # a baseline's description; refused before any weights are read
    baseline.mkdir()
    shutil.copy(tiny_run / "data.json", baseline)
    (baseline / "config.yaml").write_text((tiny_run / "config.yaml").read_text().replace("method: dyffusion",
                                                                                         "method: dropout"))
    assert main(["frontier", str(baseline), "--data", str(spring_data), "--out", str(out)]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "dropout run" in error[0]

    assert main(["frontier", str(tiny_run), "--data", str(spring_data), "--out", str(out), "--rollout", "soon"]) == 2
    assert "--rollout takes a number of steps or 'full'" in capsys.readouterr().err
    assert not out.exists()
