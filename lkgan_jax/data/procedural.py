"""Procedural cartoon faces: the embedded default dataset (docs/design.md §5), pure NumPy.

Every image is a deterministic function of ``(seed, index)`` (its own ``np.random.default_rng``), so
any sample can be regenerated alone and does not depend on which batch it is rendered in. Geometry is
defined in normalised coordinates, so the same ``(seed, index)`` gives the same face (and exactly the
same landmarks) at every resolution.

Faces are drawn in a *head frame*: origin at the head centre, ``u`` along the image x axis and ``v``
along y (down) before the in-plane rotation, one unit = the head ellipse's half-height. The whole
figure (head, hair, neck, shoulders) is rotated by the head rotation. Every shape is an (approximate) signed distance in pixels, turned into an
anti-aliased coverage ``clip(0.5 - d, 0, 1)`` and composited back to front inside its bounding box.
The face is mirror-symmetric in the head frame, so both eyes (and glasses) are drawn in one pass on
``|u|``.

Conventions (docs/design.md §1): landmarks ``(10, 2)`` float32 ``(x, y) = (column, row)`` in [-1, 1], pixel
centres on the ``linspace(-1, 1, S)`` grid; images uint8 ``(S, S, 3)``.
"""

from __future__ import annotations

import colorsys
import functools
import math
from typing import NamedTuple, Sequence

import numpy as np

from lkgan_jax.conventions import coordinate_grid, normalized_to_pixel

# ----------------------------------------------------------------------------------------------------
# Public names and index ranges.

LANDMARK_NAMES: tuple[str, ...] = (
    "left_eye", "right_eye", "nose_tip", "mouth_left", "mouth_right", "mouth_centre", "chin",
    "head_left", "head_right", "head_top",
)
ATTRIBUTE_NAMES: tuple[str, ...] = (
    "skin_tone", "hair_colour_id", "hair_lightness", "eye_colour_id", "glasses", "eyes_closed",
    "mouth_open", "head_scale", "rotation", "x", "y", "background_hue",
)
# The local attributes and the landmarks their pixels are drawn around (the others change the whole face).
ATTRIBUTE_LANDMARKS: dict[str, tuple[int, ...]] = {
    "eye_colour_id": (0, 1), "glasses": (0, 1, 2), "eyes_closed": (0, 1), "mouth_open": (3, 4, 5),
}
SKELETON_EDGES: list[tuple[int, int]] = [
    (0, 1),  # eye - eye
    (0, 2), (1, 2),  # eyes - nose
    (2, 5),  # nose - mouth centre
    (3, 5), (4, 5),  # mouth corners - mouth centre
    (7, 6), (6, 8),  # head left - chin - head right
    (7, 9), (9, 8),  # head left - head top - head right
]
LEFT_RIGHT_PAIRS: list[tuple[int, int]] = [(0, 1), (3, 4), (7, 8)]  # landmarks that trade places in a mirror image
NUM_LANDMARKS = len(LANDMARK_NAMES)
NUM_ATTRIBUTES = len(ATTRIBUTE_NAMES)

DEFAULT_RESOLUTION = 64
MIN_RESOLUTION = 8
SPLIT_SIZE = 2**30
TRAIN_INDEX_START = 0  # train uses indices [0, 2**30)
TEST_INDEX_START = 2**30  # test uses indices [2**30, 2**31)
PRIOR_INDEX_START = 2**31  # prior (poses without their images, e.g. KeypointGAN's) uses [2**31, 2**31 + 2**30)
SPLIT_INDEX_START = {"train": TRAIN_INDEX_START, "test": TEST_INDEX_START, "prior": PRIOR_INDEX_START}

# ----------------------------------------------------------------------------------------------------
# Parameter ranges, all sampled independently and uniformly from one ``rng.random`` draw. Lengths are
# in head units (head half-height) unless stated; categorical and yes/no parameters are uniform draws in
# [0, 1) interpreted through the probabilities below.

NUM_BLOBS = 3  # soft background blobs (when the pattern is "blobs")

