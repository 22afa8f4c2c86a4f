"""Rebuild the shipped assets from training checkpoints (see README.md in this folder).

    python -m paxion.assets backbone output/pretrain/synthaction/internvideo_synth/latest.pth
    python -m paxion.assets patcher output/embedded_default/<run>/patcher/latest.pth
    python -m paxion.assets system output/synthaction/singularity_ret/latest.pth --out singularity_synth.safetensors
Each writes into this package folder unless ``--out`` says otherwise.
"""

import argparse
import logging
from pathlib import Path
from typing import Optional

from paxion.backbones.synth import WEIGHTS_FILE
from paxion.cli.demo import SHIPPED_PATCHER
from paxion.cli.quickstart import export_patcher
from paxion.tasks.pretrain import export_backbone

HERE = Path(__file__).resolve().parent


def export_system(ckpt_path: Path, out_path: Path, tower: Optional[str] = None) -> Path:
    """The model tensors of a runner checkpoint (or of a file this wrote) -> safetensors, the run's resolved
    config in the metadata; with ``tower``, only the tensors of that registered backbone (every one of them),
    a plain backbone state dict for ``model.backbone_ckpt``."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    from paxion.engine.checkpoint import load_checkpoint

    if ckpt_path.suffix == ".safetensors":
        with safe_open(str(ckpt_path), framework="pt") as handle:
            state = {key: handle.get_tensor(key) for key in handle.keys()}
            config_text = (handle.metadata() or {}).get("config", "")
    else:
        state = dict(load_checkpoint(ckpt_path)["model"])
        config = ckpt_path.parent / "config.yaml"
        config_text = config.read_text() if config.is_file() else ""
    if tower is not None:
        import torch

        import paxion  # noqa: F401  (fills the registry)
        from paxion.registry import registry

        with torch.device("meta"):
            wanted = set(registry.get("backbone", tower)().state_dict())
        missing = sorted(wanted - set(state))
        if missing:
            raise SystemExit(f"{ckpt_path}: {len(missing)} tensors of backbone {tower} missing (first: {missing[0]})")
        state = {key: state[key] for key in sorted(wanted)}
    state = {k: v.contiguous() for k, v in state.items()}
    metadata = {"source": ckpt_path.name, "config": config_text}
    config = ckpt_path.parent / "config.yaml"
    metadata = {"source": ckpt_path.name, "config": config.read_text() if config.is_file() else ""}
    save_file(state, str(out_path), metadata=metadata)
    return out_path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=["backbone", "patcher", "system"],
                        help="system: a whole trained model of any system (its checkpoint's tensors, the run's "
                             "config.yaml in the metadata), loadable with model.pretrained / model.state_ckpt")
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--backbone", default="internvideo_synth",
                        help="registered backbone the exported weights must load into (backbone only)")
    parser.add_argument("--tower", default=None,
                        help="system only: keep the tensors of this registered backbone (for model.backbone_ckpt)")
    parser.add_argument("--config", default=None,
                        help="training config recorded in the patcher file's metadata (default: the embedded default's)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.kind == "backbone":
        out = export_backbone(args.checkpoint, args.out or HERE / WEIGHTS_FILE, args.backbone)
    elif args.kind == "system":
        if args.out is None:
            parser.error("system: --out FILE.safetensors is required")
        out = export_system(args.checkpoint, args.out, args.tower)
    else:
        out = export_patcher(args.checkpoint, args.out or HERE / SHIPPED_PATCHER, args.config)
    print(f"wrote {out} ({out.stat().st_size / 2**20:.2f} MB)")


if __name__ == "__main__":
    main()
