"""YAML presets, configuration files and dotted overrides, read into the typed :mod:`~dyffusion.config.schema`.

YAML is read with ``yaml.safe_load`` only: configs are data, never code.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Union

import yaml

from dyffusion.config.schema import ExperimentConfig
from dyffusion.errors import ConfigError
from dyffusion.io import write_text

PRESET_DIR = Path(__file__).parent / "presets"


def _type_name(annotation: Any) -> str:
    if annotation is type(None):
        return "null"
    if dataclasses.is_dataclass(annotation):
        return "a mapping"
    if typing.get_origin(annotation) is None and hasattr(annotation, "__name__"):
        return annotation.__name__
    return str(annotation)


def available_presets() -> list[str]:
    return sorted(path.stem for path in PRESET_DIR.glob("*.yaml"))


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """Turn plain YAML data into the annotated type, or raise ConfigError naming the key."""
    origin = typing.get_origin(annotation)
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return _from_dict(annotation, value, where)
    if origin in (Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: expected {' or '.join(_type_name(option) for option in options)}, got {value!r}")
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        args = typing.get_args(annotation)
        item_type = args[0] if args else Any
        items = [_coerce(item, item_type, f"{where}[{i}]") for i, item in enumerate(value)]
        if origin is tuple and len(args) > 1 and args[1] is not Ellipsis and len(items) != len(args):
            raise ConfigError(f"{where}: expected {len(args)} values, got {len(items)}")
        return tuple(items) if origin is tuple else items
    if annotation is Any:
        return value
    if annotation is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if annotation in (int, str, bool) and type(value) is annotation:
        return value
    raise ConfigError(f"{where}: expected {_type_name(annotation)}, got {value!r}")


def _from_dict(cls: type, values: dict, where: str = "config") -> Any:
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - known
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}; valid keys are {sorted(known)}")
    defaults = cls()
    kwargs = {}
    for name in known:
        if name in values:
            current = getattr(defaults, name)
            if dataclasses.is_dataclass(current) and isinstance(values[name], dict):
                # Nested sections merge into their defaults rather than replacing them.
                merged = _merge(dataclasses.asdict(current), values[name])
                kwargs[name] = _coerce(merged, hints[name], f"{where}.{name}")
            else:
                kwargs[name] = _coerce(values[name], hints[name], f"{where}.{name}")
    return cls(**kwargs)


def _merge(base: dict, update: dict) -> dict:
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _read_yaml(path: Path) -> dict:
    try:
        content = yaml.safe_load(path.read_text())
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file (a config is YAML text)") from None
    except yaml.YAMLError as error:
        # PyYAML's messages span lines (a quoted excerpt and a caret); one line says where and what.
        mark = getattr(error, "problem_mark", None)
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        if isinstance(error, yaml.constructor.ConstructorError):
            raise ConfigError(f"{path}{where}: refused: {problem} (a config is plain YAML data; tags that build "
                              "Python objects are never loaded)") from None
        raise ConfigError(f"{path}{where}: not valid YAML ({problem})") from None
    if content is None:
        return {}
    if not isinstance(content, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return content


def nested(key: str, value: Any) -> dict:
    """``("a.b.c", value)`` -> ``{"a": {"b": {"c": value}}}``."""
    *parents, last = key.split(".")
    result: dict = {last: value}
    for part in reversed(parents):
        result = {part: result}
    return result


def parse_override(text: str) -> dict:
    """``"a.b.c=value"`` -> ``{"a": {"b": {"c": value}}}`` with the value read as YAML data."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r}: expected section.key=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        raise ConfigError(f"override {text!r}: the value is not valid YAML") from None
    return nested(key.strip(), value)


def _read_preset(name_or_path: str | Path, seen: tuple[str, ...] = ()) -> dict:
    """A preset's or YAML file's values; a top-level ``extends: OTHER`` starts from OTHER's values."""
    path = Path(name_or_path)
    if not path.suffix and (PRESET_DIR / f"{name_or_path}.yaml").exists():
        path = PRESET_DIR / f"{name_or_path}.yaml"
    if not path.exists():
        raise ConfigError(
            f"config {str(name_or_path)!r} is neither a YAML file nor a preset ({', '.join(available_presets())})"
        )
    values = _read_yaml(path)
    values.setdefault("name", path.stem)
    base = values.pop("extends", None)
    if base is None:
        return values
    if str(base) in seen:
        raise ConfigError(f"{path}: 'extends' goes round in a circle ({' -> '.join((*seen, str(base)))})")
    return _merge(_read_preset(base, (*seen, str(name_or_path))), values)


def load_config(name_or_path: str | Path | None = None, overrides: list[dict] | None = None) -> ExperimentConfig:
    """A preset name (see :func:`available_presets`) or a YAML path, then overrides, on the defaults."""
    values: dict = {}
    if name_or_path is not None:
        values = _read_preset(name_or_path)
    for override in overrides or []:
        values = _merge(values, override)
    return _from_dict(ExperimentConfig, values)


def config_to_dict(config: Any) -> dict:
    """A plain, YAML-safe dict (tuples become lists)."""

    def plain(value: Any) -> Any:
        if isinstance(value, dict):
            return {key: plain(item) for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(item) for item in value]
        return value

    return plain(dataclasses.asdict(config))


def save_config(config: ExperimentConfig, path: Path) -> None:
    """``path`` written atomically (temporary file, then rename): a kill never leaves half a config."""
    write_text(path, yaml.safe_dump(config_to_dict(config), sort_keys=False))


def read_config(path: Path) -> ExperimentConfig:
    values = _read_yaml(path)
    baseline = values.get("baseline")
    if isinstance(baseline, dict) and "ddim_steps" in baseline:  # runs written before it moved to sampling
        values.setdefault("sampling", {}).setdefault("ddim_steps", baseline.pop("ddim_steps"))
    try:
        return _from_dict(ExperimentConfig, values)
    except ValueError as error:
        raise ConfigError(f"{path}: {error}") from None