PARAMETER_RANGES: dict[str, tuple[float, float]] = {
    # Head: half-height in normalised image units (head ellipse spans 45-68 % of the image height),
    # half-width / half-height, in-plane rotation (radians, about ±20°), centre (normalised).
    "head_scale": (0.45, 0.68),
    "head_aspect": (0.74, 0.88),
    "rotation": (-0.35, 0.35),
    "x": (-0.15, 0.15),
    "y": (-0.12, 0.12),
    "skin_tone": (0.0, 1.0),  # light -> dark along SKIN_TONES
    # Hair.
    "hair_colour": (0.0, 1.0),  # categorical over HAIR_COLOURS
    "hair_lightness": (0.0, 1.0),
    "hair_style": (0.0, 1.0),  # categorical over HAIR_STYLES with HAIR_STYLE_PROBABILITIES
    "hair_thickness": (0.07, 0.15),  # how far hair rises above the head ellipse
    "hairline": (-0.62, -0.40),  # v of the fringe at the face's centre line
    "hairline_curve": (0.0, 0.2),  # how much lower the hairline sits at the temples
    "fringe_tilt": (-0.15, 0.15),  # hairline slope across the face: a side-swept fringe
    "hair_length": (0.45, 1.35),  # v where long hair ends
    "hair_width": (1.05, 1.3),  # long hair half-width relative to the hair cap
    # Eyes, brows, glasses.
    "eye_spacing": (0.28, 0.37),  # |u| of each eye centre
    "eye_height": (-0.08, 0.04),  # v of the eye centres
    "eye_size": (0.8, 1.25),
    "eye_colour": (0.0, 1.0),  # categorical over EYE_COLOURS
    "eyes_closed": (0.0, 1.0),  # yes with EYES_CLOSED_PROBABILITY
    "brow_gap": (0.17, 0.24),
    "brow_arch": (0.0, 0.05),
    "glasses": (0.0, 1.0),  # yes with GLASSES_PROBABILITY
    "glasses_colour": (0.0, 1.0),  # categorical over GLASSES_COLOURS
    "glasses_size": (0.9, 1.1),
    # Nose and mouth.
    "nose_height": (0.22, 0.33),  # v of the nose tip
    "nose_size": (0.8, 1.3),
    "mouth_height": (0.52, 0.62),  # v of the mouth centre
    "mouth_width": (0.17, 0.31),  # half-width
    "mouth_open": (0.0, 1.0),  # openness; draws below MOUTH_CLOSED_FRACTION give a closed mouth
    "smile": (-0.02, 0.07),  # how much higher the corners sit than the centre
    # Clothes.
    "clothes_hue": (0.0, 1.0),
    "clothes_saturation": (0.2, 0.8),
    "clothes_value": (0.3, 0.9),
    # Background: hue of the first colour, hue offset, saturation and value of both, gradient angle.
    "background_hue": (0.0, 1.0),
    "background_hue_offset": (-0.18, 0.18),
    "background_saturation_a": (0.15, 0.7),
    "background_saturation_b": (0.15, 0.7),
    "background_value_a": (0.45, 0.98),
    "background_value_b": (0.45, 0.98),
    "background_angle": (0.0, 2.0 * math.pi),
    "background_pattern": (0.0, 1.0),  # categorical over BACKGROUND_PATTERNS
    "stripe_angle": (0.0, math.pi),
    "stripe_period": (0.25, 0.6),  # normalised units
    "stripe_phase": (0.0, 2.0 * math.pi),
    # Blobs: centre, Gaussian sigma (normalised units), brightness tint (negative: darker).
    **{f"blob_{i}_{field}": span for i in range(NUM_BLOBS) for field, span in (
        ("x", (-1.0, 1.0)), ("y", (-1.0, 1.0)), ("radius", (0.15, 0.4)), ("tint", (-1.0, 1.0)))},
}
_PARAMETER_NAMES = tuple(PARAMETER_RANGES)
_BLOB_KEYS = tuple(tuple(f"blob_{i}_{field}" for field in ("x", "y", "radius", "tint")) for i in range(NUM_BLOBS))
_PARAMETER_LOW = np.array([low for low, _ in PARAMETER_RANGES.values()])
_PARAMETER_SPAN = np.array([high - low for low, high in PARAMETER_RANGES.values()])

HAIR_STYLES = ("none", "short", "long")
HAIR_STYLE_PROBABILITIES = (0.15, 0.45, 0.40)
EYES_CLOSED_PROBABILITY = 0.15
GLASSES_PROBABILITY = 0.3
MOUTH_CLOSED_FRACTION = 0.35  # "mouth_open" draws below this give openness 0
BACKGROUND_PATTERNS = ("plain", "blobs", "stripes")

# ----------------------------------------------------------------------------------------------------
# Palettes (RGB in [0, 1]).

SKIN_TONES = np.array([
    (1.00, 0.87, 0.77), (0.96, 0.79, 0.65), (0.87, 0.67, 0.51),
    (0.72, 0.51, 0.35), (0.55, 0.37, 0.24), (0.38, 0.25, 0.16),
], np.float32)
HAIR_COLOURS = np.array([
    (0.09, 0.07, 0.06),  # black
    (0.30, 0.18, 0.10),  # dark brown
    (0.52, 0.33, 0.17),  # brown
    (0.66, 0.27, 0.12),  # auburn
    (0.90, 0.74, 0.42),  # blonde
    (0.66, 0.66, 0.68),  # grey
], np.float32)
HAIR_LIGHTNESS_GAIN = (0.65, 1.35)  # hair colour multiplier at lightness 0 and 1
EYE_COLOURS = np.array([
    (0.38, 0.22, 0.10),  # brown
    (0.22, 0.48, 0.80),  # blue
    (0.26, 0.55, 0.30),  # green
    (0.48, 0.54, 0.58),  # grey
    (0.58, 0.46, 0.18),  # hazel
], np.float32)
GLASSES_COLOURS = np.array([(0.08, 0.08, 0.10), (0.40, 0.22, 0.10), (0.70, 0.12, 0.15), (0.15, 0.25, 0.60)], np.float32)
SCLERA_COLOUR = np.array((0.98, 0.98, 0.96), np.float32)
PUPIL_COLOUR = np.array((0.05, 0.04, 0.05), np.float32)
EYE_LINE_COLOUR = np.array((0.12, 0.08, 0.07), np.float32)
MOUTH_INSIDE_COLOUR = np.array((0.24, 0.02, 0.05), np.float32)
TEETH_COLOUR = np.array((0.97, 0.96, 0.92), np.float32)
LIP_COLOUR = np.array((0.78, 0.25, 0.28), np.float32)
LENS_COLOUR = np.array((0.80, 0.90, 1.00), np.float32)

# ----------------------------------------------------------------------------------------------------
# Fixed proportions (head units) and rendering constants.

