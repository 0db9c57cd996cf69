"""Report figures (PNG, rendered headless with Agg)."""

from dyffusion.plots.figures import (
    plot_forecast_panels,
    plot_frontier,
    plot_metrics_vs_lead_time,
    plot_rank_histogram,
    plot_scores_at_fine_lead_times,
    plot_spread_skill,
    plot_spring_mesh,
)

__all__ = ["plot_metrics_vs_lead_time", "plot_forecast_panels", "plot_spring_mesh", "plot_spread_skill",
           "plot_rank_histogram", "plot_frontier", "plot_scores_at_fine_lead_times"]
