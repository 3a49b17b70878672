"""The training loop, the same for every family: seeded, length-bucketed batches, a progress
bar, validation after each epoch, and the weights of the best validation epoch kept.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn
from tqdm import tqdm

from training.data import Examples
from training.families import Encoded, Family, Optimisation
from training.settings import Device

logger = logging.getLogger(__name__)

BUCKET_BATCHES = 50  # batches per length-sorted chunk: less padding, still well shuffled
PREDICT_BATCH = 64


@dataclass(frozen=True)
class EpochResult:
    epoch: int
    train_loss: float
    val_loss: float
    val_accuracy: float
    seconds: float


@dataclass
class Fitted:
    model: nn.Module
    history: list[EpochResult]
    best_epoch: int
    seconds: float
    device: str
    validation_probabilities: NDArray[np.float32]


def resolve_device(name: Device) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device cuda was asked for, but torch sees no GPU")
    return torch.device(name)


@contextmanager
def cpu_threads(threads: int | None) -> Iterator[None]:
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def shuffled_batches(
    lengths: NDArray[np.int64], batch_size: int, rng: np.random.Generator
) -> list[NDArray[np.int64]]:
    """Shuffle, sort chunks of ~50 batches by length, cut into batches, shuffle the batches."""
    order = rng.permutation(len(lengths))
    chunk = batch_size * BUCKET_BATCHES
    batches: list[NDArray[np.int64]] = []
    for start in range(0, len(order), chunk):
        part = order[start : start + chunk]
        part = part[np.argsort(lengths[part], kind="stable")]
        batches.extend(part[i : i + batch_size] for i in range(0, len(part), batch_size))
    rng.shuffle(batches)
    return batches


def predict(
    model: nn.Module,
    encoded: Encoded,
    *,
    device: torch.device,
    bf16: bool = False,
    batch_size: int = PREDICT_BATCH,
) -> NDArray[np.float32]:
    """Positive-class probabilities in the original order (batched by length for speed)."""
    order = np.argsort(encoded.lengths(), kind="stable")
    out = np.zeros(len(encoded), dtype=np.float32)
    model.eval()
    with torch.inference_mode(), _autocast(device, bf16):
        for start in range(0, len(order), batch_size):
            index = order[start : start + batch_size]
            batch = {k: v.to(device) for k, v in encoded.batch(index.tolist()).items()}
            out[index] = torch.sigmoid(model(**batch).float()).cpu().numpy()
    return out


def fit(
    family: Family,
    train: Examples,
    validation: Examples,
    *,
    seed: int,
    device: torch.device,
    progress: bool = True,
    on_epoch: Callable[[EpochResult], None] | None = None,
) -> Fitted:
    started = time.perf_counter()
    # Adagrad builds sparse gradients; say explicitly that torch need not re-check them.
    torch.sparse.check_sparse_tensor_invariants.disable()  # type: ignore[no-untyped-call]
    with cpu_threads(family.threads):
        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        model = family.build().to(device)
        train_set = family.encode(train.texts)
        val_set = family.encode(validation.texts)
        lengths = train_set.lengths()
        labels = torch.as_tensor(train.labels, dtype=torch.float32)
        steps_per_epoch = -(-len(train_set) // family.batch_size)
        optimisation = family.optimisation(model, steps_per_epoch * family.epochs)
        history: list[EpochResult] = []
        best: tuple[float, int, dict[str, torch.Tensor], NDArray[np.float32]] | None = None
        logger.info(
            "training %s on %d reviews (%d validation) on %s, %d epochs",
            family.name,
            len(train),
            len(validation),
            device,
            family.epochs,
        )
        for epoch in range(1, family.epochs + 1):
            epoch_started = time.perf_counter()
            batches = shuffled_batches(lengths, family.batch_size, rng)
            description = f"{family.name} epoch {epoch}/{family.epochs}" if progress else None
            loss = _train_epoch(
                model, train_set, labels, batches, family, optimisation, device, description
            )
            probabilities = predict(model, val_set, device=device, bf16=family.bf16)
            val_loss = _bce(validation.labels, probabilities)
            result = EpochResult(
                epoch=epoch,
                train_loss=loss,
                val_loss=val_loss,
                val_accuracy=float(((probabilities >= 0.5) == validation.labels).mean()),
                seconds=time.perf_counter() - epoch_started,
            )
            history.append(result)
            logger.info(
                "epoch %d: train loss %.4f, validation loss %.4f, accuracy %.4f (%.1fs)",
                epoch,
                result.train_loss,
                result.val_loss,
                result.val_accuracy,
                result.seconds,
            )
            if on_epoch is not None:
                on_epoch(result)
            if best is None or val_loss < best[0]:
                state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                best = (val_loss, epoch, state, probabilities)
        if best is None:
            raise ValueError("training needs at least one epoch")
        model.load_state_dict(best[2])
        model.eval()
    return Fitted(
        model=model,
        history=history,
        best_epoch=best[1],
        seconds=time.perf_counter() - started,
        device=str(device),
        validation_probabilities=best[3],
    )


def _train_epoch(
    model: nn.Module,
    encoded: Encoded,
    labels: torch.Tensor,
    batches: Sequence[NDArray[np.int64]],
    family: Family,
    optimisation: Optimisation,
    device: torch.device,
    description: str | None,
) -> float:
    model.train()
    total, count = 0.0, 0
    bar = tqdm(batches, desc=description, disable=description is None, unit="batch", leave=False)
    for index in bar:
        batch = {k: v.to(device) for k, v in encoded.batch(index.tolist()).items()}
        target = labels[index].to(device)
        with _autocast(device, family.bf16):
            logits = model(**batch)
        loss = nn.functional.binary_cross_entropy_with_logits(logits.float(), target)
        loss.backward()  # type: ignore[no-untyped-call]
        optimisation.step()
        total += float(loss.detach()) * len(index)
        count += len(index)
        bar.set_postfix(loss=f"{total / count:.4f}", refresh=False)
    return total / max(1, count)


def _autocast(device: torch.device, bf16: bool) -> torch.autocast:
    return torch.autocast(
        device_type=device.type, dtype=torch.bfloat16, enabled=bf16 and device.type == "cuda"
    )


def _bce(labels: NDArray[np.int64], probabilities: NDArray[np.float32]) -> float:
    p = np.clip(probabilities.astype(np.float64), 1e-7, 1 - 1e-7)
    return float(-np.mean(labels * np.log(p) + (1 - labels) * np.log(1 - p)))
