"""The ``dyffusion`` command: data, validate-solver, fit, evaluate, frontier, forecast, animate, info, demo.

Bad input (a :class:`dyffusion.errors.UserError` or an ``OSError``) ends with one line on stderr and exit code 2,
never a traceback (``--debug`` shows it); any other exception is our bug: one line naming it, exit code 1.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import subprocess
import sys
from pathlib import Path

from dyffusion.config import (
    MEMBER_DIMS,
    PRECISIONS,
    SAMPLERS,
    available_presets,
    load_config,
    nested,
    parse_override,
)
from dyffusion.data.contract import DataError
from dyffusion.errors import UserError
from dyffusion.methods import METHODS

# What the user can fix: our UserError family and the OS refusing a path (missing, not allowed, disk full).
# Any other exception is a bug of ours and is reported as one; a ValueError is not taken for bad input.
USER_ERRORS = (UserError, OSError)


def _floats(text: str) -> list[float]:
    try:
        return [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _integers(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _texts(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _add_stream_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stream", action=argparse.BooleanOptionalAction, default=None,
                        help="read frames from disk as they are needed (--stream) or load the data into memory "
                             "(--no-stream); default: stream data that would take over a quarter of the memory")


def _add_process_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("several processes or GPUs (Lightning)")
    group.add_argument("--devices", help="Lightning devices per machine (e.g. 1, 2, auto)")
    group.add_argument("--accelerator", help="cpu, gpu or auto")
    group.add_argument("--num-nodes", type=int, help="Lightning num_nodes (machines of a multi-node run)")
    group.add_argument("--strategy", help="Lightning strategy, e.g. ddp (default auto)")


def _process_options(args: argparse.Namespace) -> dict:
    """The given --devices, --accelerator, --num-nodes and --strategy, under Lightning's names."""
    devices = int(args.devices) if args.devices and args.devices.isdigit() else args.devices
    given = {"devices": devices, "accelerator": args.accelerator, "num_nodes": args.num_nodes,
             "strategy": args.strategy}
    return {key: value for key, value in given.items() if value is not None}


