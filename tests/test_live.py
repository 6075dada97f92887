"""Live capture end to end: `python -m core live --video CLIP` streams poses to a real VMC receiver (a python-osc
server on localhost) and as JSON lines; every way of stopping ends cleanly. Plus the VMC axes and target parsing."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from pythonosc.dispatcher import Dispatcher
from pythonosc.osc_server import ThreadingOSCUDPServer
from scipy.spatial.transform import Rotation

from core.common.skeleton import humanoid
from core.scipy_rotations import from_wxyz
from core.vmc import ADDRESS, parse_target, to_unity_position, to_unity_rotation
from test_face import rendered_face  # noqa: F401 - the fixture

ROOT = Path(__file__).resolve().parent.parent
SECONDS = 3.0
VMC_PER_FRAME = {ADDRESS["ok"], ADDRESS["time"], ADDRESS["root"], ADDRESS["bone"]}


class Receiver:
    """A VMC receiver as VSeeFace or EVMC4U would be: python-osc's UDP server, recording every message."""

    def __init__(self) -> None:
        self.messages: list[tuple[float, str, tuple]] = []
        dispatcher = Dispatcher()
        dispatcher.set_default_handler(lambda address, *args: self.messages.append((time.perf_counter(), address,
                                                                                    args)))
        self.server = ThreadingOSCUDPServer(("127.0.0.1", 0), dispatcher)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def of(self, address: str) -> list[tuple[float, tuple]]:
        return [(t, args) for t, a, args in self.messages if a == address]


def live(*args: str | Path, **popen: object) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "core", "live", *map(str, args)], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **popen)


