"""Mimic's numpy-only layer, imported by both the core and the Blender add-on.

Everything here needs numpy and the standard library alone (a test enforces it), so Blender's Python can import it:
quaternion algebra (`rotations`), axis conventions (`axes`), left/right mirroring (`mirror`), atomic writes
(`atomic`), the error types (`errors`), rig data from `rigs/` (`rigs`), skeletons and forward kinematics
(`skeleton`) and the motion file (`motionfile`). This `__init__` imports nothing.
"""
