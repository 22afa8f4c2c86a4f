"""The one training and evaluation loop, for any registered task.

The task supplies the model, datasets, ``train_step``, ``eval_step`` and ``compute_metrics``; the
runner owns devices, precision, distribution, checkpoints, resume and logging. See ``docs/DESIGN.md``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from pathlib import Path
from typing import Any, Optional, Sequence

import torch
from omegaconf import DictConfig
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import ConcatDataset, Dataset

from paxion.engine import checkpoint as ckpt_lib
from paxion.engine import dist
from paxion.config import RunConfig, prepare_output_dir, save_config, section
from paxion.data.skipped import SkippedVideos, missing_entries, unique_paths
from paxion.engine.logger import MetricLogger, progress
from paxion.engine.optim import build_optimizer, build_schedule
from paxion.engine.outputs import concat_outputs, unique_by_idx
from paxion.engine.state import TrainState, resume_from, resume_path, save_checkpoint, set_seed
from paxion.engine.guards import (
    NonFiniteScoresError, TrainGuard, TrainingInterrupted, check_scores, ignore_stop_signals, may_become_best)
from paxion.engine.samplers import build_eval_loader, build_train_loader
from paxion.tasks.base import BaseTask, Batch
from paxion.techniques import build_techniques

logger = logging.getLogger(__name__)

AMP_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def log_trainable_parameters(model: nn.Module) -> None:
    """Names of the trainable parameters, then trainable and total counts in millions (rank 0)."""
    if not dist.is_main():
        return
    trainable = [(n, p.numel()) for n, p in model.named_parameters() if p.requires_grad]
    for name, _ in trainable:
        logger.info("trainable: %s", name)
    total = sum(p.numel() for p in model.parameters())
    logger.info("trainable parameters: %.3fM of %.3fM", sum(n for _, n in trainable) / 1e6, total / 1e6)


class Runner:
    def __init__(self, cfg: DictConfig, task: BaseTask, device: Optional[torch.device] = None) -> None:
        self.cfg = cfg
        self.run: RunConfig = section(cfg, "run")
        self.task = task
        self.device = device or dist.init_distributed(self.run.device, self.run.dist_timeout_s)
        self.output_dir = Path(self.run.output_dir)
        if dist.is_main():
            prepare_output_dir(self.output_dir)
            for stale in ckpt_lib.remove_stale_temp_files(self.output_dir):
                logger.warning("removed %s, left by an interrupted checkpoint write", stale)
            save_config(cfg, self.output_dir)
        set_seed(self.run.seed)  # the same seed on every rank: identical initial weights everywhere
        self.model = task.build_model().to(self.device)
        self.techniques = build_techniques(cfg, self.model)  # `techniques:` section (IWO, weight patching, SWA)
        set_seed(self.run.seed + dist.get_rank())
        self.amp_dtype = AMP_DTYPES[self.run.precision]
        self.state = TrainState()
        self.metrics = MetricLogger(self.output_dir, self.run, cfg, enabled=dist.is_main())
        self._skipped: list[dict[str, Any]] = []  # this rank's unreported skipped videos
        self._skipped_total = SkippedVideos()  # all ranks, one entry per (split, file); rank 0 only
        self._eval_loaders: dict[str, Any] = {}
        self._epoch_loss = torch.zeros(2, device=self.device)  # running (sum, count) of finite training losses
        self._guard = TrainGuard(self.run.max_nonfinite_steps, self.device)  # catches signals while train() runs

    # ------------------------------------------------------------------ public entry points

    def train(self) -> dict[str, dict[str, Any]]:
        """Train ``run.max_epoch`` epochs (resuming if asked), then score test and valid splits with best weights.

        SIGINT/SIGTERM save ``latest.pth`` at the next step boundary and raise :class:`TrainingInterrupted`;
        a non-finite loss raises ``NonFiniteLossError`` (after ``run.max_nonfinite_steps`` skipped steps).
        """
        with self._guard:
            return self._train()

    def _train(self) -> dict[str, dict[str, Any]]:
        run = self.run
        eval_splits = list(dict.fromkeys(run.valid_splits + run.test_splits))
        datasets = self.task.build_datasets(self.model, list(dict.fromkeys(run.train_splits + eval_splits)))
        train_set = self._train_dataset(datasets)
        loader, sampler = build_train_loader(train_set, run, self.task.collate_fn(), self.device)
        loader.worker_init_fn = ignore_stop_signals(loader.worker_init_fn)  # only the main process stops
        iters = sampler.num_samples // run.batch_size_train
        if run.max_iters_per_epoch is not None:
            iters = min(iters, run.max_iters_per_epoch)
        optimizer = build_optimizer(self.model, run)
        schedule = build_schedule(optimizer, run, iters)
        scaler = torch.amp.GradScaler(self.device.type, enabled=run.precision == "fp16")
        parts = {"optimizer": optimizer, "scheduler": schedule, "scaler": scaler}
        rng = self._restore(parts)
        model = self._wrap_ddp()
        if rng is not None:  # last, so that building everything above cannot shift the streams
            ckpt_lib.set_rng_state(rng)
        for epoch in range(self.state.epoch, run.max_epoch):
            start = self.state.iter_in_epoch
            sampler.set_epoch(epoch, start * run.batch_size_train)
            self._train_epoch(model, loader, epoch, start, iters, parts)
            self._finish_epoch(epoch, datasets, parts)
            self.techniques.on_epoch_end(self.model, epoch)  # after the epoch's checkpoints: they keep raw weights
        return self._final_evaluation(datasets)

    def evaluate(self, splits: Optional[Sequence[str]] = None, epoch: Any = "eval") -> dict[str, dict[str, Any]]:
        """Evaluation only: load ``run.load_ckpt_path`` if set, score ``splits`` (default test, then valid)."""
        if self.run.load_ckpt_path:
            self.load_weights(self.run.load_ckpt_path)
        splits = (
            list(splits) if splits is not None else list(dict.fromkeys(self.run.test_splits + self.run.valid_splits))
        )
        datasets = self.task.build_datasets(self.model, splits)
        results = {split: self._evaluate_and_write(split, datasets[split], epoch) for split in splits}
        check_scores(results, self.output_dir / "result")
        return results

    def load_weights(self, path: str | Path) -> None:
        ckpt = ckpt_lib.load_checkpoint(path)
        ckpt_lib.load_model_weights(self.model, ckpt["model"], source=str(path))
        logger.info("loaded weights from %s", path)

    def close(self) -> None:
        self.metrics.close()

    # ------------------------------------------------------------------ training

    def _train_dataset(self, datasets: dict[str, Dataset]) -> Dataset:
        missing = [s for s in self.run.train_splits if s not in datasets]
        if missing or not self.run.train_splits:
            raise ValueError(f"run.train_splits {self.run.train_splits}: task built no dataset for {missing}")
        parts = [datasets[s] for s in self.run.train_splits]
        return parts[0] if len(parts) == 1 else ConcatDataset(parts)

    def _wrap_ddp(self) -> nn.Module:
        if not dist.is_dist():
            return self.model
        # DDP registers hooks only on parameters with requires_grad: frozen parts cost no communication
        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(
            self.model,
            device_ids=ids,
            find_unused_parameters=self.run.ddp_find_unused_parameters,
            gradient_as_bucket_view=True,  # grads alias the buckets: one copy less per step
        )

    def _autocast(self) -> contextlib.AbstractContextManager:
        return torch.autocast(
            self.device.type, dtype=self.amp_dtype or torch.bfloat16, enabled=self.amp_dtype is not None
        )

    def _to_device(self, batch: Batch) -> Batch:
        """Tensors to the device (asynchronously from pinned memory); strings and lists stay as they are."""
        self._skipped.extend(batch.get("skipped_videos") or [])
        return {k: v.to(self.device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}

    def _train_epoch(self, model: nn.Module, loader: Any, epoch: int, start: int, iters: int, parts: dict) -> None:
        run = self.run
        model.train()
        # finite losses only: (sum, count) of the epoch, restored when resuming mid-epoch
        self._epoch_loss = torch.tensor(self.state.epoch_loss if start else (0.0, 0.0), device=self.device)
        micro: list[tuple[torch.Tensor, dict]] = []  # (loss, logs) of the micro-batches of this update
        window_start, tic = start, time.perf_counter()
        step = self.techniques.wrap_train_step(
            self.task.train_step, lambda extra: parts["scaler"].scale(extra / run.accum_grad_iters).backward()
        )
        bar = progress(
            zip(range(start, iters), loader), iters, f"epoch {epoch}", dist.is_main() and run.progress_bar, start
        )
        for it, batch in bar:
            lr = parts["scheduler"].step(epoch, it)
            batch = self._to_device(batch)
            update = (it + 1) % run.accum_grad_iters == 0 or it + 1 == iters
            no_sync = (
                model.no_sync()
                if isinstance(model, DistributedDataParallel) and not update
                else contextlib.nullcontext()
            )
            with no_sync:
                with self._autocast():
                    loss, logs = step(model, batch)
                parts["scaler"].scale(loss / run.accum_grad_iters).backward()
            loss = loss.detach()
            finite = torch.isfinite(loss)
            self._epoch_loss += torch.stack([torch.where(finite, loss.float(), 0.0), finite.float()])
            micro.append((loss, logs))
            if update:
                self._update(epoch, it, iters, micro, parts)
                micro = []
            if (it + 1) % run.log_freq == 0 or it + 1 == iters:
                rate = (it + 1 - window_start) / max(time.perf_counter() - tic, 1e-9)
                mean_loss = self._epoch_loss[0] / self._epoch_loss[1].clamp(min=1)
                self._log_train(epoch, it, lr, rate, mean_loss, logs, parts["scaler"])
                window_start, tic = it + 1, time.perf_counter()

    def _update(self, epoch: int, it: int, iters: int, micro: list[tuple[torch.Tensor, dict]], parts: dict) -> None:
        """Optimizer step unless a loss of ``micro`` is non-finite; then save/stop as asked.

        One host sync per update: the non-finite and stop flags, agreed by every rank.
        """
        run, optimizer, scaler = self.run, parts["optimizer"], parts["scaler"]
        grad_norm = None
        if run.grad_clip_norm is not None:
            scaler.unscale_(optimizer)
            trainable = [p for p in self.model.parameters() if p.requires_grad]
            grad_norm = torch.nn.utils.clip_grad_norm_(trainable, run.grad_clip_norm)
        check_norm = grad_norm if not scaler.is_enabled() else None  # fp16 overflow is the scaler's business
        skip, stop = self._guard.agree([loss for loss, _ in micro], check_norm)
        if skip:
            self.state.nonfinite_steps += 1
            where = f"epoch {epoch}, iteration {it + 1} of {iters}, global step {self.state.global_step}"
            self._guard.check_budget(self.state.nonfinite_steps, where, micro, grad_norm)
            if scaler.is_enabled():  # keep the scaler's bookkeeping whole and let it back off
                if grad_norm is None:
                    scaler.unscale_(optimizer)
                scaler.update()
        else:
            scaler.step(optimizer)
            scaler.update()
            self.state.global_step += 1
        optimizer.zero_grad(set_to_none=True)
        self.state.iter_in_epoch = it + 1
        due = not skip and run.save_every_n_steps > 0 and self.state.global_step % run.save_every_n_steps == 0
        if due or stop:
            self._save("latest.pth", parts)
        if stop:
            raise self._interrupted()

    def _interrupted(self) -> TrainingInterrupted:
        state = self.state
        where = f"epoch {state.epoch}, iteration {state.iter_in_epoch} (global step {state.global_step})"
        return self._guard.interrupted(where, self.output_dir / "latest.pth")

    def _log_train(
        self, epoch: int, it: int, lr: float, rate: float, mean_loss: torch.Tensor, logs: dict, scaler: Any
    ) -> None:
        # host syncs of the loop: this one every run.log_freq iterations, and TrainGuard.agree per update
        values = {k: dist.all_reduce_mean(v.detach().float()).item() for k, v in logs.items() if torch.is_tensor(v)}
        record = {
            "epoch": epoch,
            "iter": it + 1,
            "lr": lr,
            "it_per_s": rate,
            "mean_loss": dist.all_reduce_mean(mean_loss).item(),
            **values,
        }
        if scaler.is_enabled():
            record["grad_scale"] = scaler.get_scale()
        self.metrics.log(record, self.state.global_step, "train")
        logger.info(
            "train %s", " ".join(f"{k}={v:.5g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items())
        )

    def _finish_epoch(self, epoch: int, datasets: dict[str, Dataset], parts: dict) -> None:
        run, state = self.run, self.state
        state.epoch, state.iter_in_epoch = epoch + 1, 0
        self._report_skipped(f"train epoch {epoch}", [datasets[s] for s in self.run.train_splits],
                             ",".join(self.run.train_splits))
        if run.valid_splits:
            metrics = {s: self._evaluate_split(s, datasets[s], epoch) for s in run.valid_splits}
            value = self._agg_metric(metrics[run.valid_splits[0]], run.valid_splits[0])
            better = state.best_metric is None or (
                value > state.best_metric if run.metric_mode == "max" else value < state.best_metric
            )
            if better and may_become_best(value, self.model, run.agg_metric, epoch):
                state.best_metric, state.best_epoch = value, epoch
                self._save("best.pth", parts)
                logger.info("new best %s=%.6g at epoch %d", run.agg_metric, value, epoch)
        if run.save_after_every_epoch:
            self._save(f"checkpoint_{epoch}.pth", parts)
        self._save("latest.pth", parts)
        if self._guard.stop_requested():
            raise self._interrupted()

    def _agg_metric(self, metrics: dict[str, Any], split: str) -> float:
        if self.run.agg_metric not in metrics:
            raise KeyError(f"run.agg_metric '{self.run.agg_metric}' not among the {split} metrics {sorted(metrics)}")
        return float(metrics[self.run.agg_metric])

    def _final_evaluation(self, datasets: dict[str, Dataset]) -> dict[str, dict[str, Any]]:
        best = self.output_dir / "best.pth"
        epoch: Any = self.state.epoch - 1
        if self.run.valid_splits and best.is_file():
            self.load_weights(best)
            epoch = self.state.best_epoch
        splits = list(dict.fromkeys(self.run.test_splits + self.run.valid_splits))
        results = {}
        for split in splits:
            if self._guard.stop_requested():  # latest.pth of the last epoch is on disk: a resume redoes this part
                raise self._interrupted()
            results[split] = self._evaluate_and_write(split, datasets[split], epoch)
        check_scores(results, self.output_dir / "result")
        if self.run.valid_splits and self.state.best_metric is None:
            raise NonFiniteScoresError(
                f"no epoch had a finite {self.run.agg_metric} on '{self.run.valid_splits[0]}': training diverged "
                f"(run.max_nonfinite_steps={self.run.max_nonfinite_steps} skipped steps let it go on); the scores in "
                f"{self.output_dir / 'result'} use the last weights and cannot be trusted"
            )
        return results

    # ------------------------------------------------------------------ checkpoints

    def _save(self, name: str, parts: dict) -> None:
        mid_epoch = self.state.iter_in_epoch > 0
        self.state.epoch_loss = tuple(self._epoch_loss.tolist()) if mid_epoch else (0.0, 0.0)
        save_checkpoint(self.output_dir / name, self.model, self.cfg, self.run, self.state, parts, self.metrics)

    def _restore(self, parts: dict) -> Optional[dict]:
        """Resume (weights, optimizer, scaler, schedule, counters) or load start weights.

        Returns this rank's saved RNG state, to be set once everything is built.
        """
        path = resume_path(self.run, self.output_dir)
        if path is None:
            if self.run.load_ckpt_path:
                self.load_weights(self.run.load_ckpt_path)
            return None
        self.state, rng = resume_from(path, self.model, parts, self.run, self.output_dir, self.metrics)
        return rng

    # ------------------------------------------------------------------ evaluation

    @torch.no_grad()
    def _evaluate_split(self, split: str, dataset: Dataset, epoch: Any) -> dict[str, Any]:
        """Score every sample of ``split`` exactly once across ranks; every rank returns the same metrics."""
        cached = self._eval_loaders.get(split)
        if cached is None or cached.dataset is not dataset:  # reuse: persistent workers survive across epochs
            cached = self._eval_loaders[split] = build_eval_loader(
                dataset, self.run, self.task.collate_fn(), self.device
            )
            cached.worker_init_fn = ignore_stop_signals(cached.worker_init_fn)  # a stop waits for the epoch's end
        loader = cached
        self.model.eval()
        chunks: list[dict[str, Any]] = []
        for batch in progress(loader, len(loader), f"eval {split}", dist.is_main() and self.run.progress_bar):
            with self._autocast():
                chunks.append(self.task.eval_step(self.model, self._to_device(batch)))
        local = concat_outputs(chunks, split)
        gathered = dist.all_gather_object(local)
        metrics = None
        if dist.is_main():
            outputs = unique_by_idx([g for g in gathered if g is not None], split)
            metrics = self.task.compute_metrics(outputs, split, self.output_dir)
        metrics = dict(dist.broadcast_object(metrics))
        metrics.update(self._report_skipped(f"eval {split}", [dataset], split))
        self.metrics.log({"split": split, "epoch": epoch, **metrics}, self.state.global_step, split)
        logger.info("%s (epoch %s): %s", split, epoch, json.dumps(metrics, default=str))
        return metrics

    def _evaluate_and_write(self, split: str, dataset: Dataset, epoch: Any) -> dict[str, Any]:
        with self.techniques.eval_context(self.model):
            metrics = self._evaluate_split(split, dataset, epoch)
        if dist.is_main():
            out = self.output_dir / "result" / f"{split}_output.json"
            out.parent.mkdir(parents=True, exist_ok=True)
            record = {"task": self.cfg.task.name, **metrics, "epoch": epoch, "split": split}
            out.write_text(json.dumps(record, indent=2, default=str))
        return metrics

    def _report_skipped(self, phase: str, datasets: Sequence[Dataset], split: str) -> dict[str, int]:
        """Gather the unreadable videos met since the last report and the files ``datasets`` lack; warn and
        rewrite skipped_videos.json. -> ``skipped_videos`` (distinct unreadable files) and ``missing_videos``."""
        new = [entry for part in dist.all_gather_object(self._skipped) for entry in part]
        self._skipped = []
        missing = missing_entries(datasets)
        counts = {"skipped_videos": len(unique_paths(new)), "missing_videos": len(unique_paths(missing))}
        if (new or missing) and dist.is_main():
            self._skipped_total.add(new, phase, "unreadable", split)
            self._skipped_total.add(missing, phase, "missing", split)
            if new:
                logger.warning("%s: %d unreadable videos were replaced (each counted once; see skipped_videos.json)",
                               phase, counts["skipped_videos"])
            (self.output_dir / "skipped_videos.json").write_text(
                json.dumps(self._skipped_total.to_list(), indent=2, default=str)
            )
        return counts
