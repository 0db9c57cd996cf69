from dyffusion.evaluation.continuous import evaluate_continuous
from dyffusion.evaluation.evaluate import Evaluation, Example, evaluate, full_rollout, initial_conditions
from dyffusion.evaluation.forecast import check_forecast_path, forecast_dataset, forecast_to_xarray, write_forecast

__all__ = ["Evaluation", "Example", "check_forecast_path", "evaluate", "evaluate_continuous", "full_rollout",
           "forecast_dataset", "forecast_to_xarray", "initial_conditions", "write_forecast"]
