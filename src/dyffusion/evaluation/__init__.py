from dyffusion.evaluation.evaluate import Example, evaluate, initial_conditions
from dyffusion.evaluation.forecast import forecast_dataset, to_xarray

__all__ = ["Example", "evaluate", "forecast_dataset", "initial_conditions", "to_xarray"]
