"""docs/python/<system>.md run as written, each with the release-layout files its page names (random weights)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from paxion.backbones.openvclip import build_openvclip_backbone
from test_api_systems import _alpro_release
from test_singularity_convert import official_config, release_state, save

DOCS = Path(__file__).resolve().parents[1] / "docs" / "python"


def _singularity(tmp: Path) -> dict:
    path = tmp / "singularity_17m.pth"
    save(path, release_state(seed=4, temporal=False, frames=1), official_config(False))
    return {"checkpoint": path}


def _alpro(tmp: Path) -> dict:
    import paxion

    count = paxion.api.loading.load_config(paxion.api.CONFIG_ROOT / "train/synthaction/alpro_qa.yaml").model.num_answers
    return {"checkpoint": _alpro_release(tmp / "ret.pt"),
            "qa_checkpoint": _alpro_release(tmp / "qa.pt", objectives=["qa"], num_answers=count)}


def _openvclip(tmp: Path) -> dict:
    torch.manual_seed(0)
    state = {k: v + 0.01 for k, v in build_openvclip_backbone("tiny").state_dict().items()}
    torch.save({"model_state": state}, tmp / "swa_2_22.pth")
    return {"checkpoint": tmp / "swa_2_22.pth"}


def _videomae(tmp: Path) -> dict:
    import paxion

    model, _, _ = paxion.load_model("train/synthaction_actions/vit_mini_llm", overrides=["model.llm_block.weights=null"])
    state = model.state_dict()
    encoder = {k[len("encoder."):]: v for k, v in state.items() if k.startswith("encoder.")}
    llm = {re.sub(r"^llm_block\.m(\d)\.", r"llama_dim_mapper\1.", k).replace("llm_block.llm.", "llama."): v
           for k, v in state.items() if k.startswith("llm_block.")}
    torch.save({"model": {**encoder, **llm}}, tmp / "best.pth")
    return {"checkpoint": tmp / "best.pth"}


PAGES = {"singularity": _singularity, "alpro": _alpro, "openvclip": _openvclip, "videomae": _videomae}


def test_every_system_has_a_page():
    assert sorted(p.stem for p in DOCS.glob("*.md")) == sorted(PAGES)


@pytest.mark.parametrize("page", sorted(PAGES))
def test_page_runs_as_written(page, tmp_path, monkeypatch, capsys):
    blocks = re.findall(r"```python\n(.*?)```", (DOCS / f"{page}.md").read_text(), flags=re.S)
    assert len(blocks) >= 2
    namespace = PAGES[page](tmp_path)
    monkeypatch.chdir(tmp_path)
    for i, block in enumerate(blocks):
        exec(compile(block, f"{page}.md block {i + 1}", "exec"), namespace)
    assert capsys.readouterr().out.strip()
