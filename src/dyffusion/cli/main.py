"""The ``dyffusion`` command: data, validate-solver, fit, evaluate, forecast, demo.

Bad input ends with one line on stderr and exit code 2, never a traceback (``--debug`` shows it).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from dyffusion.config import METHODS, ConfigError, available_presets, load_config, nested, parse_override
from dyffusion.data.contract import DataError

USER_ERRORS = (ConfigError, DataError, ValueError, FileNotFoundError, PermissionError, IsADirectoryError,
               NotADirectoryError, OSError)


def _floats(text: str) -> list[float]:
    try:
        return [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _add_sampling_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--members", type=int, help="ensemble size (default: the run's sampling.members)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the dropout masks and noise")
    parser.add_argument("--sampler", choices=["cold", "naive"], help="reverse process (default: the run's)")
    parser.add_argument("--sampling-steps", help="all, dynamical, every:m, first:m, or a list like 0,0.5,1,3")
    parser.add_argument("--refine", action=argparse.BooleanOptionalAction, default=None,
                        help="re-predict intermediate lead times from the final forecast (default: the run's)")
    parser.add_argument("--ddim-steps", type=int, help="DDPM/MCVD: sample with DDIM in this many steps")
    parser.add_argument("--split", default="test", help="split to read from a data directory (default: test)")
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

    validate = commands.add_parser("validate-solver",
                                   help="check the Navier-Stokes solver on the Schäfer-Turek 2D-2 benchmark (~1 min)")
    validate.add_argument("--quiet", action="store_true")

    fit = commands.add_parser("fit", help="train the interpolator, then the forecaster")
    fit.add_argument("data", type=Path, help="directory with train.nc and val.nc (or .zarr)")
    fit.add_argument("--out", type=Path, required=True, help="run directory to write")
    fit.add_argument("--config", help=f"preset ({', '.join(available_presets())}) or a YAML file")
    fit.add_argument("--method", choices=METHODS, help="DYffusion (default) or one of the paper's baselines")
    fit.add_argument("--horizon", type=int, help="h, data steps per forecast chunk")
    budget = fit.add_mutually_exclusive_group()
    budget.add_argument("--max-minutes", type=float, help="wall-clock cap of the whole fit")
    budget.add_argument("--max-epochs", type=int, help="epochs per stage (a deterministic budget)")
    fit.add_argument("--seed", type=int)
    fit.add_argument("--stage", choices=["both", "interpolator", "forecaster"], default="both")
    fit.add_argument("--devices", help="Lightning devices (e.g. 1, 2, auto)")
    fit.add_argument("--accelerator", help="cpu, gpu or auto")
    fit.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override any config value, e.g. --set interpolator.network.dropout=0.2")
    fit.add_argument("--quiet", action="store_true")

    evaluate = commands.add_parser("evaluate", help="score ensemble forecasts of a run")
    evaluate.add_argument("run", type=Path)
    evaluate.add_argument("--data", type=Path, help="data file or directory (default: the one the run was trained on)")
    evaluate.add_argument("--inits", type=int, help="number of initial conditions spread evenly over the split")
    evaluate.add_argument("--rollout", help="lead steps to score (default h; 'full' = whole trajectories)")
    evaluate.add_argument("--out", type=Path, help="output directory (default RUN/eval-SPLIT)")
    _add_sampling_options(evaluate)

    forecast = commands.add_parser("forecast", help="write one ensemble forecast as netCDF")
    forecast.add_argument("run", type=Path)
    forecast.add_argument("--data", type=Path)
    forecast.add_argument("--trajectory", type=int, default=0)
    forecast.add_argument("--start", type=int, default=0, help="index of the initial frame (after the time stride)")
    what = forecast.add_mutually_exclusive_group()
    what.add_argument("--steps", type=int, help="lead steps, by autoregressive rollout beyond h")
    what.add_argument("--times", type=_floats, help="real-valued lead times in (0, h], e.g. 0.5,1,1.5")
    forecast.add_argument("--member-dim", default="member", choices=["member", "number", "realization", "sample"])
    forecast.add_argument("--out", type=Path, required=True, help="netCDF file to write")
    _add_sampling_options(forecast)

    demo = commands.add_parser("demo", help="data, training and evaluation on a small spring mesh (~15 min on 2 cores)")
    demo.add_argument("--out", type=Path, default=Path("demo"))
    demo.add_argument("--max-minutes", type=float, help="training budget (default: the demo preset's)")
    demo.add_argument("--quiet", action="store_true")
    return parser


def _fit_config(args: argparse.Namespace):
    overrides = [parse_override(text) for text in args.set]
    devices = int(args.devices) if args.devices and args.devices.isdigit() else args.devices
    named = {"method": args.method, "data.horizon": args.horizon, "trainer.seed": args.seed, "trainer.devices": devices,
             "trainer.accelerator": args.accelerator}
    overrides += [nested(key, value) for key, value in named.items() if value is not None]
    # Either budget given on the command line replaces both budgets of the preset.
    if args.max_epochs is not None:
        overrides += [nested("trainer.max_epochs", args.max_epochs), nested("trainer.max_minutes", None)]
    if args.max_minutes is not None:
        overrides += [nested("trainer.max_minutes", args.max_minutes), nested("trainer.max_epochs", None)]
    return load_config(args.config, overrides)


def _trained_on(run_dir: Path, data: Path | None) -> Path:
    if data is not None:
        return data
    source = json.loads((run_dir / "training.json").read_text()).get("data") if (run_dir / "training.json").exists() else None
    if not source:
        raise DataError(f"give --data: {run_dir} does not record the data it was trained on")
    return Path(source)


def _pipeline_options(args: argparse.Namespace) -> dict:
    from dyffusion.schedule import parse_steps

    return {"sampler": args.sampler, "steps": parse_steps(args.sampling_steps) if args.sampling_steps else None,
            "refine": args.refine, "ddim_steps": args.ddim_steps}


def _run_data(args: argparse.Namespace):
    from dyffusion.data.contract import open_gridded
    from dyffusion.run import Run

    run = Run.load(args.run)
    data = open_gridded(_trained_on(args.run, args.data), args.split)
    return run, data


def cmd_data(args: argparse.Namespace) -> None:
    counts = {"train": args.train, "val": args.val, "test": args.test}
    if any(count < 0 for count in counts.values()):
        raise ValueError(f"trajectory counts must be >= 0, got {counts}")
    if args.system == "spring-mesh":
        from dyffusion.data.spring_mesh import write_spring_mesh_splits

        paths = write_spring_mesh_splits(args.out_dir, **counts, ood_test=args.ood_test, frames=args.frames,
                                         seed=args.seed, progress=not args.quiet)
    else:
        from dyffusion.data.navier_stokes import write_navier_stokes_splits

        if args.workers is not None and args.workers < 1:
            raise ValueError(f"--workers must be >= 1, got {args.workers}")
        paths = write_navier_stokes_splits(args.out_dir, **counts, seed=args.seed, workers=args.workers,
                                           progress=not args.quiet)
    for split, path in paths.items():
        print(f"{split}: {path}")


def cmd_fit(args: argparse.Namespace) -> None:
    from dyffusion.training import fit

    run = fit(args.data, args.out, _fit_config(args), stage=args.stage, quiet=args.quiet)
    print(f"run written to {run.path}")


def cmd_evaluate(args: argparse.Namespace) -> None:
    from dyffusion.evaluation import evaluate, full_rollout
    from dyffusion.evaluation.report import markdown_report, write_evaluation
    from dyffusion.io import write_text

    run, data = _run_data(args)
    rollout = None
    if args.rollout == "full":
        rollout = full_rollout(run, data)
    elif args.rollout is not None:
        if not args.rollout.isdigit():
            raise ValueError(f"--rollout takes a number of steps or 'full', got {args.rollout!r}")
        rollout = int(args.rollout)
    members = run.config.sampling.members if args.members is None else args.members
    metrics, example = evaluate(run, data, members, rollout, args.inits,
                                args.seed, not args.quiet, _pipeline_options(args))
    metrics["split"], metrics["data"] = args.split, data.source
    out = args.out or args.run / f"eval-{args.split}"
    figures = write_evaluation(out, run, metrics, example)
    write_text(out / "report.md", markdown_report(f"{run.method} evaluation: {args.run}", run, metrics, figures, out,
                                                   {"data": data.source, "split": args.split}))
    mean = metrics["mean"]
    print(f"CRPS {mean['crps']:.4g}  MSE {mean['mse']:.4g}  SSR {mean['ssr']:.3g}  -> {out / 'metrics.json'}")


def cmd_forecast(args: argparse.Namespace) -> None:
    from dyffusion.evaluation import forecast_dataset
    from dyffusion.io import atomic_path

    run, data = _run_data(args)
    dataset = forecast_dataset(run, data, args.trajectory, args.start, args.members, args.steps, args.times,
                               args.seed, args.member_dim, _pipeline_options(args))
    with atomic_path(args.out) as temporary:
        dataset.to_netcdf(temporary, engine="netcdf4")
    print(f"forecast written to {args.out} ({dataset.sizes[args.member_dim]} members, "
          f"{dataset.sizes['lead_time']} lead times)")


def cmd_validate_solver(args: argparse.Namespace) -> int:
    from dyffusion.data.schafer_turek import run_schafer_turek

    result = run_schafer_turek(progress=not args.quiet)
    print(result.table())
    return 0 if result.passed else 1


def cmd_demo(args: argparse.Namespace) -> None:
    from dyffusion.demo import run_demo

    report = run_demo(args.out, max_minutes=args.max_minutes, quiet=args.quiet)
    print(f"report: {report}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = {"data": cmd_data, "fit": cmd_fit, "evaluate": cmd_evaluate, "forecast": cmd_forecast,
               "demo": cmd_demo, "validate-solver": cmd_validate_solver}[args.command]
    try:
        code = handler(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except USER_ERRORS as error:
        if args.debug or os.environ.get("DYFFUSION_DEBUG"):
            raise
        print(f"dyffusion {args.command}: error: {error}", file=sys.stderr)
        return 2
    return code or 0


if __name__ == "__main__":
    sys.exit(main())
