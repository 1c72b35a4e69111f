"""The PyTorch training loop: seeded, early-stopped, with progress and per-epoch metrics.

Open-loop numbers (validation loss, RMS rudder error) are printed and plotted because
they show whether training converged. They do not say whether the model steers well:
the closed-loop table from the simulator does (see cli.py).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
import math
import os
import sys
import time
from typing import TextIO

import numpy as np

# OpenMP threads that wait by spinning starve each other (and everything else) on a busy
# machine: 159 against 7,900 windows/s measured on 2 shared cores. Set before torch loads
# its OpenMP runtime; a caller's own setting wins.
os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')
import torch  # noqa: E402 - after the OpenMP setting above

from autopilot_ros.features import INDEX, MIRROR_SIGNS, SCALES, WINDOW_LENGTH
from autopilot_ros.training.dataset import Dataset, DatasetError
from autopilot_ros.training.model import build_model, count_parameters


@dataclass(frozen=True)
class TrainConfig:
    arch: str = 'seed'
    residual: bool = True
    epochs: int = 40
    patience: int = 6  # epochs without a better validation loss before stopping
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-5
    seed: int = 0
    # One thread: the model is small and a batch is a few kB, so a second thread buys
    # little and costs a core that DDS, the simulator and the closed loop want (bench/).
    threads: int = 1
    # Half of every batch is mirrored port <-> starboard (features.MIRROR_SIGNS, rudder
    # negated): a boat's mirror image is a real boat, so this doubles the data honestly and
    # removes any bias towards the tack the recordings happened to sail on.
    mirror: bool = True
    # Rudder smoothness: weight of the penalty on rudder the model moves beyond what the
    # helmsman moved from one tick to the next (travel) and on reversals of its own
    # movement, computed on a share of each batch with its two previous ticks. Imitation
    # alone does not see travel: a model that dithers around the helmsman's rudder has a low
    # loss and wears the drive out.
    smooth_weight: float = 0.1
    # A sixteenth: each smoothness window brings two more through the model, and oneDNN's
    # LSTM has a cliff: on the development machine's CPU a forward pass of 304 windows takes
    # 22.6 ms and one of 312 takes 32.3 ms. 256 + 2 x 16 stays under it (10,300 windows/s);
    # a quarter (384) ran at 6,000. The term's expectation does not depend on the share.
    smooth_share: float = 0.0625

    def validate(self) -> None:
        if self.epochs < 1 or self.patience < 1 or self.batch_size < 2:
            raise ValueError('epochs and patience must be >= 1 and batch size >= 2')
        if not 0.0 < self.lr < 1.0:
            raise ValueError(f'learning rate {self.lr} not in (0, 1)')
        if not 0.0 <= self.smooth_weight <= 100.0:
            raise ValueError(f'smoothness weight {self.smooth_weight} not in [0, 100]')
        if not 0.0 < self.smooth_share <= 1.0:
            raise ValueError(f'smoothness share {self.smooth_share} not in (0, 1]')


@dataclass
class EpochMetrics:
    epoch: int
    train_loss: float
    val_loss: float
    val_rmse: float  # rudder units, model vs helmsman
    val_sign: float  # share of windows where the model turns the same way as the helmsman
    seconds: float


@dataclass
class History:
    epochs: list[EpochMetrics] = field(default_factory=list)
    best_epoch: int = 0
    pd_rmse: float = math.nan  # the PD-suggestion feature alone, vs the helmsman
    stopped_early: bool = False

    def as_dict(self) -> dict:
        return {'epochs': [asdict(e) for e in self.epochs], 'best_epoch': self.best_epoch,
                'pd_rmse': self.pd_rmse, 'stopped_early': self.stopped_early}


class Progress:
    """A one-line progress bar on a terminal, plain lines otherwise (CI logs)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()

    def bar(self, label: str, done: int, total: int, extra: str = '') -> None:
        if not self.tty:
            return
        width = 30
        filled = int(width * done / max(1, total))
        self.stream.write(f'\r{label} [{"#" * filled}{"." * (width - filled)}] '
                          f'{done}/{total} {extra}'.ljust(100)[:120])
        self.stream.flush()

    def line(self, text: str) -> None:
        if self.tty:
            self.stream.write('\r' + ' ' * 120 + '\r')
        self.stream.write(text + '\n')
        self.stream.flush()


def _batches(n: int, size: int, rng: np.random.Generator | None) -> list[np.ndarray]:
    order = rng.permutation(n) if rng is not None else np.arange(n)
    return [order[i:i + size] for i in range(0, n, size)]