def lines_of(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def wait_for_poses(proc: subprocess.Popen[str], count: int) -> list[dict]:
    """Read JSON lines until `count` poses have arrived."""
    assert proc.stdout is not None
    got: list[dict] = []
    while sum("pose" in line for line in got) < count:
        line = proc.stdout.readline()
        assert line, f"the stream ended early: {proc.stderr.read() if proc.stderr else ''}"
        got.append(json.loads(line))
    return got


@pytest.fixture(scope="module")
def streamed(walk_clip: Path) -> dict:
    """SECONDS of the sample clip replayed as a camera, VMC to a receiver here, JSON lines on stdout."""
    receiver = Receiver()
    try:
        proc = live("--video", walk_clip, "--vmc", f"127.0.0.1:{receiver.port}", "--progress", "json",
                    "--seconds", SECONDS)
        stdout, stderr = proc.communicate(timeout=300)
        time.sleep(0.2)  # the last datagrams
    finally:
        receiver.close()
    return {"returncode": proc.returncode, "lines": lines_of(stdout), "stderr": stderr, "receiver": receiver}


def test_json_lines_header_skeleton_poses_and_done(streamed: dict) -> None:
    assert streamed["returncode"] == 0, streamed["stderr"]
    lines = streamed["lines"]
    assert lines[0]["protocol"] == 1
    header = lines[1]["live"]
    assert header["joints"] == list(humanoid().names) and header["fps"] == pytest.approx(30.0)
    kinds = [next(iter(line)) for line in lines]
    assert kinds.index("skeleton") < kinds.index("pose")  # the bone lengths come before the poses that use them
    offsets = np.array(next(line for line in lines if "skeleton" in line)["skeleton"]["offsets"])
    assert offsets.shape == (len(header["joints"]), 3) and np.all(np.isfinite(offsets))
    poses = [line["pose"] for line in lines if "pose" in line]
    done = lines[-1]
    assert done["done"] is True and done["frames"] == len(poses) and done["stopped"] is None
    frames = np.array([p["frame"] for p in poses])
    assert np.all(np.diff(frames) > 0) and frames[-1] < SECONDS * 30
    rotations = np.array([p["rotations"] for p in poses])
    assert rotations.shape == (len(poses), len(header["joints"]), 4)
    np.testing.assert_allclose(np.linalg.norm(rotations, axis=-1), 1.0, atol=1e-4)
    latency = np.array([p["latency_ms"] for p in poses])
    assert np.all(latency > 0) and done["latency_ms"]["median"] == pytest.approx(np.median(latency), rel=0.05)
    print(f"\nlive: {done['frames']} poses at {done['fps']:.1f} fps, dropped {done['dropped']}, latency median "
          f"{done['latency_ms']['median']} ms, p95 {done['latency_ms']['p95']} ms")


def test_vmc_receiver_gets_every_pose_with_the_humanoid_bones(streamed: dict) -> None:
    """Message names, the bone set and the rate as a VMC receiver sees them."""
    receiver, done = streamed["receiver"], streamed["lines"][-1]
    addresses = Counter(a for _, a, _ in receiver.messages)
    assert set(addresses) == VMC_PER_FRAME
    frames = addresses[ADDRESS["time"]]
    assert frames == done["frames"] == addresses[ADDRESS["ok"]] == addresses[ADDRESS["root"]]
    bones = Counter(args[0] for _, args in receiver.of(ADDRESS["bone"]))
    assert set(bones) == set(humanoid().names) and set(bones.values()) == {frames}
    assert all(args[0] == "root" and len(args) == 8 for _, args in receiver.of(ADDRESS["root"]))
    stream_times = np.array([args[0] for _, args in receiver.of(ADDRESS["time"])])
    steps = np.diff(stream_times) * 30.0  # whole frames of the 30 fps clip: dropped frames show as 2, 3 ...
    assert np.all(steps > 0.5) and np.allclose(steps, np.round(steps), atol=1e-3)
    arrivals = np.array([t for t, _ in receiver.of(ADDRESS["time"])])
    rate = (len(arrivals) - 1) / (arrivals[-1] - arrivals[0])
    # The rate the receiver sees is the one the core reports (how fast that is, is bench/live.py's business: it
    # depends on the machine's load), and no more poses come than the clip has frames in that time (a worker that
    # fell behind at the start catches up in a burst, so the rate between the first and last bundle may pass 30/s).
    assert rate == pytest.approx(done["fps"], rel=0.1), f"{rate:.1f} bundles/s, {done['fps']}"
    assert frames <= round((stream_times[-1] - stream_times[0]) * 30.0) + 1
    quats = np.array([args[4:8] for _, args in receiver.of(ADDRESS["bone"])])
    np.testing.assert_allclose(np.linalg.norm(quats, axis=-1), 1.0, atol=1e-5)


def test_vmc_rotations_are_the_poses_in_unity_axes(streamed: dict) -> None:
    """The last pose's bones on the wire: the JSON pose's local rotations mirrored into Unity's axes (x, y, z, w)."""
    receiver, lines = streamed["receiver"], streamed["lines"]
    last = np.array([line["pose"]["rotations"] for line in lines if "pose" in line][-1])
    wire = {args[0]: np.array(args[4:8]) for _, args in receiver.of(ADDRESS["bone"])[-len(last):]}
    names = lines[1]["live"]["joints"]
    expected = to_unity_rotation(last)[:, [1, 2, 3, 0]]
    got = np.stack([wire[n] for n in names])
    got *= np.sign(np.sum(got * expected, axis=-1, keepdims=True))
    np.testing.assert_allclose(got, expected, atol=2e-6)  # 32-bit OSC floats, 6 decimals in JSON


def test_unity_axes_are_the_x_mirror() -> None:
    """Positions: X negated. Rotations: M R M with M = diag(-1, 1, 1), for random rotations."""
    q = Rotation.random(50, random_state=3).as_quat(scalar_first=True)
    mirror = np.diag([-1.0, 1.0, 1.0])
    expected = mirror @ from_wxyz(q).as_matrix() @ mirror
    got = Rotation.from_quat(to_unity_rotation(q), scalar_first=True).as_matrix()
    np.testing.assert_allclose(got, expected, atol=1e-12)
    np.testing.assert_array_equal(to_unity_position(np.array([1.0, 2.0, 3.0])), [-1.0, 2.0, 3.0])


def test_expressions_travel_as_blend_values_then_apply() -> None:
    """A frame with expressions (when the face is captured): Blend/Val per name, then one Blend/Apply, after the
    bones, as VMC receivers expect; read back with python-osc's own parser."""
    from pythonosc.osc_bundle import OscBundle

    from core.vmc import frame_bundle

    sk = humanoid()
    rotations = np.tile([1.0, 0.0, 0.0, 0.0], (sk.num_joints, 1))
    data = frame_bundle(sk.names, sk.offsets, rotations, np.zeros(3), 1.5, {"Blink": 0.25, "A": 1.0})
    messages = [(m.address, m.params) for m in OscBundle(data)]
    assert [a for a, _ in messages[-3:]] == [ADDRESS["blend"], ADDRESS["blend"], ADDRESS["apply"]]
    assert messages[-3][1] == ["Blink", 0.25] and messages[-2][1] == ["A", 1.0] and messages[-1][1] == []
    assert messages[1] == (ADDRESS["time"], [1.5])
    assert frame_bundle(sk.names, sk.offsets, rotations, np.zeros(3), 0.0).count(b"Blend") == 0


def test_vmc_target_parsing() -> None:
    assert parse_target("127.0.0.1:39539") == ("127.0.0.1", 39539)
    assert parse_target("[::1]:39540") == ("::1", 39540)
    for bad in ("localhost", "host:", ":39539", "host:99999", "host:port"):
        with pytest.raises(ValueError, match="HOST:PORT"):
            parse_target(bad)


def test_bad_vmc_target_and_missing_camera_fail_clearly(walk_clip: Path) -> None:
    proc = live("--video", walk_clip, "--vmc", "nowhere:notaport")
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "HOST:PORT" in stderr
    proc = live("--camera", "63", "--progress", "json")
    stdout, _ = proc.communicate(timeout=120)
    error = lines_of(stdout)[-1]["error"]
    assert proc.returncode == 3 and error["type"] == "InputNotFound" and "--camera" in error["message"]


def assert_stopped_cleanly(proc: subprocess.Popen[str], stopped: str, seen: list[dict]) -> None:
    stdout, stderr = proc.communicate(timeout=60)
    lines = seen + lines_of(stdout)
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr
    done = lines[-1]
    assert done["done"] is True and done["stopped"] == stopped and done["frames"] >= 5


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_ends_the_stream_normally(walk_clip: Path, sig: signal.Signals) -> None:
    proc = live("--video", walk_clip, "--no-vmc", "--progress", "json")
    seen = wait_for_poses(proc, 5)
    proc.send_signal(sig)
    assert_stopped_cleanly(proc, sig.name, seen)


def test_closing_stdin_ends_the_stream(walk_clip: Path) -> None:
    """What the Blender add-on's Stop does: the core watches stdin and ends when it closes."""
    proc = live("--video", walk_clip, "--no-vmc", "--progress", "json", "--watch-stdin", stdin=subprocess.PIPE)
    seen = wait_for_poses(proc, 5)
    assert proc.stdin is not None
    proc.stdin.close()
    proc.stdin = None  # communicate() must not flush a closed pipe
    assert_stopped_cleanly(proc, "stdin closed", seen)


def test_a_receiver_that_is_gone_or_a_reader_that_closed_does_not_stop_the_stream(walk_clip: Path) -> None:
    """VMC to a port nobody listens on (the receiver closed) and stdout closed by its reader: the stream runs to
    its end (--seconds) and exits 0 without a traceback."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # free once closed: nobody listens there
    proc = live("--video", walk_clip, "--vmc", f"127.0.0.1:{port}", "--progress", "json", "--seconds", "2")
    wait_for_poses(proc, 3)
    assert proc.stdout is not None
    proc.stdout.close()
    proc.stdout = None
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0 and "Traceback" not in stderr


def test_a_receiver_that_closes_mid_stream_does_not_stop_it(walk_clip: Path) -> None:
    """A VMC receiver that takes some frames and then closes its socket (the VTuber app quit): the sender gets ICMP
    "port unreachable" errors from then on, ignores them and streams to its end (--seconds), done line and exit 0."""
    receiver = Receiver()
    try:
        proc = live("--video", walk_clip, "--vmc", f"127.0.0.1:{receiver.port}", "--progress", "json",
                    "--seconds", "2.5")
        seen = wait_for_poses(proc, 5)
        deadline = time.monotonic() + 30
        while not receiver.of(ADDRESS["time"]) and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        receiver.close()
    received = len(receiver.of(ADDRESS["time"]))
    stdout, stderr = proc.communicate(timeout=120)
    lines = seen + lines_of(stdout)
    assert proc.returncode == 0 and "Traceback" not in stderr, stderr
    done = lines[-1]
    assert done["done"] is True and done["stopped"] is None
    assert 0 < received < done["frames"], (received, done["frames"])  # it went on after the receiver left


def test_face_streams_expressions_with_blinks_at_the_right_frames(rendered_face: Path) -> None:
    """--face on our rendered face clip (bench/render_hands_face.py: blinks and jaw openings keyed at known frames):
    every pose line carries the expression channels, the VMC bundles carry the VRM 0.x blend shapes then one
    Blend/Apply, the blinks come at the frames they were keyed (frames dropped under load are not judged) and the
    jaw follows the truth."""
    from core.common.hands import expression_names
    from core.vmc import blend_names

    with np.load(rendered_face.with_suffix(".npz")) as z:
        truth = {k: z[k] for k in ("blink", "jaw_open")}
    receiver = Receiver()
    try:
        proc = live("--video", rendered_face.with_suffix(".mp4"), "--face", "--vmc", f"127.0.0.1:{receiver.port}",
                    "--progress", "json")
        stdout, stderr = proc.communicate(timeout=300)
        time.sleep(0.2)
    finally:
        receiver.close()
    assert proc.returncode == 0 and "Traceback" not in stderr, stderr
    lines = lines_of(stdout)
    names = list(expression_names())
    assert next(line["live"] for line in lines if "live" in line)["expressions"] == names
    poses = [line["pose"] for line in lines if "pose" in line and line["pose"]["expressions"] is not None]
    assert len(poses) >= 0.5 * lines[-1]["frames"]  # the face is found (frames without a pose are dropped ones)
    frame = np.array([p["frame"] for p in poses])
    weights = np.array([p["expressions"] for p in poses])
    assert weights.shape == (len(poses), len(names)) and np.all((weights >= 0) & (weights <= 1))
    blink, shut = weights[:, names.index("blink")], truth["blink"].max(axis=1)[frame]
    assert np.all(blink[shut >= 0.99] >= 0.9), list(zip(frame[shut >= 0.99], blink[shut >= 0.99]))
    near_open = np.array([truth["blink"].max(axis=1)[max(0, f - 2):f + 3].max() == 0 for f in frame])
    assert np.all(blink[near_open] < 0.5)
    jaw_r = np.corrcoef(weights[:, names.index("jawOpen")], truth["jaw_open"][frame])[0, 1]
    print(f"\nlive --face on the rendered face: {len(poses)} poses with a face of {lines[-1]['frames']}, "
          f"{int((shut >= 0.99).sum())} closed-eye frames all blink >= 0.9, jawOpen r {jaw_r:.3f}")
    assert jaw_r >= 0.9
    sent = set(blend_names().values())
    blends = [args for _, address, args in receiver.messages if address == ADDRESS["blend"]]
    assert {name for name, _ in blends} == sent and all(0.0 <= value <= 1.0 for _, value in blends)
    assert len(blends) == len(sent) * len(receiver.of(ADDRESS["apply"]))  # every blend shape, then one Apply
    assert len(receiver.of(ADDRESS["apply"])) == len(poses)
