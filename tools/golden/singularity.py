"""Regenerate ``tests/golden/singularity/*.pt`` by running the original Singularity code.

What it records (CPU, fp32, small random-weight models of the original architecture):

* ``tokens.pt``: ids and masks of the original tokenizer (``models/tokenization_bert.py``) for a fixed
  list of awkward texts, in every form the original uses: retrieval captions
  (``padding="max_length", truncation=True, max_length=32``), questions (25), answers with
  ``" [SEP]"`` appended as its QA data does (5 and 6), and ``padding=True`` (longest, no
  truncation), which the original Paxion's Singularity backbone uses;
* ``retrieval.pt``: a small pre-training model (``models/model_pretrain.Singularity``: BEiT, temporal
  encoder, temporal embedding, BERT text encoder with fusion layers, ITM and MLM heads), its weights in
  the release layout (``{"model": state_dict, "config": ...}``, text encoder under
  ``text_encoder.bert.``) and its outputs from raw text: video tokens / pooled frames, text hidden
  states (captions and the backbone's ``padding=True`` form), ITC similarity and loss, ITM logits of
  every (video, caption) pair, MLM loss on fixed masked positions;
* ``qa.pt``: a small QA model (``models/model_vqa.Singularity``) saved in the fine-tuned layout and its
  outputs: first answer token logits, top-k answers and their probabilities (``rank_answer``) and the
  training loss ``loss_vqa`` on weighted answers.

Widths: the original hard-codes 768 for the vision and text widths in ``SingularityRetrievalBase``; the
models here are built with 16-wide BEiT / BERT configs and the five 768-wide parts that constructor
makes from the constant (``vision_proj``, ``text_proj``, ``itm_head``, ``temporal_embeddings``,
``vision_layernorm``) are replaced by 16-wide ones before the weights are drawn. Every parameter is then
drawn from a seeded normal distribution (std ``STD``, LayerNorm scales around 1), and vocabulary rows that no
recorded text uses are zeroed so the files only store the used rows (``vocab_rows``); the test
rebuilds the full tables with zeros.

How to run (the original, commit 10a7f70 of https://github.com/jayleicn/singularity, checked out
outside this project, with its own virtual environment):

    python3 -m venv venv-sing
    venv-sing/bin/pip install torch==2.14.1 torchvision==0.29.1 transformers==4.33.3 \\
        omegaconf scipy einops easydict timm termcolor ujson pandas
    TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 venv-sing/bin/python tools/golden/singularity.py \\
        --original /path/to/singularity --out tests/golden/singularity

``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` is for the original's own ``torch.load`` calls (``from_pretrained``
on the local stand-in folders below), in this process only. The hub is not needed: the
``bert-base-uncased`` and BEiT names the original passes to ``from_pretrained`` are local folders with a
small config, this project's bert-base-uncased vocabulary and an empty weight file (all weights
random). The file is deterministic: rerunning it rewrites the same numbers.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

PROJECT = Path(__file__).resolve().parents[2]
VOCAB = PROJECT / "src/paxion/backbones/singularity/vocab.txt"
VOCAB_SIZE = 30522
WIDTH, HEADS, MLP = 16, 2, 32
TEXT_LAYERS, FUSION_LAYER = 5, 2  # the QA decoder is hard-coded to 3 layers = 5 - 2
IMAGE, PATCH, VISION_LAYERS, TEMPORAL_LAYERS = 16, 8, 2, 2
MAX_POSITIONS, EMBED_DIM, TEMP = 64, 8, 0.07
STD = 0.15  # weights: about what BERT's 0.02 at width 768 gives per unit of fan-in at width 16
MAX_TXT_L, MAX_Q_LEN, MAX_A_LENS = 32, 25, (5, 6)

# the same sizes in this project's SingularityConfig fields (the test builds its models from these)
PROJECT_SIZES = {
    "image_size": IMAGE, "patch_size": PATCH, "vision_width": WIDTH, "vision_layers": VISION_LAYERS,
    "vision_heads": HEADS, "vision_mlp_width": MLP, "temporal_layers": TEMPORAL_LAYERS, "temporal_heads": HEADS,
    "temporal_mlp_width": MLP, "text_width": WIDTH, "text_layers": TEXT_LAYERS, "fusion_layer": FUSION_LAYER,
    "text_heads": HEADS, "text_mlp_width": MLP, "vocab_size": VOCAB_SIZE, "max_positions": MAX_POSITIONS,
    "embed_dim": EMBED_DIM,
}

LONG = " ".join(f"step {i} of the unusually verbose description" for i in range(7))  # ~57 word pieces
TEXTS = [  # model inputs: every one fits the 64-row position table in its padding=True form
    "a person is opening a door",
    "Naïve café résumé — Ångström façade, déjà vu",
    "日本語のテキスト 中文字符 한국어 문장",
    "emoji 😀🎉 and ❤️ hearts",
    "",
    "   \t\n  ",
    LONG,
    "Hello, world!!! (test) -- 'quotes' \"double\" ... ??? $5.00 #tag @user",
    "literal [SEP] in the middle",
    "[sep] and [CLS] and a[MASK]b",
    "İstanbul straße ﬁne Ｆｕｌｌｗｉｄｔｈ",
    "zero\u200bwidth\u00a0nbsp e\u0301 soft\u00adhyphen \ufeffbom",
]
EXTRA_TEXTS = [  # tokenizer only
    " ".join(["word"] * 600),
    "x" * 150 + " short",
    "Tabs\tand\r\nnewlines\x00nul\x07bell",
    "ПРИВЕТ мир Ελληνικά ÀÉÎÕÜ",
]
QUESTIONS = ["what is the person opening?", "Qu'est-ce que c'est, café?", LONG]
ANSWER_LIST = ["door", "yes", "no", "a red car", "café", "一个", "", "[SEP]", "a very long answer that is cut", "Door"]
TRAIN_ANSWERS = [["door", "door", "window"], ["yes"], ["a very long answer that is cut", "no"]]


def commit_of(original: Path) -> str:
    return subprocess.run(["git", "-C", str(original), "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()


def stand_in_folders(root: Path) -> tuple[Path, Path, Path]:
    """Local folders for the hub names the original loads: BERT (+ vocab), BEiT, and a small bert_config."""
    bert = root / "bert-base-uncased"
    beit = root / "beit-small-patch16"
    bert.mkdir()
    beit.mkdir()
    bert_config = {
        "architectures": ["BertForMaskedLM"], "attention_probs_dropout_prob": 0.1, "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1, "hidden_size": WIDTH, "initializer_range": 0.02, "intermediate_size": MLP,
        "layer_norm_eps": 1e-12, "max_position_embeddings": MAX_POSITIONS, "model_type": "bert",
        "num_attention_heads": HEADS, "num_hidden_layers": TEXT_LAYERS, "pad_token_id": 0, "type_vocab_size": 2,
        "vocab_size": VOCAB_SIZE, "fusion_layer": FUSION_LAYER, "encoder_width": WIDTH,
    }
    (bert / "config.json").write_text(json.dumps(bert_config))
    (bert / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True, "model_max_length": 512}))
    (bert / "vocab.txt").write_bytes(VOCAB.read_bytes())
    beit_config = {
        "architectures": ["BeitForImageClassification"], "attention_probs_dropout_prob": 0.0, "drop_path_rate": 0.1,
        "hidden_act": "gelu", "hidden_dropout_prob": 0.0, "hidden_size": WIDTH, "image_size": IMAGE,
        "initializer_range": 0.02, "intermediate_size": MLP, "layer_norm_eps": 1e-12, "layer_scale_init_value": 0.1,
        "model_type": "beit", "num_attention_heads": HEADS, "num_channels": 3, "num_hidden_layers": VISION_LAYERS,
        "patch_size": PATCH, "use_absolute_position_embeddings": False, "use_mask_token": False,
        "use_mean_pooling": True, "use_relative_position_bias": True, "use_shared_relative_position_bias": False,
        "vocab_size": 8192,
    }
    (beit / "config.json").write_text(json.dumps(beit_config))
    for folder in (bert, beit):
        torch.save({}, folder / "pytorch_model.bin")  # no weights: every tensor is drawn below
    config_path = root / "config_bert.json"
    config_path.write_text(json.dumps(bert_config))
    return bert, beit, config_path


def original_config(bert: Path, beit: Path, bert_config: Path, *, temporal: bool, num_frames: int) -> dict:
    """The fields of the original's YAML configs that model construction and forward read."""
    return {
        "text_encoder": str(bert), "text_decoder": str(bert), "bert_config": str(bert_config),
        "vit_type": "beit", "vit_name_or_pretrained_path": str(beit), "image_res": IMAGE, "embed_dim": EMBED_DIM,
        "temp": TEMP, "mlm_prob": 0.5, "debug": False, "itm_hard_neg": True,
        "loss_weight": {"itc": 1.0, "itm": 1.0, "mlm": 1.0},
        "video_input": {"num_frames": num_frames, "num_frames_test": num_frames},
        "temporal_vision_encoder": {"enable": temporal, "num_layers": TEMPORAL_LAYERS, "update_pooler_embed": False},
        "add_temporal_embed": temporal, "eval_frame_ensemble": "concat", "max_txt_l": MAX_TXT_L,
        "max_q_len": MAX_Q_LEN, "max_a_len": MAX_A_LENS[0], "eos": "[SEP]", "k_test": 4,
    }


