"""Regenerate ``tests/golden/alpro/`` by running the original ALPRO code.

Original: https://github.com/salesforce/ALPRO at commit 4ff6163 (recorded in every file written).

Environment (a venv of its own, never the project's)::

    python3 -m venv venv-alpro
    venv-alpro/bin/pip install torch==2.14.1 torchvision==0.29.1 numpy==1.26.4 sacremoses einops \
        filelock huggingface-hub==0.0.19 packaging pyyaml regex requests tqdm
    venv-alpro/bin/pip install --no-deps transformers==4.11.3   # ALPRO's pin; its xbert breaks from 4.12

Command (from the project root)::

    TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 venv-alpro/bin/python tools/golden/alpro.py \
        --alpro /path/to/ALPRO --out tests/golden/alpro

What runs unchanged: ``src/modeling/alpro_models.py`` (retrieval and QA models, their ``forward`` /
``forward_inference``, ``compute_mlm``), ``src/modeling/xbert.py``, the TimeSformer in
``src/modeling/timesformer/vit.py``, the collators of ``src/datasets/dataset_video_{retrieval,qa}.py``
(tokenisation: ``padding="max_length"``, ``truncation=True``) and ``ImageNorm``.

Stand-ins defined here (no original code is copied):

* ``apex`` (FusedLayerNorm = torch LayerNorm), ``horovod.torch`` (one process: allgather = identity,
  rank 0), ``tensorboardX``, ``av`` / ``lmdb`` / ``decord`` / ``cv2`` / ``ujson`` / ``pandas`` / ``easydict``
  (imported by modules whose video readers are not used), ``Tensor.cuda`` = identity (``ImageNorm``);
* tokenizers < 0.11 has no Python 3.11 wheel, so the slow ``BertTokenizer`` (same vocabulary, same rules)
  stands in for ``BertTokenizerFast``; the vocabulary is the bert-base-uncased one the project ships;
* ``from_pretrained("bert-base-uncased")`` (no hub) builds the BERT from the given config instead;
* size: the original hard-codes ViT-B (width 768, 12 blocks) and 768 -> 256 projections. A small model
  of the same architecture is built by giving ``VisionTransformer`` width 32, 2 blocks, 2 heads, MLP
  ratio 2 and re-making ``vision_proj`` as Linear(32, 256); BERT is 2 layers (fusion from layer 1),
  width 32, 2 heads, MLP 64, 64 positions; 32x32 frames, 16x16 patches, 4 frames.

Weights: the original's initialisation plus N(0, 0.2) noise on every parameter (no weight is a trivial
0 / 1, activations are of order one, so a wrong activation or norm shows well above fp32 noise); the
word-embedding rows (and MLM decoder biases) of tokens that no fixed input uses are zero, and so is the
unused Kinetics head, so the gzip'ed release-layout files stay small. Everything runs in ``eval()`` (no dropout).
Losses use a batch of 2, where VTM's hard negative is the only other item (no sampling left).
"""

from __future__ import annotations

import argparse
import gzip
import importlib.machinery
import io
import subprocess
import sys
import types
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[2]
VOCAB = ROOT / "src/paxion/backbones/singularity/vocab.txt"
W, HEADS, MLP, TEXT_LAYERS, FUSION, POSITIONS = 32, 2, 64, 2, 1, 64
VIT_DEPTH, VIT_HEADS, VIT_MLP_RATIO = 2, 2, 2.0
IMAGE, PATCH, FRAMES, NUM_ANSWERS = 32, 16, 4, 5
NOISE = 0.2

# tokenizer-only: awkward texts (plain, accented, unicode / CJK / emoji, empty, control, over-long)
AWKWARD = [
    "a man is playing a guitar",
    "Café naïve résumé — Ångström façade",
    "ÜNÏCÖDÉ UPPER case and MiXeD",
    "東京で猫が寝ている",
    "一个人在弹吉他",
    "a dog 🐶 runs after the 🎾 ball!!",
    "",
    "   ",
    "tab\there\nnew line\r\n",
    "ﬁne ligature ½ ² ™ ©",
    "zero\u200bwidth and\u00a0nbsp",
    "bell\x07 control",
    "don't stop — it's 3:45pm, isn't it?",
    "[MASK] and [SEP] written in the text",
    "snake_case-words/with.slashes",
    " ".join(f"word{i}" for i in range(60)),
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
]
MAX_LENS = (40, 30, 8)  # retrieval / QA, pre-training, a short cut

# model inputs (raw text)
CAPTIONS = ["a person is cutting an onion", "Café: a dog runs 🐶", "kids play football in the park at night"]
QUESTIONS = ["what is the man doing?", "who is running in the video", "Qu'est-ce que c'est?"]
PAIR_CAPTIONS = ["a man cooks food in a kitchen", "two cats sleep"]  # batch of 2 for the losses


