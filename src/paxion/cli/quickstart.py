"""The embedded default: the paper's story on a CPU in minutes, without any download.

    python -m paxion.quickstart [--preset default|hard] [--eval-only | --data-only | --compare] [--output DIR]
                                [a.b=c ...]

1. writes SynthAction into ``${paths.cache_root}/synthaction_embedded`` unless it is already there;
2. scores the shipped frozen foundation model (``internvideo_synth_pretrained``: knows objects, not
   actions) on ActionBench's Action Antonym (AA), Video Reversal (VR) and Object Shuffle (OS) probes;
3. trains a Knowledge Patcher with VTC + DVDM on top of it
   (``configs/train/actionbench/synthaction/embedded_default.yaml``), scores it on the same clips;
4. prints the before/after table and the output folder (``python -m paxion.report`` renders it).

``--eval-only`` scores the shipped patcher (``paxion/assets/kp_synth.safetensors``) instead of
training one. Overrides ``a.b=c`` apply to the training config (e.g. ``run.max_epoch=1``).
``--compare`` probes every system's tiny model and patches two (:mod:`paxion.cli.compare`).
``--preset hard`` does the same on SynthAction's hard preset (``synthaction_hard``: clutter, 10-40 frames
of 64 x 64) with its own foundation model and configs (``embedded_hard*.yaml``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Optional, Sequence

import torch

import paxion  # noqa: F401  (fills the registry)
from paxion.engine import dist
from paxion.config import CONFIG_ROOT, ConfigError, load_config, prepare_output_dir
from paxion.data.synthetic.generate import OverwriteError
from paxion.engine.logger import setup_logging
from paxion.registry import registry
from paxion.engine.runner import Runner

logger = logging.getLogger(__name__)

TRAIN_CONFIG = "train/actionbench/synthaction/embedded_default.yaml"
BACKBONE_CONFIG = "eval/actionbench/synthaction/embedded_backbone.yaml"
PATCHER_CONFIG = "eval/actionbench/synthaction/embedded_patcher.yaml"
# The data every embedded-default number refers to; the foundation model's recipe uses the same.
DATA = {"seed": 0, "num_train": 2000, "num_val": 250, "num_test": 0, "frames": 8, "size": 32}
PROBES = (("action_antonym", "AA"), ("video_reversal", "VR"), ("object_shuffle", "OS"))


@dataclasses.dataclass(frozen=True)
class Preset:
    """What ``--preset NAME`` runs: SynthAction settings, its three configs and its shipped patcher."""

    data: dict[str, Any]
    train: str
    backbone: str
    patcher: str
    shipped_patcher: str
    folder: str  # run folders go to <output_root>/<folder>/<time>


PRESETS = {
    "default": Preset(DATA, TRAIN_CONFIG, BACKBONE_CONFIG, PATCHER_CONFIG, "kp_synth.safetensors", "embedded_default"),
    # SynthAction's hard preset (clutter, 10-40 frames of 64 x 64) with its own foundation model
    "hard": Preset({"preset": "hard", "seed": 0, "num_train": 6000, "num_val": 250, "num_test": 0},
                   "train/actionbench/synthaction/embedded_hard.yaml",
                   "eval/actionbench/synthaction/embedded_hard_backbone.yaml",
                   "eval/actionbench/synthaction/embedded_hard_patcher.yaml",
                   "kp_synth_hard.safetensors", "embedded_hard"),
}


def config_path(name: str) -> Path:
    path = CONFIG_ROOT / name
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the quickstart needs the repository's configs/ folder next to src/")
    return path


def ensure_data(data_root: str | Path, spec: dict[str, Any] = DATA, splits: Optional[Sequence[str]] = None) -> Path:
    """Generate SynthAction under ``data_root`` unless a complete copy with the same settings is there.

    ``splits`` (default: all) are the splits needed: an evaluation needs only ``val``, and a copy holding
    only some splits is completed when more are asked for.

    Never overwrites what the generator did not write: a folder with other files in the generator's
    places (e.g. real ActionBench annotations) raises :class:`OverwriteError` naming the file.
    """
    from paxion.data.synthetic import generate
    from paxion.data.synthetic.generate import MARKER, PRESETS as SYNTH_PRESETS, read_marker

    root = Path(data_root)
    meta = read_marker(root)
    wanted = dataclasses.asdict(SYNTH_PRESETS[spec.get("preset", "default")](**spec))
    if meta is not None and meta.get("complete", True):
        found = meta.get("config", {})
        have = meta.get("splits")  # None: every split
        same = all(found.get(k) == v for k, v in wanted.items() if k != "workers")
        if same and (have is None or (splits is not None and set(splits) <= set(have))):
            logger.info("SynthAction found in %s", root)
            return root
        if same:
            logger.info("%s holds SynthAction's %s split(s) only: writing the rest", root, ", ".join(have))
            generate(root, **spec)
            return root
        raise OverwriteError(
            f"{root / MARKER}: {root} holds SynthAction with other settings ({found}); remove it or set "
            "paths.cache_root"
        )
    if meta is not None:
        logger.info("%s: finishing an interrupted SynthAction generation", root)
    logger.info("writing SynthAction (%s%s) to %s", spec, f", splits {list(splits)}" if splits else "", root)
    generate(root, splits=splits, **spec)
    return root


def run_config(name: str, overrides: Sequence[str], output_dir: Path, train: bool) -> dict[str, Any]:
    """Load ``name`` with ``overrides``, then train (or evaluate) it into ``output_dir``; -> val metrics."""
    cfg = load_config(config_path(name), [*overrides, f"run.output_dir={output_dir}"])
    setup_logging(output_dir, dist.get_rank())
    from paxion.cli.train import config_keys_in_errors

    with config_keys_in_errors(cfg):
        task = registry.get("task", cfg.task.name)(cfg)
        runner = Runner(cfg, task)
    try:
        with config_keys_in_errors(cfg):
            results = runner.train() if train else runner.evaluate()
    finally:
        runner.close()
    return results["val"]


def export_patcher(ckpt_path: str | Path, out_path: str | Path, config: Optional[str] = None) -> Path:
    """The trainable weights (patcher, temp) of a training checkpoint -> safetensors (what the demo loads);
    ``config`` (default: the embedded default's) is recorded in the file's metadata."""
    from safetensors.torch import save_file

    from paxion.engine.checkpoint import load_checkpoint

    state = {k: v.contiguous() for k, v in load_checkpoint(ckpt_path)["model"].items()}
    out = Path(out_path)
    save_file(state, str(out), metadata={"config": config or TRAIN_CONFIG, "source": Path(ckpt_path).name})
    logger.info("exported %d patcher tensors to %s", len(state), out)
    return out


def format_table(rows: dict[str, dict[str, Any]]) -> str:
    """Markdown table: one row per model, AA / VR / OS accuracy in %."""
    head = "| model | " + " | ".join(short for _, short in PROBES) + " |"
    lines = [head, "|---|" + "---|" * len(PROBES)]
    for name, metrics in rows.items():
        cells = [f"{100 * metrics[f'{probe}_accuracy']:.1f}" for probe, _ in PROBES]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run(out_dir: Optional[Path], overrides: Sequence[str], eval_only: bool = False, data_only: bool = False,
        data_spec: Optional[dict[str, Any]] = None, preset: str = "default") -> dict[str, Any]:
    """The whole pipeline; returns ``{"output_dir", "rows", "seconds"}`` and writes ``summary.json``.

    ``preset`` picks the data, configs and shipped patcher (:data:`PRESETS`); ``data_spec`` replaces
    its SynthAction settings (tests use small sets).
    """
    from paxion.api import asset

    if preset not in PRESETS:
        raise ValueError(f"unknown quickstart preset '{preset}' (known: {', '.join(PRESETS)})")
    chosen = PRESETS[preset]
    data_spec = chosen.data if data_spec is None else data_spec
    start = time.perf_counter()
    cfg = load_config(config_path(chosen.train), list(overrides))
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    out = Path(out_dir) if out_dir else Path(cfg.paths.output_root) / chosen.folder / stamp
    if not data_only:  # before minutes of data generation
        _check_writable(out, "--output" if out_dir else "paths.output_root (or --output)")
    ensure_data(cfg.paths.data_root, data_spec, splits=("val",) if eval_only else None)  # eval: no train clips
    if data_only:
        return {"output_dir": None, "rows": {}, "seconds": time.perf_counter() - start}
    shared = [f"paths.{k}={v}" for k, v in cfg.paths.items()]  # same data and cache as the training config
    rows = {"backbone (frozen)": run_config(chosen.backbone, shared, out / "backbone", train=False)}
    if eval_only:
        patcher = [*shared, f"model.pretrained={asset(chosen.shipped_patcher)}"]
        rows["+ shipped patcher"] = run_config(chosen.patcher, patcher, out / "patcher", train=False)
    else:
        rows["+ Knowledge Patcher (VTC+DVDM)"] = run_config(chosen.train, overrides, out / "patcher", train=True)
    seconds = time.perf_counter() - start
    summary = {"output_dir": str(out), "rows": rows, "seconds": seconds, "data": data_spec, "preset": preset}
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary


def _check_writable(out: Path, option: str) -> None:
    try:
        prepare_output_dir(out)
    except ConfigError as exc:
        reason = str(exc).split("cannot write there", 1)[-1].strip(" ()")
        raise ConfigError(f"{option} {out}: cannot write there ({reason}); choose another folder with --output DIR") from None


def main(argv: Optional[Sequence[str]] = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description="Embedded default: SynthAction, frozen tiny model, KP, before/after.")
    parser.add_argument("--output", type=Path, default=None,
                        help="run folder (default: <output_root>/embedded_default/<time>)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--eval-only", action="store_true", help="score the shipped patcher instead of training one")
    mode.add_argument("--data-only", action="store_true", help="only make sure the SynthAction data exists")
    mode.add_argument("--compare", action="store_true",
                      help="probe a tiny SynthAction-trained model of every system, patch two, write the "
                           "comparison page (paxion.cli.compare)")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="default",
                        help="default: the embedded default; hard: SynthAction's cluttered preset with its own "
                             "foundation model (measured times: docs/results.md)")
    parser.add_argument("overrides", nargs="*", help="a.b=c overrides of the training config")
    args = parser.parse_args(argv)
    setup_logging(None, 0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model: extra threads cost more in synchronisation than they give (measured 5x)
    try:
        if args.compare:
            from paxion.cli import compare

            summary = compare.run(args.output, args.overrides)
        else:
            summary = run(args.output, args.overrides, args.eval_only, args.data_only, preset=args.preset)
    finally:
        torch.set_num_threads(threads)  # callers in the same process (tests, notebooks) keep their setting
    if summary["rows"]:
        clips = next(iter(summary["rows"].values()))["num_samples"]
        name = "" if args.preset == "default" or args.compare else f" ({args.preset} preset)"
        print(f"\nActionBench on SynthAction{name} val ({clips} clips, accuracy %, chance 50):")
        print(format_table(summary["rows"]))
        print(f"\noutput: {summary['output_dir']}   ({summary['seconds']:.0f} s)")
        report = summary["report"] if args.compare else f"python -m paxion.report {summary['output_dir']}"
        print(f"report: {report}")
    return summary


def cli(argv: Optional[Sequence[str]] = None) -> None:
    """Command line: user errors (a diverged loss, a refused overwrite, a bad value) end in one line, exit 1."""
    from paxion.cli.train import run_cli

    run_cli(main, argv)


if __name__ == "__main__":
    cli()