class _Windows:
    """Gathers [B, 20, 25] batches from a Dataset's rows without materialising them all."""

    def __init__(self, data: Dataset) -> None:
        self.rows = torch.from_numpy(np.ascontiguousarray(data.rows, dtype=np.float32))
        self.ends = torch.from_numpy(data.ends)
        self.labels = torch.from_numpy(data.labels.astype(np.float32)).unsqueeze(1)
        self.offsets = torch.arange(-WINDOW_LENGTH + 1, 1)
        self.prev = previous_tick(data.ends)
        # Windows whose two previous ticks were kept too: the smoothness term's candidates.
        self.has_history = self.prev >= 0
        self.has_history[self.has_history] = self.prev[self.prev[self.has_history]] >= 0

    def batch(self, index: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.from_numpy(index)
        return self.rows[self.ends[idx, None] + self.offsets], self.labels[idx]


def previous_tick(ends: np.ndarray) -> np.ndarray:
    """Per window, the index of the window one tick earlier in the same recording, or -1.

    A window ends at a row; the row before it belongs to the same recording whenever a kept
    window ends there (a recording's first 19 rows never end a window, so no window of one
    recording is ever taken for the tick before another's).
    """
    order = np.argsort(ends, kind='stable')
    ordered = ends[order]
    pos = np.clip(np.searchsorted(ordered, ends - 1), 0, max(len(ends) - 1, 0))
    found = (ordered[pos] == ends - 1) if len(ends) else np.zeros(0, bool)
    return np.where(found, order[pos], -1)


def smoothness_penalty(now: torch.Tensor, before: torch.Tensor, before2: torch.Tensor,
                       label_now: torch.Tensor, label_before: torch.Tensor) -> torch.Tensor:
    """Travel beyond the helmsman's from one tick to the next, plus reversals.

    Travel: mean of max(0, |model step| - |helmsman step|), rudder units per tick.
    Reversals: mean of max(0, -step * previous step): the rudder going back on itself.
    """
    step, step_before = now - before, before - before2
    travel = torch.relu(step.abs() - (label_now - label_before).abs())
    reversal = torch.relu(-step * step_before)
    return travel.mean() + 10.0 * reversal.mean()


def evaluate_open_loop(model: torch.nn.Module, data: Dataset,
                       batch_size: int = 1024) -> tuple[float, float, float]:
    """(MSE loss, RMS error, same-sign share) of the model against the labels."""
    model.eval()
    windows = _Windows(data)
    preds = []
    with torch.no_grad():
        for index in _batches(len(data), batch_size, None):
            x, _ = windows.batch(index)
            preds.append(model(x))
    pred = torch.cat(preds).squeeze(1).numpy() if preds else np.zeros(0)
    err = pred - data.labels
    mse = float(np.mean(err ** 2)) if len(err) else math.nan
    sign = float(np.mean(np.sign(pred) == np.sign(data.labels))) if len(err) else math.nan
    return mse, math.sqrt(mse), sign


def pd_baseline_rmse(data: Dataset) -> float:
    """How well the PD-suggestion feature alone predicts the helmsman (context for RMSE)."""
    i = INDEX['pd_suggestion']
    pd = data.rows[data.ends, i] / SCALES[i]
    return float(np.sqrt(np.mean((pd - data.labels) ** 2))) if len(data) else math.nan


def train_model(train: Dataset, val: Dataset, config: TrainConfig,
                progress: Progress | None = None,
                init_state: dict | None = None) -> tuple[torch.nn.Module, History]:
    """Train from scratch (or from init_state); returns the best-validation model."""
    config.validate()
    if len(train) < config.batch_size or len(val) == 0:
        raise DatasetError(f'too little data: {len(train)} training and {len(val)} validation '
                         f'windows (need at least {config.batch_size} to train on)')
    progress = progress or Progress()
    torch.manual_seed(config.seed)
    torch.set_num_threads(config.threads)
    rng = np.random.default_rng(config.seed)
    model = build_model(config.arch, config.residual)
    if init_state is not None:
        model.load_state_dict(init_state)
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.lr,
                                  weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimiser, factor=0.5, patience=2)
    loss_fn = torch.nn.MSELoss()
    windows = _Windows(train)
    history = History(pd_rmse=pd_baseline_rmse(val))
    best_loss, best_state = math.inf, None
    progress.line(f'training {config.arch}{" residual" if config.residual else ""} model '
                  f'({count_parameters(model):,} parameters) on {len(train):,} windows, '
                  f'validating on {len(val):,}; PD suggestion alone: val RMSE '
                  f'{history.pd_rmse:.4f}')
    for epoch in range(1, config.epochs + 1):
        start = time.perf_counter()
        model.train()
        total, count = 0.0, 0
        batches = [b for b in _batches(len(train), config.batch_size, rng) if len(b) > 1]
        for i, index in enumerate(batches):
            optimiser.zero_grad(set_to_none=True)
            loss = _batch_loss(model, windows, index, config, rng, loss_fn)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimiser.step()
            total += float(loss.detach()) * len(index)
            count += len(index)
            if i % 10 == 0:
                progress.bar(f'epoch {epoch}', i + 1, len(batches), f'loss {total / count:.5f}')
        val_loss, val_rmse, val_sign = evaluate_open_loop(model, val)
        scheduler.step(val_loss)
        m = EpochMetrics(epoch, total / max(1, count), val_loss, val_rmse, val_sign,
                         time.perf_counter() - start)
        history.epochs.append(m)
        better = val_loss < best_loss
        if better:
            best_loss, history.best_epoch = val_loss, epoch
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        progress.line(f'epoch {epoch:3d}  train {m.train_loss:.5f}  val {m.val_loss:.5f}  '
                      f'val RMSE {m.val_rmse:.4f}  same sign {100 * m.val_sign:.1f}%  '
                      f'{m.seconds:.1f} s{"  *" if better else ""}')
        if epoch - history.best_epoch >= config.patience:
            history.stopped_early = epoch < config.epochs
            progress.line(f'stopping: no better validation loss for {config.patience} epochs')
            break
    model.load_state_dict(best_state)
    model.eval()
    return model, history