def _add_sampling_options(parser: argparse.ArgumentParser) -> None:
    _add_process_options(parser)
    _add_stream_option(parser)
    parser.add_argument("--members", type=int, help="ensemble size (default: the run's sampling.members)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the dropout masks and noise")
    parser.add_argument("--sampler", choices=SAMPLERS,
                        help="DYffusion's reverse process: cold (Euler), naive or heun (second order, twice the "
                             "network evaluations per step); default: the run's")
    parser.add_argument("--sampling-steps", help="all, dynamical, every:m, first:m, or a list like 0,0.5,1,3")
    parser.add_argument("--refine", action=argparse.BooleanOptionalAction, default=None,
                        help="re-predict intermediate lead times from the final forecast (default: the run's)")
    parser.add_argument("--ddim-steps", type=int, help="DDPM/MCVD: sample with DDIM in this many steps")
    parser.add_argument("--precision", choices=PRECISIONS,
                        help="networks' precision: bfloat16 autocast is faster on CPUs with bfloat16 instructions "
                             "(default: the run's sampling.precision, float32)")
    parser.add_argument("--split", default="test",
                        help="train, val or test: a file of a data directory, or the part of the file the run was "
                             "split from with --split-by; 'all' = a whole file (default: test)")
    parser.add_argument("--member-dim", default="member", choices=MEMBER_DIMS,
                        help="name of the ensemble dimension in forecast files")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dyffusion", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show full tracebacks")
    commands = parser.add_subparsers(dest="command", required=True)

    data = commands.add_parser("data", help="generate a data set of the paper")
    systems = data.add_subparsers(dest="system", required=True)
    spring = systems.add_parser("spring-mesh", help="10 x 10 damped spring mesh (Otness et al. 2021)")
    spring.add_argument("out_dir", type=Path)
    spring.add_argument("--train", type=int, default=100)
    spring.add_argument("--val", type=int, default=3)
    spring.add_argument("--test", type=int, default=15)
    spring.add_argument("--ood-test", type=int, default=15)
    spring.add_argument("--frames", type=int, default=805)
    spring.add_argument("--seed", type=int, default=0)
    spring.add_argument("--quiet", action="store_true")
    flow = systems.add_parser("navier-stokes", help="2-D channel flow past four random obstacles (SPEC section 8)")
    flow.add_argument("out_dir", type=Path)
    flow.add_argument("--train", type=int, default=100)
    flow.add_argument("--val", type=int, default=2)
    flow.add_argument("--test", type=int, default=5)
    flow.add_argument("--seed", type=int, default=0)
    flow.add_argument("--workers", type=int, help="parallel processes (default: one per CPU core)")
    flow.add_argument("--quiet", action="store_true")
    sst = systems.add_parser("sst", help="OISSTv2 box files (sst.day.mean.box{ID}.nc) -> standardised anomaly splits")
    sst.add_argument("box_dir", type=Path, help="directory with the released sst.day.mean.box{ID}.nc files")
    sst.add_argument("out_dir", type=Path)
    sst.add_argument("--boxes", type=_integers, help="box IDs (default: every box file in BOX_DIR)")
    for name in ("train", "val", "test"):
        sst.add_argument(f"--{name}-range", metavar="START..END",
                         help=f"{name} dates, inclusive (default: the paper's, 1982-2018 / 2019 / 2020)")
    sst.add_argument("--quiet", action="store_true")
    synthetic = systems.add_parser("sst-synthetic", help="a synthetic stand-in for the paper's 11 SST boxes, "
                                                         "as box files and standardised splits")
    synthetic.add_argument("out_dir", type=Path)
    synthetic.add_argument("--boxes", type=_integers, help="box IDs (default: the paper's 11)")
    synthetic.add_argument("--start", default="2015-01-01", help="first day (train runs to 2018-12-31)")
    synthetic.add_argument("--end", default="2020-12-31", help="last day (val is 2019, test 2020)")
    synthetic.add_argument("--size", type=int, default=60, help="grid points per box side")
    synthetic.add_argument("--seed", type=int, default=0)
    synthetic.add_argument("--quiet", action="store_true")

    validate = commands.add_parser("validate-solver",
                                   help="check the Navier-Stokes solver on the Schäfer-Turek 2D-2 benchmark (~1 min)")
    validate.add_argument("--quiet", action="store_true")

    fit = commands.add_parser("fit", help="train the interpolator, then the forecaster")
    fit.add_argument("data", type=Path, help="directory with train.nc and val.nc (or .zarr), or one file with --split-by")
    fit.add_argument("--out", type=Path, required=True, help="run directory to write")
    fit.add_argument("--config", help=f"preset ({', '.join(available_presets())}) or a YAML file")
    fit.add_argument("--method", choices=METHODS, help="DYffusion (default) or one of the paper's baselines")
    fit.add_argument("--horizon", type=int, help="h, data steps per forecast chunk")
    budget = fit.add_mutually_exclusive_group()
    budget.add_argument("--max-minutes", type=float, help="wall-clock cap of the whole fit")
    budget.add_argument("--max-epochs", type=int, help="epochs per stage (a deterministic budget)")
    fit.add_argument("--seed", type=int)
    split = fit.add_argument_group("splitting one file (stored in the run; evaluate and forecast reuse it)")
    split.add_argument("--split-by", choices=["time", "trajectory"],
                       help="contiguous blocks: train first, then val, then test")
    split.add_argument("--val-fraction", type=float, help="share of the val block (default 0.1)")
    split.add_argument("--test-fraction", type=float, help="share of the test block (default 0.1)")
    for name in ("train", "val", "test"):
        split.add_argument(f"--{name}-range", metavar="START..END",
                           help=f"{name} times, inclusive, e.g. 2019-01-01..2019-12-31 or 2019..2019 (implies time)")
    fit.add_argument("--stage", choices=["both", "interpolator", "forecaster"], default="both")
    _add_stream_option(fit)
    fit.add_argument("--resume", action="store_true",
                     help="continue the interrupted run in --out: finished stages are kept, the interrupted one "
                          "continues from its last checkpoint (same options; only the budget may change)")
    _add_process_options(fit)
    fit.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override any config value, e.g. --set interpolator.network.dropout=0.2")
    fit.add_argument("--logger", action="append", type=_texts, metavar="NAME[,NAME]",
                     help="where the training curves go, repeatable: csv (default; RUN/logs), tensorboard, wandb "
                          "(offline unless WANDB_MODE is set) or mlflow (RUN/logs/mlflow.db unless MLFLOW_TRACKING_URI "
                          "is set); all but csv are extras: pip install 'dyffusion[NAME]'")
    fit.add_argument("--quiet", action="store_true")

    evaluate = commands.add_parser("evaluate", help="score ensemble forecasts of a run, or compare several runs")
    evaluate.add_argument("runs", type=Path, nargs="+", metavar="RUN",
                          help="a run directory; several are scored on the same data, initial conditions and ensemble "
                               "size (the first run's sampling.members unless --members) and compared")
    evaluate.add_argument("--data", type=Path, help="data file or directory (default: the one the run was trained on)")
    evaluate.add_argument("--inits", type=int, help="number of initial conditions spread evenly over the split")
    evaluate.add_argument("--rollout", help="lead steps to score (default h; 'full' = whole trajectories)")
    evaluate.add_argument("--out", type=Path, help="output directory (default RUN/eval-SPLIT); with several runs "
                                                   "(required): each run's files in OUT/<run name>, the comparison in "
                                                   "OUT")
    evaluate.add_argument("--lat-weighting", action=argparse.BooleanOptionalAction, default=None,
                          help="weight points by cos(latitude) (default: on when the data has a latitude coordinate)")
    evaluate.add_argument("--save-forecasts", nargs="?", const="forecasts.nc", metavar="FILE",
                          help="also write every forecast and its truth (default OUT/forecasts.nc; .zarr for zarr)")
    evaluate.add_argument("--continuous", action="store_true",
                          help="score a DYffusion run trained with data.time_stride > 1 at every stored frame of its "
                               "first horizon: its interpolator at the real-valued lead times against linear "
                               "interpolation in time of the same members' integer-time forecasts (continuous.json, "
                               "continuous.md and continuous.png in OUT)")
    _add_sampling_options(evaluate)

    frontier = commands.add_parser("frontier", help="DYffusion's speed-accuracy frontier: CRPS, MSE and SSR against "
                                                    "network evaluations for each sampler over a range of schedules")
    frontier.add_argument("run", type=Path, help="a DYffusion run directory")
    frontier.add_argument("--data", type=Path, help="data file or directory (default: the one the run was trained on)")
    frontier.add_argument("--out", type=Path, required=True,
                          help="directory for frontier.json, frontier.md and frontier.png")
    frontier.add_argument("--samplers", type=_texts, default=["cold", "heun"],
                          help=f"comma-separated, of {', '.join(SAMPLERS)} (default cold,heun)")
    frontier.add_argument("--members", type=int, default=20, help="ensemble size (default 20)")
    frontier.add_argument("--split", default="test", help="train, val, test or all, as for evaluate (default: test)")
    frontier.add_argument("--rollout", help="lead steps to score (default h; 'full' = whole trajectories)")
    frontier.add_argument("--inits", type=int, help="number of initial conditions spread evenly over the split")
    frontier.add_argument("--seed", type=int, default=0,
                          help="seed of the dropout masks, the same for every setting (default 0)")
    frontier.add_argument("--refine", action=argparse.BooleanOptionalAction, default=None,
                          help="re-predict intermediate lead times from the final forecast (default: the run's)")
    _add_stream_option(frontier)
    frontier.add_argument("--quiet", action="store_true", help="no progress bars or lines per setting")

    forecast = commands.add_parser("forecast", help="write ensemble forecasts as netCDF or zarr")
    forecast.add_argument("run", type=Path)
    forecast.add_argument("--data", type=Path, help="data file or directory (default: the one the run was trained on)")
    forecast.add_argument("--trajectory", type=int, default=0, help="trajectory of --start and --init-times")
    where = forecast.add_mutually_exclusive_group()
    where.add_argument("--start", type=_integers, default=[0],
                       help="indices of the initial frames (after the time stride), e.g. 0 or 0,30,60")
    where.add_argument("--init-times", type=_texts, help="initial times, values of the time coordinate, "
                                                         "e.g. 2020-03-01,2020-06-01")
    where.add_argument("--inits", type=int, help="this many initial conditions spread evenly over the split")
    what = forecast.add_mutually_exclusive_group()
    what.add_argument("--steps", type=int, help="lead steps, by autoregressive rollout beyond h")
    what.add_argument("--times", type=_floats, help="real-valued lead times in (0, h], e.g. 0.5,1,1.5")
    forecast.add_argument("--out", type=Path, required=True, help="file to write: .nc for netCDF, .zarr for zarr")
    _add_sampling_options(forecast)

    animate = commands.add_parser("animate", help="animate a rollout: truth, ensemble mean and spread per lead time")
    animate.add_argument("run", type=Path, metavar="RUN|FORECAST",
                         help="a run directory, or a forecast file (.nc or .zarr) that `dyffusion forecast` wrote")
    animate.add_argument("--data", type=Path, help="data file or directory (default: the one the run was trained on)")
    animate.add_argument("--trajectory", type=int, default=0, help="with a run: trajectory of the initial condition")
    animate.add_argument("--start", type=int, default=0,
                         help="with a run: index of the initial frame (after the time stride)")
    animate.add_argument("--steps", type=int, help="with a run: lead steps (default: to the end of the trajectory)")
    animate.add_argument("--init", type=int, default=0, help="with a forecast file: index of its initial condition")
    animate.add_argument("--channel", help="only this channel, e.g. q_x (default: one row per channel)")
    animate.add_argument("--fps", type=float, default=4, help="frames (lead times) per second")
    animate.add_argument("--out", type=Path, required=True, help="file to write: .gif, or .mp4 (needs ffmpeg)")
    _add_sampling_options(animate)

    info = commands.add_parser("info", help="what a run holds: data, horizon, schedule, networks, training, files")
    info.add_argument("run", type=Path)
    info.add_argument("--json", action="store_true", help="machine-readable output")

    benchmark = commands.add_parser(
        "benchmark", help="run a benchmark of the source repository (appends to benchmarks/RESULTS.md)",
        description="Runs benchmarks/<script>.py of the source repository (the benchmarks are not part of the "
        "installed package) with the arguments that follow; give --help after the name for its options.")
    benchmark.add_argument("name", choices=BENCHMARKS, help=", ".join(f"{name}: {script}" for name, (script, _)
                                                                        in BENCHMARKS.items()))
    benchmark.add_argument("arguments", nargs=argparse.REMAINDER, help="passed on to the script")

    demo = commands.add_parser("demo", help="data, training and evaluation on a small spring mesh (~15 min on 2 cores)")
    demo.add_argument("--out", type=Path, default=Path("demo"))
    demo.add_argument("--max-minutes", type=float, help="training budget (default: the demo preset's)")
    demo.add_argument("--quiet", action="store_true")
    return parser