def narrow_768_parts(model: torch.nn.Module, has_heads: bool) -> None:
    """Replace the parts the original sizes from its 768 constant with WIDTH-wide ones."""
    from torch import nn

    model.vision_width = model.text_width = WIDTH
    model.vision_layernorm = nn.LayerNorm(WIDTH, eps=1e-12)
    model.temporal_embeddings = nn.Parameter(torch.zeros(1, model.temporal_embeddings.shape[1], 1, WIDTH))
    if has_heads:
        model.vision_proj = nn.Linear(WIDTH, EMBED_DIM)
        model.text_proj = nn.Linear(WIDTH, EMBED_DIM)
        model.itm_head = nn.Linear(WIDTH, 2)


@torch.no_grad()
def draw_weights(model: torch.nn.Module, seed: int, used_ids: torch.Tensor) -> None:
    """Every parameter from a seeded normal (norm scales around 1); unused vocabulary rows zeroed."""
    generator = torch.Generator().manual_seed(seed)
    for name, param in model.named_parameters():  # tied tensors appear once
        noise = torch.randn(param.shape, generator=generator)
        if "norm" in name.lower() and name.endswith("weight"):
            param.copy_(1.0 + 0.1 * noise)
        elif name == "temp":
            param.fill_(TEMP)
        else:
            param.copy_(STD * noise)
        if param.ndim >= 1 and param.shape[0] == VOCAB_SIZE:
            keep = torch.zeros(VOCAB_SIZE, dtype=torch.bool)
            keep[used_ids] = True
            param[~keep] = 0.0


