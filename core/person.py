"""Which people to follow: find the people in view, pick one by a rule (or keep them all), and keep a MediaPipe Pose
graph on each followed person, their identity checked by motion and appearance.

MediaPipe's legacy Pose sees one person. To find the others, the people already found are blanked out and the
frame is searched again (on a static-image graph that loads on a thread while the first frames decode); this runs
on the first frame with anyone in it, so the same video and settings always give the same result. Blanking instead
of cropping keeps landmark coordinates in full-frame pixels and the tracking graphs' state valid.

One person in view (PersonTracker): the tracking graph runs on the full frame while it holds them (MediaPipe tracks
from its own last landmarks, so this costs nothing extra); when they are lost or the graph jumps away from where a
constant-velocity prediction of their torso centre puts them, only a search region around that is shown until
they are re-acquired.

Several people (PeopleTracker, "all", and PersonTracker when the person chosen is not alone, counting only people
at least MIN_RELATIVE_SIZE of their size): one tracking graph
per person (up to MAX_PEOPLE), each shown the frame with the other people's predicted boxes (and heads) blanked
except where they overlap its own, so each graph stays on its own person. A graph's result is kept for its person
only if it is near their prediction and does not look more like someone else (`Look.belongs`: colour histograms of
the torso box, learnt while the look is unambiguous), someone else here being a person not seen elsewhere in this
frame and of a compatible size (an occluded torso takes the colours of the person behind it). Two graphs on one
person: the one it fits better keeps it. A person lost is searched for around the prediction, after LOST_SLOW_S
anywhere the others are not, and re-identified by look; new people are searched for every NEW_PEOPLE_EVERY_S.
Limits: a person entirely behind another when searched for is not found (blanking the one in front hides them);
people dressed alike are told apart by motion alone.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Union

import cv2
import numpy as np

from core.common import rigs
from core.common.errors import NoPersonFound

PersonRule = Union[str, int]
PoseFactory = Callable[[bool], Any]  # static_image_mode -> a mediapipe.solutions.pose.Pose-like object

RULES = ("largest", "left", "right")
ALL = "all"  # every person: PeopleTracker
MAX_PEOPLE = 4  # people searched for when choosing one, and followed at most with "all"
BLANK_MARGIN = 0.15  # × box size: margin blanked around a found person before searching for the next
SEARCH_MARGIN = 0.5  # × box size: search region around the last box when the person is lost...
SEARCH_GROWTH_PER_S = 1.5  # ...growing by this × box size per second lost
JUMP_PER_FRAME_AT_30FPS = 0.5  # × box size: a larger jump of the torso centre from its prediction is another person
SIZE_SMOOTHING = 0.1  # weight of the newest box in the person's running size (one odd box must not shrink the search)
SAME_PERSON = 0.1  # × box size: two detections whose body landmarks are this close (mean) are one person


def _landmarks(*names: str) -> tuple[int, ...]:
    return tuple(rigs.landmark_index(name) for name in names)


HIPS = _landmarks("left_hip", "right_hip")
TORSO = _landmarks("left_shoulder", "right_shoulder", "left_hip", "right_hip")
BODY = TORSO + _landmarks("left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_knee", "right_knee",
                          "left_ankle", "right_ankle")
FACE = 11  # landmarks 0..10: nose, eyes, ears, mouth
HEAD_MARGIN = 0.05  # × box size around the face landmarks: a person's head
FACE_SEEN = 0.5  # the nose's visibility above which a person's face is taken as seen
VELOCITY_SMOOTHING = 0.5  # weight of the newest step in the torso centre's velocity
MAX_SPEED_AT_30FPS = 0.1  # × box size per frame: the fastest the torso centre is predicted to move
PREDICT_MAX_S = 0.1  # a lost person's position is extrapolated for at most this long
HIST_BINS = (8, 4, 4)  # hue, saturation, value bins of the torso histogram
HIST_PIXELS = 4096  # the torso box is subsampled to about this many pixels
LOOK_MARGIN = 0.05  # a detection is someone else's if it looks this much more like them (Bhattacharyya coefficient)
DISTINCT = 0.6  # two people whose looks are less alike than this are told apart by look: a tie is then not theirs
LOOK_MIN = 0.5  # a person lost for a while is re-identified only if they look at least this much like before
LOOK_RATE = 0.05  # weight of a new, clearly attributed detection in a person's running histogram
NEW_PEOPLE_EVERY_S = 0.5  # "all": seconds between searches for people who came into view
LOST_SLOW_S = 1.0  # "all": a person lost this long is searched for only every SLOW_SEARCH_EVERY frames
SLOW_SEARCH_EVERY = 5
SIZE_APART = 0.15  # log box-size ratio by which a detection must fit one person's size better than another's
MIN_RELATIVE_SIZE = 0.35  # "all": people smaller than this × the largest followed person are background, not followed


def parse_person(person: PersonRule | str) -> PersonRule:
    """"largest" | "left" | "right" | "all" | N >= 0 (N-th person from the left); digits are read as N."""
    if isinstance(person, bool):
        raise ValueError(f"person must be one of {RULES + (ALL,)} or a number >= 0, not {person!r}")
    if isinstance(person, str) and person.strip().isdigit():
        person = int(person)
    if isinstance(person, int) and person >= 0:
        return person
    if isinstance(person, str) and person in RULES + (ALL,):
        return person
    raise ValueError(f"person must be one of {RULES + (ALL,)} or a number >= 0, not {person!r}")


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

    @property
    def head(self) -> np.ndarray:
        """x0, y0, x1, y1 pixels: the face landmarks' box grown by HEAD_MARGIN × the body's size (what MediaPipe's
        detector keys on: blanking it hides the person from the detector, not from the rest of the view)."""
        head = self.face(HEAD_MARGIN)
        assert head is not None
        return head

    def face(self, margin: float = 0.0) -> np.ndarray | None:
        """x0, y0, x1, y1 pixels: the face landmarks' box grown by `margin` × the body's size; None if the face is
        not seen (a person seen from behind: MediaPipe then guesses where the face would be)."""
        if margin == 0.0 and self.image[0, 2] < FACE_SEEN:
            return None
        face = self.image[:FACE, :2]
        grow = margin * self.size
        return np.concatenate([face.min(axis=0) - grow, face.max(axis=0) + grow])

    @property
    def anchor(self) -> np.ndarray:
        """(2,) the torso's centre (mean of shoulders and hips), pixels: steadier than the box when arms move."""
        return self.image[list(TORSO), :2].mean(axis=0)


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


