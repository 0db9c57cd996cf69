"""``fit`` chooses DYffusion's sampling steps on the validation split: the candidates, the rule, what the run keeps
(config.yaml, training.json, ``info``), and resume and retraining."""

import json
import math
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from dyffusion.cli.main import main
from dyffusion.config import load_config, nested, read_config
from dyffusion.data.splits import open_split
from dyffusion.errors import ConfigError
from dyffusion.evaluation import Evaluation, evaluate, full_rollout
from dyffusion.evaluation.choose_steps import choose_steps, step_candidates
from dyffusion.evaluation.frontier import frontier_schedules
from dyffusion.info import format_info, run_info
from dyffusion.run import Run
from tests.conftest import TINY_FIT


def _config(**values):
    return load_config(overrides=[nested(key.replace("__", "."), value) for key, value in values.items()])


def _search(run: Path) -> dict:
    return json.loads((run / "training.json").read_text())["sampling_steps"]


def test_candidates_are_the_frontiers_integer_lists_and_the_configured_steps():
    # h = 3, k = 2: steps 0..4, dynamical 0, 3, 4 (see test_frontier); a configured list the frontier lacks joins
    # (with 0 and the last step, as the sampler visits it).
    config = _config(data__horizon=3, forecaster__extra_steps=2, sampling__steps=[1])
    run = Run(Path("unused"), config, None, {})
    assert step_candidates(run) == {"2 of 3 dynamical": [0, 4], "dynamical": [0, 3, 4], "every:2": [0, 2, 3, 4],
                                    "all": [0, 1, 2, 3, 4], "configured": [0, 1, 4]}
    # The default steps (all) are a frontier list already; "all x2" only when asked for.
    run = Run(Path("unused"), _config(data__horizon=3, forecaster__extra_steps=2, sampling__choose_subdivisions=[2]),
              None, {})
    assert step_candidates(run) == frontier_schedules(run.schedule, (2,)) and "all x2" in step_candidates(run)


@pytest.mark.parametrize("key, value", [("choose_members", 0), ("choose_rollout", 0), ("choose_inits", 0),
                                        ("choose_subdivisions", [2, 1])])
def test_bad_choice_settings_are_a_config_error(key, value):
    with pytest.raises(ConfigError, match=f"sampling.{key} must"):
        _config(**{f"sampling__{key}": value})


def test_fit_keeps_the_candidate_of_lowest_validation_crps(tiny_run, spring_data):
    search, run = _search(tiny_run), Run.load(tiny_run)
    candidates = {candidate["name"]: candidate for candidate in search["candidates"]}
    assert list(candidates) == ["2 of 4 dynamical", "3 of 4 dynamical", "dynamical"]  # h = 4: steps 0..3
    lowest = min(candidates.values(), key=lambda candidate: (candidate["crps"], candidate["network_evaluations"]))
    assert search["chosen"] == lowest["name"] and search["chosen_steps"] == lowest["steps"]
    # Whole validation trajectories: 41 stored frames at stride 2 are 20 lead steps, from the one trajectory.
    assert (search["members"], search["rollout"], search["initial_conditions"]) == (10, 20, 1)
    # The run samples with the chosen steps, as evaluate, forecast, frontier and the API do through Run.pipeline.
    assert run.pipeline().steps == lowest["steps"]
    assert yaml.safe_load((tiny_run / "config.yaml").read_text())["sampling"]["steps"] == search["setting"]

    # Independent truth: the coarsest candidate scored again by evaluate, from the saved run and the raw split.
    coarsest = search["candidates"][0]
    val = open_split(spring_data, "val", run.config.data.split, False)
    assert full_rollout(run, val) == 20
    sampling = replace(run.config.sampling, members=10, sampler="cold", steps=coarsest["steps"])
    metrics = evaluate(run, val, sampling, 20, None, 0, False, keep_example=False).metrics
    assert metrics["mean"]["crps"] == pytest.approx(coarsest["crps"], rel=1e-6)
    assert metrics["mean"]["ssr"] == pytest.approx(coarsest["ssr"], rel=1e-6)
    assert metrics["network_evaluations"] == coarsest["network_evaluations"]


