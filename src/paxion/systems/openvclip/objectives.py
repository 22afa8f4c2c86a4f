"""Open-VCLIP's classifier and loss as pure functions of features.

* class prompts: every class name in every template; the text embeddings are L2-normalised per
  template, averaged over templates and normalised again (one unit row per class);
* logits: ``logit_scale.exp() * cos(frame, class)`` per frame, averaged over the frames;
* loss: soft-target cross-entropy (hard labels become one-hot rows, which is plain cross-entropy).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# The 28 prompt templates of the original's ``text_prompt`` (7 phrasings x 4 openings).
OPENVCLIP_TEMPLATES: tuple[str, ...] = tuple(
    f"{opening} {phrase}."
    for opening in ("a photo of", "a video of", "a example of", "a demonstration of")
    for phrase in ("{}", "a person {}", "a person using {}", "a person doing {}", "a person during {}",
                   "a person performing {}", "a person practicing {}")
)
TEMPLATE_SETS = {"openvclip": OPENVCLIP_TEMPLATES, "name_only": ("{}",)}


def class_prompts(class_names: list[str], templates: tuple[str, ...]) -> list[str]:
    """Prompts template-major: ``templates[0]`` for every class, then ``templates[1]``, ... (K*C strings)."""
    return [template.format(name) for template in templates for name in class_names]


def ensemble_classifier(prompt_embeds: torch.Tensor, num_templates: int) -> torch.Tensor:
    """(K*C, E) template-major embeddings -> (C, E) unit rows: normalise, average over K, normalise."""
    per_template = F.normalize(prompt_embeds.float(), dim=-1).unflatten(0, (num_templates, -1))  # (K, C, E)
    return F.normalize(per_template.mean(dim=0), dim=-1)


def frame_logits(frame_embeds: torch.Tensor, classifier: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """(B, T, E) frame embeddings (any norm) x (C, E) unit rows -> (B, C) scale·cos averaged over T."""
    cos = F.normalize(frame_embeds, dim=-1) @ classifier.to(frame_embeds.dtype).t()  # (B, T, C)
    return scale * cos.mean(dim=1)


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over samples of -sum(target * log_softmax); ``target`` (B,) class ids or (B, C) soft rows."""
    if target.dim() == 1:
        target = F.one_hot(target.long(), logits.shape[-1]).to(logits.dtype)
    return -(target * F.log_softmax(logits, dim=-1)).sum(dim=-1).mean()
