"""Mimic as a Blender 4.2+ extension: the repository root is the extension (blender_manifest.toml); the add-on
itself lives in addon/, the core it runs as a subprocess in core/, rig data in rigs/."""


def register() -> None:
    from .addon import register as register_addon

    register_addon()


def unregister() -> None:
    from .addon import unregister as unregister_addon

    unregister_addon()