def install_stand_ins() -> None:
    def module(name: str, **attrs) -> types.ModuleType:
        mod = types.ModuleType(name)
        mod.__spec__ = importlib.machinery.ModuleSpec(name, None)
        mod.__dict__.update(attrs)
        sys.modules[name] = mod
        return mod

    module("apex", amp=types.SimpleNamespace())
    module("apex.normalization")
    module("apex.normalization.fused_layer_norm", FusedLayerNorm=nn.LayerNorm)
    hvd = module("horovod.torch", allgather=lambda t, name=None: t, local_rank=lambda: 0, rank=lambda: 0,
                 size=lambda: 1)
    module("horovod", torch=hvd)

    class SummaryWriter:
        def __init__(self, *a, **k) -> None:
            pass

    module("tensorboardX", SummaryWriter=SummaryWriter)
    for name in ("av", "lmdb", "cv2", "pandas"):
        module(name)
    bridge = module("decord.bridge", set_bridge=lambda *a: None)
    module("decord", VideoReader=object, cpu=None, bridge=bridge)
    import json

    module("ujson", load=json.load, loads=json.loads, dump=json.dump, dumps=json.dumps)
    module("easydict", EasyDict=dict)
    torch.Tensor.cuda = lambda self, *a, **k: self


def commit_of(repo: Path) -> str:
    return subprocess.check_output(["git", "-C", str(repo), "rev-parse", "HEAD"], text=True).strip()


def small_models(bert_config_cls):
    import src.modeling.timesformer.vit as vit
    from src.modeling import alpro_models, xbert

    original_vit = vit.VisionTransformer

    def small_vit(**kw):
        kw.update(embed_dim=W, depth=VIT_DEPTH, num_heads=VIT_HEADS, mlp_ratio=VIT_MLP_RATIO)
        return original_vit(**kw)

    vit.VisionTransformer = small_vit

    def from_config(cls, name, config=None, **kw):  # no hub: build from the config
        return cls(config, **kw)

    for cls in (xbert.BertForMaskedLM, xbert.BertModel):
        cls.from_pretrained = classmethod(from_config)

    config = bert_config_cls(
        vocab_size=30522, hidden_size=W, num_hidden_layers=TEXT_LAYERS, num_attention_heads=HEADS,
        intermediate_size=MLP, max_position_embeddings=POSITIONS, type_vocab_size=2, layer_norm_eps=1e-12,
        hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1, fusion_layer=FUSION, encoder_width=W,
        itc_token_type="cls", num_labels=NUM_ANSWERS, pad_token_id=0,
    )
    video_cfg = {"cls": "TimeSformer", "patch_size": PATCH, "attn_drop_rate": 0, "drop_rate": 0,
                 "drop_path_rate": 0.1, "maxpool_kernel_size": 2, "use_maxpooling": False,
                 "gradient_checkpointing": False, "num_frm": FRAMES, "img_size": IMAGE}
    models = {}
    for name, cls in (("ret", alpro_models.AlproForVideoTextRetrieval),
                      ("qa", alpro_models.AlproForSequenceClassification)):
        model = cls(config, video_enc_cfg=dict(video_cfg), input_format="RGB")
        model.vision_proj = nn.Linear(W, 256)  # the original hard-codes 768 -> 256
        models[name] = model.eval()
    return models