CHIN_V = 1.0  # the head ellipse's bottom
SCLERA_RADII = (0.13, 0.085)  # times eye_size
IRIS_RADIUS = 0.07  # times eye_size
PUPIL_RADIUS = 0.034  # times eye_size
EYE_HIGHLIGHT_OFFSET = (-0.025, -0.03)  # times eye_size, in the mirrored eye frame
EYE_HIGHLIGHT_RADIUS = 0.016  # times eye_size
EYE_LINE_WIDTH = 0.022
CLOSED_EYE_LINE_WIDTH = 0.035
CLOSED_EYE_BEND = 0.05  # times eye_size; the closed lid's ends sit this much higher than its middle
BROW_HALF_WIDTH = 0.15  # times eye_size
BROW_HALF_THICKNESS = 0.026
GLASSES_RADII = (0.2, 0.15)  # times glasses_size
GLASSES_LINE_WIDTH = 0.03
LENS_OPACITY = 0.2
NOSE_RADII = (0.075, 0.055)  # times nose_size
NOSE_SHADE = 0.78  # nose colour = skin times this
NOSE_OPACITY = 0.75
LIP_THICKNESS = 0.04
CLOSED_MOUTH_LINE = 0.016  # half-height of the closed mouth's dark line
MOUTH_MAX_OPEN = 0.12  # half-height of the fully open mouth
MOUTH_INSIDE_WIDTH = 0.9  # inside of the mouth relative to the lips' half-width
TEETH_FRACTION = 0.35  # upper part of the open mouth showing teeth
TEETH_MIN_OPENNESS = 0.4  # mouths opened less than this show no teeth
LIP_MIX = 0.45  # lip colour = mix(skin, LIP_COLOUR, LIP_MIX)
OUTLINE_WIDTH = 0.03  # rim of the head, hair and clothes
OUTLINE_SHADE = 0.62  # outline colour = fill times this
NECK_HALF_WIDTH = 0.32  # times head_aspect
NECK_RANGE = (0.4, 1.5)  # v extent of the neck
NECK_SHADE = 0.85
TORSO_TOP = 1.3
TORSO_RADII = (1.5, 0.9)
BROW_HAIR_SHADE = 0.7  # eyebrow colour = hair colour times this
BALD_BROW_COLOUR = np.array((0.30, 0.20, 0.13), np.float32)
GRADIENT_SLOPE = 0.35  # ramp change per normalised unit; keeps the ramp inside [0, 1]
BLOB_STRENGTH = 0.3  # peak brightness change of a blob (times its tint in [-1, 1])
STRIPE_STRENGTH = 0.08  # brightness amplitude of the stripes
MIN_STROKE_PIXELS = 1.0  # thin lines never get thinner than this, so they survive at low resolution
MIN_MOUTH_LINE_PIXELS = 0.6  # half-height of the closed mouth's dark line, at least
BOX_MARGIN_PIXELS = 1.5  # bounding boxes reach this far beyond a shape for its soft edge


# ----------------------------------------------------------------------------------------------------
# Public API.


class FaceSample(NamedTuple):
    """One face or a stacked batch: image uint8 ``(..., R, R, 3)``, landmarks float32 ``(..., 10, 2)``
    (x, y) in [-1, 1] (docs/design.md §1), attributes float32 ``(..., 12)`` in ``ATTRIBUTE_NAMES`` order."""

    image: np.ndarray
    landmarks: np.ndarray
    attributes: np.ndarray


class FaceParameters(NamedTuple):
    """Everything that defines one face; head-frame lengths in head units (see module docstring)."""

    values: dict[str, float]  # the continuous draws, keyed like PARAMETER_RANGES
    hair_style: str
    hair_colour_id: int
    eye_colour_id: int
    glasses_colour_id: int
    background_pattern: str
    glasses: bool
    eyes_closed: bool
    mouth_openness: float  # in [0, 1]; 0 is a closed mouth


def sample_face_parameters(rng: np.random.Generator) -> FaceParameters:
    """Draw every face parameter independently from one uniform vector."""
    values = dict(zip(_PARAMETER_NAMES, (_PARAMETER_LOW + rng.random(len(_PARAMETER_NAMES)) * _PARAMETER_SPAN).tolist()))
    return FaceParameters(
        values=values,
        hair_style=HAIR_STYLES[_categorical(values["hair_style"], HAIR_STYLE_PROBABILITIES)],
        hair_colour_id=int(values["hair_colour"] * len(HAIR_COLOURS)),
        eye_colour_id=int(values["eye_colour"] * len(EYE_COLOURS)),
        glasses_colour_id=int(values["glasses_colour"] * len(GLASSES_COLOURS)),
        background_pattern=BACKGROUND_PATTERNS[int(values["background_pattern"] * len(BACKGROUND_PATTERNS))],
        glasses=values["glasses"] < GLASSES_PROBABILITY,
        eyes_closed=values["eyes_closed"] < EYES_CLOSED_PROBABILITY,
        mouth_openness=max(0.0, (values["mouth_open"] - MOUTH_CLOSED_FRACTION) / (1.0 - MOUTH_CLOSED_FRACTION)),
    )