def pack_state(state: dict[str, torch.Tensor], used_ids: torch.Tensor) -> dict[str, torch.Tensor]:
    """Vocabulary-sized tensors keep only their used rows (the others are zero)."""
    packed = {}
    for key, value in state.items():
        value = value.detach().clone()
        if value.ndim >= 1 and value.shape[0] == VOCAB_SIZE:
            assert value[torch.isin(torch.arange(VOCAB_SIZE), used_ids, invert=True)].abs().sum() == 0, key
            value = value[used_ids].clone()
        packed[key] = value
    return packed


def tokenize_all(tokenizer) -> dict:
    def form(texts: list[str], **kwargs) -> dict:
        out = tokenizer(texts, return_tensors="pt", **kwargs)  # stored small: ids < 2**15, masks 0/1
        return {"texts": texts, "input_ids": out.input_ids.short(), "attention_mask": out.attention_mask.bool()}

    texts = TEXTS + EXTRA_TEXTS
    answers = [a + " [SEP]" for a in ANSWER_LIST + texts]  # the QA data's eos, as its datasets append it
    forms = {
        "caption": form(texts, padding="max_length", truncation=True, max_length=MAX_TXT_L),
        "question": form(texts, padding="max_length", truncation=True, max_length=MAX_Q_LEN),
        "longest": form(texts, padding=True),
    }
    for max_a_len in MAX_A_LENS:
        forms[f"answer_{max_a_len}"] = form(answers, padding="max_length", truncation=True, max_length=max_a_len)
        forms[f"answer_{max_a_len}"]["raw_answers"] = ANSWER_LIST + texts
    return forms


