"""The fast paths compute what the slow ones do.

1. One-pass reversal: a clip and its time reversal share one frame-encoder pass (``flip_time`` of the
   frame features) for InternVideo and Singularity; CLIP-ViP re-encodes. Compared in fp32, eval mode,
   against the two-pass computation (the reversed clip through the whole backbone) for the ATM loss
   inputs, the ATM loss and the Video-Reversal scores; full-size models are checked on fake tensors
   (shapes and keys only, no compute).
2. Two gloo processes (``torchrun --nproc_per_node=2`` on this file) give the losses of one process
   over the same global batch.
3. bf16 autocast keeps the ActionBench predictions of fp32 (margin-aware, see the test).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import paxion  # noqa: F401  (fills the registry)
from paxion.systems.paxion import losses
from paxion.backbones.base import flip_time
from paxion.config import load_config
from paxion.systems.paxion.model import PaxionConfig, PaxionModel
from paxion.systems.paxion.patcher import PatcherConfig
from paxion.registry import registry
from paxion.systems.paxion.scoring import combine_scores

REPO = Path(__file__).resolve().parents[1]
EVAL_CONFIG = REPO / "configs" / "eval" / "actionbench" / "ssv2" / "patcher.yaml"
PROBES = ("action_antonym", "video_reversal", "object_shuffle")
REUSING = ("internvideo_tiny", "singularity_tiny")
TINY = REUSING + ("clipvip_tiny",)
VERBS = [("pushing", "pulling"), ("opening", "closing"), ("lifting", "dropping"), ("folding", "unfolding")]
OBJECTS = ["a cup", "a book", "a box", "a pen", "a lid"]


def eval_task(backbone: str):
    cfg = load_config(EVAL_CONFIG, [f"model.backbone={backbone}", "model.pretrained=null", "model.backbone_ckpt=null",
                                    "task.probes=[action_antonym,video_reversal,object_shuffle]"])
    task = registry.get("task", cfg.task.name)(cfg)
    torch.manual_seed(0)
    model = task.build_model().eval()
    redraw_zero_init(model)
    return task, model


def redraw_zero_init(model: PaxionModel) -> None:
    """Random init leaves InternVideo's extractor and Singularity's temporal embedding at zero, which makes
    the pooled vector (resp. the temporal encoder) blind to frame order; re-draw them so that a flipped clip
    really gives different features and the comparisons below could fail."""
    with torch.no_grad():
        for name, param in model.backbone.named_parameters():
            if not name.endswith("bias") and torch.count_nonzero(param) == 0:
                param.normal_(0.0, 0.5)


def batch_for(model: PaxionModel, size: int, seed: int) -> dict:
    pre = model.backbone.preprocess
    g = torch.Generator().manual_seed(seed)
    keys = [seed * size + i for i in range(size)]
    return {
        "video_input": torch.randint(0, 256, (size, pre.num_frames, 3, pre.image_size, pre.image_size),
                                     generator=g, dtype=torch.uint8),
        "text_input": [f"{VERBS[k % 4][0]} {OBJECTS[k % 5]}" for k in keys],
        "action_antonym_text_input": [f"{VERBS[k % 4][1]} {OBJECTS[k % 5]}" for k in keys],
        "object_shuffled_text_input": [f"{VERBS[k % 4][0]} {OBJECTS[(k + 2) % 5]}" for k in keys],
        "state_change_saliency_flag": torch.tensor([k % 4 != 1 for k in keys]),  # 3 of every 4 salient
        "idx": torch.tensor(keys),
    }


# --------------------------------------------------------------------------- 1. one-pass reversal


@pytest.fixture(scope="module", params=TINY)
def tiny(request):
    task, model = eval_task(request.param)
    return request.param, task, model, batch_for(model, 3, seed=1)


def test_frame_features_of_reversed_clip_are_flipped_features(tiny):
    name, _, model, batch = tiny
    video = model.normalize_video(batch["video_input"])
    with torch.no_grad():
        flipped = flip_time(model.backbone.encode_frames(video))
        reencoded = model.backbone.encode_frames(video.flip(1))
    assert model.backbone.frame_order_invariant_frames == (name in REUSING)
    assert flipped.keys() == reencoded.keys()
    for key in flipped:
        assert torch.equal(flipped[key], reencoded[key]), key


def test_model_runs_the_frame_encoder_once_when_the_backbone_allows(tiny, monkeypatch):
    name, _, model, batch = tiny
    calls = []
    original = model.backbone.encode_frames
    monkeypatch.setattr(model.backbone, "encode_frames", lambda video: calls.append(video.shape) or original(video))
    with torch.no_grad():
        model.encode_video(batch["video_input"], with_reversed=True)
    assert len(calls) == (1 if name in REUSING else 2)


def two_pass(model: PaxionModel, video: torch.Tensor, module: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised features of the clips and of their reversals, each clip through the whole model.

    The clips and reversals go through as one stacked batch (the same GEMM shapes as the one-pass path),
    so the comparison is exact; separate batches agree to float reassociation (checked as well).
    """
    with torch.no_grad():
        enc = model.encode_video(torch.cat([video, video.flip(1)]))
    feats = enc.features(module)
    return feats[: len(video)], feats[len(video):]