def render_face(seed: int, index: int, resolution: int = DEFAULT_RESOLUTION) -> FaceSample:
    """Render face ``index`` of dataset ``seed``: image uint8 ``(R, R, 3)``, landmarks float32
    ``(10, 2)`` (x, y) in [-1, 1], attributes float32 ``(12,)``. Deterministic in ``(seed, index)``."""
    if resolution < MIN_RESOLUTION:
        raise ValueError(f"resolution must be at least {MIN_RESOLUTION}, got {resolution}")
    if seed < 0 or index < 0:
        raise ValueError(f"seed and index must be non-negative, got seed={seed}, index={index}")
    params = sample_face_parameters(np.random.default_rng([seed, index]))
    return FaceSample(
        image=_draw_face(params, resolution),
        landmarks=face_landmarks(params),
        attributes=face_attributes(params),
    )


def face_landmarks_only(seed: int, indices: Sequence[int]) -> np.ndarray:
    """The landmarks ``(N, 10, 2)`` of faces ``indices`` of dataset ``seed``, without drawing them."""
    return np.stack([face_landmarks(sample_face_parameters(np.random.default_rng([seed, int(i)]))) for i in indices])


def render_faces(seed: int, indices: Sequence[int], resolution: int = DEFAULT_RESOLUTION) -> FaceSample:
    """Render several faces: image ``(N, R, R, 3)``, landmarks ``(N, 10, 2)``, attributes ``(N, 12)``.
    Each face is identical to ``render_face(seed, index, resolution)``."""
    samples = [render_face(seed, int(index), resolution) for index in indices]
    if not samples:
        raise ValueError("render_faces needs at least one index")
    return FaceSample(*(np.stack(field) for field in zip(*samples)))


class ProceduralFaces:
    """Grain-compatible random-access source of procedural faces.

    ``source[i]`` is ``dict(image=uint8 (R, R, 3), landmarks=float32 (10, 2), attributes=float32 (12,))``
    for face ``SPLIT_INDEX_START[split] + i`` of dataset ``seed``; the splits (train, test, prior) never
    share a face.
    """

    def __init__(self, seed: int = 0, split: str = "train", resolution: int = DEFAULT_RESOLUTION,
                 size: int | None = None):
        if split not in SPLIT_INDEX_START:
            raise ValueError(f"unknown split {split!r}; expected one of {sorted(SPLIT_INDEX_START)}")
        if resolution < MIN_RESOLUTION:
            raise ValueError(f"resolution must be at least {MIN_RESOLUTION}, got {resolution}")
        size = SPLIT_SIZE if size is None else int(size)
        if not 0 < size <= SPLIT_SIZE:
            raise ValueError(f"size must be in [1, {SPLIT_SIZE}], got {size}")
        self.seed = int(seed)
        self.split = split
        self.resolution = int(resolution)
        self.size = size
        self._index_start = SPLIT_INDEX_START[split]

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        i = int(i)
        if not 0 <= i < self.size:
            raise IndexError(f"index {i} out of range for a source of {self.size} faces")
        sample = render_face(self.seed, self._index_start + i, self.resolution)
        return sample._asdict()

    def __repr__(self) -> str:
        return (f"ProceduralFaces(seed={self.seed}, split={self.split!r}, "
                f"resolution={self.resolution}, size={self.size})")


# ----------------------------------------------------------------------------------------------------
# Landmarks and attributes.


def face_landmarks(params: FaceParameters) -> np.ndarray:
    """The 10 landmarks (``LANDMARK_NAMES`` order) as float32 ``(10, 2)`` normalised (x, y)."""
    p = params.values
    mouth_corner_v = p["mouth_height"] - p["smile"]
    head_top_v = -(1.0 + _hair_thickness(params))
    head_frame_points = np.array([
        (-p["eye_spacing"], p["eye_height"]),
        (p["eye_spacing"], p["eye_height"]),
        (0.0, p["nose_height"]),
        (-p["mouth_width"], mouth_corner_v),
        (p["mouth_width"], mouth_corner_v),
        (0.0, p["mouth_height"]),
        (0.0, CHIN_V),
        (-p["head_aspect"], 0.0),
        (p["head_aspect"], 0.0),
        (0.0, head_top_v),
    ])
    cos, sin = math.cos(p["rotation"]), math.sin(p["rotation"])
    rotation = np.array([[cos, -sin], [sin, cos]])
    points = head_frame_points @ rotation.T * p["head_scale"] + np.array([p["x"], p["y"]])
    return points.astype(np.float32)


def face_attributes(params: FaceParameters) -> np.ndarray:
    """The attribute vector float32 ``(12,)`` in ``ATTRIBUTE_NAMES`` order: skin tone in [0, 1], ids as
    whole numbers, glasses / eyes closed as 0 or 1, mouth openness in [0, 1], head scale (half-height,
    normalised), rotation (radians), head centre x, y (normalised) and background hue in [0, 1).
    Like every parameter they are drawn independently, so e.g. hair colour is set (and invisible) on
    bald faces."""
    p = params.values
    return np.array([
        p["skin_tone"], params.hair_colour_id, p["hair_lightness"], params.eye_colour_id,
        float(params.glasses), float(params.eyes_closed), params.mouth_openness, p["head_scale"],
        p["rotation"], p["x"], p["y"], p["background_hue"],
    ], dtype=np.float32)


def _hair_thickness(params: FaceParameters) -> float:
    return 0.0 if params.hair_style == "none" else params.values["hair_thickness"]


def _categorical(draw: float, probabilities: Sequence[float]) -> int:
    """Index of the category a uniform draw in [0, 1) falls into."""
    cumulative = 0.0
    for category, probability in enumerate(probabilities):
        cumulative += probability
        if draw < cumulative:
            return category
    return len(probabilities) - 1


# ----------------------------------------------------------------------------------------------------
# Colours.