def same_person(a: Found, b: Found) -> bool:
    """Whether two detections in one frame are one person: their body landmarks nearly coincide."""
    gap = np.linalg.norm(a.image[list(BODY), :2] - b.image[list(BODY), :2], axis=-1).mean()
    return bool(gap < SAME_PERSON * max(a.size, b.size))


def appearance(rgb: np.ndarray, found: Found) -> np.ndarray | None:
    """A person's look: the normalised HSV histogram (HIST_BINS, flattened) of their torso box (between shoulders
    and hips, trimmed at the sides) in the frame rgb (H, W, 3) uint8; None if the box is too small to say."""
    pts = found.image[list(TORSO), :2]
    (x0, y0), (x1, y1) = pts.min(axis=0), pts.max(axis=0)
    trim = 0.15 * (x1 - x0)
    height, width = rgb.shape[:2]
    x0, x1 = int(max(x0 + trim, 0)), int(min(x1 - trim, width))
    y0, y1 = int(max(y0, 0)), int(min(y1, height))
    if x1 - x0 < 4 or y1 - y0 < 4:
        return None
    step = max(1, int(np.sqrt((x1 - x0) * (y1 - y0) / HIST_PIXELS)))
    crop = np.ascontiguousarray(rgb[y0:y1:step, x0:x1:step])
    hsv = cv2.cvtColor(crop, cv2.COLOR_RGB2HSV)
    hist = cv2.calcHist([hsv], [0, 1, 2], None, list(HIST_BINS), [0, 180, 0, 256, 0, 256]).ravel()
    total = float(hist.sum())
    return hist / total if total > 0 else None


def size_rules_out(found: Found, own: float, other: float) -> bool:
    """Whether `found`'s box size fits a person of size `own` so much better than one of size `other` (pixels)
    that it cannot be the other (log size ratios apart by SIZE_APART)."""
    if own <= 0 or other <= 0 or found.size <= 0:
        return False
    return bool(abs(np.log(found.size / other)) - abs(np.log(found.size / own)) > SIZE_APART)


