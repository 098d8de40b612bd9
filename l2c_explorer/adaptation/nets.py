"""Networks of the adaptation methods: a shared feature extractor + classifier, and a domain classifier.

Shapes: ``b`` batch, ``c`` channels, ``s`` input side, ``f`` conv feature size, ``h`` hidden size, ``k`` classes.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..nets import ConvEncoder


class AdaptationNet(nn.Module):
    """A :class:`~l2c_explorer.nets.ConvEncoder`, a batch-normalised hidden layer and a linear classifier.

    ``forward`` returns the three levels SRDC clusters on: the flattened conv features ``f1`` (b, f), the
    hidden features ``f2`` (b, h) and the class logits (b, k). The other methods use ``f2`` (domain
    classifier) and the logits.
    """

    def __init__(self, *, encoder: ConvEncoder, n_classes: int, dropout: float = 0.0):
        super().__init__()
        self.encoder = encoder
        self.hidden_norm = nn.BatchNorm1d(encoder.embedding_dim)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(encoder.embedding_dim, n_classes)

    @property
    def feature_dim(self) -> int:
        return self.encoder.feature_dim

    @property
    def hidden_dim(self) -> int:
        return self.encoder.embedding_dim

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        f1 = self.encoder.features(x)  # (b, f)
        f2 = F.relu(self.hidden_norm(self.encoder.project(f1)))  # (b, h)
        return f1, f2, self.classifier(self.dropout(f2))


class DomainClassifier(nn.Module):
    """P(source) from features: a small MLP, (b, h) -> (b,) logits. Put a gradient reversal in front of it."""

    def __init__(self, *, dim_in: int, hidden: int = 256, dropout: float = 0.5):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(dim_in, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, 1),
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features).squeeze(1)


class DomainNormStats:
    """Separate batch-norm running statistics per domain, for one network whose weights are shared.

    Each domain's mini-batches are normalised by their own statistics during training (the batches are
    fed separately), and at prediction time each domain uses its own running averages: what the L2C
    authors get by leaving the similarity network in train mode on target batches, made explicit.
    Switching domain only swaps buffer references; nothing is copied.
    """

    def __init__(self, net: nn.Module, domains: tuple[str, ...] = ("source", "target")):
        self.norms = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        self.stats = {
            d: [(m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone()) for m in self.norms]
            for d in domains
        }

    @contextmanager
    def use(self, domain: str):
        """Within the block, ``net``'s batch norms read and update ``domain``'s running statistics."""
        saved = [(m.running_mean, m.running_var, m.num_batches_tracked) for m in self.norms]
        for m, (mean, var, count) in zip(self.norms, self.stats[domain]):
            m.running_mean, m.running_var, m.num_batches_tracked = mean, var, count
        try:
            yield
        finally:
            for m, (mean, var, count) in zip(self.norms, saved):
                m.running_mean, m.running_var, m.num_batches_tracked = mean, var, count

    def to(self, device: torch.device) -> DomainNormStats:
        self.stats = {d: [tuple(t.to(device) for t in s) for s in stats] for d, stats in self.stats.items()}
        return self
