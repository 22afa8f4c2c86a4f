"""Open-VCLIP's temporal attention: which keys and values a frame's queries see.

Every variant keeps CLIP's attention weights; only the key/value set of frame t changes:

* ``none``: frame t attends to its own tokens (image CLIP, frame by frame);
* ``expand_temporal_view``: keys/values of frames t+1, t-1 and t (3·N tokens);
* ``expand_temporal_view_step2``: t+1, t+2, t-1, t-2, t (5·N);
* ``expand_temporal_view_step3``: t+1, t+2, t+3, t-1, t-2, t-3, t (7·N);
* ``channel_shift``: a quarter of the key/value channels comes from frame t+1, a quarter from
  t-1, the rest from t (no extra tokens);
* ``cross_frame_attend`` (adds parameters): each frame's CLS goes through ``message_fc``, the frames'
  messages attend to each other (``message_ln``, ``message_attn``) and each frame's tokens attend to
  their frame plus its message token (X-CLIP's message tokens);
* ``stadapt_zeroinit`` (adds parameters): before attention the patch tokens pass a residual
  spatio-temporal adapter, 1x1x1 down to D/2, a depthwise 3x1x1 temporal conv, 1x1x1 up (zero-initialised).

The neighbour order is the original's. Past the clip ends the original attends to all-zero keys
and values (a zero key still takes softmax mass); that is the default here, and ``mask_clip_ends``
removes those keys from the softmax instead.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange

NEIGHBOUR_OFFSETS: dict[str, tuple[int, ...]] = {
    "none": (0,),
    "expand_temporal_view": (1, -1, 0),
    "expand_temporal_view_step2": (1, 2, -1, -2, 0),
    "expand_temporal_view_step3": (1, 2, 3, -1, -2, -3, 0),
}
# variants that add parameters to every vision block (their keys are not in the CLIP file)
ADAPTER_TYPES = ("cross_frame_attend", "stadapt_zeroinit")
TEMPORAL_MODELING_TYPES = (*NEIGHBOUR_OFFSETS, "channel_shift", *ADAPTER_TYPES)
ADDED_PARAMETER_NAMES = ("message_fc", "message_ln", "message_attn", "stadapt_down_1", "stadapt_conv3d_1",
                         "stadapt_up_1")


def is_added_key(key: str) -> bool:
    """Whether a state-dict key belongs to a parameter-adding variant's extra modules."""
    return any(f".{name}." in f".{key}" for name in ADDED_PARAMETER_NAMES)


def check_type(kind: str) -> None:
    if kind not in TEMPORAL_MODELING_TYPES:
        raise ValueError(f"temporal_modeling '{kind}' is not one of {list(TEMPORAL_MODELING_TYPES)}")


def shift_time(x: torch.Tensor, offset: int) -> torch.Tensor:
    """x (B, T, ...) -> y with y[:, t] = x[:, t + offset], zeros where t + offset leaves [0, T)."""
    if offset == 0:
        return x
    frames = x.shape[1]
    if abs(offset) >= frames:
        return torch.zeros_like(x)
    pad = torch.zeros_like(x[:, : abs(offset)])
    if offset > 0:
        return torch.cat([x[:, offset:], pad], dim=1)
    return torch.cat([pad, x[:, :offset]], dim=1)


def expand_keys(x: torch.Tensor, offsets: tuple[int, ...]) -> torch.Tensor:
    """x (B, T, h, N, d) -> (B, T, h, K·N, d): the neighbour frames' tokens side by side, K = len(offsets)."""
    return torch.cat([shift_time(x, o) for o in offsets], dim=3)


def clip_end_mask(frames: int, tokens: int, offsets: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """(T, 1, 1, K·N) bool: True where the neighbour frame t + offset exists (SDPA: True = attend)."""
    t = torch.arange(frames, device=device)[:, None] + torch.tensor(offsets, device=device)[None]  # (T, K)
    valid = (t >= 0) & (t < frames)
    return rearrange(valid[..., None].expand(frames, len(offsets), tokens), "t k n -> t 1 1 (k n)")


def channel_shift(x: torch.Tensor, fixed_layout: bool) -> torch.Tensor:
    """x (B, T, h, N, d) -> the same shape with 1/4 of the h·d channels from t+1 and 1/4 from t-1.

    The original shifts a (h·d, N) channels-first view and then reads that buffer back as (h, N, d)
    without transposing, which mixes tokens and channels; ``fixed_layout`` transposes back properly.
    """
    batch, frames, heads, tokens, dim = x.shape
    channels = rearrange(x, "b t h n d -> b t (h d) n")
    fold = heads * dim // 4
    from_next = shift_time(channels[:, :, :fold], 1)
    from_previous = shift_time(channels[:, :, fold : 2 * fold], -1)
    shifted = torch.cat([from_next, from_previous, channels[:, :, 2 * fold :]], dim=2)  # (B, T, h*d, N)
    if fixed_layout:
        return rearrange(shifted, "b t (h d) n -> b t h n d", h=heads)
    return shifted.contiguous().view(batch, frames, heads, tokens, dim)  # the original's reinterpretation


def temporal_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, kind: str, mask_clip_ends: bool, fixed_channel_shift: bool
) -> torch.Tensor:
    """q, k, v (B, T, h, N, d) -> attention output (B, T, h, N, d); scale 1/sqrt(d) as CLIP."""
    if kind == "channel_shift":
        k, v = channel_shift(k, fixed_channel_shift), channel_shift(v, fixed_channel_shift)
        return F.scaled_dot_product_attention(q, k, v)
    offsets = NEIGHBOUR_OFFSETS[kind]
    if offsets == (0,):
        return F.scaled_dot_product_attention(q, k, v)
    mask = clip_end_mask(q.shape[1], k.shape[3], offsets, q.device) if mask_clip_ends else None
    return F.scaled_dot_product_attention(q, expand_keys(k, offsets), expand_keys(v, offsets), attn_mask=mask)
