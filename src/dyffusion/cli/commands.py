"""What each ``dyffusion`` command does with its parsed options (``cmd_<name>``); the heavy imports are made
inside each command, so that ``dyffusion --help`` and a bad option answer at once."""

from __future__ import annotations

import argparse
import errno
import json
import subprocess
import sys
from pathlib import Path

from dyffusion.cli.parser import BENCHMARKS, process_options
from dyffusion.config import load_config, nested, parse_override
from dyffusion.data.contract import DataError
from dyffusion.errors import UserError


def _fit_config(args: argparse.Namespace):
    overrides = [parse_override(text) for text in args.set]
    named = {"method": args.method, "data.horizon": args.horizon, "trainer.seed": args.seed,
             **{f"trainer.{key}": value for key, value in process_options(args).items()},
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
    """The run of ``--run`` and its data of ``--split`` (``--data``, or the data it was trained on)."""
    from dyffusion.run import Run

    run = Run.load(args.run)
    return run, run.split_data(None if args.split == "all" else args.split, args.data, args.stream)


def _processes(args: argparse.Namespace, run):
    """With --devices, --accelerator, --num-nodes or --strategy: start the processes (Lightning Fabric re-runs
    this command line for the others of this machine), put this one's copy of ``run`` on its device and return
    its shard of the work; else the one process's."""
    from dyffusion.distributed import Shard, launch, quiet_lightning

    options = process_options(args)
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
        from dyffusion.data.sst import PAPER_BOXES, PAPER_DATE_SPLITS, prepare_sst
        from dyffusion.simulators.sst_synthetic import make_synthetic_sst

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
        from dyffusion.simulators.spring_mesh import write_spring_mesh_splits

        paths = write_spring_mesh_splits(args.out_dir, **counts, ood_test=args.ood_test, frames=args.frames,
                                         seed=args.seed, progress=not args.quiet)
    else:
        from dyffusion.simulators.navier_stokes import write_navier_stokes_splits

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
             "--devices and the like": bool(process_options(args))}
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
    from dyffusion.simulators.schafer_turek import run_schafer_turek

    result = run_schafer_turek(progress=not args.quiet)
    print(result.table())
    return 0 if result.passed else 1


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