def _batch_loss(model: torch.nn.Module, windows: _Windows, index: np.ndarray,
                config: TrainConfig, rng: np.random.Generator,
                loss_fn: torch.nn.Module) -> torch.Tensor:
    """Imitation loss on the batch (half of it mirrored), plus the smoothness penalty.

    The smoothness windows (those of the batch's first `smooth_share` whose two previous ticks
    were kept) and their previous ticks go through the model in the same forward pass as
    the batch, mirrored as their batch entry is, so BatchNorm sees one batch.
    """
    n = len(index)
    head = index[:int(n * config.smooth_share)] if config.smooth_weight > 0.0 else index[:0]
    keep = windows.has_history[head]
    before = windows.prev[head[keep]]
    m = len(before)
    x, y = windows.batch(np.concatenate([index, before, windows.prev[before]]))
    if config.mirror:
        flip = rng.random(n) < 0.5
        flip_smooth = flip[:len(head)][keep]
        mirrored = torch.from_numpy(np.concatenate([flip, flip_smooth, flip_smooth]))
        x = torch.where(mirrored[:, None, None], x * torch.from_numpy(MIRROR_SIGNS), x)
        y = torch.where(mirrored[:, None], -y, y)
    pred = model(x)
    loss = loss_fn(pred[:n], y[:n])
    if m:
        at = torch.from_numpy(np.nonzero(keep)[0])
        loss = loss + config.smooth_weight * smoothness_penalty(
            pred[at], pred[n:n + m], pred[n + m:], y[at], y[n:n + m])
    return loss


def plot_curves(history: History, path: str, title: str = '') -> str:
    """Training and validation loss per epoch, and validation RMSE against PD alone."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    ep = [e.epoch for e in history.epochs]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.8))
    ax1.semilogy(ep, [e.train_loss for e in history.epochs], label='train')
    ax1.semilogy(ep, [e.val_loss for e in history.epochs], label='validation')
    ax1.axvline(history.best_epoch, color='grey', ls=':', label='best')
    ax1.set_xlabel('epoch')
    ax1.set_ylabel('MSE (rudder units^2)')
    ax1.legend()
    ax2.plot(ep, [e.val_rmse for e in history.epochs], label='model')
    ax2.axhline(history.pd_rmse, color='k', ls='--', label='PD suggestion alone')
    ax2.set_xlabel('epoch')
    ax2.set_ylabel('validation RMSE vs helmsman')
    ax2.legend()
    fig.suptitle(title or 'training curves (open loop: the closed-loop table is the verdict)')
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def save_checkpoint(path: str, model: torch.nn.Module, config: TrainConfig,
                    extra: dict | None = None) -> None:
    """Weights and plain-data settings only, so torch.load(weights_only=True) reads it."""
    torch.save({'state_dict': model.state_dict(), 'train_config': asdict(config),
                'extra': extra or {}}, path)


def load_checkpoint(path: str) -> tuple[torch.nn.Module, dict]:
    """The model of a checkpoint written by save_checkpoint, loaded without unpickling."""
    blob = torch.load(path, map_location='cpu', weights_only=True)
    cfg = blob['train_config']
    model = build_model(cfg['arch'], cfg['residual'])
    model.load_state_dict(blob['state_dict'])
    model.eval()
    return model, blob