def _fit_config(args: argparse.Namespace):
    overrides = [parse_override(text) for text in args.set]
    named = {"method": args.method, "data.horizon": args.horizon, "trainer.seed": args.seed,
             **{f"trainer.{key}": value for key, value in _process_options(args).items()},
             "data.split.by": args.split_by,
             "data.split.val_fraction": args.val_fraction, "data.split.test_fraction": args.test_fraction,
             "data.split.train_range": args.train_range, "data.split.val_range": args.val_range,
             "data.split.test_range": args.test_range}
    overrides += [nested(key, value) for key, value in named.items() if value is not None]
    # Either budget given on the command line replaces both budgets of the preset.
    if args.max_epochs is not None:
        overrides += [nested("trainer.max_epochs", args.max_epochs), nested("trainer.max_minutes", None)]
    if args.max_minutes is not None:
        overrides += [nested("trainer.max_minutes", args.max_minutes), nested("trainer.max_epochs", None)]
    return load_config(args.config, overrides)


def _rollout(text: str | None, run, data, default: int) -> int:
    """--rollout: a number of lead steps, 'full' (from a trajectory's first frame to its last) or None (default)."""
    from dyffusion.evaluation import full_rollout

    if text is None:
        return default
    if text == "full":
        return full_rollout(run, data)
    if not text.isdigit():
        raise UserError(f"--rollout takes a number of steps or 'full', got {text!r}")
    return int(text)


