from dyffusion.forecaster.loss import forecaster_loss
from dyffusion.forecaster.model import CONDITIONING_MODES, Forecaster

__all__ = ["CONDITIONING_MODES", "Forecaster", "forecaster_loss"]