def likeness(a: np.ndarray | None, b: np.ndarray | None) -> float:
    """Bhattacharyya coefficient of two histograms, 0 (nothing alike) .. 1 (identical); NaN if either is None."""
    if a is None or b is None:
        return float("nan")
    return float(np.sum(np.sqrt(a * b)))


@dataclass
class Look:
    """Everyone's running torso histograms (person id -> histogram): whose look a detection has."""

    hists: dict[int, np.ndarray] = field(default_factory=dict)

    def belongs(self, hist: np.ndarray | None, who: int, strict: bool = False,
                cannot_be: Callable[[int], bool] = lambda k: False) -> bool:
        """Whether a detection with `hist` may be person `who`: it does not look clearly more like someone else (nor,
        for someone whose look is distinct from theirs, about as much: a detection straddling two people), and, if
        strict (re-identifying someone lost for a while), at least LOOK_MIN like them. Unknown: True. Persons k
        with cannot_be(k) (seen elsewhere in this frame, or of another size) are not compared: an occluded torso's
        colours are partly those of the person behind it."""
        own = likeness(hist, self.hists.get(who))
        if not np.isfinite(own):
            return True
        for k, h in self.hists.items():
            if k == who or cannot_be(k):
                continue
            other = likeness(hist, h)
            if other > own + LOOK_MARGIN or (other > own - LOOK_MARGIN and self.distinct(who, k)):
                return False
        return not strict or own >= LOOK_MIN

    def distinct(self, a: int, b: int) -> bool:
        """Whether persons a and b look different enough to be told apart by look."""
        return likeness(self.hists.get(a), self.hists.get(b)) < DISTINCT

    def clearly(self, hist: np.ndarray | None, who: int) -> bool:
        """Whether `hist` looks like `who` more than like anyone else by a margin (then it may update their look)."""
        own = likeness(hist, self.hists.get(who))
        return bool(np.isfinite(own)) and all(own > likeness(hist, h) + LOOK_MARGIN
                                              for k, h in self.hists.items() if k != who)

    def learn(self, hist: np.ndarray | None, who: int) -> None:
        if hist is None:
            return
        old = self.hists.get(who)
        self.hists[who] = hist if old is None else (1 - LOOK_RATE) * old + LOOK_RATE * hist


@dataclass
class Track:
    """One followed person: last landmarks, torso-centre velocity (pixels per frame), running box size, frames lost."""

    id: int
    last: Found
    size: float
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(2))
    lost: int = 0
    pose: Any = None  # its tracking graph ("all")
    tracking: bool = False  # its graph held it in the previous frame
    fps: float = 30.0

    def predicted(self) -> np.ndarray:
        """(2,) where the torso centre should be in the frame being processed (constant velocity, for at most
        PREDICT_MAX_S)."""
        return self.last.anchor + self.velocity * min(self.lost + 1, max(1.0, PREDICT_MAX_S * self.fps))

    def predicted_box(self) -> np.ndarray:
        shift = self.predicted() - self.last.anchor
        return self.last.box + np.concatenate([shift, shift])

    def keep_box(self) -> np.ndarray:
        """The box around both the last seen and the predicted place: what its view never blanks."""
        last, pred = self.last.box, self.predicted_box()
        return np.concatenate([np.minimum(last[:2], pred[:2]), np.maximum(last[2:], pred[2:])])

    def predicted_head(self) -> np.ndarray:
        shift = self.predicted() - self.last.anchor
        return self.last.head + np.concatenate([shift, shift])

    def near(self, found: Found, fps: float) -> bool:
        """Whether `found` is where this person can be: within the per-frame jump limit of the prediction."""
        limit = JUMP_PER_FRAME_AT_30FPS * max(1.0, 30.0 / fps) * max(self.size, self.last.size) * (1 + self.lost)
        return bool(np.linalg.norm(found.anchor - self.predicted()) <= limit)

    def accept(self, found: Found) -> None:
        step = (found.anchor - self.last.anchor) / (self.lost + 1)
        velocity = VELOCITY_SMOOTHING * step + (1 - VELOCITY_SMOOTHING) * self.velocity
        top = MAX_SPEED_AT_30FPS * 30.0 / self.fps * self.size
        speed = float(np.linalg.norm(velocity))
        self.velocity = velocity * min(1.0, top / speed) if speed > 0 else velocity
        self.size = (1 - SIZE_SMOOTHING) * self.size + SIZE_SMOOTHING * found.size
        self.last, self.lost, self.tracking = found, 0, True

    def miss(self) -> None:
        self.lost += 1
        self.tracking = False

    def search_box(self, fps: float) -> np.ndarray:
        """The region a lost person is looked for in: the predicted box grown with the time lost, pixels."""
        grow = SEARCH_MARGIN + SEARCH_GROWTH_PER_S * self.lost / fps
        margin = grow * max(self.size, self.last.size)
        return self.predicted_box() + np.array([-margin, -margin, margin, margin])