def _sampling(args: argparse.Namespace, run, members: int | None = None):
    """The run's SamplingConfig with the sampling options given on the command line (``members``: instead of
    --members, one ensemble size for several runs)."""
    from dataclasses import replace

    from dyffusion.method.schedule import parse_steps

    members = args.members if members is None else members
    for flag, value in (("--members", members), ("--ddim-steps", getattr(args, "ddim_steps", None))):
        if value is not None and value < 1:
            raise UserError(f"{flag} must be >= 1, got {value}")
    steps = getattr(args, "sampling_steps", None)
    given = {"sampler": getattr(args, "sampler", None), "steps": parse_steps(steps) if steps else None,
             "refine": getattr(args, "refine", None), "ddim_steps": getattr(args, "ddim_steps", None),
             "precision": getattr(args, "precision", None), "members": members}
    return replace(run.config.sampling, **{key: value for key, value in given.items() if value is not None})


def _run_data(args: argparse.Namespace):
    """The run and the data of ``--split``: the run's own split rule applies to the file it was trained on."""
    from dyffusion.data.splits import open_split
    from dyffusion.run import Run

    run = Run.load(args.run)
    from dyffusion.run import RunDir

    trained_on = RunDir(args.run).trained_on()
    path = args.data or trained_on
    if path is None:
        raise DataError(f"give --data: {args.run} does not record the data it was trained on")
    same_file = trained_on is not None and Path(path).resolve() == trained_on.resolve()
    rule = run.config.data.split if same_file and run.config.data.split.by else None
    return run, open_split(path, None if args.split == "all" else args.split, rule, args.stream)


