"""VMC protocol sender: one solved frame of Mimic's humanoid as an OSC bundle over UDP, for VSeeFace, Warudo,
VNyan, EVMC4U or any other VMC "Marionette" (receiver).

Messages per frame (one bundle, Performer -> Marionette, as the VMC protocol's marionette spec lists them):
  /VMC/Ext/OK        (int) 1                                  a model is loaded and bones follow
  /VMC/Ext/T         (float) seconds since the stream began
  /VMC/Ext/Root/Pos  (str) "root", (float) p.x p.y p.z, q.x q.y q.z q.w
  /VMC/Ext/Bone/Pos  (str) bone, (float) p.x p.y p.z, q.x q.y q.z q.w      one per humanoid bone
  /VMC/Ext/Blend/Val (str) name, (float) value, then /VMC/Ext/Blend/Apply  only when expressions are given
Assumptions of the spec that we rely on:
- bone names are Unity's HumanBodyBones names; rigs/humanoid.json uses exactly those (Hips, LeftUpperArm, ...);
- Bone/Pos carries the bone's *local* position and rotation (Transform.localPosition/localRotation) of a
  normalized VRM-like avatar, whose T-pose has every local rotation at identity: Mimic's rest pose (T-pose,
  world-aligned joint frames), so Mimic's local rotations go through unchanged apart from the axes;
- Root/Pos is the avatar root's pose, which receivers are told to treat as local; we put the root on the floor
  under the hips (x, 0, z) with no rotation, and the hips' height in the Hips bone's local position (0, y, 0);
  the other bones' positions are the calibrated skeleton's rest offsets (receivers that apply bone positions,
  e.g. EVMC4U's default Bone Position Synchronize, stretch a character of other proportions: README says untick it);
- Unity's axes: left-handed, Y up, a character facing +Z with its right at +X. Mimic's are right-handed, Y up,
  facing +Z with its left at +X: the two differ by the mirror X -> -X (`to_unity_position`, `to_unity_rotation`);
- OSC floats are 32-bit; the default receiver port is 39539 (the spec's "commonly" Marionette port).
UDP has no connection: a receiver that is not there costs nothing, except that some systems report the ICMP
"port unreachable" of an earlier datagram as ConnectionRefusedError on a later send; `VmcSender.send` counts it
(and any other OSError) and carries on.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping, Sequence

import numpy as np
from pythonosc.osc_bundle_builder import IMMEDIATELY, OscBundleBuilder
from pythonosc.osc_message_builder import OscMessageBuilder

DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 39539
ROOT_NAME = "root"  # fixed by the spec ("to match the bones")
ADDRESS = {"ok": "/VMC/Ext/OK", "time": "/VMC/Ext/T", "root": "/VMC/Ext/Root/Pos", "bone": "/VMC/Ext/Bone/Pos",
           "blend": "/VMC/Ext/Blend/Val", "apply": "/VMC/Ext/Blend/Apply"}
#: Mimic (right-handed, left at +X) -> Unity (left-handed, right at +X): the mirror that negates X.
_MIRROR = np.array([-1.0, 1.0, 1.0])


def to_unity_position(p: np.ndarray) -> np.ndarray:
    """Positions (..., 3) in Mimic's axes -> Unity's: X negated (metres either way)."""
    return np.asarray(p, dtype=np.float64) * _MIRROR


def to_unity_rotation(q: np.ndarray) -> np.ndarray:
    """Rotations (..., 4) w-x-y-z in Mimic's axes -> the same rotations in Unity's axes, still w-x-y-z.

    Under the mirror M = diag(-1, 1, 1) a rotation R becomes M R M: the axis is mirrored and, the mirror flipping
    handedness, the angle reversed, which leaves x and negates y and z: (w, x, y, z) -> (w, x, -y, -z).
    """
    return np.asarray(q, dtype=np.float64) * np.array([1.0, 1.0, -1.0, -1.0])


def blend_names() -> dict[str, str]:
    """Mimic expression -> the name sent as /VMC/Ext/Blend/Val (rigs/expressions.json's "vmc": VRM 0.x presets);
    expressions without one are not sent. BadRigData when a name is not a non-empty string."""
    from core.common import rigs
    from core.common.errors import BadRigData

    out = {}
    for name, entry in rigs.load("expressions")["expressions"].items():
        if "vmc" in entry:
            if not isinstance(entry["vmc"], str) or not entry["vmc"]:
                raise BadRigData(f"rigs/expressions.json: {name}'s vmc name is {entry['vmc']!r}.", "Reinstall Mimic.")
            out[name] = entry["vmc"]
    return out


def parse_target(value: str) -> tuple[str, int]:
    """"HOST:PORT" (IPv6 as "[::1]:39539") -> (host, port); ValueError names what is wrong."""
    host, sep, port = value.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{value!r} is not HOST:PORT (e.g. {DEFAULT_HOST}:{DEFAULT_PORT})")
    return host.strip("[]"), int(port)


def _message(address: str, *args: object) -> OscMessageBuilder:
    builder = OscMessageBuilder(address)
    for arg in args:
        builder.add_arg(arg)
    return builder


def frame_bundle(bones: Sequence[str], local_positions: np.ndarray, local_rotations: np.ndarray,
                 root_position: np.ndarray, time_s: float, blends: Mapping[str, float] | None = None) -> bytes:
    """One frame as an OSC bundle (bytes), every value in Unity's axes.

    bones: J HumanBodyBones names; local_positions: (J, 3) metres, each bone relative to its parent (the first,
    Hips, relative to the root); local_rotations: (J, 4) w-x-y-z; root_position: (3,) metres; all in Mimic's axes.
    blends: expression name -> 0..1 (VRM blend shape names), sent with Blend/Apply when not empty.
    """
    pos = to_unity_position(local_positions).tolist()
    rot = to_unity_rotation(local_rotations)[:, [1, 2, 3, 0]].tolist()  # x, y, z, w on the wire
    root = to_unity_position(root_position).tolist()
    bundle = OscBundleBuilder(IMMEDIATELY)
    bundle.add_content(_message(ADDRESS["ok"], 1).build())
    bundle.add_content(_message(ADDRESS["time"], float(time_s)).build())
    bundle.add_content(_message(ADDRESS["root"], ROOT_NAME, *root, 0.0, 0.0, 0.0, 1.0).build())
    for name, p, q in zip(bones, pos, rot):
        bundle.add_content(_message(ADDRESS["bone"], name, *p, *q).build())
    if blends:
        for name, value in blends.items():
            bundle.add_content(_message(ADDRESS["blend"], name, float(value)).build())
        bundle.add_content(_message(ADDRESS["apply"]).build())
    return bundle.build().dgram


class VmcSender:
    """A UDP socket sending VMC bundles to host:port; never raises on send (see the module docstring)."""

    def __init__(self, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> None:
        family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
        self.address = address
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.setblocking(False)  # a full send buffer drops the frame rather than stalling the stream
        self.sent = 0
        self.failed = 0
        self.last_error = ""

    def send(self, datagram: bytes) -> bool:
        """Send one bundle; False (counted in `failed`) if the system refused it."""
        try:
            self.sock.sendto(datagram, self.address)
        except OSError as exc:  # ConnectionRefusedError (ICMP port unreachable), BlockingIOError, no route...
            self.failed += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            return False
        self.sent += 1
        return True

    def close(self) -> None:
        self.sock.close()
