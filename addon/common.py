"""The core's numpy-only layer (core/common), imported the same way however the add-on was loaded.

Inside Blender the add-on is `bl_ext.<repository>.mimic.addon` and the layer `bl_ext.<repository>.mimic.core.common`;
batch runs and tests import the add-on as the top-level package `addon`, and the layer as `core.common`. Only this
module knows the difference; every other add-on module writes `from .common import rotations`.
"""

from __future__ import annotations

from importlib import import_module
from types import ModuleType

_ROOT = (__package__ or "addon").rpartition(".")[0]
_LAYER = f"{_ROOT}.core.common" if _ROOT else "core.common"

atomic = import_module(f"{_LAYER}.atomic")
axes = import_module(f"{_LAYER}.axes")
errors = import_module(f"{_LAYER}.errors")
legs = import_module(f"{_LAYER}.legs")
mirror = import_module(f"{_LAYER}.mirror")
motionfile = import_module(f"{_LAYER}.motionfile")
rigs = import_module(f"{_LAYER}.rigs")
rotations = import_module(f"{_LAYER}.rotations")
signals = import_module(f"{_LAYER}.signals")
skeleton = import_module(f"{_LAYER}.skeleton")
values = import_module(f"{_LAYER}.values")
vrma = import_module(f"{_LAYER}.vrma")

Motion = motionfile.Motion


def layer(name: str) -> ModuleType:
    """core/common/<name>, imported when first needed (a writer that only some exports use)."""
    return import_module(f"{_LAYER}.{name}")
