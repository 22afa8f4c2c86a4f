"""Backbone pre-training pieces: the synthetic foundation backbone, the multi-positive loss, export."""

import torch

from paxion.backbones.synth import SYNTH_CONFIG, internvideo_synth, shipped_weights
from paxion.backbones.internvideo.tokenizer import ClipTokenizer
from paxion.data.synthetic.scenes import ACTION_PAIRS, COLORS, SHAPES
from paxion.registry import registry
from paxion.tasks.pretrain import multi_positive_contrastive


def test_folded_vocabulary_keeps_synthaction_words_apart():
    """Folding CLIP's ids into the small vocabulary must not merge two BPE pieces of SynthAction's words."""
    words = {w for p in ACTION_PAIRS for t in (p.forward_template, p.backward_template)
             for w in t.replace("[something]", "").lower().split()} | set(SHAPES) | set(COLORS) | {"a", "and"}
    clip = ClipTokenizer(SYNTH_CONFIG.context_length)
    small = ClipTokenizer(SYNTH_CONFIG.context_length, SYNTH_CONFIG.vocab_size)
    texts = sorted(words)
    full, folded = clip(texts)["input_ids"], small(texts)["input_ids"]
    mapping = {}
    for a, b in zip(full.flatten().tolist(), folded.flatten().tolist()):
        mapping.setdefault(a, set()).add(b)
    inverse = {}
    for a, bs in mapping.items():
        assert len(bs) == 1
        inverse.setdefault(bs.pop(), set()).add(a)
    merged = {b: a for b, a in inverse.items() if len(a) > 1 and b != 0}
    assert not merged, merged
    assert len(set(map(tuple, folded.tolist()))) == len(texts)


def test_foundation_backbone_is_blind_to_frame_order():
    torch.manual_seed(0)
    model = internvideo_synth().eval()
    video = torch.randn(2, SYNTH_CONFIG.num_frames, 3, SYNTH_CONFIG.image_size, SYNTH_CONFIG.image_size)
    with torch.no_grad():
        pooled, _ = model.encode_video(video)
        pooled_rev, _ = model.encode_video(video.flip(1))
    torch.testing.assert_close(pooled, pooled_rev, atol=1e-5, rtol=1e-5)


def test_shipped_weights_load_and_fit_the_budget():
    path = shipped_weights()
    assert path.stat().st_size <= 5 * 2**20
    model = registry.get("backbone", "internvideo_synth_pretrained")()
    assert model.logit_scale().item() > 1.0


def test_multi_positive_loss_treats_repeated_captions_as_positives():
    """Clip 1 shares clip 0's caption: the loss must pull it towards that caption, not push it away."""
    text = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]), dim=-1)
    scale = torch.tensor(10.0)

    def pull_on_clip1(ids):
        video = torch.nn.functional.normalize(torch.tensor([[1.0, 0.1], [0.6, 0.8], [0.1, 1.0]]), dim=-1)
        video.requires_grad_(True)
        multi_positive_contrastive(video, text, torch.tensor(ids), scale).backward()
        return -(video.grad[1] @ text[0]).item()  # > 0: descending the loss moves clip 1 towards caption 0

    assert pull_on_clip1([7, 7, 3]) > 0
    assert pull_on_clip1([7, 8, 3]) < pull_on_clip1([7, 7, 3])
