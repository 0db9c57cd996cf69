"""Ensemble forecast metrics: CRPS, ensemble-mean MSE, spread-skill ratio, streamed per lead time."""

from dyffusion.metrics.ensemble import (
    LeadTimeScores,
    crps_ensemble,
    ensemble_mean_squared_error,
    ensemble_variance,
)

__all__ = ["crps_ensemble", "ensemble_mean_squared_error", "ensemble_variance", "LeadTimeScores"]
