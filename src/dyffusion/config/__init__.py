"""Typed experiment configuration (:mod:`.schema`) and its YAML presets, files and overrides (:mod:`.loading`)."""

from dyffusion.config.loading import (
    PRESET_DIR,
    available_presets,
    config_to_dict,
    load_config,
    nested,
    parse_override,
    read_config,
    save_config,
)
from dyffusion.config.schema import (
    MEMBER_DIMS,
    BaselineConfig,
    DataConfig,
    ExperimentConfig,
    ForecasterConfig,
    InterpolatorConfig,
    SamplingConfig,
    TrainerConfig,
)

__all__ = ["PRESET_DIR", "available_presets", "config_to_dict", "load_config", "nested", "parse_override",
           "read_config", "save_config", "MEMBER_DIMS", "BaselineConfig", "DataConfig", "ExperimentConfig",
           "ForecasterConfig", "InterpolatorConfig", "SamplingConfig", "TrainerConfig"]