def video(seed: int, batch: int, frames: int) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 (B, T, 3, H, W) and the original's test transform of it ((x / 255 - 0.5) / 0.5)."""
    raw = torch.randint(0, 256, (batch, frames, 3, IMAGE, IMAGE), generator=torch.Generator().manual_seed(seed),
                        dtype=torch.uint8)
    return raw, (raw.float() / 255.0 - 0.5) / 0.5


@torch.no_grad()
def retrieval_golden(cfg: dict, tokenizer, used_ids: torch.Tensor) -> dict:
    from models.model_pretrain import Singularity
    from omegaconf import OmegaConf

    config = OmegaConf.create(cfg)
    model = Singularity(config=config, tokenizer=tokenizer)
    narrow_768_parts(model, has_heads=True)
    draw_weights(model, seed=1, used_ids=used_ids)
    model.eval()
    raw, pixels = video(seed=2, batch=3, frames=4)
    image_embeds, pooled_image = model.encode_image(pixels)  # (B, T*L, D), (B, T, D)

    text = tokenizer(TEXTS, padding="max_length", truncation=True, max_length=MAX_TXT_L, return_tensors="pt")
    text_embeds, pooled_text = model.encode_text(text)
    sim_i2t, _ = model.get_sim(pooled_image, pooled_text, t=model.temp)  # (B, N)

    square = tokenizer(TEXTS[:3], padding="max_length", truncation=True, max_length=MAX_TXT_L, return_tensors="pt")
    square_embeds, square_pooled = model.encode_text(square)
    idx = torch.tensor([0, 1, 0])
    loss_ita, _, _ = model.get_contrastive_loss(pooled_image, square_pooled, idx)

    pairs = [(v, t) for v in range(raw.shape[0]) for t in range(len(TEXTS))]
    v_index, t_index = torch.tensor([p[0] for p in pairs]), torch.tensor([p[1] for p in pairs])
    fused = model.get_text_encoder()(
        encoder_embeds=text_embeds[t_index], attention_mask=text.attention_mask[t_index],
        encoder_hidden_states=image_embeds[v_index],
        encoder_attention_mask=torch.ones(image_embeds[v_index].shape[:-1], dtype=torch.long),
        return_dict=True, mode="fusion",
    ).last_hidden_state[:, 0]
    itm_logits = model.itm_head(fused).view(raw.shape[0], len(TEXTS), 2)

    # MLM with fixed masked positions (the original draws them at random): every 3rd real token from 1
    positions = torch.zeros_like(square.input_ids, dtype=torch.bool)
    positions[:, 1::3] = True
    positions &= square.attention_mask.bool()

    def fixed_mask(input_ids, vocab_size, device, targets=None, masked_indices=None, probability_matrix=None):
        masked = positions & (input_ids != tokenizer.pad_token_id) & (input_ids != tokenizer.cls_token_id)
        targets[~masked] = -100
        input_ids[masked] = tokenizer.mask_token_id
        return input_ids, targets

    model.mask = fixed_mask
    image_atts = torch.ones(image_embeds.shape[:-1], dtype=torch.long)
    loss_mlm = model.get_mlm_loss(square, image_embeds, image_atts)

    longest = tokenizer(TEXTS, padding=True, return_tensors="pt")
    backbone_hidden, backbone_cls = model.encode_text(longest)
    return {
        "config": cfg, "state": pack_state(model.state_dict(), used_ids),
        "video": raw, "texts": TEXTS,
        "image_embeds": image_embeds, "pooled_image": pooled_image,
        "text_embeds": text_embeds, "text_feat": torch.nn.functional.normalize(model.text_proj(pooled_text), dim=-1),
        "sim_i2t": sim_i2t, "itc_idx": idx, "loss_ita": loss_ita, "itm_logits": itm_logits,
        "mlm_positions": positions, "loss_mlm": loss_mlm,
        "backbone_hidden": backbone_hidden, "backbone_text_proj": model.text_proj(backbone_cls),
    }


