"""Settings for the training scripts: defaults, a YAML file, then ``key=value`` overrides."""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml


def load_config(defaults: dict, doc: str | None, argv: list[str] | None = None) -> dict:
    """``--config FILE`` (YAML, any of the defaults' keys) then ``key=value`` overrides (YAML values).

    An unknown key is refused, so a typo never trains with a silently ignored setting.
    """
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="YAML file with any of the settings")
    p.add_argument("overrides", nargs="*", help="key=value (YAML syntax for the value)")
    a = p.parse_args(argv)
    cfg = dict(defaults)
    if a.config:
        cfg.update(yaml.safe_load(Path(a.config).read_text()) or {})
    for item in a.overrides:
        key, _, value = item.partition("=")
        if key not in defaults:
            raise SystemExit(f"unknown setting {key!r}; known: {', '.join(defaults)}")
        cfg[key] = yaml.safe_load(value)
    for key, value in cfg.items():
        cfg[key] = _like(defaults.get(key), value, key)
    return cfg


def _like(default, value, key: str):
    """A number where the default is one (YAML 1.1 reads ``2e-4`` as a string), else the value as is."""
    if isinstance(default, bool) or not isinstance(default, (int, float)) or not isinstance(value, str):
        return value
    try:
        number = float(value)
    except ValueError:
        raise SystemExit(f"setting {key!r}: {value!r} is not a number") from None
    return int(number) if isinstance(default, int) and number.is_integer() else number
