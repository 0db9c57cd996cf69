"""The ``dyffusion`` command line's options: one sub-parser per command, shared option groups."""

from __future__ import annotations

import argparse
from pathlib import Path

from dyffusion.config import MEMBER_DIMS, available_presets
from dyffusion.ensemble import PRECISIONS
from dyffusion.method.sampler import SAMPLERS
from dyffusion.methods import METHODS

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


def _addprocess_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("several processes or GPUs (Lightning)")
    group.add_argument("--devices", help="Lightning devices per machine (e.g. 1, 2, auto)")
    group.add_argument("--accelerator", help="cpu, gpu or auto")
    group.add_argument("--num-nodes", type=int, help="Lightning num_nodes (machines of a multi-node run)")
    group.add_argument("--strategy", help="Lightning strategy, e.g. ddp (default auto)")


def process_options(args: argparse.Namespace) -> dict:
    """The given --devices, --accelerator, --num-nodes and --strategy, under Lightning's names."""
    devices = int(args.devices) if args.devices and args.devices.isdigit() else args.devices
    given = {"devices": devices, "accelerator": args.accelerator, "num_nodes": args.num_nodes,
             "strategy": args.strategy}
    return {key: value for key, value in given.items() if value is not None}


def _add_sampling_options(parser: argparse.ArgumentParser) -> None:
    _addprocess_options(parser)
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
    flow = systems.add_parser("navier-stokes", help="2-D channel flow past four random obstacles (the paper's Navier-Stokes data)")
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
    _addprocess_options(fit)
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