def _processes(args: argparse.Namespace, run):
    """With --devices, --accelerator, --num-nodes or --strategy: start the processes (Lightning Fabric re-runs
    this command line for the others of this machine), put this one's copy of ``run`` on its device and return
    its shard of the work; else the one process's."""
    from dyffusion.distributed import Shard, launch, quiet_lightning

    options = _process_options(args)
    if not options:
        return Shard()
    if args.quiet:
        quiet_lightning()
    shard = launch(**options)
    run.to(shard.device)
    return shard


def _date_range(text: str, option: str) -> tuple[str, str]:
    first, separator, last = text.partition("..")
    if not separator or not first.strip() or not last.strip():
        raise UserError(f"{option}: expected START..END, e.g. 2019-01-01..2019-12-31, got {text!r}")
    return first.strip(), last.strip()


def cmd_data(args: argparse.Namespace) -> None:
    if args.system in ("sst", "sst-synthetic"):
        from dyffusion.data.sst import PAPER_BOXES, PAPER_DATE_SPLITS, make_synthetic_sst, prepare_sst

        if args.system == "sst":
            given = {name: getattr(args, f"{name}_range") for name in PAPER_DATE_SPLITS}
            splits = {name: _date_range(text, f"--{name}-range") if text else PAPER_DATE_SPLITS[name]
                      for name, text in given.items()}
            paths = prepare_sst(args.box_dir, args.out_dir, splits, args.boxes, progress=not args.quiet)
        else:
            paths = make_synthetic_sst(args.out_dir, args.boxes or PAPER_BOXES, args.start, args.end, args.seed,
                                       args.size, progress=not args.quiet)
        for name, path in paths.items():
            print(f"{name}: {path}")
        return
    counts = {"train": args.train, "val": args.val, "test": args.test}
    if any(count < 0 for count in counts.values()):
        raise UserError(f"trajectory counts must be >= 0, got {counts}")
    if args.system == "spring-mesh":
        from dyffusion.data.spring_mesh import write_spring_mesh_splits

        paths = write_spring_mesh_splits(args.out_dir, **counts, ood_test=args.ood_test, frames=args.frames,
                                         seed=args.seed, progress=not args.quiet)
    else:
        from dyffusion.data.navier_stokes import write_navier_stokes_splits

        if args.workers is not None and args.workers < 1:
            raise UserError(f"--workers must be >= 1, got {args.workers}")
        paths = write_navier_stokes_splits(args.out_dir, **counts, seed=args.seed, workers=args.workers,
                                           progress=not args.quiet)
    for split, path in paths.items():
        print(f"{split}: {path}")


def cmd_fit(args: argparse.Namespace) -> None:
    from dyffusion.distributed import is_global_zero
    from dyffusion.training import fit

    loggers = [name for names in args.logger for name in names] if args.logger else ["csv"]
    run = fit(args.data, args.out, _fit_config(args), stage=args.stage, quiet=args.quiet, resume=args.resume,
              stream=args.stream, loggers=loggers)
    if is_global_zero():
        print(f"run written to {run.path}")


def _run_labels(paths: list[Path]) -> list[str]:
    """Run directory names, numbered where two runs share one."""
    names = [path.resolve().name for path in paths]
    return [name if names.count(name) == 1 else f"{name}-{i + 1}" for i, name in enumerate(names)]


def _runs_to_compare(args: argparse.Namespace):
    """The runs of ``evaluate`` and the one data split they are all scored on, at one time step."""
    import numpy as np

    runs, data = [], None
    for path in args.runs:
        run, its_data = _run_data(argparse.Namespace(**{**vars(args), "run": path}))
        if data is not None and (its_data.source != data.source or its_data.values.shape != data.values.shape
                                 or not np.array_equal(its_data.time, data.time)):
            raise DataError(f"{path} would be scored on {its_data.source} and {args.runs[0]} on {data.source}: "
                            f"give --data to score them on the same data")
        if runs and run.spec.time_stride != runs[0].spec.time_stride:
            raise DataError(f"{path} steps every {run.spec.time_stride} frames and {args.runs[0]} every "
                            f"{runs[0].spec.time_stride}: runs of different time steps have different lead times")
        runs.append(run)
        if data is None:
            data = its_data
    return runs, data


