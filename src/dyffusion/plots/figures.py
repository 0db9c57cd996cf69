"""Report figures: scores vs lead time, forecast panels, spring-mesh ensembles, spread vs skill, rank histograms,
scores at fine (real-valued) lead times, the speed-accuracy frontier of the samplers.

Figures are built with ``matplotlib.figure.Figure`` and rendered by the Agg canvas, never through
pyplot: no global figure registry (nothing leaks, nothing to close), no GUI backend, safe headless.
Every function writes a PNG and returns its path.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.ticker import LogFormatter

__all__ = ["plot_metrics_vs_lead_time", "plot_forecast_panels", "plot_spring_mesh", "plot_spread_skill",
           "plot_rank_histogram", "plot_frontier", "plot_scores_at_fine_lead_times"]

DPI = 120


def _new_figure(figsize: tuple[float, float]) -> Figure:
    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, format="png")
    fig.clear()  # free the artists now rather than at garbage collection
    return path


def _lead_rows(n_leads: int, max_leads: int) -> list[int]:
    """Up to max_leads lead indices spread evenly over 0..n_leads-1, first and last included."""
    n = max(1, min(max_leads, n_leads))
    return sorted({int(round(i)) for i in np.linspace(0, n_leads - 1, n)})


def _series(scores: dict, key: str) -> np.ndarray:
    if key == "rmse" and "rmse" not in scores:
        return np.sqrt(np.asarray(scores["mse"], dtype=float))
    return np.asarray(scores[key], dtype=float)


def plot_metrics_vs_lead_time(results: dict[str, dict], path, title: str | None = None) -> Path:
    """results: label -> ``LeadTimeScores.compute()`` dict. Panels CRPS, RMSE, SSR (dashed ideal 1)."""
    fig = _new_figure((13, 3.8))
    axes = fig.subplots(1, 3)
    panels = [("crps", "CRPS"), ("rmse", "RMSE"), ("ssr", "Spread-skill ratio")]
    for label, scores in results.items():
        x = np.asarray(scores["lead_times"], dtype=float)
        for ax, (key, _) in zip(axes, panels):
            ax.plot(x, _series(scores, key), marker="o", ms=3, lw=1.5, label=label)
    for ax, (_, name) in zip(axes, panels):
        ax.set_xlabel("lead time")
        ax.set_title(name)
        ax.grid(alpha=0.3)
    axes[2].axhline(1.0, color="k", ls="--", lw=1, label="ideal")
    axes[0].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def _cmap(name: str):
    return matplotlib.colormaps[name].with_extremes(bad="0.7")  # masked (land/obstacle) and NaN points grey


def plot_forecast_panels(
    initial: np.ndarray,
    truth: np.ndarray,
    ensemble: np.ndarray,
    lead_times: Sequence[float],
    path,
    channel: int = 0,
    channel_name: str = "",
    mask: np.ndarray | None = None,
    max_leads: int = 4,
) -> Path:
    """Forecast of one channel. initial (C, H, W), truth (L, C, H, W), ensemble (M, L, C, H, W).

    Fields: initial condition (first lead only), truth, ensemble mean, ensemble std, members 1 and 2,
    |mean - truth|, at up to ``max_leads`` lead times spread evenly: one row per lead time, or, for a grid more
    than twice as wide as tall (a channel flow), one column per lead time so that the panels stay wide. Panels
    take the grid's aspect ratio. Value panels share one colour scale; std and error each have their own.
    ``mask`` (H, W) bool, True = valid; masked points are grey.
    """
    init = np.asarray(initial, dtype=float)[channel]
    tru = np.asarray(truth, dtype=float)[:, channel]
    ens = np.asarray(ensemble, dtype=float)[:, :, channel]
    invalid = np.zeros(init.shape, bool) if mask is None else ~np.broadcast_to(np.asarray(mask, bool), init.shape)

    def masked(a: np.ndarray) -> np.ma.MaskedArray:
        return np.ma.masked_invalid(np.ma.masked_where(np.broadcast_to(invalid, a.shape), a))

    leads = _lead_rows(tru.shape[0], max_leads)
    n_members = min(2, ens.shape[0])
    mean, std = ens.mean(0), ens.std(0)
    err = np.abs(mean - tru)
    # (title, colour scale, field at a lead index) per kind of panel.
    kinds = [("initial", "value", lambda li: init), ("truth", "value", lambda li: tru[li]),
             ("ens. mean", "value", lambda li: mean[li]), ("ens. std", "std", lambda li: std[li])]
    kinds += [(f"member {k + 1}", "value", lambda li, k=k: ens[k, li]) for k in range(n_members)]
    kinds += [("|mean - truth|", "err", lambda li: err[li])]

    def limits(*arrays: np.ndarray, lo0: bool = False) -> tuple[float, float]:
        vals = np.concatenate([masked(a).compressed().ravel() for a in arrays])
        if vals.size == 0:
            return 0.0, 1.0
        lo, hi = (0.0 if lo0 else float(vals.min())), float(vals.max())
        return (lo, hi) if hi > lo else (lo - 0.5, hi + 0.5)

    shown = np.asarray(leads)
    scales = {"value": limits(init, tru[shown], mean[shown], ens[:n_members][:, shown]),
              "std": limits(std[shown], lo0=True), "err": limits(err[shown], lo0=True)}
    cmaps = {"value": _cmap("viridis"), "std": _cmap("magma"), "err": _cmap("magma")}

    height, width = init.shape
    by_column = width > 2 * height  # lead times as columns
    longer_side = 3.4 if by_column else 2.1  # inches
    panel_w, panel_h = (longer_side, longer_side * height / width) if width >= height else \
        (longer_side * width / height, longer_side)
    n_rows, n_cols = (len(kinds), len(leads)) if by_column else (len(leads), len(kinds))
    bar_room = (1.1, 0.7) if by_column else (0.4, 1.1)  # colour bars right of the rows or below the columns
    fig = _new_figure((n_cols * (panel_w + 0.15) + 0.6 + bar_room[0], n_rows * (panel_h + 0.35) + 0.3 + bar_room[1]))
    axes = fig.subplots(n_rows, n_cols, squeeze=False)

    def axis(lead: int, kind: int):
        return axes[kind, lead] if by_column else axes[lead, kind]

    ims = {}
    for r, li in enumerate(leads):
        for c, (name, scale, field) in enumerate(kinds):
            ax = axis(r, c)
            ax.set_xticks([])
            ax.set_yticks([])
            if name == "initial" and r > 0:
                ax.set_axis_off()  # the initial condition is the same for every lead time
                continue
            ims[scale] = ax.imshow(masked(field(li)), cmap=cmaps[scale], vmin=scales[scale][0],
                                   vmax=scales[scale][1], origin="lower", interpolation="nearest", aspect="equal")
            label = "initial (t = 0)" if name == "initial" else name
            if by_column:
                if r == 0:
                    ax.set_ylabel(label, fontsize=9)
                if c == 1:
                    ax.set_title(f"t = {lead_times[li]:g}", fontsize=9)
            else:
                if r == 0:
                    ax.set_title(label, fontsize=9)
                if c == 1:
                    ax.set_ylabel(f"t = {lead_times[li]:g}", fontsize=9)
    # Every row (column) needs a bar beside it, or constrained layout misaligns the panels; members share the
    # value scale and repeat its bar.
    groups = [(slice(0, 3), "value"), (slice(3, 4), "std"), (slice(4, 4 + n_members), "value"),
              (slice(-1, None), "err")]
    for part, scale in groups:
        group = axes[part, :] if by_column else axes[:, part]
        fig.colorbar(ims[scale], ax=group, location="right" if by_column else "bottom", shrink=0.9,
                     aspect=10 if by_column else 20, label={"value": "value", "std": "std", "err": "abs. error"}[scale])
    note = ", masked points grey" if invalid.any() else ""
    fig.suptitle(f"{channel_name or f'channel {channel}'}: {ens.shape[0]} members{note}")
    return _save(fig, path)


def _spring_segments(pos: np.ndarray) -> np.ndarray:
    """pos (2, N1, N2) -> segments (S, 2, 2) joining Chebyshev-distance-1 neighbours (incl. diagonals)."""
    p = np.moveaxis(np.asarray(pos, dtype=float), 0, -1)  # (N1, N2, 2)
    pairs = [
        (p[:, :-1], p[:, 1:]),  # along dim 2
        (p[:-1, :], p[1:, :]),  # along dim 1
        (p[:-1, :-1], p[1:, 1:]),  # diagonal
        (p[:-1, 1:], p[1:, :-1]),  # anti-diagonal
    ]
    return np.concatenate([np.stack([a.reshape(-1, 2), b.reshape(-1, 2)], axis=1) for a, b in pairs])


def plot_spring_mesh(
    positions_truth: np.ndarray,
    positions_ensemble: np.ndarray,
    lead_times: Sequence[float],
    path,
    fixed_mask: np.ndarray | None = None,
    max_leads: int = 4,
) -> Path:
    """Mass-spring mesh, one panel per lead time. positions_truth (L, 2, N1, N2) with channels (x, y),
    positions_ensemble (M, L, 2, N1, N2). Truth solid black, members thin translucent colours,
    fixed particles (``fixed_mask`` (N1, N2) bool) marked with red squares."""
    tru = np.asarray(positions_truth, dtype=float)
    ens = np.asarray(positions_ensemble, dtype=float)
    rows = _lead_rows(tru.shape[0], max_leads)
    m = ens.shape[0]
    colors = matplotlib.colormaps["tab10" if m <= 10 else "viridis"](np.linspace(0, 1, m) if m > 10 else np.arange(m))
    # One shared axis range so that motion between lead times is visible.
    pts = np.concatenate([tru[rows].reshape(len(rows), 2, -1), ens[:, rows].reshape(-1, 2, tru[0, 0].size)], axis=0)
    lo, hi = np.nanmin(pts, axis=(0, 2)), np.nanmax(pts, axis=(0, 2))
    pad = 0.05 * max(float(np.max(hi - lo)), 1e-9)

    fig = _new_figure((3.3 * len(rows) + 0.4, 3.6))
    axes = np.atleast_1d(fig.subplots(1, len(rows), squeeze=False)[0])
    alpha = max(0.15, min(0.6, 3.0 / m))
    for ax, li in zip(axes, rows):
        for k in range(m):
            ax.add_collection(LineCollection(_spring_segments(ens[k, li]), colors=[colors[k]], linewidths=0.6, alpha=alpha))
            ax.scatter(ens[k, li, 0].ravel(), ens[k, li, 1].ravel(), s=3, color=colors[k], alpha=alpha, lw=0)
        ax.add_collection(LineCollection(_spring_segments(tru[li]), colors="k", linewidths=1.2))
        ax.scatter(tru[li, 0].ravel(), tru[li, 1].ravel(), s=8, color="k", zorder=3)
        if fixed_mask is not None:
            fm = np.asarray(fixed_mask, bool)
            ax.scatter(tru[li, 0][fm], tru[li, 1][fm], s=40, marker="s", facecolors="none", edgecolors="r", lw=1.2, zorder=4)
        ax.set_xlim(lo[0] - pad, hi[0] + pad)
        ax.set_ylim(lo[1] - pad, hi[1] + pad)
        ax.set_aspect("equal")
        ax.set_title(f"t = {lead_times[li]:g}", fontsize=10)
        ax.tick_params(labelsize=7)
    fig.suptitle(f"Spring mesh: truth (black) and {m} ensemble members" + (", fixed particles in red" if fixed_mask is not None else ""))
    return _save(fig, path)


def _annotate(ax, xlabel: str, ylabel: str, title: str) -> None:
    """Labels, title, a light grid and the legend of a one-panel score figure."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def plot_spread_skill(results: dict[str, dict], path) -> Path:
    """Ensemble spread sqrt(mean variance) = rmse * ssr against RMSE, one point per lead time, y = x dashed."""
    fig = _new_figure((5.2, 4.8))
    ax = fig.subplots()
    top = 0.0
    for label, scores in results.items():
        rmse = _series(scores, "rmse")
        spread = rmse * _series(scores, "ssr")
        ok = np.isfinite(rmse) & np.isfinite(spread)
        ax.plot(rmse[ok], spread[ok], marker="o", ms=4, lw=1.2, label=label)
        if ok.any():
            top = max(top, float(rmse[ok].max()), float(spread[ok].max()))
    top = top * 1.05 or 1.0
    ax.plot([0, top], [0, top], "k--", lw=1, label="spread = RMSE")
    ax.set_xlim(0, top)
    ax.set_ylim(0, top)
    ax.set_aspect("equal")
    _annotate(ax, "RMSE of ensemble mean", "ensemble spread", "Spread vs skill (per lead time)")
    return _save(fig, path)


