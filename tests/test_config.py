"""Presets: every shipped preset loads, and ``extends`` layers one file on another."""

import pytest
import yaml

from dyffusion.config import available_presets, load_config, read_config, save_config
from dyffusion.errors import ConfigError


@pytest.mark.parametrize("name", available_presets())
def test_every_preset_loads(name):
    assert load_config(name).name == name


def test_extends_starts_from_the_base_and_overrides_only_what_it_names(tmp_path):
    base = tmp_path / "base.yaml"
    base.write_text("data: {horizon: 12}\ninterpolator:\n  network: {name: unet, width: 48, dropout: 0.3}\n")
    child = tmp_path / "child.yaml"
    child.write_text(f"extends: {base}\ninterpolator:\n  network: {{width: 16}}\n")
    config = load_config(child)
    assert config.name == "child" and config.data.horizon == 12
    network = config.interpolator.network
    assert (network.name, network.width, network.dropout) == ("unet", 16, 0.3)


def test_navier_stokes_presets_follow_the_paper():
    for name in ("navier-stokes", "navier-stokes-cpu"):
        config = load_config(name)
        assert config.data.horizon == 16 and config.forecaster.conditioning == "none" and config.sampling.refine
        assert config.interpolator.network.name == config.forecaster.network.name == "unet"
        assert config.interpolator.network.dropout == config.forecaster.network.dropout == 0.15


def test_circular_extends_is_an_error(tmp_path):
    (tmp_path / "a.yaml").write_text(f"extends: {tmp_path / 'b.yaml'}\n")
    (tmp_path / "b.yaml").write_text(f"extends: {tmp_path / 'a.yaml'}\n")
    with pytest.raises(ConfigError, match="circle"):
        load_config(tmp_path / "a.yaml")


def test_a_run_written_before_ddim_steps_moved_to_sampling_still_reads(tmp_path):
    path = tmp_path / "config.yaml"
    save_config(load_config("demo"), path)
    stored = yaml.safe_load(path.read_text())
    stored["baseline"]["ddim_steps"] = 7  # where runs of earlier versions kept it
    del stored["sampling"]["ddim_steps"]
    path.write_text(yaml.safe_dump(stored))
    assert read_config(path).sampling.ddim_steps == 7