def _evaluate_continuous(args: argparse.Namespace) -> None:
    """``evaluate --continuous``: one run's scores at every stored frame of its first horizon, in OUT/continuous.*."""
    from dyffusion.evaluation.continuous import evaluate_continuous, verdict
    from dyffusion.evaluation.report import write_continuous
    from dyffusion.io import check_writable_directory

    given = {"several runs": len(args.runs) > 1, "--rollout": args.rollout is not None,
             "--save-forecasts": args.save_forecasts is not None,
             "--devices and the like": bool(_process_options(args))}
    if any(given.values()):
        raise UserError(f"--continuous scores the first horizon of one run in one process; drop "
                         f"{', '.join(name for name, present in given.items() if present)}")
    run, data = _run_data(argparse.Namespace(**{**vars(args), "run": args.runs[0]}))
    out = args.out or args.runs[0] / f"eval-{args.split}"
    check_writable_directory(out)
    result = evaluate_continuous(run, data, _sampling(args, run), args.inits, args.seed, args.lat_weighting,
                                 progress=not args.quiet)
    result["split"], result["data"] = args.split, data.source
    paths = write_continuous(out, run, result, {"data": data.source, "split": args.split})
    print(f"{verdict(result)} -> {paths['markdown']}")


def cmd_evaluate(args: argparse.Namespace) -> None:
    """Scores, figures and reports of each run (in OUT/<run name> when several are compared, then the comparison's
    figures and reports in OUT), all on the same data, initial conditions, ensemble size and rollout; with
    --continuous, :func:`_evaluate_continuous`."""
    if args.continuous:
        return _evaluate_continuous(args)
    from dyffusion.evaluation import check_forecast_path, evaluate, forecast_to_xarray, write_forecast
    from dyffusion.evaluation.forecast import with_provenance
    from dyffusion.evaluation.report import comparison_report, evaluation_report, write_evaluation, write_score_figures
    from dyffusion.io import check_writable_directory

    compare = len(args.runs) > 1
    if compare and args.out is None:
        raise UserError("give --out DIR to compare several runs")
    if compare and args.save_forecasts is not None and Path(args.save_forecasts).is_absolute():
        raise UserError("with several runs, --save-forecasts takes a file name inside each run's OUT/<run name>")
    runs, data = _runs_to_compare(args)
    labels = _run_labels(args.runs)
    outs = [args.out / label if compare else args.out or args.runs[0] / f"eval-{args.split}" for label in labels]
    for out in outs:
        check_writable_directory(out)
        if args.save_forecasts is not None:
            check_forecast_path(out / args.save_forecasts)
    rollout = _rollout(args.rollout, runs[0], data, max(run.horizon for run in runs))  # one for all: the longest h
    members = runs[0].config.sampling.members if args.members is None else args.members
    shard = _processes(args, runs[0])
    compared = {}
    for label, path, run, out in zip(labels, args.runs, runs, outs):
        if shard.device is not None:
            run.to(shard.device)
        result = evaluate(run, data, _sampling(args, run, members), rollout, args.inits, args.seed, not args.quiet,
                          lat_weighting=args.lat_weighting, keep_forecasts=args.save_forecasts is not None, shard=shard)
        if result is None:  # a further process: rank 0 has its scores and forecasts, and writes
            continue
        metrics = result.metrics
        metrics["split"], metrics["data"] = args.split, data.source
        if args.save_forecasts is not None:
            forecasts = out / args.save_forecasts
            dataset = forecast_to_xarray(result.ensemble, result.lead_times, run.spec,
                                         data.subsample_time(run.spec.time_stride), result.inits, args.member_dim,
                                         result.truth)
            write_forecast(with_provenance(dataset, run, members, data.source), forecasts)
            metrics["forecasts"] = str(forecasts)
        figures = write_evaluation(out, run, metrics, result.example)
        evaluation_report(f"{run.method} evaluation: {path}", run, metrics, figures,
                          {"data": data.source, "split": args.split}).write(out)
        mean = metrics["mean"]
        print(f"{label + ': ' if compare else ''}CRPS {mean['crps']:.4g}  MSE {mean['mse']:.4g}  "
              f"SSR {mean['ssr']:.3g}  -> {out / 'metrics.json'}")
        compared[label] = (run, metrics)
    if compare and compared:
        figures = write_score_figures(args.out, {label: metrics for label, (_, metrics) in compared.items()})
        reports = comparison_report(f"Comparison of {len(compared)} runs", compared, figures,
                                    {"data": data.source, "split": args.split}).write(args.out)
        print(f"comparison of {len(compared)} runs -> {reports['markdown']}, {reports['html']}")


