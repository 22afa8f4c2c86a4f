"""SynthAction's ``hard`` preset: the same ten antonym pairs under realistic nuisances.

Each clip has its own length (``min_frames``..``frames``) and the action happens in a random window of
it with a random easing (still before, still after); the object is small (``min_scale``..``max_scale``
of the default radius) and placed anywhere, up to ``max_distractors`` other shapes move across the
frame, the background is a drifting texture of random gratings, the camera shakes (the whole scene
moves together) and every pixel gets sensor noise.

Reversal stays exact: every time-varying quantity (action progress, shake, drift, distractor paths,
noise) is computed on the clip's forward clock and, for the backward member of a pair, read in reverse
order, so the time reversal of a clip's frames equals the antonym clip with the same id, pixel for
pixel (tested). Because every nuisance is drawn time-symmetrically (window start, start/end positions,
easing and its mirror equally likely), a backward clip is as typical as a forward one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from paxion.data.synthetic.scenes import (
    ACTIONS, COLORS, OCCLUDER_RGB, SHAPES, ObjectState, _object_layers, _paint, balanced_specs, forward_states,
)

EASINGS = ("linear", "smoothstep", "ease_in", "ease_out")  # ease_in and ease_out mirror each other in time


@dataclass
class HardConfig:
    """Settings of the ``hard`` preset (``generate(out, preset="hard", ...)`` / ``--preset hard``)."""

    preset: str = "hard"
    seed: int = 0
    num_train: int = 2000
    num_val: int = 250
    num_test: int = 250
    frames: int = 40  # the longest clip; each clip draws its length from min_frames..frames
    min_frames: int = 10
    min_window: float = 0.4  # the action spans at least this fraction of the clip (and >= 3 frames)
    size: int = 64
    fps: int = 5
    min_scale: float = 0.45  # object radius relative to the default preset's
    max_scale: float = 0.75
    max_distractors: int = 3  # moving shapes besides the action's objects (0..max per clip)
    shake: float = 0.02  # camera shake amplitude, fraction of the frame
    drift: float = 0.25  # largest background drift over a clip, fraction of the frame
    gratings: int = 6  # sinusoidal gratings summed into the background texture
    noise_std: float = 6.0  # sensor noise per pixel and channel, in 0..255 units
    crf: int = 17
    workers: int = 0  # 0: os.cpu_count()


def ease(name: str, x: np.ndarray) -> np.ndarray:
    if name == "linear":
        return x
    if name == "smoothstep":
        return x * x * (3 - 2 * x)
    if name == "ease_in":
        return x * x
    if name == "ease_out":
        return 1 - (1 - x) ** 2
    raise KeyError(f"unknown easing '{name}'")


def _uniform(rng: np.random.Generator, lo: float, hi: float, n: int = 1) -> list[float]:
    return [float(v) for v in rng.uniform(lo, hi, size=n)]


def hard_clip_spec(clip_id: int, split: str, action: str, rng: np.random.Generator, cfg: HardConfig) -> dict[str, Any]:
    """Everything random about one hard clip except its texture colours and pixel noise."""
    pair, _ = ACTIONS[action]
    combos = [(s, c) for s in SHAPES for c in COLORS]
    num_distractors = int(rng.integers(0, cfg.max_distractors + 1)) if pair.num_objects == 1 else 0
    picks = rng.choice(len(combos), size=pair.num_objects + num_distractors, replace=False)
    frames = int(rng.integers(cfg.min_frames, cfg.frames + 1))
    length = int(rng.integers(max(3, int(np.ceil(cfg.min_window * frames))), frames + 1))
    start = int(rng.integers(0, frames - length + 1))
    scale = _uniform(rng, cfg.min_scale, cfg.max_scale)[0]
    distractors = []
    for i in picks[pair.num_objects :]:  # shape, colour, start x, y, end x, y, radius
        distractors.append([*combos[i], *_uniform(rng, 0.08, 0.92, 4), _uniform(rng, 0.05, 0.1)[0] * scale / 0.6])
    shake = [[*_uniform(rng, 0.3, 1.0, 2), *_uniform(rng, 0.4, 1.6, 2), *_uniform(rng, 0, 2 * np.pi, 2)]
             for _ in range(2)]  # per axis: two amplitudes, two angular speeds (rad / frame), two phases
    params = {"x": _uniform(rng, 0.38, 0.62)[0], "y": _uniform(rng, 0.38, 0.62)[0],
              "r": _uniform(rng, 0.13, 0.17)[0], "dx": _uniform(rng, -0.04, 0.04)[0]}
    return {"id": clip_id, "split": split, "action": action, "objects": [combos[i] for i in picks[: pair.num_objects]],
            "params": params, "frames": frames, "window": [start, length], "easing": str(rng.choice(EASINGS)),
            "scale": scale, "offset": _uniform(rng, -0.14, 0.14, 2), "distractors": distractors,
            "drift": _uniform(rng, -cfg.drift / 2, cfg.drift / 2, 4), "shake": shake}


def make_hard_specs(cfg: HardConfig) -> list[dict[str, Any]]:
    """Balanced over actions within each split, shuffled, ids 1..N in split order (as the default preset)."""
    rng = np.random.default_rng([cfg.seed, 1])  # its own stream: never the default preset's clips
    return balanced_specs(cfg, rng, hard_clip_spec)


def _forward_tracks(spec: dict[str, Any], cfg: HardConfig) -> dict[str, np.ndarray]:
    """Per-frame quantities on the clip's forward clock, each (T,) or (T, k)."""
    num = spec["frames"]
    clock = np.arange(num, dtype=np.float64)
    start, length = spec["window"]
    tracks = {"progress": ease(spec["easing"], np.clip((clock - start) / (length - 1), 0.0, 1.0))}
    along = clock / max(num - 1, 1)
    shake = []
    for amp1, amp2, w1, w2, p1, p2 in spec["shake"]:
        wobble = amp1 * np.sin(w1 * clock + p1) + amp2 * np.sin(w2 * clock + p2)
        shake.append(cfg.shake * wobble / 2)
    tracks["shake"] = np.stack(shake, 1)  # (T, 2)
    x0, y0, x1, y1 = spec["drift"]
    tracks["drift"] = np.stack([x0 + (x1 - x0) * along, y0 + (y1 - y0) * along], 1)  # (T, 2)
    paths = [np.stack([d[2] + (d[4] - d[2]) * along, d[3] + (d[5] - d[3]) * along], 1) for d in spec["distractors"]]
    tracks["distractors"] = np.stack(paths, 1) if paths else np.zeros((num, 0, 2))  # (T, N, 2)
    return tracks


