"""The training loop every adaptation method shares; a method's loss terms are switched on by what is attached.

:class:`Trainer` runs mini-batches of both domains through one network, each domain normalised by its own
batch-norm statistics, and adds the terms of the parts attached to it: a domain classifier (``dann``,
``ccn++``), a similarity model's pair targets (``ccn+``, ``ccn++``) or :class:`~l2c_explorer.adaptation.srdc.SRDC`.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch
import torch.nn.functional as F

from ..augment import as_augmentation, augment_batch
from ..data import Preprocessing, normalise
from ..losses import CLUSTERING_LOSSES
from ..progress import Reporter
from ..similarity_model import SimilarityModel
from .functional import dann_ramp, domain_adversarial_loss, grad_reverse, hard_pair_targets
from .nets import AdaptationNet, DomainClassifier, DomainNormStats
from .srdc import SRDC


class BatchStream:
    """Endless mini-batches of indices: successive seeded random permutations of ``range(n)``."""

    def __init__(self, n: int, batch_size: int, generator: torch.Generator):
        self.n, self.batch_size, self.g = n, min(batch_size, n), generator
        self.order = torch.randperm(n, generator=generator)
        self.pos = 0

    def next(self) -> torch.Tensor:
        if self.pos + self.batch_size > self.n:
            self.order = torch.randperm(self.n, generator=self.g)
            self.pos = 0
        idx = self.order[self.pos : self.pos + self.batch_size]
        self.pos += self.batch_size
        return idx


class Trainer:
    """Trains ``net`` on both domains with the options of ``opts`` (a :class:`~l2c_explorer.adaptation.DomainAdapter`).

    ``uses_target``: the target's images take part in training (every method but ``source-only``).
    """

    def __init__(self, opts, net: AdaptationNet, norms: DomainNormStats, device, g: torch.Generator, *,
                 n_classes: int, uses_target: bool):
        self.o, self.net, self.norms, self.device, self.g, self.k = opts, net, norms, device, g, n_classes
        self.uses_target = uses_target
        self.jitter = as_augmentation(opts.jitter)
        self.discriminator: DomainClassifier | None = None
        self.srdc: SRDC | None = None
        self.similarity: SimilarityModel | None = None
        self.similarity_emb: torch.Tensor | None = None
        self.steps_done = 0
        self.total_steps = 0
        self.n_epochs = 0

    def add_domain_classifier(self) -> None:
        self.discriminator = DomainClassifier(dim_in=self.net.hidden_dim).to(self.device)

    def add_srdc(self) -> None:
        self.srdc = SRDC(self.o, (self.net.feature_dim, self.net.hidden_dim), self.k, self.device, self.g)

    def add_pair_targets(self, model: SimilarityModel, target_embedding: torch.Tensor) -> None:
        """CCN+: the clustering term on target pairs, with targets from ``model``'s P(same) of the embeddings."""
        self.similarity, self.similarity_emb = model, target_embedding

    # -- inference ----------------------------------------------------------------------------------

    @torch.no_grad()
    def predict(self, inputs: torch.Tensor, domain: str, batch_size: int = 512):
        """(f1, f2, logits) on the CPU for normalised inputs (n, C, S, S), with ``domain``'s statistics."""
        self.net.eval()
        outs = []
        with self.norms.use(domain):
            for i in range(0, len(inputs), batch_size):
                outs.append([t.cpu() for t in self.net(inputs[i : i + batch_size].to(self.device))])
        self.net.train()
        return tuple(torch.cat(parts) for parts in zip(*outs))

    # -- the loop ----------------------------------------------------------------------------------------

    def run(self, source, target, *, report: Reporter, eval_labels: np.ndarray | None) -> list[dict]:
        """Train; ``source`` is (unit images, preprocessing, labels), ``target`` (unit images, preprocessing).

        Returns one record per epoch (mean loss terms, learning rate, steps, seconds).
        """
        o, net = self.o, self.net
        unit_s, prep_s, y_s = source
        unit_t, prep_t = target
        n_s, n_t = len(unit_s), len(unit_t)
        wanted = math.ceil(max(n_s, n_t if self.uses_target else 0) / o.batch_size)
        steps_per_epoch = min(max(wanted, o.min_steps_per_epoch), o.max_steps_per_epoch)
        self.n_epochs = o.epochs
        self.total_steps = total = steps_per_epoch * self.n_epochs

        params = list(net.parameters()) + (self.srdc.centres if self.srdc is not None else [])
        if self.discriminator is not None:
            params += list(self.discriminator.parameters())
        optimizer = torch.optim.Adam(params, lr=o.lr, weight_decay=o.weight_decay)
        stream_s = BatchStream(n_s, o.batch_size, self.g)
        stream_t = BatchStream(n_t, o.batch_size, self.g)
        loss_fn = CLUSTERING_LOSSES[o.cluster_loss]
        history: list[dict] = []
        started = time.perf_counter()
        net.train()

        for epoch in range(self.n_epochs):
            if report.should_stop():
                break
            srdc_state = None
            if self.srdc is not None:
                srdc_state = self.srdc.start_epoch(epoch, self.n_epochs, self.predict, source, target)
                for centre in self.srdc.centres:  # new centres: the optimiser's moments of the old ones do not apply
                    optimizer.state.pop(centre, None)
            sums: dict[str, float] = {}
            n_steps = 0
            for _ in range(steps_per_epoch):
                if report.should_stop():
                    break
                step = self.steps_done
                progress = step / total
                lr = o.lr / (1.0 + 10.0 * progress) ** 0.75
                for group in optimizer.param_groups:
                    group["lr"] = lr
                i_s = stream_s.next()
                xs = self._batch(unit_s[i_s], prep_s)
                ys = y_s[i_s].to(self.device)
                terms: dict[str, torch.Tensor] = {}
                with self.norms.use("source"):
                    out_s = net(xs)
                if self.uses_target:
                    i_t = stream_t.next()
                    xt = self._batch(unit_t[i_t], prep_t)
                    with self.norms.use("target"):
                        out_t = net(xt)
                if self.srdc is not None:
                    terms.update(self.srdc.terms(srdc_state, epoch, ys, out_s, out_t))
                else:
                    terms["source_ce"] = F.cross_entropy(out_s[2], ys)
                if self.discriminator is not None:
                    coeff = o.domain_weight * dann_ramp(progress)
                    d_s = self.discriminator(grad_reverse(out_s[1], coeff))
                    d_t = self.discriminator(grad_reverse(out_t[1], coeff))
                    terms["domain"] = domain_adversarial_loss(d_s, d_t)
                if self.similarity is not None:
                    pairs = hard_pair_targets(self.similarity.pair_probabilities(self.similarity_emb[i_t]))
                    terms["cluster"] = o.cluster_weight * loss_fn(torch.softmax(out_t[2], dim=1), pairs.to(self.device))
                loss = sum(terms.values())
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                self.steps_done += 1
                n_steps += 1
                values = {"loss": float(loss.detach()), **{k: float(v.detach()) for k, v in terms.items()}}
                for key, value in values.items():
                    sums[key] = sums.get(key, 0.0) + value
                if self.steps_done % 5 == 0 or self.steps_done == total:
                    report("training", self.steps_done, total, epoch=self.steps_done / steps_per_epoch,
                           message=f"Epoch {epoch + 1}/{self.n_epochs}", **values)
            if n_steps == 0:
                break
            record = {"epoch": epoch + 1, **{k: v / n_steps for k, v in sums.items()}, "lr": lr,
                      "steps": n_steps, "seconds": round(time.perf_counter() - started, 2)}
            if srdc_state is not None:
                record["lambda"] = srdc_state["lambda"]
                record["mean_source_weight"] = srdc_state["mean_weight"]
            if eval_labels is not None:
                domain = "target" if self.uses_target else "source"
                _, _, logits = self.predict(normalise(unit_t, prep_t), domain)
                record["target_accuracy"] = float((logits.argmax(1).numpy() == eval_labels).mean())
            history.append(record)
        return history

    def _batch(self, unit: torch.Tensor, prep: Preprocessing) -> torch.Tensor:
        """Augment unit-range images (background 0) and normalise them for the network."""
        x = augment_batch(unit, self.jitter, generator=self.g)
        return normalise(x, prep).to(self.device)