def test_one_pass_equals_two_pass_features(tiny):
    _, _, model, batch = tiny
    video, size = batch["video_input"], len(batch["idx"])
    with torch.no_grad():
        one = model.encode_video(video, with_reversed=True)
        separate = [model.encode_video(v) for v in (video, video.flip(1))]
    for module in ("backbone", "patcher"):
        forward, backward = two_pass(model, video, module)
        feats = one.features(module)
        assert torch.equal(feats[:size], forward) and torch.equal(feats[size:], backward), module
        torch.testing.assert_close(feats, torch.cat([s.features(module) for s in separate]), rtol=1e-5, atol=1e-5)
    # the reversed view is a different clip to the patcher, so equality above is not vacuous
    assert (one.latents[:size] - one.latents[size:]).abs().max() > 1e-3


def test_one_pass_atm_loss_and_reversal_scores_equal_two_pass(tiny):
    _, task, model, batch = tiny
    forward, backward = two_pass(model, batch["video_input"], "patcher")
    size = len(batch["idx"])
    # the text batches the model and the task encode (padding length and GEMM shapes follow them)
    train_text = model.encode_text(batch["text_input"] + batch["action_antonym_text_input"])[:size]
    eval_text = model.encode_text(batch["text_input"] + batch["action_antonym_text_input"]
                                  + batch["object_shuffled_text_input"])[:size]
    with torch.no_grad():
        atm = model(batch)["atm"]
        scores = task.eval_step(model, batch)["video_reversal_scores"]
    expected_atm = model.cfg.loss_weights.atm * losses.action_temporal_matching(
        forward, backward, train_text, model.temp, salient=batch["state_change_saliency_flag"],
        label_smoothing=model.cfg.label_smoothing)
    torch.testing.assert_close(atm, expected_atm, rtol=0, atol=0)
    logits = model.paired_logits(torch.stack([forward, backward], dim=1), eval_text, "patcher")  # (B, 2)
    torch.testing.assert_close(scores, combine_scores(logits, None), rtol=0, atol=0)