@torch.no_grad()
def qa_golden(cfg: dict, tokenizer, used_ids: torch.Tensor) -> dict:
    from models.model_vqa import Singularity
    from omegaconf import OmegaConf

    config = OmegaConf.create(cfg)
    model = Singularity(config=config, tokenizer=tokenizer)
    narrow_768_parts(model, has_heads=False)
    draw_weights(model, seed=3, used_ids=used_ids)
    model.eval()
    raw, pixels = video(seed=4, batch=len(QUESTIONS), frames=2)
    question = tokenizer(QUESTIONS, padding="max_length", truncation=True, max_length=MAX_Q_LEN, return_tensors="pt")
    answers = tokenizer([a + " " + cfg["eos"] for a in ANSWER_LIST], padding="max_length", truncation=True,
                        max_length=cfg["max_a_len"], return_tensors="pt")
    topk_ids, topk_probs = model(pixels, question, answers, train=False, k=cfg["k_test"])

    image_embeds, _ = model.encode_image(pixels)
    states = model.text_encoder(question.input_ids, attention_mask=question.attention_mask,
                                encoder_hidden_states=image_embeds,
                                encoder_attention_mask=torch.ones(image_embeds.shape[:-1], dtype=torch.long),
                                return_dict=True).last_hidden_state
    start = answers.input_ids[0, 0].repeat(len(QUESTIONS), 1)
    first = model.text_decoder(start, encoder_hidden_states=states, encoder_attention_mask=question.attention_mask,
                               return_dict=True, reduction="none").logits[:, 0, :]

    # training loss, with the original dataset's answer weights (1/n per occurrence) and eos
    flat, weights, counts = [], [], []
    for raw_answers in TRAIN_ANSWERS:
        unique = list(dict.fromkeys(raw_answers))
        flat += [a + " " + cfg["eos"] for a in unique]
        weights += [raw_answers.count(a) / len(raw_answers) for a in unique]
        counts.append(len(unique))
    answer_input = tokenizer(flat, padding="max_length", truncation=True, max_length=cfg["max_a_len"],
                             return_tensors="pt")
    loss_vqa = model(pixels, question, answer_input, train=True, k=counts, weights=torch.tensor(weights))
    return {
        "config": cfg, "state": pack_state(model.state_dict(), used_ids), "video": raw,
        "questions": QUESTIONS, "answer_list": ANSWER_LIST, "train_answers": TRAIN_ANSWERS,
        "topk_ids": topk_ids, "topk_probs": topk_probs, "first_token_logits": first[:, used_ids],
        "loss_vqa": loss_vqa,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--original", required=True, type=Path, help="checkout of jayleicn/singularity")
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args()
    sys.path.insert(0, str(args.original.resolve()))
    torch.set_num_threads(1)
    import transformers
    from models.tokenization_bert import BertTokenizer

    commit = commit_of(args.original)
    meta = {"original": "https://github.com/jayleicn/singularity", "commit": commit,
            "transformers": str(transformers.__version__), "torch": str(torch.__version__)}
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        bert, beit, bert_config = stand_in_folders(Path(tmp))
        tokenizer = BertTokenizer.from_pretrained(str(bert))
        forms = tokenize_all(tokenizer)
        torch.save({"meta": meta, "forms": forms}, args.out / "tokens.pt")

        used = {0, 100, 101, 102, 103}  # [PAD], [UNK], [CLS], [SEP], [MASK]
        for f in forms.values():
            used |= set(f["input_ids"].flatten().tolist())
        used_ids = torch.tensor(sorted(used))
        common = dict(bert=bert, beit=beit, bert_config=bert_config)
        retrieval = retrieval_golden(original_config(**common, temporal=True, num_frames=4), tokenizer, used_ids)
        qa = qa_golden(original_config(**common, temporal=False, num_frames=1), tokenizer, used_ids)
        for name, record in (("retrieval", retrieval), ("qa", qa)):
            for key in ("text_encoder", "text_decoder", "bert_config", "vit_name_or_pretrained_path"):
                record["config"][key] = Path(record["config"][key]).name  # no machine paths in the files
            vocab_keys = sorted(k for k, v in record["state"].items() if v.ndim and v.shape[0] == len(used_ids))
            torch.save({"meta": meta, "project_sizes": PROJECT_SIZES, "vocab_rows": used_ids,
                        "vocab_keys": vocab_keys, **record}, args.out / f"{name}.pt")
    for path in sorted(args.out.glob("*.pt")):
        print(f"{path}: {path.stat().st_size / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