@pytest.mark.parametrize("crps_by_steps, chosen, setting", [
    ({2: 0.5, 3: 0.4, 4: 0.4}, "3 of 4 dynamical", [0, 2, 3]),  # a tie: fewer network evaluations win
    ({2: math.nan, 3: 0.4, 4: 0.3}, "dynamical", "all"),  # the configured value names the chosen list
    ({2: math.inf, 3: math.nan, 4: math.nan}, None, "all"),  # nothing finite: the configured steps stay
])
def test_rule_breaks_ties_by_cost_and_never_chooses_a_diverged_rollout(crps_by_steps, chosen, setting, tiny_run,
                                                                       spring_data, monkeypatch):
    def scores(run, data, sampling, rollout, inits, seed, progress, keep_example, shard):
        crps, evaluations = crps_by_steps[len(sampling.steps)], 15.0 * len(sampling.steps)
        metrics = {"mean": {"crps": crps, "mse": 1.0, "ssr": 1.0}, "network_evaluations": evaluations,
                   "sampling_seconds_per_initial_condition": 0.1, "members": sampling.members, "rollout": rollout,
                   "initial_conditions": 1}
        return Evaluation(metrics, None, [], [])

    monkeypatch.setattr("dyffusion.evaluation.choose_steps.evaluate", scores)
    run = Run.load(tiny_run)
    record = choose_steps(run, open_split(spring_data, "val", run.config.data.split, False), quiet=True)
    assert (record["chosen"], record["setting"]) == (chosen, setting)
    assert record["chosen_steps"] == (setting if isinstance(setting, list) else [0, 1, 2, 3])


def test_info_shows_the_chosen_steps_and_every_candidates_scores(tiny_run):
    search = _search(tiny_run)
    info = run_info(tiny_run)
    assert info["training"]["sampling_steps"] == search
    lines = format_info(info).splitlines()
    chosen = next(line for line in lines if line.startswith("sampling steps "))
    assert f"{search['chosen']} (steps " in chosen and "chosen on validation CRPS" in chosen
    first = lines.index(next(line for line in lines if line.startswith("step candidates ")))
    rows = lines[first : first + len(search["candidates"])]
    for row, candidate in zip(rows, search["candidates"]):
        assert candidate["name"] in row and f"CRPS {candidate['crps']:.5g}" in row
        assert row.endswith("chosen") == (candidate["name"] == search["chosen"])


def _pretend_chosen(run: Path, steps: list[float]) -> dict:
    """Make ``run`` look as if fit had chosen ``steps`` (other than the default all), as a marked record."""
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["sampling"]["steps"] = steps
    (run / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    summary = json.loads((run / "training.json").read_text())
    summary["sampling_steps"] = {**summary["sampling_steps"], "chosen": "2 of 4 dynamical", "chosen_steps": steps,
                                 "setting": steps, "minutes": -1.0}
    (run / "training.json").write_text(json.dumps(summary))
    return summary["sampling_steps"]


def test_resume_keeps_the_chosen_steps_without_scoring_again(tiny_run, spring_data, tmp_path, monkeypatch):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    record = _pretend_chosen(run, [0.0, 3.0])
    scored = []
    monkeypatch.setattr("dyffusion.training.choices.choose_steps", lambda *args: scored.append(args))
    # The same options (sampling.steps all) resume the run: the chosen steps are an output of training.
    assert main(["fit", str(spring_data), "--out", str(run), *TINY_FIT, "--resume"]) == 0
    assert scored == [] and _search(run) == record
    assert read_config(run / "config.yaml").sampling.steps == [0.0, 3.0]
    assert Run.load(run).pipeline().steps == [0, 3]


def test_a_run_resumed_before_the_choice_makes_it(tiny_run, spring_data, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    summary = json.loads((run / "training.json").read_text())
    search = summary.pop("sampling_steps")  # killed after the forecaster stage, before the choice
    (run / "training.json").write_text(json.dumps(summary))
    assert main(["fit", str(spring_data), "--out", str(run), *TINY_FIT, "--resume"]) == 0
    again = _search(run)
    # The same weights, data and seed: the same scores.
    scores = [[(candidate["name"], candidate["crps"]) for candidate in done["candidates"]] for done in (again, search)]
    assert scores[0] == scores[1]


def test_without_the_choice_the_configured_steps_stay_and_a_retrained_forecaster_forgets_the_old_one(
        tiny_run, spring_data, tmp_path, monkeypatch):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    _pretend_chosen(run, [0.0, 3.0])
    monkeypatch.setattr("dyffusion.training.choices.choose_steps", lambda *args: pytest.fail("steps scored"))
    assert main(["fit", str(spring_data), "--out", str(run), *TINY_FIT, "--stage", "forecaster",
                 "--set", "sampling.choose_steps=false", "--set", "sampling.steps=[0, 2, 3]"]) == 0
    assert "sampling_steps" not in json.loads((run / "training.json").read_text())
    assert read_config(run / "config.yaml").sampling.steps == [0.0, 2.0, 3.0]
    assert Run.load(run).pipeline().steps == [0, 2, 3]
    assert not [line for line in format_info(run_info(run)).splitlines() if line.startswith("sampling steps")]
