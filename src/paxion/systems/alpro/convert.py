"""ALPRO checkpoints into the ``alpro`` model: release files and our own, every key accounted for.

What a file may leave out depends on what it is: a pre-trained file has no QA ``classifier`` (a new
head), no Prompter bank (always rebuilt from the entities) and, for the Prompter, none of the
student's heads; a VTC-only Prompter file has no VTM / MLM / PEM heads. Everything else must be in
the file, and every key of the file must land or be a known head of another stage.
"""

from __future__ import annotations

from torch import nn

from paxion.backbones.base import LoadReport
from paxion.backbones.timesformer.convert import convert_state_dict, load_into, read_state_dict

# model keys a file may lack: heads new to this stage (QA classifier, PEM / MLM / VTM heads) and the teacher
NEW_HEADS = ("classifier.", "mpm_head.", "mlm_head.", "itm_head.", "prompter.")


def _may_miss_model(key: str) -> bool:
    return key.startswith(NEW_HEADS)


def load_checkpoint(model: nn.Module, path: str) -> LoadReport:
    """Pre-trained / fine-tuned ALPRO file (raw or ``{"model": ...}``) into an ``alpro`` model."""
    return load_into(model, path, _may_miss_model)


def load_prompter(prompter: nn.Module, path: str) -> LoadReport:
    """A VTC-only (Prompter) file, or the ``prompter.*`` part of a pre-trained file, into a Prompter."""
    official = read_state_dict(path)
    if any(key.startswith("prompter.") for key in official):
        official = {key[len("prompter."):]: value for key, value in official.items() if key.startswith("prompter.")}
    target = prompter.state_dict()
    converted = convert_state_dict(official, target, str(path), lambda key: key == "video_prompt_feat")
    on_meta = any(p.is_meta for p in prompter.parameters())
    prompter.load_state_dict(converted.state_dict, strict=False, assign=on_meta)
    return LoadReport(path=str(path), loaded=sorted(converted.state_dict), missing=converted.missing,
                      unexpected=sorted(converted.ignored), notes=converted.notes)
