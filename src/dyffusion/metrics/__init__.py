"""Ensemble forecast metrics: CRPS, ensemble-mean MSE, spread-skill ratio, rank histogram, streamed per lead time."""

from dyffusion.metrics.ensemble import (
    LeadTimeScores,
    crps_ensemble,
    ensemble_mean_squared_error,
    ensemble_variance,
    rank_histogram,
)

__all__ = ["crps_ensemble", "ensemble_mean_squared_error", "ensemble_variance", "rank_histogram", "LeadTimeScores"]
