"""Mimic core: video of a person -> 3D skeletal motion. Pure Python; never imports bpy."""

__version__ = "0.1.0"