def cmd_frontier(args: argparse.Namespace) -> None:
    """Every (sampler, schedule) of the frontier scored on the same data, initial conditions and seed."""
    from dyffusion.evaluation.frontier import (
        check_samplers,
        frontier_schedules,
        measure_frontier,
        pareto_front,
        require_schedules,
        write_frontier,
    )
    from dyffusion.io import check_writable_directory
    from dyffusion.run import read_run_description

    # Bad input is found before the networks are loaded and long before the last setting is scored.
    check_samplers(args.samplers)
    config, _ = read_run_description(args.run)
    require_schedules(config, args.run)
    check_writable_directory(args.out)
    run, data = _run_data(args)
    rollout = _rollout(args.rollout, run, data, run.horizon)
    rows, shared = measure_frontier(run, data, args.samplers, frontier_schedules(run.schedule), args.members, rollout,
                                    args.inits, args.seed, args.refine, progress=not args.quiet,
                                    report=None if args.quiet else lambda line: print(line, flush=True))
    context = {"run": str(args.run), "data": data.source, "split": args.split, **shared}
    paths = write_frontier(args.out, rows, context, f"Speed-accuracy frontier of {args.run.resolve().name} "
                                                    f"({args.split}, {shared['members']} members)")
    front = "; ".join(f"{row.sampler} {row.schedule} ({row.network_evaluations:.0f}, CRPS {row.crps:.4g})"
                      for row in pareto_front(rows))
    print(f"Pareto front (network evaluations per member, CRPS): {front}")
    print(f"frontier of {len(rows)} settings -> {paths['markdown']}, {paths['json'].name}, {paths['figure'].name}")


def _forecast_inits(args: argparse.Namespace, run, data) -> list[tuple[int, int]]:
    """(trajectory, start frame after the stride) pairs from --start, --init-times or --inits."""
    import numpy as np

    from dyffusion.evaluation import initial_conditions

    strided = data.subsample_time(run.spec.time_stride)
    if args.inits is not None:
        lead = args.steps or (int(np.ceil(max(args.times))) if args.times else run.horizon)
        return initial_conditions(strided, lead, args.inits)
    if args.init_times is None:
        return [(args.trajectory, start) for start in args.start]
    starts = []
    for text in args.init_times:
        try:
            value = np.datetime64(text) if np.issubdtype(strided.time.dtype, np.datetime64) else float(text)
        except ValueError:
            raise DataError(f"--init-times: {text!r} is not a value of the time coordinate") from None
        found = np.flatnonzero(strided.time == value)
        if found.size == 0:
            raise DataError(f"--init-times: {text} is not a time of the data (after the time stride); it runs "
                            f"from {strided.time[0]} to {strided.time[-1]}")
        starts.append(int(found[0]))
    return [(args.trajectory, start) for start in starts]


def cmd_forecast(args: argparse.Namespace) -> None:
    from dyffusion.evaluation import check_forecast_path, forecast_dataset, write_forecast

    check_forecast_path(args.out)
    run, data = _run_data(args)
    inits = _forecast_inits(args, run, data)
    dataset = forecast_dataset(run, data, inits, _sampling(args, run), args.steps, args.times, args.seed,
                               args.member_dim, _processes(args, run), progress=not args.quiet)
    if dataset is None:  # a further process: rank 0 has its forecasts, and writes
        return
    write_forecast(dataset, args.out)
    print(f"forecast written to {args.out} ({dataset.sizes[args.member_dim]} members, {len(inits)} initial "
          f"conditions, {dataset.sizes['lead_time']} lead times)")