def _skin_colour(tone: float) -> np.ndarray:
    position = tone * (len(SKIN_TONES) - 1)
    lower = min(int(position), len(SKIN_TONES) - 2)
    return SKIN_TONES[lower] + (position - lower) * (SKIN_TONES[lower + 1] - SKIN_TONES[lower])


def _hair_colour(params: FaceParameters) -> np.ndarray:
    low, high = HAIR_LIGHTNESS_GAIN
    gain = low + params.values["hair_lightness"] * (high - low)
    return np.minimum(HAIR_COLOURS[params.hair_colour_id] * gain, 1.0)


def _hsv(hue: float, saturation: float, value: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(hue % 1.0, saturation, value), np.float32)


@functools.lru_cache(maxsize=None)
def _normalized_grid(resolution: int) -> np.ndarray:
    """Read-only ``coordinate_grid(resolution)`` (cached: it is needed for every image)."""
    grid = coordinate_grid(resolution)
    grid.setflags(write=False)
    return grid


@functools.lru_cache(maxsize=None)
def _pixels_per_unit(resolution: int) -> float:
    """Pixels per normalised unit (cached)."""
    return float(normalized_to_pixel(1.0, resolution) - normalized_to_pixel(0.0, resolution))


@functools.lru_cache(maxsize=None)
def _pixel_indices(resolution: int) -> np.ndarray:
    """Read-only float32 pixel-centre coordinates ``0 .. resolution - 1`` (cached)."""
    pixels = np.arange(resolution, dtype=np.float32)
    pixels.setflags(write=False)
    return pixels


# ----------------------------------------------------------------------------------------------------
# Signed distances (pixels; negative inside).


def _ellipse_distance(u: np.ndarray, v: np.ndarray, a: float, b: float, bend: float = 0.0) -> np.ndarray:
    """Signed distance (pixels) to the ellipse ``u²/a² + w²/b² = 1`` with ``w = v + bend·u²/a²``.

    ``bend > 0`` lifts the ends (to ``v = -bend`` at ``u = ±a``): a smile. The ellipse's radial function
    times its smaller radius: exact across the minor axis (what matters for thin strokes), slightly
    sharper than one pixel of anti-aliasing towards the ends of the major axis.
    """
    radius = min(a, b)
    u_term = u * (radius / a)
    u_term *= u_term
    w = v + u_term * (bend / (radius * radius)) if bend else v
    w_term = w * (radius / b)
    w_term *= w_term
    u_term += w_term
    np.sqrt(u_term, out=u_term)
    u_term -= radius
    return u_term


def _circle_distance(u: np.ndarray, v: np.ndarray, radius: float) -> np.ndarray:
    distance = u * u
    distance += v * v
    np.sqrt(distance, out=distance)
    distance -= radius
    return distance


def _slab_distance(x: np.ndarray, low: float, high: float) -> np.ndarray:
    """Signed distance from x to the interval [low, high] (negative inside)."""
    return np.maximum(low - x, x - high)


def _interval_distance(x: np.ndarray, low: float, high: float) -> np.ndarray:
    """Unsigned distance from x to the interval [low, high] (0 inside)."""
    return np.maximum(_slab_distance(x, low, high), 0.0)


def _stroke(distance: np.ndarray, width: float) -> np.ndarray:
    """A line of the given width centred on a shape's boundary."""
    stroke = np.abs(distance)
    stroke -= 0.5 * width
    return stroke


# ----------------------------------------------------------------------------------------------------
# Canvas: a planar float image, the head frame over its pixels, and compositing.

Box = tuple[slice, slice]  # (rows, columns) of the canvas


class _Canvas:
    """Planar float32 RGB image ``(3, S, S)`` in [0, 1] plus the head frame's coordinates (pixels).

    ``u, v`` hold every pixel's head-frame position scaled to pixels; ``scale`` converts head units to
    pixels. Shapes are painted in regions: axis-aligned boxes given as head-frame rectangles.
    """

    def __init__(self, params: FaceParameters, resolution: int):
        p = params.values
        self.size = resolution
        self.image = np.empty((3, resolution, resolution), np.float32)
        self.scale = p["head_scale"] * _pixels_per_unit(resolution)
        self.centre_x = float(normalized_to_pixel(p["x"], resolution))
        self.centre_y = float(normalized_to_pixel(p["y"], resolution))
        self.cos, self.sin = math.cos(p["rotation"]), math.sin(p["rotation"])
        pixels = _pixel_indices(resolution)
        dx, dy = pixels - np.float32(self.centre_x), pixels - np.float32(self.centre_y)
        self.u = (self.cos * dx)[None, :] + (self.sin * dy)[:, None]
        self.v = (-self.sin * dx)[None, :] + (self.cos * dy)[:, None]

    def region(self, u_range: tuple[float, float], v_range: tuple[float, float], max_layers: int) -> _Region | None:
        """A region covering a head-frame rectangle (head units), or None when it is off the image."""
        box = self._box(u_range, v_range)
        return None if box is None else _Region(self, box, max_layers)

    def _box(self, u_range: tuple[float, float], v_range: tuple[float, float]) -> Box | None:
        u_mid, v_mid = 0.5 * (u_range[0] + u_range[1]), 0.5 * (v_range[0] + v_range[1])
        u_half, v_half = 0.5 * (u_range[1] - u_range[0]), 0.5 * (v_range[1] - v_range[0])
        centre_x = self.centre_x + self.scale * (self.cos * u_mid - self.sin * v_mid)
        centre_y = self.centre_y + self.scale * (self.sin * u_mid + self.cos * v_mid)
        half_x = self.scale * (abs(self.cos) * u_half + abs(self.sin) * v_half) + BOX_MARGIN_PIXELS
        half_y = self.scale * (abs(self.sin) * u_half + abs(self.cos) * v_half) + BOX_MARGIN_PIXELS
        col0, col1 = max(int(centre_x - half_x), 0), min(int(centre_x + half_x) + 2, self.size)
        row0, row1 = max(int(centre_y - half_y), 0), min(int(centre_y + half_y) + 2, self.size)
        if col0 >= col1 or row0 >= row1:
            return None
        return slice(row0, row1), slice(col0, col1)

    def to_uint8(self) -> np.ndarray:
        """The image as uint8 ``(S, S, 3)`` (rounded; every composite stays inside [0, 1])."""
        image = self.image * np.float32(255.0)
        image += np.float32(0.5)
        output = np.empty((self.size, self.size, 3), np.uint8)
        for channel in range(3):
            output[..., channel] = image[channel]
        return output


