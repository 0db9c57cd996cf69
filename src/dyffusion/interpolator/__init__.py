from dyffusion.interpolator.loss import interpolator_loss, masked_mean
from dyffusion.interpolator.model import Interpolator

__all__ = ["Interpolator", "interpolator_loss", "masked_mean"]
