"""Profiles and paths (stage 0).

All scale settings live in ``profiles.yaml`` at the repository root; notebooks take a ``profile`` parameter and call
:func:`load_profile`. Nothing here imports other project modules.
"""
from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

#: The contrast phases of the study: arterial and portal venous.
PHASES = ("AP", "PP")

PROFILES = ("ci", "demo", "paper")


def repo_root() -> Path:
    """Repository root: ``$HCC_ROOT`` if set, else the folder above this package."""
    env = os.environ.get("HCC_ROOT")
    return Path(env).resolve() if env else Path(__file__).resolve().parents[1]


@dataclass
class Profile:
    """A resolved profile: raw settings plus absolute paths.

    Attributes
    ----------
    name : str
        ``ci``, ``demo`` or ``paper``.
    settings : dict
        The merged YAML settings (see ``profiles.yaml``).
    root : Path
        Repository root the relative paths are resolved against.
    """

    name: str
    settings: dict[str, Any]
    root: Path = field(default_factory=repo_root)

    def __getitem__(self, key: str) -> Any:
        return self.settings[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.settings.get(key, default)

    @property
    def seed(self) -> int:
        return int(self.settings["seed"])

    @property
    def outputs(self) -> Path:
        """``outputs/<profile>/``: every notebook reads its inputs from and writes its outputs here."""
        return self.root / self.settings["outputs"].format(profile=self.name)

    @property
    def cache(self) -> Path:
        return self.root / self.settings["cache"].format(profile=self.name)

    @property
    def manifest(self) -> Path:
        """Default manifest of this profile (the synthetic cohort)."""
        return self.root / self.settings["cohort"]["manifest"]

    @property
    def cohort_root(self) -> Path:
        return self.root / self.settings["cohort"]["root"]

    def out(self, *parts: str, mkdir: bool = True) -> Path:
        """Path under ``outputs/<profile>/``; parent folders are created."""
        p = self.outputs.joinpath(*parts)
        if mkdir:
            p.parent.mkdir(parents=True, exist_ok=True)
        return p


def load_profile(name: str = "demo", overrides: dict[str, Any] | None = None, path: Path | None = None) -> Profile:
    """Load a named profile from ``profiles.yaml``.

    Parameters
    ----------
    name : {'ci', 'demo', 'paper'}
    overrides : dict, optional
        Nested keys to override (e.g. ``{"unet": {"epochs": 2}}``), merged recursively.
    path : Path, optional
        Another profiles file.
    """
    path = Path(path) if path else repo_root() / "profiles.yaml"
    with open(path) as fh:
        data = yaml.safe_load(fh)
    if name not in data or name == "defaults":
        raise ValueError(f"unknown profile {name!r} in {path}; choose one of {', '.join(PROFILES)}")
    settings = copy.deepcopy(data[name])
    if overrides:
        settings = _merge(settings, overrides)
    return Profile(name=name, settings=settings, root=path.parent.resolve())


def _merge(base: dict, extra: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out