class _Region:
    """Shapes painted into one box, back to front, composited onto the canvas in a single pass.

    Each layer stores its unclipped coverage ``0.5 - distance``; ``composite`` clips them all at once,
    turns them into "over" weights ``alpha_i · prod_{j > i} (1 - alpha_j)`` and mixes the colours with
    one matrix product.
    """

    def __init__(self, canvas: _Canvas, box: Box, max_layers: int):
        self.canvas = canvas
        self.box = box
        self.u, self.v = canvas.u[box], canvas.v[box]
        self._coverage = np.empty((max_layers, *self.u.shape), np.float32)
        self._colours = np.empty((3, max_layers), np.float32)
        self._count = 0
        self._translucent: list[tuple[int, float]] = []  # (layer, opacity) for opacity < 1

    def mirrored_u(self) -> np.ndarray:
        """``|u|``: one shape drawn on it appears on both sides of the face."""
        return np.abs(self.u)

    def add(self, distance: np.ndarray, colour: np.ndarray, opacity: float = 1.0) -> None:
        """Add a layer with anti-aliased coverage ``clip(0.5 - distance, 0, 1) · opacity``."""
        np.subtract(0.5, distance, out=self._coverage[self._count])
        self._colours[:, self._count] = colour
        if opacity != 1.0:
            self._translucent.append((self._count, opacity))
        self._count += 1

    def composite(self) -> None:
        count = self._count
        coverage = self._coverage[:count]
        coverage.clip(0.0, 1.0, out=coverage)
        for layer, opacity in self._translucent:
            coverage[layer] *= opacity
        remaining = 1.0 - coverage[count - 1]
        for layer in range(count - 2, -1, -1):
            coverage[layer] *= remaining
            remaining -= coverage[layer]
        mixed = self._colours[:, :count] @ coverage.reshape(count, -1)
        target = self.canvas.image[(slice(None), *self.box)]
        target *= remaining
        target += mixed.reshape(target.shape)


# ----------------------------------------------------------------------------------------------------
# Drawing, back to front.


def _draw_face(params: FaceParameters, resolution: int) -> np.ndarray:
    canvas = _Canvas(params, resolution)
    skin = _skin_colour(params.values["skin_tone"])
    hair = _hair_colour(params)
    _draw_background(canvas, params)
    if params.hair_style == "long":
        _draw_long_hair(canvas, params, hair)
    _draw_neck_and_torso(canvas, params, skin)
    _draw_head_and_hair(canvas, params, skin, hair)
    _draw_nose_and_mouth(canvas, params, skin)
    _draw_eyes_and_glasses(canvas, params, hair)
    return canvas.to_uint8()


def _draw_background(canvas: _Canvas, params: FaceParameters) -> None:
    """Two-colour linear gradient, optionally modulated by soft blobs or soft stripes."""
    p = params.values
    grid = _normalized_grid(canvas.size)
    colour_a = _hsv(p["background_hue"], p["background_saturation_a"], p["background_value_a"])
    colour_b = _hsv(p["background_hue"] + p["background_hue_offset"], p["background_saturation_b"],
                    p["background_value_b"])
    angle = p["background_angle"]
    ramp = (0.5 + GRADIENT_SLOPE * math.cos(angle) * grid)[None, :] + (GRADIENT_SLOPE * math.sin(angle) * grid)[:, None]
    np.multiply(ramp, (colour_b - colour_a)[:, None, None], out=canvas.image)
    canvas.image += colour_a[:, None, None]
    if params.background_pattern != "plain":
        brighten = _blob_brightness if params.background_pattern == "blobs" else _stripe_brightness
        canvas.image *= brighten(params, grid)
        canvas.image.clip(0.0, 1.0, out=canvas.image)


def _blob_brightness(params: FaceParameters, grid: np.ndarray) -> np.ndarray:
    """Brightness factor ``(S, S)`` of a few soft blobs, lighter or darker: Gaussians are separable, so
    the sum over blobs is one ``(S, NUM_BLOBS) @ (NUM_BLOBS, S)`` product."""
    x, y, radius, tint = np.array([[params.values[key] for key in keys] for keys in _BLOB_KEYS], np.float32).T
    scale = (-0.5 / (radius * radius))[:, None]
    along_x = np.exp(scale * (grid[None, :] - x[:, None]) ** 2)
    along_x *= (BLOB_STRENGTH * tint)[:, None]
    along_y = np.exp(scale * (grid[None, :] - y[:, None]) ** 2)
    brightness = along_y.T @ along_x
    brightness += 1.0
    return brightness


