"""The `features` strategy: run the frozen body once, cache pooled features, train only the head on them."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import torch
from tqdm.auto import tqdm

from visionheads.data.sources import Source
from visionheads.engine import epoch_line, improves, log_row, run_loggers, save_last_and_best
from visionheads.errors import ConfigError
from visionheads.tasks._checkpoint import read_checkpoint
from visionheads.tasks._inference import inference_device
from visionheads.tasks._loading import task_loader
from visionheads.tasks.history import History

if TYPE_CHECKING:
    from visionheads.tasks.base import Task


@torch.inference_mode()
def cache_features(task: Task, source: Source, batch_size: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Pooled body features (N, C) of `source` under the eval transform, and its targets."""
    loader = task_loader(task, source, train=False, batch_size=batch_size, num_workers=0)
    device = inference_device()
    task.to(device).eval()
    features, targets = [], []
    for batch in tqdm(loader, desc=f"features of {source.description}", disable=not sys.stderr.isatty()):
        features.append(task.head.pooled(task.backbone(batch["image"].to(device))).float().cpu())
        targets.append({k: v for k, v in batch.items() if k != "image"})
    joined = {key: torch.cat([t[key] for t in targets]) for key in targets[0]}
    return torch.cat(features), joined


def fit_on_features(
    task: Task,
    train: Source,
    val: Source | None,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    plots: bool,
) -> History:
    """Train `task.head.classifier` on cached features (the body never changes); writes to `task.run_dir`."""
    if not (hasattr(task.head, "pooled") and hasattr(task.head, "classifier")):
        raise ConfigError(
            f"strategy='features' needs a pooled head (e.g. linear, mlp), not {task.head_name!r}; "
            "strategy='freeze' also trains the head alone"
        )
    task.set_body_frozen(True)
    train_x, train_y = cache_features(task, train, batch_size)
    val_data = cache_features(task, val, batch_size) if val is not None else None
    classifier = task.head.classifier.cpu()
    task.cpu()
    optimizer = torch.optim.AdamW(classifier.parameters(), lr=lr, weight_decay=weight_decay)
    steps_per_epoch = max(1, len(train_x) // batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, total_steps=epochs * steps_per_epoch)
    generator = torch.Generator().manual_seed(task.seed)
    monitor, mode = task.monitor if val_data is not None else ("train_loss", "min")
    loggers = run_loggers(task.run_dir)
    rows: list[dict[str, Any]] = []
    best, best_epoch = None, None
    for epoch in range(epochs):
        classifier.train()
        order = torch.randperm(len(train_x), generator=generator)
        total = 0.0
        for step in range(steps_per_epoch):
            index = order[step * batch_size : (step + 1) * batch_size]
            loss = task.compute_loss(classifier(train_x[index]), {k: v[index] for k, v in train_y.items()})
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            total += float(loss.detach())
        row: dict[str, Any] = {"epoch": epoch, "train_loss": total / steps_per_epoch}
        if val_data is not None:
            classifier.eval()
            with torch.no_grad():
                outputs = classifier(val_data[0])
                metrics = task.new_metrics()
                metrics.update(outputs, val_data[1])
                row["val_loss"] = float(task.compute_loss(outputs, val_data[1]))
                row |= {f"val_{key}": value for key, value in metrics.compute().items()}
            task.last_evaluation = metrics
        rows.append(row)
        log_row(loggers, row)
        improved = improves(row[monitor], best, mode)
        if improved:
            best, best_epoch = row[monitor], epoch
        save_last_and_best(task, task.run_dir, improved=improved)
        print(epoch_line(row, epochs), file=sys.stderr)
    for logger in loggers:
        logger.finalize("success")
    task.set_body_frozen(False)
    if val_data is not None and best_epoch != epochs - 1:
        task.load_state_dict(read_checkpoint(task.run_dir / "best.pt")[1])
    task.history_rows = rows
    task.history = History(rows, task.run_dir, best_epoch, monitor)
    task.last_evaluated = val
    if plots:
        task.plot(task.run_dir)
    return task.history
