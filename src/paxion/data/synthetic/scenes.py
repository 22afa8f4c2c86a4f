"""SynthAction scenes: shapes that perform actions whose time reversal is the antonym action.

Every action pair is one *forward* state function of progress t in [0, 1]; its antonym is the same
function evaluated at 1 - t, so reversing a clip's frames yields exactly the antonym's clip
(:func:`render` of the antonym equals the time flip of :func:`render` of the action, pixel for pixel).

Objects are drawn from signed-distance functions on a pixel grid for all frames at once (numpy,
(T, H, W) arrays), with a dark marker dot that makes rotation visible on symmetric shapes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

SHAPES = ("circle", "square", "triangle", "diamond", "cross", "ring")
COLORS = {
    "red": (220, 40, 40),
    "green": (40, 190, 60),
    "blue": (50, 90, 230),
    "yellow": (230, 210, 40),
    "purple": (160, 60, 200),
    "orange": (245, 140, 30),
    "white": (235, 235, 235),
    "cyan": (40, 200, 210),
}
OCCLUDER_RGB = (128, 128, 128)


@dataclass(frozen=True)
class ActionPair:
    """A forward action and its antonym (= the forward action played backwards)."""

    forward: str
    backward: str
    forward_template: str
    backward_template: str
    num_objects: int = 1


ACTION_PAIRS = (
    ActionPair("move_left", "move_right", "Moving [something] to the left", "Moving [something] to the right"),
    ActionPair("move_up", "move_down", "Moving [something] up", "Moving [something] down"),
    ActionPair("approach", "recede", "Approaching [something] with the camera",
               "Moving away from [something] with the camera"),
    ActionPair("rotate_cw", "rotate_ccw", "Rotating [something] clockwise", "Rotating [something] counterclockwise"),
    ActionPair("appear", "disappear", "[something] appearing", "[something] disappearing"),
    ActionPair("fall", "rise", "[something] falling", "[something] rising"),
    ActionPair("open", "close", "Opening [something]", "Closing [something]"),
    ActionPair("stretch", "squeeze", "Stretching [something]", "Squeezing [something]"),
    ActionPair("cover", "uncover", "Covering [something]", "Uncovering [something]"),
    ActionPair("move_toward", "move_away", "Moving [something] towards [something]",
               "Moving [something] away from [something]", num_objects=2),
)
ACTIONS: dict[str, tuple[ActionPair, bool]] = {}  # action name -> (pair, is_forward)
for _pair in ACTION_PAIRS:
    ACTIONS[_pair.forward] = (_pair, True)
    ACTIONS[_pair.backward] = (_pair, False)


def balanced_specs(
    cfg: Any, rng: np.random.Generator, clip_spec: Callable[..., dict[str, Any]]
) -> list[dict[str, Any]]:
    """Clip specs balanced over actions within each split, shuffled, ids 1..N in split order.

    ``cfg`` has ``num_train``/``num_val``/``num_test``; ``clip_spec(id, split, action, rng, cfg)`` draws one
    clip from the same ``rng`` stream, so a preset's clips depend only on its seed.
    """
    actions = sorted(ACTIONS)
    specs, next_id = [], 1
    for split, count in (("train", cfg.num_train), ("val", cfg.num_val), ("test", cfg.num_test)):
        names = [actions[i % len(actions)] for i in range(count)]
        rng.shuffle(names)
        for action in names:
            specs.append(clip_spec(next_id, split, action, rng, cfg))
            next_id += 1
    return specs


def template_of(action: str) -> str:
    pair, forward = ACTIONS[action]
    return pair.forward_template if forward else pair.backward_template


def antonym_of(action: str) -> str:
    pair, forward = ACTIONS[action]
    return pair.backward if forward else pair.forward


@dataclass
class ObjectState:
    """Per-frame state arrays, each (T,); positions and radius in units of the frame size."""

    cx: np.ndarray
    cy: np.ndarray
    radius: np.ndarray
    angle: np.ndarray  # radians; positive turns clockwise on screen (y points down)
    alpha: np.ndarray
    gap: np.ndarray  # opening between the two halves, in radii
    stretch: np.ndarray  # horizontal scale factor


@dataclass
class Scene:
    objects: list[tuple[str, str]]  # (shape, colour) of the action's objects, caption order
    states: list[ObjectState]
    occluder_x: np.ndarray | None = None  # (T,) centre of the covering bar
    distractor: tuple[str, str, float, float] | None = None  # shape, colour, cx, cy (static)


def _const(t: np.ndarray, v: float) -> np.ndarray:
    return np.full_like(t, v)


def _state(t: np.ndarray, cx, cy, radius=0.16, angle=0.0, alpha=1.0, gap=0.0, stretch=1.0) -> ObjectState:
    vals = [v if isinstance(v, np.ndarray) else _const(t, v) for v in (cx, cy, radius, angle, alpha, gap, stretch)]
    return ObjectState(*(v.astype(np.float32) for v in vals))


def forward_states(pair: str, t: np.ndarray, p: dict[str, float]) -> tuple[list[ObjectState], np.ndarray | None]:
    """States of the forward action of ``pair`` at progress ``t`` (T,), from random parameters ``p``."""
    x, y, r = p["x"], p["y"], p["r"]
    if pair == "move_left":
        return [_state(t, 0.72 - 0.44 * t + p["dx"], y, r)], None
    if pair == "move_up":
        return [_state(t, x, 0.72 - 0.44 * t + p["dx"], r)], None
    if pair == "approach":
        return [_state(t, x, y, 0.07 + 0.17 * t)], None
    if pair == "rotate_cw":
        return [_state(t, x, y, r, angle=np.pi * t)], None
    if pair == "appear":
        return [_state(t, x, y, r, alpha=np.clip(1.25 * t, 0.0, 1.0))], None
    if pair == "fall":
        return [_state(t, x, 0.22 + 0.56 * t**2, r)], None
    if pair == "open":
        return [_state(t, x, y, r, gap=0.9 * t)], None
    if pair == "stretch":
        return [_state(t, x, y, 0.13, stretch=1.0 + 0.8 * t)], None
    if pair == "cover":
        return [_state(t, x, y, r)], -0.25 + (x + 0.25) * np.clip(1.2 * t, 0.0, 1.0)
    if pair == "move_toward":  # object 0 moves, object 1 is the static reference
        return [_state(t, 0.14 + 0.38 * t, y, 0.12), _state(t, 0.82, y, 0.12)], None
    raise KeyError(f"unknown action pair '{pair}'")


def scene_states(action: str, num_frames: int, p: dict[str, float]) -> tuple[list[ObjectState], np.ndarray | None]:
    """States of ``action`` for ``num_frames`` frames; backward actions run the forward one in reverse."""
    pair, forward = ACTIONS[action]
    t = np.linspace(0.0, 1.0, num_frames, dtype=np.float32)
    return forward_states(pair.forward, t if forward else t[::-1].copy(), p)


# --------------------------------------------------------------------------- rasterisation


def _sdf(shape: str, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Signed distance (negative inside) in units of the radius."""
    if shape == "circle":
        return np.hypot(x, y) - 1.0
    if shape == "square":
        return np.maximum(np.abs(x), np.abs(y)) - 0.85
    if shape == "diamond":
        return (np.abs(x) + np.abs(y) - 1.1) * np.float32(0.7071)
    if shape == "triangle":  # upward, centred on its centroid
        k = np.float32(np.sqrt(3.0))
        edges = np.maximum(np.maximum(-y - 0.5, (k * x + y) / 2 - 0.5), (-k * x + y) / 2 - 0.5)
        return edges * np.float32(1.6)
    if shape == "cross":
        arm = 0.33
        horizontal = np.maximum(np.abs(x) - 1.0, np.abs(y) - arm)
        vertical = np.maximum(np.abs(x) - arm, np.abs(y) - 1.0)
        return np.minimum(horizontal, vertical)
    if shape == "ring":
        return np.abs(np.hypot(x, y) - 0.72) - 0.28
    raise KeyError(f"unknown shape '{shape}'")