def _texture(rng: np.random.Generator, cfg: HardConfig, origin: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Background (T, H, W, 3) float32: a dark base plus gratings sampled at the per-frame origin (T, 2)."""
    k = cfg.gratings
    freq = rng.uniform(1.5, 9.0, size=k) * np.exp(1j * rng.uniform(0, 2 * np.pi, size=k))  # cycles per frame
    phase, amp = rng.uniform(0, 2 * np.pi, size=k), rng.uniform(4, 16, size=k)
    tint = rng.uniform(0.4, 1.0, size=(k, 3)).astype(np.float32)
    base = rng.uniform(20, 70, size=3).astype(np.float32)
    frames = np.broadcast_to(base, (len(origin), g.size, g.size, 3)).astype(np.float32)
    for i in range(k):  # few gratings, each a vectorised (T, H, W) field
        fx, fy = np.float32(freq[i].real), np.float32(freq[i].imag)
        shift = (2 * np.pi * (fx * origin[:, 0] + fy * origin[:, 1]) + phase[i]).astype(np.float32)
        wave = np.cos(2 * np.float32(np.pi) * (fx * g[None, None, :] + fy * g[None, :, None]) + shift[:, None, None])
        frames += (amp[i] * wave)[..., None] * tint[i]
    return frames


def _object(cx: np.ndarray, cy: np.ndarray, radius: np.ndarray, base: ObjectState | None = None) -> ObjectState:
    num = len(cx)
    f32 = lambda v: np.asarray(v, dtype=np.float32)  # noqa: E731
    if base is None:
        return ObjectState(f32(cx), f32(cy), f32(radius), *(f32(np.full(num, v)) for v in (0.0, 1.0, 0.0, 1.0)))
    return ObjectState(f32(cx), f32(cy), f32(radius), base.angle, base.alpha, base.gap, base.stretch)


def _placed(states: list[ObjectState], spec: dict[str, Any], shake: np.ndarray) -> list[ObjectState]:
    """The action's objects as drawn: shifted by the clip's offset and the camera shake, scaled down."""
    ox, oy = spec["offset"]
    return [_object(st.cx + ox + shake[:, 0], st.cy + oy + shake[:, 1], st.radius * spec["scale"], st) for st in states]


def _clip_tracks(spec: dict[str, Any], cfg: HardConfig) -> dict[str, np.ndarray]:
    """:func:`_forward_tracks` in the clip's own frame order: backward actions read every track reversed."""
    _, forward = ACTIONS[spec["action"]]
    order = slice(None) if forward else slice(None, None, -1)
    return {k: np.ascontiguousarray(v[order]) for k, v in _forward_tracks(spec, cfg).items()}


def _action_objects(
    spec: dict[str, Any], tracks: dict[str, np.ndarray]
) -> tuple[list[ObjectState], list[ObjectState], np.ndarray | None]:
    """-> (the action's object states, the same as drawn, the occluder's x track or None)."""
    pair, _ = ACTIONS[spec["action"]]
    states, occluder = forward_states(pair.forward, tracks["progress"].astype(np.float32), spec["params"])
    return states, _placed(states, spec, tracks["shake"]), occluder


def hard_object_centres(spec: dict[str, Any], cfg: HardConfig) -> np.ndarray:
    """(T, K, 2) centre (x, y) of each of the action's K objects in every frame, in frame units."""
    _, placed, _ = _action_objects(spec, _clip_tracks(spec, cfg))
    return np.stack([np.stack([st.cx, st.cy], 1) for st in placed], 1)


def render_hard(spec: dict[str, Any], cfg: HardConfig, with_noise: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """-> (frames uint8 (T, H, W, 3), visible coverage of the action's objects (T, H, W)) of one hard clip."""
    _, forward = ACTIONS[spec["action"]]
    order = slice(None) if forward else slice(None, None, -1)  # pixel noise: drawn on the forward clock, read in clip order
    tracks = _clip_tracks(spec, cfg)
    rng = np.random.default_rng([cfg.seed, spec["id"], 1])
    size, num = cfg.size, spec["frames"]
    g = ((np.arange(size) + 0.5) / size).astype(np.float32)
    gx, gy = np.meshgrid(g, g)
    shake = tracks["shake"]
    frames = _texture(rng, cfg, tracks["drift"] + shake, g)
    for d, path in zip(spec["distractors"], np.moveaxis(tracks["distractors"], 1, 0)):
        st = _object(path[:, 0] + shake[:, 0], path[:, 1] + shake[:, 1], np.full(num, d[6]))
        body, marker = _object_layers(d[0], st, gx, gy, size)
        frames = _paint(frames, body, marker, COLORS[d[1]])
    states, placed, occluder = _action_objects(spec, tracks)
    ox, oy = spec["offset"]
    coverage = np.zeros((num, size, size), dtype=np.float32)
    for (shape, colour), st, moved in zip(spec["objects"], states, placed):
        body, marker = _object_layers(shape, moved, gx, gy, size)
        alpha = st.alpha[:, None, None]
        frames = _paint(frames, body * alpha, marker * alpha, COLORS[colour])
        coverage = np.maximum(coverage, body * alpha)
    if occluder is not None:
        bar_x = (occluder + ox + shake[:, 0]).astype(np.float32)[:, None, None]
        bar_y = (states[0].cy + oy + shake[:, 1]).astype(np.float32)[:, None, None]
        bar = (np.abs(gx[None] - bar_x) < 0.2 * spec["scale"] + 0.02) & (np.abs(gy[None] - bar_y) < 0.3 * spec["scale"])
        stripes = ((np.arange(size)[:, None] + np.arange(size)[None]) // 3 % 2)[None, ..., None] * 25.0
        frames = np.where(bar[..., None], np.asarray(OCCLUDER_RGB, dtype=np.float32) + stripes, frames)
        coverage = coverage * ~bar
    if with_noise and cfg.noise_std > 0:
        noise = rng.standard_normal((num, size, size, 3), dtype=np.float32) * np.float32(cfg.noise_std)
        frames = frames + noise[order]
    frames = frames.astype(np.float32) + 0.5
    return np.clip(frames, 0, 255).astype(np.uint8), coverage