def _clip_box(box: np.ndarray, margin: float, width: int, height: int) -> tuple[int, int, int, int]:
    """`box` grown by `margin` pixels on every side, as integer pixel bounds inside the frame."""
    x0, y0 = np.floor(np.maximum(box[:2] - margin, 0)).astype(int)
    x1 = int(np.ceil(min(box[2] + margin, width)))
    y1 = int(np.ceil(min(box[3] + margin, height)))
    return int(x0), int(y0), max(int(x0), x1), max(int(y0), y1)


def _blank(rgb: np.ndarray, others: list[np.ndarray], keep: np.ndarray | None, region: np.ndarray | None,
           out: np.ndarray | None = None, heads: list[np.ndarray] = (), own_head: np.ndarray | None = None
           ) -> np.ndarray:
    """The frame with `others` (boxes, grown by BLANK_MARGIN) blanked except inside `keep` (a box, grown the same),
    everything outside `region` (a box) blanked, and the others' `heads` (boxes) blanked even inside `keep`, except
    where they cover `own_head` (a box); rgb itself when nothing is blanked. out: a reusable buffer."""
    height, width = rgb.shape[:2]
    boxes = [_clip_box(b, BLANK_MARGIN * float(np.max(b[2:] - b[:2])), width, height) for b in others]
    faces = [_clip_box(h, 0.0, width, height) for h in heads]
    inside = _clip_box(region, 0.0, width, height) if region is not None else (0, 0, width, height)
    if not any(x1 > x0 and y1 > y0 for x0, y0, x1, y1 in boxes) and inside == (0, 0, width, height):
        return rgb
    out = np.empty_like(rgb) if out is None or out.shape != rgb.shape else out
    x0, y0, x1, y1 = inside
    out.fill(0)
    out[y0:y1, x0:x1] = rgb[y0:y1, x0:x1]
    for bx0, by0, bx1, by1 in boxes:
        out[by0:by1, bx0:bx1] = 0
    if keep is not None:
        kx0, ky0, kx1, ky1 = _clip_box(keep, BLANK_MARGIN * float(np.max(keep[2:] - keep[:2])), width, height)
        kx0, ky0, kx1, ky1 = max(kx0, x0), max(ky0, y0), min(kx1, x1), min(ky1, y1)
        if kx1 > kx0 and ky1 > ky0:
            out[ky0:ky1, kx0:kx1] = rgb[ky0:ky1, kx0:kx1]
    for fx0, fy0, fx1, fy1 in faces:
        out[fy0:fy1, fx0:fx1] = 0
    if faces and own_head is not None:
        hx0, hy0, hx1, hy1 = _clip_box(own_head, 0.0, width, height)
        hx0, hy0, hx1, hy1 = max(hx0, x0), max(hy0, y0), min(hx1, x1), min(hy1, y1)
        if hx1 > hx0 and hy1 > hy0:
            out[hy0:hy1, hx0:hx1] = rgb[hy0:hy1, hx0:hx1]
    return out