def _object_layers(shape: str, s: ObjectState, gx: np.ndarray, gy: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Soft coverage of body and marker, each (T, H, W) in [0, 1]."""
    col = lambda a: a[:, None, None]  # noqa: E731  (T,) -> (T, 1, 1)
    dx, dy = gx[None] - col(s.cx), gy[None] - col(s.cy)  # (T, H, W)
    cos, sin = np.cos(col(s.angle)), np.sin(col(s.angle))
    lx = (cos * dx + sin * dy) / col(s.radius) / col(s.stretch)
    ly = (-sin * dx + cos * dy) / col(s.radius)
    half = col(s.gap) / 2
    ux = lx - np.sign(lx) * half  # each half moves outwards by gap / 2
    same_side = (ux * lx >= 0) | (half == 0)
    to_px = col(s.radius) * size
    body = np.clip(0.5 - _sdf(shape, ux, ly) * to_px, 0.0, 1.0) * same_side
    marker = np.clip(0.5 - (np.hypot(ux, ly + 0.5) - 0.2) * to_px, 0.0, 1.0) * body
    return body, marker


def background(size: int, rng: np.random.Generator, textured: bool) -> np.ndarray:
    """Static background (H, W, 3) float: dark base colour, optionally a faint gradient and checker."""
    base = rng.uniform(15, 55, size=3)
    img = np.broadcast_to(base, (size, size, 3)).copy()
    if textured:
        g = np.linspace(-1, 1, size)
        gx, gy = np.meshgrid(g, g)
        angle = rng.uniform(0, 2 * np.pi)
        img += (np.cos(angle) * gx + np.sin(angle) * gy)[..., None] * rng.uniform(4, 12, size=3)
        cells = max(size // rng.integers(4, 9), 2)
        checker = ((np.arange(size)[:, None] // cells + np.arange(size)[None] // cells) % 2)[..., None]
        img += checker * rng.uniform(3, 8)
    return img


def render(
    scene: Scene, num_frames: int, size: int, bg: np.ndarray, noise: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """-> (frames uint8 (T, H, W, 3), visible object coverage (T, H, W) float of the action's objects)."""
    g = ((np.arange(size) + 0.5) / size).astype(np.float32)
    gx, gy = np.meshgrid(g, g)  # (H, W) pixel centres in [0, 1]
    frames = np.broadcast_to(bg.astype(np.float32), (num_frames, size, size, 3)).copy()
    if scene.distractor is not None:
        shape, colour, cx, cy = scene.distractor
        st = _state(np.zeros(num_frames, dtype=np.float32), cx, cy, 0.1)
        body, marker = _object_layers(shape, st, gx, gy, size)
        frames = _paint(frames, body, marker, COLORS[colour])
    coverage = np.zeros((num_frames, size, size), dtype=np.float32)
    for (shape, colour), st in zip(scene.objects, scene.states):
        body, marker = _object_layers(shape, st, gx, gy, size)
        body, marker = body * st.alpha[:, None, None], marker * st.alpha[:, None, None]
        frames = _paint(frames, body, marker, COLORS[colour])
        coverage = np.maximum(coverage, body)
    if scene.occluder_x is not None:
        cy = scene.states[0].cy[:, None, None]
        bar = (np.abs(gx[None] - scene.occluder_x[:, None, None]) < 0.2) & (np.abs(gy[None] - cy) < 0.3)
        stripes = ((np.arange(size)[:, None] + np.arange(size)[None]) // 3 % 2)[None, ..., None] * 25.0
        bar_rgb = np.asarray(OCCLUDER_RGB, dtype=np.float32) + stripes  # (1, H, W, 3)
        frames = np.where(bar[..., None], bar_rgb, frames).astype(np.float32)
        coverage = coverage * ~bar
    if noise is not None:
        frames += noise
    frames += 0.5
    return np.clip(frames, 0, 255, out=frames).astype(np.uint8), coverage


def _paint(frames: np.ndarray, body: np.ndarray, marker: np.ndarray, rgb: tuple[int, int, int]) -> np.ndarray:
    """Alpha-blend in place: frames (T, H, W, 3) float32, body/marker (T, H, W)."""
    colour = np.asarray(rgb, dtype=np.float32)
    frames -= body[..., None] * (frames - colour)
    frames -= marker[..., None] * (frames - 0.3 * colour)
    return frames


def object_phrase(shape: str, colour: str) -> str:
    return f"{colour} {shape}"

