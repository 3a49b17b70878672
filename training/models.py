"""The two networks. Each takes exactly the inputs its ``inference`` preprocessor produces and
returns one logit per review; export adds the sigmoid that makes it a probability.
"""

from __future__ import annotations

from pathlib import Path
from typing import cast

import torch
from torch import Tensor, nn


class FastText(nn.Module):
    """Hashed n-gram ids -> embedding rows -> masked mean -> linear -> logit.

    Inputs are padded ``ids`` int64 [batch, length] and ``mask`` float32 [batch, length]
    (not EmbeddingBag offsets, which export to a slow ONNX loop). Gradients of the table are
    sparse: an optimiser step touches only the rows a batch used.
    """

    def __init__(self, buckets: int, dim: int, token_dropout: float = 0.0) -> None:
        super().__init__()
        self.token_dropout = token_dropout
        self.embedding = nn.Embedding(buckets, dim, padding_idx=0, sparse=True)
        self.linear = nn.Linear(dim, 1)
        nn.init.uniform_(self.embedding.weight, -1.0 / dim, 1.0 / dim)
        with torch.no_grad():
            self.embedding.weight[0].zero_()

    def forward(self, ids: Tensor, mask: Tensor) -> Tensor:
        if self.training and self.token_dropout > 0:
            # Drop whole n-grams at random while training: a cheap, strong regulariser.
            keep = torch.rand_like(mask) >= self.token_dropout
            mask = mask * keep.to(mask.dtype)
        total = torch.bmm(mask.unsqueeze(1), self.embedding(ids)).squeeze(1)
        mean = total / mask.sum(dim=1, keepdim=True).clamp(min=1.0)
        return cast(Tensor, self.linear(mean).squeeze(-1))


class MiniLMClassifier(nn.Module):
    """A BERT encoder (all-MiniLM-L6-v2), mean pooling over real tokens, dropout, linear head."""

    def __init__(self, encoder: nn.Module, hidden_size: int, dropout: float) -> None:
        super().__init__()
        self.encoder = encoder
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden_size, 1)

    @classmethod
    def pretrained(cls, model_dir: Path, dropout: float) -> MiniLMClassifier:
        from transformers import BertModel
        from transformers.utils import logging as hf_logging

        # The checkpoint's unused pooler weights are expected; no load report, no progress bar.
        hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]
        hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
        encoder = BertModel.from_pretrained(
            str(model_dir),
            add_pooling_layer=False,
            attn_implementation="eager",
            dtype=torch.float32,
        )
        return cls(encoder, int(encoder.config.hidden_size), dropout)

    @classmethod
    def untrained(
        cls, vocab_size: int, *, hidden_size: int = 32, layers: int = 2, heads: int = 2
    ) -> MiniLMClassifier:
        """A small randomly initialised encoder of the same architecture (for tests)."""
        from transformers import BertConfig, BertModel

        config = BertConfig(
            vocab_size=vocab_size,
            hidden_size=hidden_size,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            intermediate_size=hidden_size * 4,
        )
        config._attn_implementation = "eager"
        encoder = BertModel(config, add_pooling_layer=False)  # type: ignore[no-untyped-call]
        return cls(encoder, hidden_size, 0.1)

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
        return cast(Tensor, self.head(self.dropout(pooled)).squeeze(-1).float())
