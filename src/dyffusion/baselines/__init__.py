"""The paper's baselines in the same framework: Perturbation, Dropout, DDPM and MCVD (as in the paper's experiments)."""

from dyffusion.baselines.multistep import MultiStepForecaster, MultiStepModule, MultiStepPipeline
from dyffusion.baselines.video_diffusion import FrameStackDenoiser, VideoDiffusionModule, VideoDiffusionPipeline

__all__ = ["FrameStackDenoiser", "MultiStepForecaster", "MultiStepModule", "MultiStepPipeline",
           "VideoDiffusionModule", "VideoDiffusionPipeline"]