def _stripe_brightness(params: FaceParameters, grid: np.ndarray) -> np.ndarray:
    """Brightness factor ``(S, S)`` of soft sinusoidal stripes: sin(a + b) split into outer products."""
    p = params.values
    frequency = 2.0 * math.pi / p["stripe_period"]
    phase_x = frequency * math.cos(p["stripe_angle"]) * grid
    phase_y = frequency * math.sin(p["stripe_angle"]) * grid + p["stripe_phase"]
    sin_x, cos_x = np.sin(phase_x) * STRIPE_STRENGTH, np.cos(phase_x) * STRIPE_STRENGTH
    brightness = np.sin(phase_y)[:, None] * cos_x[None, :]
    brightness += np.cos(phase_y)[:, None] * sin_x[None, :]
    brightness += 1.0
    return brightness


def _add_outlined(region: _Region, distance: np.ndarray, colour: np.ndarray, outline_width: float) -> None:
    """A filled shape with a darker rim of the given width (pixels) just inside its boundary."""
    region.add(distance, colour * OUTLINE_SHADE)
    region.add(distance + outline_width, colour)


def _outline_width(canvas: _Canvas) -> float:
    return max(OUTLINE_WIDTH * canvas.scale, MIN_STROKE_PIXELS)


def _draw_long_hair(canvas: _Canvas, params: FaceParameters, hair: np.ndarray) -> None:
    """Hair behind the head: a wide ellipse sharing the hair cap's top, cut off at ``hair_length``."""
    p = params.values
    s = canvas.scale
    top = 1.0 + p["hair_thickness"]
    half_width = p["head_aspect"] * top * p["hair_width"]
    centre_v = 0.5 * (p["hair_length"] - top)
    region = canvas.region((-half_width, half_width), (-top, p["hair_length"]), max_layers=2)
    if region is None:
        return
    distance = np.maximum(
        _ellipse_distance(region.u, region.v - centre_v * s, half_width * s, (top + centre_v) * s),
        region.v - p["hair_length"] * s)
    _add_outlined(region, distance, hair, _outline_width(canvas))
    region.composite()


def _draw_neck_and_torso(canvas: _Canvas, params: FaceParameters, skin: np.ndarray) -> None:
    p = params.values
    s = canvas.scale
    torso_bottom = TORSO_TOP + 2.0 * TORSO_RADII[1]
    region = canvas.region((-TORSO_RADII[0], TORSO_RADII[0]), (NECK_RANGE[0], torso_bottom), max_layers=3)
    if region is None:
        return
    neck_half_width = NECK_HALF_WIDTH * p["head_aspect"]
    neck = np.maximum(region.mirrored_u() - neck_half_width * s, _slab_distance(region.v, NECK_RANGE[0] * s, NECK_RANGE[1] * s))
    region.add(neck, skin * NECK_SHADE)
    clothes = _hsv(p["clothes_hue"], p["clothes_saturation"], p["clothes_value"])
    torso = _ellipse_distance(region.u, region.v - (TORSO_TOP + TORSO_RADII[1]) * s, TORSO_RADII[0] * s, TORSO_RADII[1] * s)
    _add_outlined(region, torso, clothes, _outline_width(canvas))
    region.composite()


def _draw_head_and_hair(canvas: _Canvas, params: FaceParameters, skin: np.ndarray, hair: np.ndarray) -> None:
    """The head ellipse and, unless bald, the hair cap: the head grown by ``hair_thickness`` above a
    curved, possibly tilted hairline."""
    p = params.values
    s = canvas.scale
    aspect = p["head_aspect"]
    grow = 1.0 + _hair_thickness(params)
    region = canvas.region((-aspect * grow, aspect * grow), (-grow, CHIN_V), max_layers=4)
    u, v = region.u, region.v
    _add_outlined(region, _ellipse_distance(u, v, aspect * s, s), skin, _outline_width(canvas))
    if params.hair_style != "none":
        hairline = (p["hairline_curve"] / (aspect * aspect * s)) * (u * u)
        hairline += p["fringe_tilt"] * u + p["hairline"] * s
        cap = np.maximum(_ellipse_distance(u, v, aspect * grow * s, grow * s), v - hairline)
        _add_outlined(region, cap, hair, _outline_width(canvas))
    region.composite()


def _draw_nose_and_mouth(canvas: _Canvas, params: FaceParameters, skin: np.ndarray) -> None:
    """A shaded nose tip, lips (a bent lens from corner to corner) and a dark inside: a line when
    closed, an opening with teeth when open."""
    p = params.values
    s = canvas.scale
    nose_a, nose_b = NOSE_RADII[0] * p["nose_size"], NOSE_RADII[1] * p["nose_size"]
    mouth_a, smile, mouth_v = p["mouth_width"], p["smile"], p["mouth_height"]
    opening = params.mouth_openness * MOUTH_MAX_OPEN
    lips_b = LIP_THICKNESS + opening
    half_width = max(nose_a, mouth_a)
    region = canvas.region((-half_width, half_width), (p["nose_height"] - nose_b, mouth_v + lips_b), max_layers=4)
    u, v = region.u, region.v
    region.add(_ellipse_distance(u, v - p["nose_height"] * s, nose_a * s, nose_b * s), skin * NOSE_SHADE, NOSE_OPACITY)
    v = v - mouth_v * s
    region.add(_ellipse_distance(u, v, mouth_a * s, lips_b * s, bend=smile * s), skin + LIP_MIX * (LIP_COLOUR - skin))
    inside_b = max(max(opening, CLOSED_MOUTH_LINE) * s, MIN_MOUTH_LINE_PIXELS)
    inside_bend = smile * s * MOUTH_INSIDE_WIDTH**2  # keeps the inside on the lips' centre curve
    inside = _ellipse_distance(u, v, MOUTH_INSIDE_WIDTH * mouth_a * s, inside_b, bend=inside_bend)
    region.add(inside, MOUTH_INSIDE_COLOUR)
    if params.mouth_openness >= TEETH_MIN_OPENNESS:
        above_centre_curve = v + (smile / (mouth_a * mouth_a * s)) * (u * u)
        region.add(np.maximum(inside, above_centre_curve - (2.0 * TEETH_FRACTION - 1.0) * opening * s), TEETH_COLOUR)
    region.composite()