class _Search:
    """The static-image graph that searches a frame for people, loaded on a thread while the first frames decode."""

    def __init__(self, factory: PoseFactory) -> None:
        self._factory = factory
        self._graph: Any = None
        self._error: BaseException | None = None
        self._warming = threading.Thread(target=self._warm, name="mimic-pose-warmup", daemon=True)
        self._warming.start()

    def _warm(self) -> None:
        try:
            self._graph = self._factory(True)
            self._graph.process(np.zeros((64, 64, 3), np.uint8))
        except BaseException as exc:  # re-raised in the main thread when the graph is needed
            self._error = exc

    def graph(self) -> Any:
        self._warming.join()
        if self._error is not None:
            raise self._error
        return self._graph

    def people(self, rgb: np.ndarray, known: list[Found], limit: int) -> list[Found]:
        """People in `rgb` other than `known` (found in this frame), up to `limit` in all, by blanking those found
        and searching again. A detection that is one of those already found (partly outside its blanked box) ends
        the search."""
        height, width = rgb.shape[:2]
        people = list(known)
        new: list[Found] = []
        blanked = rgb.copy()
        for p in people:
            x0, y0, x1, y1 = _clip_box(p.box, BLANK_MARGIN * p.size, width, height)
            blanked[y0:y1, x0:x1] = 0
        while len(people) < limit:
            found = landmarks(self.graph().process(blanked), width, height)
            if found is None or any(same_person(found, p) for p in people):
                break
            people.append(found)
            new.append(found)
            x0, y0, x1, y1 = _clip_box(found.box, BLANK_MARGIN * found.size, width, height)
            blanked[y0:y1, x0:x1] = 0
        return new

    def close(self) -> None:
        self._warming.join()
        if self._graph is not None:
            self._graph.close()
            self._graph = None


class PersonTracker:
    """Runs MediaPipe Pose frame by frame on the person chosen by `rule`; `process` returns their landmarks.

    The people in view are searched for once, on the first frame with anyone in it, and the rule picks one. Alone
    in view, they are followed by one graph (searched for around their predicted place when lost); with others
    about, everyone found then is followed as by PeopleTracker (one graph each, identity by look and motion), since
    knowing where the others are is what keeps the chosen one from being taken for them; that costs one graph per
    person.
    """

    def __init__(self, rule: PersonRule, pose_factory: PoseFactory, fps: float) -> None:
        self.rule = parse_person(rule)
        if self.rule == ALL:
            raise ValueError("PersonTracker follows one person; use PeopleTracker for 'all'")
        self._factory = pose_factory
        self._pose = pose_factory(False)
        self._search = _Search(pose_factory)
        self._fps = fps
        self._target: Track | None = None  # the chosen person when alone; None until chosen
        self._people: PeopleTracker | None = None  # everyone, when the chosen one is not alone
        self._chosen = 0  # the chosen one's id in self._people
        self._mask: np.ndarray | None = None
        self.candidates: list[dict[str, Any]] = []  # people found when choosing: box, chosen (for Detections.info)

    def process(self, rgb: np.ndarray) -> Found | None:
        """Landmarks of the chosen person in this frame ((H, W, 3) uint8 RGB), or None if not seen."""
        if self._people is not None:
            return self._people.process(rgb)[self._chosen]
        height, width = rgb.shape[:2]
        if self._target is None:
            first = landmarks(self._pose.process(rgb), width, height)
            if first is None:
                return None
            return self._take(rgb, [first] + self._search.people(rgb, [first], MAX_PEOPLE))
        target = self._target
        image = rgb if target.tracking else self._search_image(rgb)
        found = landmarks(self._pose.process(image), width, height)
        if found is not None and not target.near(found, self._fps):
            self._pose.reset()  # the graph follows someone else now; forget them
            found = None
        if found is None:
            target.miss()
            return None
        target.accept(found)
        return found

    def close(self) -> None:
        """Stop the helper threads and free the MediaPipe graphs."""
        if self._people is not None:
            self._people.close()
            return
        self._search.close()
        self._pose.close()

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

    def _take(self, rgb: np.ndarray, people: list[Found]) -> Found:
        """Follow the person the rule picks among `people` (found in the current frame; the graph holds people[0]);
        the others are followed too unless much smaller than the chosen one (MIN_RELATIVE_SIZE: background)."""
        pick = self._pick(people)
        chosen = people[pick]
        followed = [p for p in people if p is chosen or p.size >= MIN_RELATIVE_SIZE * chosen.size]
        if len(followed) > 1:
            self._people = PeopleTracker(self._factory, self._fps, max_people=len(followed), first=self._pose,
                                         search=self._search)
            self._people.start(rgb, followed, keep_all=True, held=people[0])
            self._chosen = next(i for i, p in enumerate(followed) if p is chosen)
            return chosen
        self._target = Track(0, chosen, chosen.size, tracking=pick == 0, fps=self._fps)
        if pick != 0:
            self._pose.reset()  # it holds someone in the background: search for the chosen one from the next frame
        return chosen

    def _search_image(self, rgb: np.ndarray) -> np.ndarray:
        """The frame blanked outside a search region around the chosen person's predicted box."""
        assert self._target is not None
        self._mask = _blank(rgb, [], None, self._target.search_box(self._fps), self._mask)
        return self._mask


