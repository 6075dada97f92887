"""The Ray backend: one actor per worker that keeps the models loaded, one task per clip; a dead actor is replaced
and its clip comes back to be resubmitted (to whichever worker is free). Ray is imported only here, only with --ray.

The nodes must see the repository and the clips at the same paths (a shared file system, or the same image):
workers import `core` from the driver's repository path and read and write the clips' files themselves.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from typing import Any

from core.batch.pool import MAX_FAILED_STARTS, Outcome
from core.common.errors import BackendUnavailable
from core.common.signals import STOP_SIGNALS

INSTALL_HINT = "Install it with: pip install -r requirements-cluster.txt (Ray 2.60), or run without --ray."


def import_ray() -> Any:
    """The ray module, or BackendUnavailable saying how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise BackendUnavailable(f"--ray needs Ray, which is not installed ({exc}).", INSTALL_HINT) from None
    return ray


def connect(address: str, num_cpus: int | None, env: dict[str, str]) -> Any:
    """Join the cluster at `address` ("auto": the one this machine belongs to) or start a local instance ("local",
    with `num_cpus` CPUs); workers get `env` (PYTHONPATH to this repository, log levels). Returns the ray module."""
    ray = import_ray()
    if address not in ("auto", "local"):
        probe(address)
    kwargs: dict[str, Any] = {"runtime_env": {"env_vars": env}, "log_to_driver": False, "logging_level": "warning"}
    handlers = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    try:
        if address == "local":
            ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, **kwargs)
        else:
            ray.init(address=address, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise BackendUnavailable(f"Cannot connect to the Ray cluster at {address!r}: {exc}",
                                 "Start it (`ray start --head`), check the address, or use --ray local.") from None
    finally:
        for sig, handler in handlers.items():  # Ray's C++ core installs its own SIGTERM handler: a stop is ours
            if handler is not None:
                signal.signal(sig, handler)
    return ray


def probe(address: str, timeout: float = 5.0) -> None:
    """Fail fast when nothing listens at a cluster's HOST:PORT (or ray://HOST:PORT): ray.init would retry for
    minutes. Raises BackendUnavailable."""
    host, _, port = address.split("://", 1)[-1].rpartition(":")
    if not host or not port.isdigit():
        raise BackendUnavailable(f"--ray {address!r} is not an address.",
                                 "Give 'auto', 'local', HOST:PORT (the head's GCS port, 6379 by default) or "
                                 "ray://HOST:10001.")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise BackendUnavailable(f"Cannot reach the Ray cluster at {address!r}: {exc.strerror or exc}.",
                                 "Start it (`ray start --head`), check the address and the firewall, or use --ray "
                                 "local.") from None


def gpu_share(cluster_gpus: float, cuda: bool, workers: int) -> float:
    """The GPUs each core-stage actor asks for: a share of the cluster's GPUs when torch sees CUDA on the cluster's
    side, else 0 (then actors may run on any node)."""
    return min(1.0, cluster_gpus / max(1, workers)) if cluster_gpus > 0 and cuda else 0.0


def _cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def cuda_on_cluster(ray: Any) -> bool:
    """Whether torch.cuda.is_available() on a GPU node of the cluster (False when it has no GPU)."""
    if ray.cluster_resources().get("GPU", 0) <= 0:
        return False
    try:
        return bool(ray.get(ray.remote(num_gpus=0.01, num_cpus=0)(_cuda_available).remote(), timeout=300))
    except Exception:  # no GPU node free within the timeout, torch missing there: run on CPUs
        return False


def blender_placement(ray: Any, blender: str, formats: list[str]) -> tuple[dict[str, Any], int]:
    """(actor options, number of actors) for the Blender stage: nodes that advertise the custom resource "bpy"
    (`ray start --resources '{"bpy": 1}'`), one actor per unit; else one actor wherever a node can run Blender."""
    from core.batch import blender as blender_stage

    units = ray.cluster_resources().get("bpy", 0)
    if units >= 1:
        return {"num_cpus": 0, "resources": {"bpy": 1}}, int(units)
    try:
        found = ray.get(ray.remote(num_cpus=0)(blender_stage.has_blender).remote(blender), timeout=300)
    except Exception as exc:
        found, why = False, str(exc).splitlines()[0]
    else:
        why = "no node advertises the resource 'bpy' and the node asked has neither bpy nor a blender binary"
    if not found:
        raise blender_stage.unavailable(formats, [why])
    return {"num_cpus": 0}, 1


class _Actor:
    def __init__(self, handle: Any, info: dict[str, Any]) -> None:
        self.handle, self.info = handle, info


class RayPool:
    """`size` actors of `cls(*args)` (methods ready() and run(task)), with the same interface as LocalPool."""

    def __init__(self, ray: Any, cls: type, args: tuple, size: int, options: dict[str, Any], unavailable: Any) -> None:
        self.ray, self.args, self.size, self.unavailable = ray, args, size, unavailable
        self.remote = ray.remote(cls).options(max_restarts=0, max_task_retries=0, **options)
        self.starting: dict[Any, Any] = {}
        self.idle: list[_Actor] = []
        self.running: dict[Any, tuple[_Actor, str]] = {}
        self.info: dict[str, Any] | None = None
        self._failed_starts = 0

    def start(self) -> None:
        while len(self.starting) + len(self.idle) + len(self.running) < self.size:
            handle = self.remote.remote(*self.args)
            self.starting[handle.ready.remote()] = handle

    def free(self) -> int:
        return len(self.idle)

    def busy(self) -> int:
        return len(self.running)

    def submit(self, key: str, task: dict[str, Any]) -> dict[str, Any]:
        actor = self.idle.pop(0)
        self.running[actor.handle.run.remote(task)] = (actor, key)
        return actor.info

    def wait_ready(self, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while self.info is None:
            if time.monotonic() > deadline:
                raise self.unavailable([f"no Ray worker was ready after {timeout:.0f} s"])
            self.poll(1.0)
        return self.info

    def poll(self, timeout: float) -> list[Outcome]:
        refs = [*self.starting, *self.running]
        if not refs:
            time.sleep(timeout)
            return []
        ready, _ = self.ray.wait(refs, num_returns=1, timeout=timeout)
        if ready:
            ready, _ = self.ray.wait(refs, num_returns=len(refs), timeout=0)
        out: list[Outcome] = []
        for ref in ready:
            if ref in self.starting:
                self._started(ref)
            else:
                out.append(self._finished(ref))
        return out

    def _started(self, ref: Any) -> None:
        handle = self.starting.pop(ref)
        try:
            info = self.ray.get(ref)
        except self.ray.exceptions.RayError as exc:
            self._failed_starts += 1
            self.ray.kill(handle)
            if self._failed_starts >= MAX_FAILED_STARTS:
                self.close()
                raise self.unavailable([str(exc).strip().splitlines()[-1]]) from None
            self.start()
            return
        self._failed_starts = 0
        self.info = self.info or info
        self.idle.append(_Actor(handle, info))

    def _finished(self, ref: Any) -> Outcome:
        from core.batch.pool import death

        actor, key = self.running.pop(ref)
        exceptions = self.ray.exceptions
        try:
            result = self.ray.get(ref)
        except exceptions.RayTaskError as exc:  # our run() raised: a bug, not a dead worker
            self.idle.append(actor)
            return Outcome(key, {"status": "failed", "error": {"type": "InternalError", "exit_code": 1,
                                                               "message": str(exc).strip().splitlines()[-1]}},
                           actor.info)
        except exceptions.RayError as exc:  # the actor's process died (killed, out of memory, node lost)
            self.ray.kill(actor.handle)
            self.start()  # its replacement
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            return Outcome(key, None, actor.info, death(actor.info, f"{type(exc).__name__}: {first[:200]}", []))
        self.idle.append(actor)
        if "died" in result:  # the actor's own subprocess (Blender) died; the actor starts another
            return Outcome(key, None, actor.info, result["died"])
        return Outcome(key, result, actor.info)

    def close(self) -> None:
        for handle in [*self.starting.values(), *(a.handle for a in self.idle),
                       *(a.handle for a, _ in self.running.values())]:
            try:
                self.ray.kill(handle)
            except Exception:
                pass
        self.starting.clear(), self.idle.clear(), self.running.clear()


def worker_env(root: str) -> dict[str, str]:
    """What Ray's worker processes need: this repository importable, quiet C++ logs, the same detection cache."""
    env = {"PYTHONPATH": root, "GLOG_minloglevel": "2", "TF_CPP_MIN_LOG_LEVEL": "3"}
    if os.environ.get("MIMIC_CACHE_DIR"):
        env["MIMIC_CACHE_DIR"] = os.environ["MIMIC_CACHE_DIR"]
    return env