def _draw_eyes_and_glasses(canvas: _Canvas, params: FaceParameters, hair: np.ndarray) -> None:
    """Both eyes, brows and glasses at once, on the mirrored head frame (``|u|``)."""
    p = params.values
    s = canvas.scale
    size, spacing, height = p["eye_size"], p["eye_spacing"], p["eye_height"]
    brow_v = height - p["brow_gap"]
    rim_a, rim_b = GLASSES_RADII[0] * p["glasses_size"], GLASSES_RADII[1] * p["glasses_size"]
    reach = p["head_aspect"] if params.glasses else spacing + max(BROW_HALF_WIDTH, SCLERA_RADII[0]) * size
    bottom = height + (rim_b if params.glasses else SCLERA_RADII[1] * size)
    region = canvas.region((-reach, reach), (brow_v - BROW_HALF_THICKNESS, bottom), max_layers=8)
    if region is None:
        return
    mirrored_u = region.mirrored_u()
    u = mirrored_u - spacing * s
    v = region.v - height * s
    line_width = max(EYE_LINE_WIDTH * s, MIN_STROKE_PIXELS)
    sclera_a, sclera_b = SCLERA_RADII[0] * size * s, SCLERA_RADII[1] * size * s
    if params.eyes_closed:
        lid_half_width = 0.5 * max(CLOSED_EYE_LINE_WIDTH * s, MIN_STROKE_PIXELS)
        region.add(_ellipse_distance(u, v, sclera_a, lid_half_width, bend=CLOSED_EYE_BEND * size * s), EYE_LINE_COLOUR)
    else:
        _add_open_eye(region, u, v, params, sclera_a, sclera_b, line_width)
    brow_colour = BALD_BROW_COLOUR if params.hair_style == "none" else hair * BROW_HAIR_SHADE
    brow_b = max(BROW_HALF_THICKNESS * s, 0.5 * MIN_STROKE_PIXELS)
    brow = _ellipse_distance(u, v - (brow_v - height) * s, BROW_HALF_WIDTH * size * s, brow_b, bend=-p["brow_arch"] * s)
    region.add(brow, brow_colour)
    if params.glasses:
        _add_glasses(region, mirrored_u, u, v, params, rim_a * s, rim_b * s)
    region.composite()


def _add_open_eye(region: _Region, u: np.ndarray, v: np.ndarray, params: FaceParameters,
                  sclera_a: float, sclera_b: float, line_width: float) -> None:
    """White, iris, pupil, highlight and a dark rim; (u, v) centred on the eye. The iris fits inside the
    white (``IRIS_RADIUS < SCLERA_RADII[1]``)."""
    s = region.canvas.scale
    size = params.values["eye_size"]
    sclera = _ellipse_distance(u, v, sclera_a, sclera_b)
    region.add(sclera, SCLERA_COLOUR)
    centre_distance = _circle_distance(u, v, 0.0)
    region.add(centre_distance - IRIS_RADIUS * size * s, EYE_COLOURS[params.eye_colour_id])
    region.add(centre_distance - PUPIL_RADIUS * size * s, PUPIL_COLOUR)
    highlight = _circle_distance(u - EYE_HIGHLIGHT_OFFSET[0] * size * s, v - EYE_HIGHLIGHT_OFFSET[1] * size * s,
                                 EYE_HIGHLIGHT_RADIUS * size * s)
    region.add(highlight, SCLERA_COLOUR)
    region.add(_stroke(sclera, line_width), EYE_LINE_COLOUR)


def _add_glasses(region: _Region, mirrored_u: np.ndarray, u: np.ndarray, v: np.ndarray,
                 params: FaceParameters, rim_a: float, rim_b: float) -> None:
    """Tinted lenses, elliptic rims, a bridge between them and temples out to the head's sides."""
    p = params.values
    s = region.canvas.scale
    spacing_px = p["eye_spacing"] * s
    rim = _ellipse_distance(u, v, rim_a, rim_b)
    region.add(rim, LENS_COLOUR, LENS_OPACITY)
    line_width = max(GLASSES_LINE_WIDTH * s, MIN_STROKE_PIXELS)
    bridge = _interval_distance(mirrored_u, 0.0, spacing_px - rim_a)
    temple = _interval_distance(mirrored_u, spacing_px + rim_a, p["head_aspect"] * s)
    bars = _circle_distance(np.minimum(bridge, temple), v, 0.5 * line_width)
    region.add(np.minimum(_stroke(rim, line_width), bars), GLASSES_COLOURS[params.glasses_colour_id])