@pytest.mark.parametrize("name", ["internvideo_mm_l14", "singularity_temporal_17m", "clipvip_b32"])
def test_full_size_one_pass_shapes(name):
    """Full-size models on fake tensors: keys and shapes of the one-pass path equal the two-pass ones."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode(allow_non_fake_inputs=True):
        model = PaxionModel(PaxionConfig(backbone=name)).eval()
        pre, size = model.backbone.preprocess, 2
        video = torch.zeros(size, pre.num_frames, 3, pre.image_size, pre.image_size, dtype=torch.uint8)
        with torch.no_grad():
            feats = model.backbone.encode_frames(model.normalize_video(video))
            reencoded = model.backbone.encode_frames(model.normalize_video(video.flip(1)))
            one = model.encode_video(video, with_reversed=True)
            forward = model.encode_video(video)
    flipped = flip_time(feats)
    assert flipped.keys() == reencoded.keys()
    assert all(flipped[k].shape == reencoded[k].shape for k in flipped)
    assert one.views == 2 and one.pooled.shape == (2 * size, *forward.pooled.shape[1:])
    num_latents = model.cfg.patcher.num_latents
    assert one.latents.shape == (2 * size, num_latents, model.backbone.embed_dim) == (2 * size, *forward.latents.shape[1:])


# --------------------------------------------------------------------------- 2. two gloo processes

PER_RANK, WORLD = 4, 2


def train_model(gather_with_grad: bool) -> PaxionModel:
    torch.manual_seed(0)
    cfg = PaxionConfig(backbone="internvideo_tiny", gather_with_grad=gather_with_grad,
                       patcher=PatcherConfig(heads=2, dim_head=16, num_latents=4))
    return PaxionModel(cfg).eval()  # eval: no dropout, so every process draws nothing at random


def global_batch(model: PaxionModel) -> dict:
    return batch_for(model, PER_RANK * WORLD, seed=3)  # salient pattern gives 3 per rank: equal counts


def shard(batch: dict, rank: int) -> dict:
    part = slice(rank * PER_RANK, (rank + 1) * PER_RANK)
    return {k: v[part] for k, v in batch.items()}


def losses_and_grads(model: torch.nn.Module, inner: PaxionModel, batch: dict) -> tuple[dict, dict]:
    parts = model(batch)
    parts["loss"].backward()
    grads = {n: p.grad.clone() for n, p in inner.named_parameters() if p.grad is not None}
    return {k: v.detach() for k, v in parts.items()}, grads


def dist_worker(out_dir: Path) -> None:
    """Run by torchrun: DDP over the trainable parameters, each rank holding half of the global batch."""
    from torch.nn.parallel import DistributedDataParallel

    from paxion.engine import dist

    dist.init_distributed("cpu")
    rank = dist.get_rank()
    results = {}
    for with_grad in (False, True):
        model = train_model(with_grad)
        parts, grads = losses_and_grads(DistributedDataParallel(model), model, shard(global_batch(model), rank))
        results[with_grad] = ({k: dist.all_reduce_mean(v) for k, v in parts.items()}, grads)  # DDP: mean grads
    if rank == 0:
        torch.save(results, out_dir / "dist.pt")
    dist.destroy()


@pytest.fixture(scope="module")
def two_process_results(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("gloo")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={WORLD}",
           __file__, str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return torch.load(out / "dist.pt")


@pytest.mark.parametrize("with_grad", [False, True])
def test_two_processes_give_the_single_process_losses(two_process_results, with_grad):
    """Mean over ranks of each rank's losses == the losses of one process over the whole batch.

    VTC: each rank's rows see every gathered text/video; the columns come in another order (rank-major
    [t, a] blocks instead of [all t, all a]), which cross-entropy with uniform label smoothing ignores, so
    the values agree up to float summation order (not bit-exactly). ATM: a masked mean per rank; it equals
    the global masked mean only because every rank holds the same number of salient clips (as in the
    original, DDP averages per-rank means).
    """
    dist_losses, _ = two_process_results[with_grad]
    model = train_model(with_grad)
    single, _ = losses_and_grads(model, model, global_batch(model))
    assert dist_losses.keys() == single.keys() == {"vtc", "atm", "loss"}
    for key in single:
        torch.testing.assert_close(dist_losses[key], single[key], rtol=1e-5, atol=1e-6, msg=key)


def test_detached_gather_changes_gradients_but_gathering_with_grad_does_not(two_process_results):
    """With gradients through the gather, DDP's mean gradient is the single-process one. The original
    detaches gathered features: identical losses, but no gradient reaches the patcher through the other
    ranks' rows (t2v then trains only ``temp``), so the patcher gradients differ."""
    model = train_model(True)
    _, single = losses_and_grads(model, model, global_batch(model))
    _, with_grad = two_process_results[True]
    _, detached = two_process_results[False]
    assert with_grad.keys() == single.keys() and "temp" in single
    for name in single:
        torch.testing.assert_close(with_grad[name], single[name], rtol=1e-4, atol=1e-6, msg=name)
    torch.testing.assert_close(detached["temp"], single["temp"], rtol=1e-4, atol=1e-6)
    latents = "patcher.vision_perceiver.latents"
    assert (detached[latents] - single[latents]).abs().max() > 1e-4


# --------------------------------------------------------------------------- 3. bf16 vs fp32


def test_bf16_keeps_fp32_actionbench_predictions():
    """A random model scores both candidates almost alike: fp32 margins |p0 - p1| are often < 0.01,
    below the bf16 perturbation of these probabilities (up to ~0.025 measured on this set), so such
    near-ties may flip legitimately. A disagreement counts as an error only where the fp32 margin exceeds
    MARGIN = 0.05 (twice that perturbation); >= 99 % of all predictions must be free of errors, and at
    least half of them must lie above the margin so that the check is not vacuous."""
    margin_floor = 0.05
    task, model = eval_task("internvideo_tiny")
    batches = [batch_for(model, 16, seed) for seed in range(4)]  # 64 fixed clips
    scores = {}
    for precision in ("fp32", "bf16"):
        outs = []
        for batch in batches:
            with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                outs.append(task.eval_step(model, batch))
        scores[precision] = {p: torch.cat([o[f"{p}_scores"] for o in outs]).float() for p in PROBES}
    errors = decided = total = 0
    for probe in PROBES:
        ref, low = scores["fp32"][probe], scores["bf16"][probe]
        clear = (ref[:, 0] - ref[:, 1]).abs() > margin_floor
        differ = task.predictions(probe, ref) != task.predictions(probe, low)
        errors += int((differ & clear).sum())
        decided += int(clear.sum())
        total += len(ref)
    assert decided >= total // 2, f"only {decided}/{total} predictions above the margin"
    assert 1 - errors / total >= 0.99, f"{errors} clear disagreements in {total}"


if __name__ == "__main__":  # torchrun entry of the two-process test
    dist_worker(Path(sys.argv[1]))
