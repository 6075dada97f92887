"""Which person to follow: find the people in view, pick one by a rule, and keep MediaPipe Pose on that person.

MediaPipe's legacy Pose sees one person. To find the others, the people already found are blanked out and the
frame is searched again. To follow the chosen one, the tracking graph runs on the full frame while it holds the
person (MediaPipe tracks from its own last landmarks, so this costs nothing extra), and, when the person is lost or
the graph jumps to someone else, only a search region around the last known box is shown until it is re-acquired.
Blanking instead of cropping keeps landmark coordinates in full-frame pixels and the tracking graph's state valid.
The search runs once, synchronously, on the first frame with anyone in it, on a second graph that loads while the
first frames decode, so the same video and settings always give the same result.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Union

import numpy as np

from core.common.errors import NoPersonFound

PersonRule = Union[str, int]
PoseFactory = Callable[[bool], Any]  # static_image_mode -> a mediapipe.solutions.pose.Pose-like object

RULES = ("largest", "left", "right")
MAX_PEOPLE = 4  # people searched for when choosing one
BLANK_MARGIN = 0.15  # × box size: margin blanked around a found person before searching for the next
SEARCH_MARGIN = 0.5  # × box size: search region around the last box when the person is lost...
SEARCH_GROWTH_PER_S = 1.5  # ...growing by this × box size per second lost
JUMP_PER_FRAME_AT_30FPS = 0.5  # × box size: a larger jump of the box centre between frames is another person
SIZE_SMOOTHING = 0.1  # weight of the newest box in the person's running size (one odd box must not shrink the search)


def parse_person(person: PersonRule | str) -> PersonRule:
    """"largest" | "left" | "right" | N >= 0 (N-th person from the left); digits are read as N."""
    if isinstance(person, bool):
        raise ValueError(f"person must be one of {RULES} or a number >= 0, not {person!r}")
    if isinstance(person, str) and person.strip().isdigit():
        person = int(person)
    if isinstance(person, int) and person >= 0:
        return person
    if isinstance(person, str) and person in RULES:
        return person
    raise ValueError(f"person must be one of {RULES} or a number >= 0, not {person!r}")


@dataclass
class Found:
    """One person's landmarks in one frame. image: (33, 3) x, y pixels and visibility. world: (33, 3) metres,
    Mimic axes (X = x, Y = -y, Z = -z of MediaPipe's world landmarks). box: x0, y0, x1, y1 pixels."""

    image: np.ndarray
    world: np.ndarray
    box: np.ndarray

    @property
    def area(self) -> float:
        return float(np.prod(self.box[2:] - self.box[:2]))

    @property
    def centre(self) -> np.ndarray:
        return (self.box[:2] + self.box[2:]) / 2

    @property
    def size(self) -> float:
        return float(np.max(self.box[2:] - self.box[:2]))


def landmarks(result: Any, width: int, height: int) -> Found | None:
    """The landmarks of a MediaPipe Pose result in pixels and Mimic world axes, or None if it found nobody."""
    if result.pose_landmarks is None or result.pose_world_landmarks is None:
        return None
    img = np.array([(p.x, p.y, p.visibility) for p in result.pose_landmarks.landmark], dtype=np.float64)
    wld = np.array([(p.x, p.y, p.z) for p in result.pose_world_landmarks.landmark], dtype=np.float64)
    img[:, 0] *= width
    img[:, 1] *= height
    wld[:, 1:] *= -1.0
    box = np.concatenate([img[:, :2].min(axis=0), img[:, :2].max(axis=0)])
    return Found(img, wld, box)


def choose(candidates: list[Found], rule: PersonRule) -> int | None:
    """Index into `candidates` of the person `rule` picks, or None if there is no such person."""
    if not candidates:
        return None
    if rule == "largest":
        return int(np.argmax([c.area for c in candidates]))
    order = np.argsort([c.centre[0] for c in candidates], kind="stable")
    if rule == "left":
        return int(order[0])
    if rule == "right":
        return int(order[-1])
    assert isinstance(rule, int)
    return int(order[rule]) if rule < len(order) else None


def _clip_box(box: np.ndarray, margin: float, width: int, height: int) -> tuple[int, int, int, int]:
    """`box` grown by `margin` pixels on every side, as integer pixel bounds inside the frame."""
    x0, y0 = np.floor(np.maximum(box[:2] - margin, 0)).astype(int)
    x1 = int(np.ceil(min(box[2] + margin, width)))
    y1 = int(np.ceil(min(box[3] + margin, height)))
    return int(x0), int(y0), x1, y1


def _inside(point: np.ndarray, region: tuple[int, int, int, int]) -> bool:
    x0, y0, x1, y1 = region
    return bool(x0 <= point[0] <= x1 and y0 <= point[1] <= y1)


class PersonTracker:
    """Runs MediaPipe Pose frame by frame on the person chosen by `rule`; `process` returns their landmarks.

    The people in view are searched for once, on the first frame with anyone in it, and the rule picks one.
    """

    def __init__(self, rule: PersonRule, pose_factory: PoseFactory, fps: float) -> None:
        self.rule = parse_person(rule)
        self._factory = pose_factory
        self._pose = pose_factory(False)
        self._static: Any = None
        self._static_error: BaseException | None = None
        # the search graph loads its models (~0.2 s) while the first frames decode and track
        self._warming = threading.Thread(target=self._warm_static, name="mimic-pose-warmup", daemon=True)
        self._warming.start()
        self._fps = fps
        self._frame = -1  # ordinal of the frame being processed
        self._target: Found | None = None  # last box of the chosen person; None until chosen
        self._tracking = False  # the tracking graph held the chosen person in the previous frame
        self._lost = 0  # frames since the chosen person was last seen
        self._size = 0.0  # running box size of the chosen person, pixels
        self._mask: np.ndarray | None = None
        self.candidates: list[dict[str, Any]] = []  # people found when choosing: box, chosen (for Detections.info)

    def process(self, rgb: np.ndarray) -> Found | None:
        """Landmarks of the chosen person in this frame ((H, W, 3) uint8 RGB), or None if not seen."""
        self._frame += 1
        height, width = rgb.shape[:2]
        if self._target is None:
            first = landmarks(self._pose.process(rgb), width, height)
            if first is None:
                return None
            return self._take(self._find_people(rgb, first))
        image = rgb if self._tracking else self._search_image(rgb)
        found = landmarks(self._pose.process(image), width, height)
        if found is not None and self._tracking and self._jumped(found):
            self._pose.reset()  # the graph follows someone else now; forget them
            found = None
        if found is None:
            self._tracking = False
            self._lost += 1
            return None
        self._accept(found)
        return found

    def close(self) -> None:
        """Stop the helper threads and free the MediaPipe graphs."""
        self._warming.join()
        for pose in (self._pose, self._static):
            if pose is not None:
                pose.close()
        self._static = None

    def _accept(self, found: Found) -> None:
        self._target, self._tracking, self._lost = found, True, 0
        self._size = found.size if self._size == 0 else (1 - SIZE_SMOOTHING) * self._size + SIZE_SMOOTHING * found.size

    def _warm_static(self) -> None:
        try:
            self._static = self._factory(True)
            self._static.process(np.zeros((64, 64, 3), np.uint8))
        except BaseException as exc:  # re-raised in the main thread when the graph is needed
            self._static_error = exc

    def _search_graph(self) -> Any:
        self._warming.join()
        if self._static_error is not None:
            raise self._static_error
        return self._static

    def _find_people(self, rgb: np.ndarray, first: Found) -> list[Found]:
        """`first` and the other people in this frame, found by blanking out those already found."""
        height, width = rgb.shape[:2]
        people = [first]
        blanked = rgb.copy()
        regions: list[tuple[int, int, int, int]] = []
        while len(people) < MAX_PEOPLE:
            regions.append(_clip_box(people[-1].box, BLANK_MARGIN * people[-1].size, width, height))
            x0, y0, x1, y1 = regions[-1]
            blanked[y0:y1, x0:x1] = 0
            found = landmarks(self._search_graph().process(blanked), width, height)
            if found is None or any(_inside(found.centre, region) for region in regions):
                break  # nobody else, or the same person again (partly outside the blanked box)
            people.append(found)
        return people

    def _pick(self, people: list[Found]) -> int:
        """Index of the person the rule picks; records the candidates."""
        pick = choose(people, self.rule)
        self.candidates = [{"box": p.box.round(1).tolist(), "chosen": i == pick} for i, p in enumerate(people)]
        if pick is None:
            raise NoPersonFound(
                f"Person {self.rule} was asked for, but only {len(people)} people were found in the first frame "
                "with anyone in it.",
                f"Choose a person from 0 to {len(people) - 1}, 'left', 'right' or 'largest'.",
            )
        return pick

    def _take(self, people: list[Found]) -> Found:
        """Follow the person the rule picks among `people` (found in the current frame)."""
        pick = self._pick(people)
        self._accept(people[pick])
        if pick != 0:
            self._pose.reset()  # it holds someone else: re-acquire the chosen one in a search region
            self._tracking, self._lost = False, 0
        return people[pick]

    def _jumped(self, found: Found) -> bool:
        """Whether the box centre moved further since the last frame than one person plausibly can."""
        assert self._target is not None
        limit = JUMP_PER_FRAME_AT_30FPS * max(1.0, 30.0 / self._fps) * max(self._size, self._target.size)
        return bool(np.linalg.norm(found.centre - self._target.centre) > limit)

    def _search_image(self, rgb: np.ndarray) -> np.ndarray:
        """The frame blanked outside a search region around the chosen person's last box."""
        assert self._target is not None
        height, width = rgb.shape[:2]
        grow = SEARCH_MARGIN + SEARCH_GROWTH_PER_S * self._lost / self._fps
        x0, y0, x1, y1 = _clip_box(self._target.box, grow * max(self._size, self._target.size), width, height)
        if x0 == 0 and y0 == 0 and x1 == width and y1 == height:
            return rgb
        if self._mask is None or self._mask.shape != rgb.shape:
            self._mask = np.empty_like(rgb)
        self._mask.fill(0)
        self._mask[y0:y1, x0:x1] = rgb[y0:y1, x0:x1]
        return self._mask
