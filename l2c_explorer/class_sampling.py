"""The classes of a labelled set, for training: which are usable, the train / held-out split, a cap on the
images of each class, and class-balanced batches."""

from __future__ import annotations

import numpy as np
import torch

from .errors import InputError


class ClassBalancedSampler:
    """Batches of ``classes_per_batch`` classes x ``images_per_class`` images, drawn without replacement.

    Classes with fewer images than ``images_per_class`` contribute all they have. With ``groups`` (a group
    id per class, e.g. the alphabet of a character), a share ``same_group`` of the batches is drawn inside a
    single group: hard negatives that look like the target task (telling apart the letters of one script).
    """

    def __init__(
        self,
        labels: np.ndarray,
        *,
        classes_per_batch: int,
        images_per_class: int,
        groups: np.ndarray | None = None,
        same_group: float = 0.0,
        generator: torch.Generator,
    ):
        self.by_class = [torch.from_numpy(np.flatnonzero(labels == c)) for c in range(int(labels.max()) + 1)]
        self.by_class = [ix for ix in self.by_class if len(ix)]
        self.n_classes = len(self.by_class)
        self.classes_per_batch = min(classes_per_batch, self.n_classes)
        self.images_per_class = images_per_class
        self.g = generator
        self.same_group = same_group if groups is not None else 0.0
        if groups is not None:
            groups = np.asarray(groups)
            self.group_classes = [
                torch.from_numpy(np.flatnonzero(groups == gid)) for gid in np.unique(groups)
            ]
            self.group_classes = [gc for gc in self.group_classes if len(gc) >= 2]
            if not self.group_classes:
                self.same_group = 0.0

    def sample(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Indices of one batch and the batch-local class id of each."""
        if self.same_group and torch.rand(1, generator=self.g).item() < self.same_group:
            pool = self.group_classes[int(torch.randint(len(self.group_classes), (1,), generator=self.g))]
            classes = pool[torch.randperm(len(pool), generator=self.g)[: self.classes_per_batch]]
        else:
            classes = torch.randperm(self.n_classes, generator=self.g)[: self.classes_per_batch]
        idx, cls = [], []
        for local, c in enumerate(classes.tolist()):
            members = self.by_class[c]
            pick = members[torch.randperm(len(members), generator=self.g)[: self.images_per_class]]
            idx.append(pick)
            cls.append(torch.full((len(pick),), local, dtype=torch.long))
        return torch.cat(idx), torch.cat(cls)


def usable_classes(labels: list[str] | None) -> tuple[np.ndarray, list[str], np.ndarray]:
    """(class id per image (n,), the sorted class names, the ids of classes with 2 or more images).

    Raises
    ------
    InputError
        No labels (not one subfolder per class), or fewer than 2 classes of 2 images or more.
    """
    if labels is None:
        raise InputError("Training a similarity model needs labelled images (one subfolder per class).")
    names, ids = np.unique(np.asarray(labels, dtype=object), return_inverse=True)
    names = [str(n) for n in names]
    counts = np.bincount(ids, minlength=len(names))
    usable = np.flatnonzero(counts >= 2)
    if len(usable) < 2:
        raise InputError(
            "A similarity model needs at least 2 classes with 2 or more images each "
            f"(found {len(names)} class folder(s) with {int(counts.max())} image(s) at most)."
        )
    return ids, names, usable


def split_classes(classes: np.ndarray, holdout: float, g: torch.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Split class ids into (train, held-out); at least 2 classes stay on each side when holding out.

    ``holdout`` is a share of the classes (below 1) or a number of classes (1 or more).
    """
    classes = np.asarray(classes)
    n_hold = int(holdout) if holdout >= 1 else int(round(holdout * len(classes)))
    if holdout > 0 and len(classes) >= 4:
        n_hold = min(max(n_hold, 2), len(classes) - 2)
    else:
        n_hold = 0
    order = torch.randperm(len(classes), generator=g).numpy()
    return np.sort(classes[order[n_hold:]]), np.sort(classes[order[:n_hold]])


def sample_per_class(listing, most: int, class_depth: int, seed: int):
    """A folder listing with at most ``most`` files of each class (a seeded sample; the listing's order kept)."""
    root, files, ignored, digest = listing
    by_class: dict[tuple, list[int]] = {}
    for i, path in enumerate(files):
        by_class.setdefault(path.relative_to(root).parts[:class_depth], []).append(i)
    rng = np.random.default_rng(seed)
    keep = sorted(i for members in by_class.values()
                  for i in (members if len(members) <= most else rng.choice(members, most, replace=False)))
    return root, [files[i] for i in keep], ignored, digest
