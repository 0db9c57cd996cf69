"""DYffusion: dynamics-informed diffusion for probabilistic spatiotemporal forecasting (NeurIPS 2023).

Python API (mirrors the CLI)::

    import dyffusion
    config = dyffusion.load_config("demo", [dyffusion.nested("trainer.max_minutes", 5)])
    run = dyffusion.fit("data/spring", "runs/spring", config)          # both stages
    run = dyffusion.load_run("runs/spring")                             # later, anywhere
    ensemble = dyffusion.forecast(run, initial, members=20)             # xarray.Dataset
"""

from dyffusion.api import forecast, load_run
from dyffusion.config import ExperimentConfig, load_config, nested
from dyffusion.training import fit

__all__ = ["ExperimentConfig", "fit", "forecast", "load_config", "load_run", "nested"]
__version__ = "0.1.0"
