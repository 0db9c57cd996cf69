from dyffusion.evaluation.evaluate import Example, evaluate, full_rollout, initial_conditions
from dyffusion.evaluation.forecast import forecast_dataset, to_xarray

__all__ = ["Example", "evaluate", "full_rollout", "forecast_dataset", "initial_conditions", "to_xarray"]