def plot_rank_histogram(results: dict[str, dict], path) -> Path:
    """results: label -> ``LeadTimeScores.compute()`` dict with ``rank_histogram`` (M + 1 counts). Frequencies
    relative to a flat histogram (1 = calibrated) against the truth's rank scaled to [0, 1], so that ensembles
    of different sizes share the axes; U-shaped = under-dispersed, dome-shaped = over-dispersed."""
    fig = _new_figure((6.4, 4.0))
    ax = fig.subplots()
    for label, scores in results.items():
        counts = np.asarray(scores["rank_histogram"], dtype=float)
        relative = counts * counts.size / counts.sum()
        edges = np.linspace(0.0, 1.0, counts.size + 1)
        ax.stairs(relative, edges, fill=len(results) == 1, alpha=0.6 if len(results) == 1 else 1.0, lw=1.5,
                  label=f"{label} ({counts.size - 1} members)")
    ax.axhline(1.0, color="k", ls="--", lw=1, label="flat (calibrated)")
    ax.set_xlim(0, 1)
    ax.set_ylim(bottom=0)
    _annotate(ax, "rank of the truth among the members (0: below all, 1: above all)", "frequency / flat frequency",
              "Rank histogram (all lead times and valid points)")
    return _save(fig, path)


def plot_frontier(rows: Sequence[dict], front: Sequence[dict], path, title: str | None = None) -> Path:
    """The speed-accuracy frontier: CRPS and SSR against network evaluations per member (log axis), one line per
    sampler through its settings (each marked with its number of steps), the Pareto front of CRPS in black.
    rows and front: dicts with ``sampler``, ``steps``, ``network_evaluations``, ``crps`` and ``ssr``."""
    fig = _new_figure((11, 4.2))
    crps_ax, ssr_ax = fig.subplots(1, 2)
    for sampler in dict.fromkeys(row["sampler"] for row in rows):
        mine = sorted((row for row in rows if row["sampler"] == sampler), key=lambda row: row["network_evaluations"])
        for ax, key in ((crps_ax, "crps"), (ssr_ax, "ssr")):
            shown = [row for row in mine if np.isfinite(row[key])]
            cost, value = [row["network_evaluations"] for row in shown], [row[key] for row in shown]
            line, = ax.plot(cost, value, marker="o", ms=4, lw=1.2, label=sampler)
            for row, x, y in zip(shown, cost, value):
                ax.annotate(str(len(row["steps"])), (x, y), xytext=(3, 3), textcoords="offset points", fontsize=6,
                            color=line.get_color())
    if front:
        cost = [row["network_evaluations"] for row in front]
        crps_ax.plot(cost, [row["crps"] for row in front], color="k", lw=1, ls="--", drawstyle="steps-post",
                     marker="o", ms=9, mfc="none", label="Pareto front")
    ssr_ax.axhline(1.0, color="k", ls="--", lw=1, label="ideal")
    for ax in (crps_ax, ssr_ax):
        ax.set_xscale("log")
        # Plain numbers (20, 30, ...) rather than 2 x 10^1: a frontier often spans less than a decade.
        ax.xaxis.set_major_formatter(LogFormatter())
        ax.xaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.4)))
    _annotate(crps_ax, "network evaluations per member and rollout", "CRPS", "CRPS (numbers: steps)")
    _annotate(ssr_ax, "network evaluations per member and rollout", "spread-skill ratio", "SSR (1 is ideal)")
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_scores_at_fine_lead_times(results: dict[str, dict], stride: int, path, title: str | None = None) -> Path:
    """results: label -> ``LeadTimeScores.compute()`` dict over the fine lead times k / ``stride``. Panels CRPS and
    MSE against the lead time; the integer lead times (the run's own) are marked on every line and by grid lines."""
    fig = _new_figure((11, 3.8))
    axes = fig.subplots(1, 2)
    x = np.asarray(next(iter(results.values()))["lead_times"], dtype=float)
    whole = np.flatnonzero(x == np.round(x))
    for ax, (key, name) in zip(axes, [("crps", "CRPS"), ("mse", "MSE of the ensemble mean")]):
        for label, scores in results.items():
            ax.plot(x, _series(scores, key), lw=1.5, marker="o", ms=4, markevery=whole.tolist(), label=label)
        for lead in x[whole]:
            ax.axvline(lead, color="0.85", lw=0.8, zorder=0)
        ax.set_xlim(0, x.max())
        ax.set_ylim(bottom=0)
        _annotate(ax, f"lead time in steps of {stride} stored frames (dots: the run's lead times)", name, name)
    if title:
        fig.suptitle(title)
    return _save(fig, path)