def randomise(model: nn.Module, used_ids: torch.Tensor, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    unused = torch.ones(30522, dtype=torch.bool)
    unused[used_ids] = False
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.add_(torch.randn(p.shape, generator=gen) * NOISE)
            if name.endswith("word_embeddings.weight") or name.endswith("predictions.bias"):
                p[unused] = 0.0
            if name.startswith("visual_encoder.model.head."):  # the unused Kinetics head: keep the file small
                p.zero_()
        model.temp.fill_(0.07)


def gz_save(obj, path: Path) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    with gzip.GzipFile(path, "wb", mtime=0) as f:
        f.write(buf.getvalue())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--alpro", required=True, help="checkout of salesforce/ALPRO")
    parser.add_argument("--out", default=str(ROOT / "tests/golden/alpro"))
    args = parser.parse_args()
    repo = Path(args.alpro).resolve()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(repo))
    install_stand_ins()
    from transformers import BertConfig, BertTokenizer

    from src.datasets.data_utils import ImageNorm
    from src.datasets.dataset_video_qa import VideoQACollator
    from src.datasets.dataset_video_retrieval import VideoRetrievalCollator
    from src.modeling.alpro_models import AlproForPretrain

    commit = commit_of(repo)
    tokenizer = BertTokenizer(str(VOCAB), do_lower_case=True)

    def ret_tokens(texts, max_len):
        batch = [{"vid": torch.zeros(1), "examples": [{"text_str": t}], "n_examples": 1} for t in texts]
        enc = VideoRetrievalCollator(tokenizer, max_length=max_len).collate_batch(batch)
        return enc["text_input_ids"], enc["text_input_mask"]

    def qa_tokens(texts, max_len):
        batch = [{"vid": torch.zeros(1), "n_examples": 1,
                  "examples": [{"q_str": t, "label": 0, "question_id": i}]} for i, t in enumerate(texts)]
        enc = VideoQACollator(tokenizer, max_length=max_len, task_type="frameqa").collate_batch(batch)
        return enc["text_input_ids"], enc["text_input_mask"]

    tokens = {"commit": commit, "texts": AWKWARD, "max_lens": list(MAX_LENS)}
    for max_len in MAX_LENS:
        ids, mask = ret_tokens(AWKWARD, max_len)
        q_ids, q_mask = qa_tokens(AWKWARD, max_len)
        assert torch.equal(ids, q_ids) and torch.equal(mask, q_mask)  # the two collators agree
        tokens[f"ids_{max_len}"], tokens[f"mask_{max_len}"] = ids, mask
    torch.save(tokens, out / "tokens.pt")

    torch.manual_seed(0)
    models = small_models(BertConfig)
    cap_ids, cap_mask = ret_tokens(CAPTIONS, 40)
    q_ids, q_mask = qa_tokens(QUESTIONS, 40)
    pair_ids, pair_mask = ret_tokens(PAIR_CAPTIONS, 30)
    used = torch.unique(torch.cat([cap_ids.flatten(), q_ids.flatten(), pair_ids.flatten(), torch.tensor([103])]))
    randomise(models["ret"], used, seed=1)
    randomise(models["qa"], used, seed=2)

    video_u8 = torch.randint(0, 256, (3, FRAMES, 3, IMAGE, IMAGE), dtype=torch.uint8,
                             generator=torch.Generator().manual_seed(3))
    norm = ImageNorm(mean=[0.48145466, 0.4578275, 0.40821073], std=[0.26862954, 0.26130258, 0.27577711])
    video = norm(video_u8.float())
    ret, qa = models["ret"], models["qa"]
    golden = {"commit": commit, "video_u8": video_u8, "captions": CAPTIONS, "questions": QUESTIONS,
              "pair_captions": PAIR_CAPTIONS, "caption_ids": cap_ids, "caption_mask": cap_mask}
    with torch.no_grad():
        vtc, vtm = [], []
        for v in range(video.shape[0]):  # one video against every caption, as its retrieval inference
            res = ret.forward_inference({"visual_inputs": video[v:v + 1], "text_input_ids": cap_ids,
                                         "text_input_mask": cap_mask})
            vtc.append(res["itc_scores"][0] * ret.temp)  # cosine similarity (the file stores sim / temp)
            vtm.append(res["logits"])
        golden["vtc_sim"] = torch.stack(vtc)  # (videos, captions)
        golden["vtm_logits"] = torch.stack(vtm)  # (videos, captions, 2)
        pair = ret({"visual_inputs": video[:2], "text_input_ids": pair_ids, "text_input_mask": pair_mask})
        golden["loss_vtc"], golden["loss_vtm"] = pair["itc_loss"], pair["itm_loss"]
        # MLM on fixed masks: every third real token (after [CLS]) replaced by [MASK]
        positions = torch.zeros_like(pair_ids, dtype=torch.bool)
        positions[:, 1::3] = True
        positions &= (pair_mask == 1) & (pair_ids != 101) & (pair_ids != 102)
        masked = pair_ids.masked_fill(positions, 103)
        labels = pair_ids.masked_fill(~positions, -100)
        embeds = ret.visual_encoder.forward_features(video[:2].transpose(1, 2), return_all_tokens=True)
        atts = torch.ones(embeds.shape[:2], dtype=torch.long)
        mlm_loss, mlm_logits, _ = AlproForPretrain.compute_mlm(ret, masked, pair_mask, embeds, atts, labels)
        golden.update(mlm_input_ids=masked, mlm_labels=labels, loss_mlm=mlm_loss, vocab_used=used,
                      mlm_logits=mlm_logits[positions][:, used])  # masked positions x vocabulary in use
        qa_labels = torch.tensor([1, 4, 0])
        res = qa({"visual_inputs": video, "text_input_ids": q_ids, "text_input_mask": q_mask, "labels": qa_labels})
        golden.update(qa_logits=res["logits"], qa_labels=qa_labels, loss_qa=res["loss"])
    torch.save(golden, out / "outputs.pt")
    gz_save(ret.state_dict(), out / "alpro_ret_small.pt.gz")
    gz_save(qa.state_dict(), out / "alpro_qa_small.pt.gz")
    for key, value in golden.items():
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            print(f"{key:24s} {tuple(value.shape)} |max| {value.abs().max():.4g}")


if __name__ == "__main__":
    main()