class PeopleTracker:
    """Follows every person in view (up to `max_people`), one MediaPipe tracking graph each; `process` returns each
    person's landmarks in this frame by person id (ids in order of discovery; None where not seen)."""

    def __init__(self, pose_factory: PoseFactory, fps: float, max_people: int = MAX_PEOPLE, first: Any = None,
                 search: _Search | None = None) -> None:
        self._factory = pose_factory
        # the first tracking graph: looks for anyone, then follows person 0 (`first`, `search`: a PersonTracker's)
        self._first = first if first is not None else pose_factory(False)
        self._search = search if search is not None else _Search(pose_factory)
        self._fps = fps
        self._max = max_people
        self._frame = -1
        self._last_search = -(10**9)
        self.tracks: list[Track] = []
        self._look = Look()
        self._buffers: list[np.ndarray] = []
        self.candidates: list[dict[str, Any]] = []  # each person when first found: frame, box

    def process(self, rgb: np.ndarray) -> list[Found | None]:
        """Every followed person's landmarks in this frame ((H, W, 3) uint8 RGB), indexed by person id."""
        self._frame += 1
        if not self.tracks:
            first = landmarks(self._first.process(rgb), rgb.shape[1], rgb.shape[0])
            if first is None:
                return []
            self.start(rgb, [first] + self._search.people(rgb, [first], self._max))
            return [t.last for t in self.tracks]
        results = self._follow(rgb)
        if len(self.tracks) < self._max and self._frame - self._last_search >= NEW_PEOPLE_EVERY_S * self._fps:
            self._last_search = self._frame
            self._newcomers(rgb, results)
        return results + [None] * (len(self.tracks) - len(results))

    def start(self, rgb: np.ndarray, people: list[Found], keep_all: bool = False, held: Found | None = None) -> None:
        """Follow `people`, found in the frame being processed (rgb), the first graph holding `held` (default
        people[0]); those much smaller than the largest are background and left out unless keep_all (then ids =
        places in people)."""
        self._frame = max(self._frame, 0)
        self._last_search = self._frame
        held = people[0] if held is None else held
        largest = max(p.size for p in people)
        for p in people:
            if keep_all or p.size >= MIN_RELATIVE_SIZE * largest:
                self._add(rgb, p, self._first if p is held else None)
        if not any(t.pose is self._first for t in self.tracks):  # it held someone left out: reuse it, emptied
            self._first.reset()
            self.tracks[0].pose = self._first

    def close(self) -> None:
        """Stop the helper thread and free every MediaPipe graph."""
        self._search.close()
        self._first.close()
        for t in self.tracks:
            if t.pose is not None and t.pose is not self._first:
                t.pose.close()

    def _add(self, rgb: np.ndarray, found: Found, pose: Any) -> None:
        """A new person, followed from now on (with `pose` already holding them, or a new graph)."""
        if len(self.tracks) >= self._max:
            return
        track = Track(len(self.tracks), found, found.size, pose=pose, tracking=pose is not None, fps=self._fps)
        self.tracks.append(track)
        self._look.learn(appearance(rgb, found), track.id)
        self.candidates.append({"frame": self._frame, "box": found.box.round(1).tolist()})

    def _graph(self, track: Track) -> Any:
        if track.pose is None:
            track.pose = self._factory(False)
        return track.pose

    def _view(self, rgb: np.ndarray, track: Track, k: int) -> np.ndarray:
        """What track's graph is shown: the others' predicted boxes blanked outside its own; if it is lost, also
        everything outside its search region (after LOST_SLOW_S the whole frame is its region)."""
        others = [t for t in self.tracks if t is not track and t.lost == 0]
        region = None
        if not track.tracking and track.lost < LOST_SLOW_S * self._fps:
            region = track.search_box(self._fps)
        while len(self._buffers) <= k:
            self._buffers.append(np.empty_like(rgb))
        return _blank(rgb, [t.predicted_box() for t in others], track.keep_box(), region, self._buffers[k],
                      [t.predicted_head() for t in others], track.last.face())

    def _follow(self, rgb: np.ndarray) -> list[Found | None]:
        """Run each person's graph on their view, then keep each detection only for the person it belongs to."""
        width, height = rgb.shape[1], rgb.shape[0]
        found: list[Found | None] = []
        for k, track in enumerate(self.tracks):
            slow = track.lost >= LOST_SLOW_S * self._fps and track.lost % SLOW_SEARCH_EVERY
            found.append(None if slow else landmarks(self._graph(track).process(self._view(rgb, track, k)),
                                                     width, height))
        hists = [appearance(rgb, f) if f is not None else None for f in found]
        # one detection, one person: of two graphs on the same person, the one it fits better keeps it
        for i, j in ((i, j) for i in range(len(found)) for j in range(i + 1, len(found))):
            a, b = found[i], found[j]
            if a is not None and b is not None and same_person(a, b):
                drop = j if self._fits(i, a, hists[i]) >= self._fits(j, b, hists[j]) else i
                found[drop] = None
                self.tracks[drop].pose.reset()
        out: list[Found | None] = []
        for track, f, hist in zip(self.tracks, found, hists):
            elsewhere = {k for k, g in enumerate(found) if g is not None and g is not f}
            ok = f is not None and self._belongs(track, f, hist, elsewhere)
            if f is not None and not ok:
                track.pose.reset()
            if ok:
                assert f is not None
                track.accept(f)
                if self._look.clearly(hist, track.id):
                    self._look.learn(hist, track.id)
                out.append(f)
            else:
                track.miss()
                out.append(None)
        return out

    def _belongs(self, track: Track, found: Found, hist: np.ndarray | None, elsewhere: set[int] = frozenset()
                 ) -> bool:
        """Whether `found` (from track's own graph) is that person: near their prediction (while searching nearby)
        and not clearly someone else's look, that someone not being seen `elsewhere` (ids with their own detection
        in this frame) nor of another size; after a long loss, re-identified by look alone."""
        long_lost = track.lost >= LOST_SLOW_S * self._fps
        if not long_lost and not track.near(found, self._fps):
            return False
        if long_lost and found.size < MIN_RELATIVE_SIZE * track.size:
            return False  # someone in the background, not the person lost
        return self._look.belongs(hist, track.id, strict=long_lost, cannot_be=lambda k: k in elsewhere or
                                  size_rules_out(found, track.size, self.tracks[k].size))

    def _fits(self, k: int, found: Found, hist: np.ndarray | None) -> float:
        """How well `found` fits person k: look likeness minus distance from the prediction in box sizes."""
        track = self.tracks[k]
        like = likeness(hist, self._look.hists.get(track.id))
        distance = np.linalg.norm(found.anchor - track.predicted()) / max(track.size, 1.0)
        return (like if np.isfinite(like) else 0.0) - float(distance)

    def _newcomers(self, rgb: np.ndarray, seen: list[Found | None]) -> None:
        """Search the frame with everyone seen blanked; a person found is someone lost coming back (by look, when
        their graph is not on them yet), or someone new (if not much smaller than the people followed)."""
        known = [f for f in seen if f is not None]
        largest = max([t.size for t in self.tracks], default=0.0)
        missing = sum(1 for t in self.tracks if t.lost > 0)
        for found in self._search.people(rgb, known, len(known) + missing + self._max - len(self.tracks)):
            if found.size < MIN_RELATIVE_SIZE * largest:
                continue
            hist = appearance(rgb, found)
            lost = [t for t in self.tracks if t.lost > 0 and self._look.belongs(hist, t.id, strict=True)]
            if lost:  # someone lost is back: restart their search around here
                best = max(lost, key=lambda t: likeness(hist, self._look.hists.get(t.id)))
                best.last, best.velocity, best.lost = found, np.zeros(2), 1
                if best.pose is not None:
                    best.pose.reset()
            else:
                self._add(rgb, found, None)