def cmd_animate(args: argparse.Namespace) -> None:
    from dyffusion.plots.animation import animate_forecast, check_animation_path

    check_animation_path(args.out)
    if args.run.suffix in (".nc", ".zarr"):
        from dyffusion.data.contract import open_dataset

        with open_dataset(args.run) as dataset:
            animate_forecast(dataset, args.out, args.init, args.channel, args.fps, progress=not args.quiet)
            frames = dataset.sizes["lead_time"]
    else:
        from dyffusion.evaluation import forecast_dataset

        run, data = _run_data(args)
        names = [channel.name for channel in run.spec.channels]
        if args.channel is not None and args.channel not in names:  # found out before, not after, sampling
            raise DataError(f"--channel {args.channel}: the run's channels are {', '.join(names)}")
        last = data.subsample_time(run.spec.time_stride).num_frames - 1
        dataset = forecast_dataset(run, data, [(args.trajectory, args.start)], _sampling(args, run),
                                   args.steps or max(last - args.start, 1), seed=args.seed, member_dim=args.member_dim,
                                   shard=_processes(args, run), progress=not args.quiet)
        if dataset is None:  # a further process: rank 0 has its forecasts, and animates them
            return
        animate_forecast(dataset, args.out, channel=args.channel, fps=args.fps, progress=not args.quiet)
        frames = dataset.sizes["lead_time"]
    print(f"animation written to {args.out} ({frames} frames, one per lead time)")


def cmd_info(args: argparse.Namespace) -> None:
    from dyffusion.info import format_info, run_info

    info = run_info(args.run)
    print(json.dumps(info, indent=2) if args.json else format_info(info))


def cmd_validate_solver(args: argparse.Namespace) -> int:
    from dyffusion.data.schafer_turek import run_schafer_turek

    result = run_schafer_turek(progress=not args.quiet)
    print(result.table())
    return 0 if result.passed else 1


# name -> (script in benchmarks/, the arguments that come first)
BENCHMARKS = {
    "paper": ("paper.py", []),
    "memory": ("memory.py", ["horizons"]),
    "memory-data": ("memory.py", ["data"]),
    "speed": ("speed.py", []),
    "frontier": ("frontier.py", []),
    "continuous": ("continuous.py", []),
    "stochasticity": ("stochasticity.py", []),
    "learning-curve": ("learning_curve.py", []),
    "long-run": ("long_run.py", []),
}
BENCHMARKS_DIR = Path(__file__).resolve().parents[3] / "benchmarks"


def cmd_benchmark(args: argparse.Namespace) -> int:
    script, first = BENCHMARKS[args.name]
    path = BENCHMARKS_DIR / script
    if not path.is_file():
        raise FileNotFoundError(errno.ENOENT, "the benchmarks ship with the source repository, not the installed "
                                "package: run this from an editable install of a clone (make install)", str(path))
    return subprocess.call([sys.executable, str(path), *first, *args.arguments])


def cmd_demo(args: argparse.Namespace) -> None:
    from dyffusion.demo import run_demo

    report = run_demo(args.out, max_minutes=args.max_minutes, quiet=args.quiet)
    print(f"report: {report.with_suffix('.html')} (and {report.name} beside it)")


def _one_line(error: Exception) -> str:
    """The message of a user error on one line; an OSError names its file without errno codes."""
    if isinstance(error, MemoryError):
        return ("out of memory; give --stream to read the data from disk as it is needed, or lower the batch sizes "
                "or sampling.max_batch")
    if isinstance(error, OSError) and error.strerror and error.filename:
        text = f"{error.filename}: {error.strerror}"
        if error.errno in (errno.ENOTDIR, errno.EEXIST):
            # mkdir -p and open name the path they were given; the user needs the file standing in its way.
            path = Path(error.filename)
            blocking = next((part for part in (path, *path.parents) if part.exists() and not part.is_dir()), None)
            if blocking == path:
                text = f"{path} is a file, not a directory"
            elif blocking is not None:
                text = f"{path}: {blocking} is a file, not a directory"
    else:
        text = str(error) or type(error).__name__
    return " ".join(text.split())


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = {"data": cmd_data, "fit": cmd_fit, "evaluate": cmd_evaluate, "frontier": cmd_frontier,
               "forecast": cmd_forecast,
               "animate": cmd_animate, "info": cmd_info, "demo": cmd_demo,
               "validate-solver": cmd_validate_solver, "benchmark": cmd_benchmark}[args.command]
    try:
        code = handler(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as error:
        if args.debug or os.environ.get("DYFFUSION_DEBUG"):
            raise
        if isinstance(error, (MemoryError, *USER_ERRORS)):
            print(f"dyffusion {args.command}: error: {_one_line(error)}", file=sys.stderr)
            return 2
        print(f"dyffusion {args.command}: internal error (a bug in dyffusion, not in your input): "
              f"{type(error).__name__}: {_one_line(error)}; rerun with --debug for the traceback and report it",
              file=sys.stderr)
        return 1
    return code or 0


if __name__ == "__main__":
    sys.exit(main())
