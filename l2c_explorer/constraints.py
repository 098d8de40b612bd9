"""Pairwise answers ("these two images show the same category" / "different ones") and what follows from them.

A user's answers are *must-links* (same) and *cannot-links* (different) between two images. What they imply
(Hsu & Kira's partial pairwise similarity; the closure rules of constrained clustering):

* must-links are transitive: the images linked by a chain of "same" answers form one *component*
  (union-find);
* a cannot-link holds between the two whole components of its images: if a ~ b and b !~ c then a !~ c;
* an answer that contradicts the others ("different" inside one component) is refused, with the chain of
  answers that says "same".

How answers change a clustering (:func:`apply_answers`): each answer as the person meant it, in the order
given, on the groups as they were when it was given. "Same" for the typical images of two groups merges the
groups, "same" for another image moves it to the other's group, "different" inside a group splits the group
(label spreading on the group's own links decides where its other members go, Zhou et al. 2004). Images no
answer is about keep their group unless their group is merged or split, and K changes only by those merges
and splits.

Everything here is plain numpy/scipy on image indices; reading and writing the ``path_a,path_b,same`` CSV
maps paths to indices with the clusterer's ``paths_``.
"""

from __future__ import annotations

import csv
import io
import os
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from .data import find_images
from .errors import InputError
from .groups import is_representative, typicality

CSV_HEADER = ("path_a", "path_b", "same")
# An optional fourth column: the kind of question answered (what `questions` writes beside its pairs).
KIND_COLUMN = "kind"


class ContradictionError(InputError):
    """An answer that contradicts earlier ones (a "different" inside a chain of "same" answers)."""


# ---------------------------------------------------------------------------------------------------
# the answers themselves


@dataclass(frozen=True)
class Answer:
    """One answer: images ``a`` and ``b`` (indices) show the same category (``same``) or not.

    ``kind``: the kind of question it answered ("split", "merge", "member"; see :mod:`l2c_explorer.questions`),
    when it answered one: the questions learn from it how often that kind of question changes the groups. It
    does not take part in comparisons (the same pair and answer is the same answer, however it was asked).
    """

    a: int
    b: int
    same: bool
    kind: str | None = field(default=None, compare=False)


def as_answers(constraints, n_images: int | None = None) -> list[Answer]:
    """Answers from :class:`Answer` objects, ``(a, b, same)`` tuples or an (m, 3) array; indices checked."""
    if constraints is None:
        return []
    if isinstance(constraints, ConstraintSet):
        return list(constraints.answers)
    rows = constraints.tolist() if isinstance(constraints, np.ndarray) else list(constraints)
    out = []
    for row in rows:
        if isinstance(row, Answer):
            a, b, same, kind = row.a, row.b, row.same, row.kind
        else:
            (a, b, same), kind = row[:3], (row[3] if len(row) > 3 else None)
        if isinstance(same, (int, np.integer)) and not isinstance(same, (bool, np.bool_)) and same not in (0, 1):
            raise InputError(f"An answer's 'same' must be 1 (same category) or 0 (different), not {same!r}.")
        a, b = int(a), int(b)
        if n_images is not None and not (0 <= a < n_images and 0 <= b < n_images):
            raise InputError(f"An answer names image {max(a, b)}, but there are only {n_images} images.")
        out.append(Answer(a, b, bool(same), kind))
    return out


# ---------------------------------------------------------------------------------------------------
# closure: components of must-links, cannot-links between components


@dataclass
class ConstraintSet:
    """The answers over ``n_images`` images and their transitive consequences.

    Attributes
    ----------
    answers : list of Answer
        The answers, in the order given (duplicates kept: they change nothing).
    component : ndarray of shape (n_images,)
        Must-link component of each image (0..n_components-1); an image without "same" answers is a
        component of its own.
    cannot : ndarray of shape (n_cannot, 2)
        Pairs of components (smaller id first, unique) said to be different.
    names : list of str, optional
        Image names (paths) for messages.
    """

    n_images: int
    answers: list[Answer] = field(default_factory=list)
    names: list[str] | None = None
    component: np.ndarray = None
    cannot: np.ndarray = None

    def __post_init__(self):
        self.answers = as_answers(self.answers, self.n_images)
        if self.component is None:
            self.component, self.cannot = close(self.n_images, self.answers, self.describe)

    def describe(self, i: int) -> str:
        return self.names[i] if self.names is not None else f"image {i}"

    # -- reading ------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.answers)

    @property
    def n_components(self) -> int:
        return int(self.component.max()) + 1 if self.n_images else 0

    def known(self, a: int, b: int) -> bool | None:
        """What the answers imply about images ``a`` and ``b``: True (same), False (different) or None."""
        ca, cb = self.component[a], self.component[b]
        if ca == cb:
            return True
        lo, hi = min(ca, cb), max(ca, cb)
        if len(self.cannot) and np.any((self.cannot[:, 0] == lo) & (self.cannot[:, 1] == hi)):
            return False
        return None

    def constrained_images(self) -> np.ndarray:
        """Indices of the images some answer (directly or by closure) says something about."""
        touched = {x for ans in self.answers for x in (ans.a, ans.b)}
        return np.array(sorted(touched), dtype=np.int64)

    def must_pairs(self) -> np.ndarray:
        """(m, 2) the "same" answers as index pairs."""
        return np.array([(x.a, x.b) for x in self.answers if x.same], dtype=np.int64).reshape(-1, 2)

    def cannot_pairs(self) -> np.ndarray:
        """(m, 2) the "different" answers as index pairs."""
        return np.array([(x.a, x.b) for x in self.answers if not x.same], dtype=np.int64).reshape(-1, 2)

    def violated_cannot(self, labels: np.ndarray) -> int:
        """How many "different" answers a clustering ``labels`` (n,) breaks (both images in one cluster)."""
        pairs = self.cannot_pairs()
        return int(np.sum(labels[pairs[:, 0]] == labels[pairs[:, 1]])) if len(pairs) else 0

    def violated_must(self, labels: np.ndarray) -> int:
        """How many "same" answers a clustering ``labels`` (n,) breaks."""
        pairs = self.must_pairs()
        return int(np.sum(labels[pairs[:, 0]] != labels[pairs[:, 1]])) if len(pairs) else 0

    def pair_matrix(self) -> sp.csr_matrix:
        """(n_images, n_images) the answers with their consequences as pair targets: +1 between two (distinct)
        images of one must-linked component, -1 between images of two components said to differ, 0 elsewhere
        (the convention of :mod:`l2c_explorer.losses`)."""
        members = {int(c): np.flatnonzero(self.component == c)
                   for c in np.unique(self.component[self.constrained_images()])}
        rows, cols, values = [], [], []

        def add(a: np.ndarray, b: np.ndarray, value: float) -> None:
            rows.append(np.repeat(a, len(b)))
            cols.append(np.tile(b, len(a)))
            values.append(np.full(len(a) * len(b), value))

        for group in members.values():
            if len(group) > 1:
                add(group, group, 1.0)
        for c, d in self.cannot.tolist():
            add(members[c], members[d], -1.0)
            add(members[d], members[c], -1.0)
        if not rows:
            return sp.csr_matrix((self.n_images, self.n_images))
        rows, cols, values = np.concatenate(rows), np.concatenate(cols), np.concatenate(values)
        distinct = rows != cols
        return sp.csr_matrix((values[distinct], (rows[distinct], cols[distinct])), shape=(self.n_images, self.n_images))

    def min_clusters(self) -> int:
        """A lower bound on the number of categories: a set of components that are pairwise "different"
        (a clique of cannot-links, found greedily) needs that many."""
        if not len(self.cannot):
            return 1
        neighbours: dict[int, set[int]] = {}
        for u, v in self.cannot.tolist():
            neighbours.setdefault(u, set()).add(v)
            neighbours.setdefault(v, set()).add(u)
        best = 2
        for start in sorted(neighbours, key=lambda u: -len(neighbours[u])):
            clique = {start}
            candidates = set(neighbours[start])
            while candidates:
                nxt = max(candidates, key=lambda u: (len(neighbours[u] & candidates), -u))
                clique.add(nxt)
                candidates &= neighbours[nxt]
            best = max(best, len(clique))
        return best

    # -- changing -----------------------------------------------------------------------------------

    def with_answer(self, answer: Answer) -> ConstraintSet:
        """A new set with one more answer; :class:`ContradictionError` if it contradicts the others."""
        return ConstraintSet(self.n_images, [*self.answers, *as_answers([answer], self.n_images)], self.names)

    def without_last(self) -> ConstraintSet:
        """A new set without the last answer (undo)."""
        return ConstraintSet(self.n_images, self.answers[:-1], self.names)


def _find(parent: np.ndarray, x: int) -> int:
    root = x
    while parent[root] != root:
        root = parent[root]
    while parent[x] != root:  # path compression
        parent[x], x = root, parent[x]
    return root


def close(n_images: int, answers: list[Answer], describe=None) -> tuple[np.ndarray, np.ndarray]:
    """Transitive closure of answers: (component of each image (n,), cannot-linked component pairs (c, 2)).

    Raises :class:`ContradictionError` when a "different" answer falls inside a chain of "same" answers;
    the message names that chain (``describe(i)`` names image i; default "image i").
    """
    parent = np.arange(n_images)
    for ans in answers:
        if ans.same:
            ra, rb = _find(parent, ans.a), _find(parent, ans.b)
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)
    roots = np.array([_find(parent, i) for i in range(n_images)], dtype=np.int64)
    _, component = np.unique(roots, return_inverse=True)
    pairs = set()
    for ans in answers:
        if ans.same:
            continue
        ca, cb = int(component[ans.a]), int(component[ans.b])
        if ca == cb:
            raise ContradictionError(contradiction_message(answers, ans, describe))
        pairs.add((min(ca, cb), max(ca, cb)))
    cannot = np.array(sorted(pairs), dtype=np.int64).reshape(-1, 2)
    return component.astype(np.int64), cannot


def same_chain(answers: list[Answer], a: int, b: int) -> list[Answer]:
    """The shortest chain of "same" answers linking images ``a`` and ``b`` (empty when there is none)."""
    graph: dict[int, list[tuple[int, Answer]]] = {}
    for ans in answers:
        if ans.same:
            graph.setdefault(ans.a, []).append((ans.b, ans))
            graph.setdefault(ans.b, []).append((ans.a, ans))
    came: dict[int, tuple[int, Answer] | None] = {a: None}
    queue = deque([a])
    while queue:
        x = queue.popleft()
        if x == b:
            break
        for y, ans in graph.get(x, []):
            if y not in came:
                came[y] = (x, ans)
                queue.append(y)
    if b not in came:
        return []
    chain, x = [], b
    while came[x] is not None:
        x, ans = came[x]
        chain.append(ans)
    return chain[::-1]


def contradiction_message(answers: list[Answer], answer: Answer, describe=None) -> str:
    name = describe or (lambda i: f"image {i}")
    if answer.a == answer.b:
        return f"{name(answer.a)} was said to differ from itself."
    chain = same_chain([x for x in answers if x is not answer], answer.a, answer.b)
    links = "; ".join(f"{name(x.a)} = {name(x.b)}" for x in chain)
    return (f"Contradictory answers: {name(answer.a)} and {name(answer.b)} were said to be different, but these "
            f"answers say they are the same: {links}. Remove one of them.")


# ---------------------------------------------------------------------------------------------------
# the CSV file: path_a,path_b,same


def read_constraints_csv(path: str | os.PathLike, paths: list[str]) -> list[Answer]:
    """Answers from a ``path_a,path_b,same`` CSV file; ``paths`` are the clusterer's image paths.

    Paths are as in ``assignments.csv`` (relative to the analysed folder, ``/`` separators). ``same`` is 1
    (same category) or 0 (different). Empty lines are ignored. Raises :class:`InputError` naming the
    line of the first malformed row, or the paths that are not images of this folder.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise InputError(f"Answers file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"Cannot read the answers file {path}: {exc}") from None
    return parse_constraints_csv(text, paths, source=str(path))


def check_answers_file(path: str | os.PathLike, folder: str | os.PathLike, *, follow_links: bool = False) -> None:
    """Check a ``path_a,path_b,same`` file against the images of ``folder`` before any work is done on it.

    A missing file, a malformed line, a path that is not an image of the folder or contradictory answers
    raise :class:`InputError` now, in a second, instead of after the folder is clustered. (An image the
    clustering then finds unreadable is reported when the answers are applied.)
    """
    root = Path(folder).expanduser()
    paths = [f.relative_to(root).as_posix() for f in find_images(root, follow_links=follow_links)[0]]
    ConstraintSet(len(paths), read_constraints_csv(path, paths), names=paths)


def parse_constraints_csv(text: str, paths: list[str], *, source: str = "the answers") -> list[Answer]:
    index = {p: i for i, p in enumerate(paths)}
    rows = [(n, row) for n, row in enumerate(csv.reader(io.StringIO(text)), start=1) if any(c.strip() for c in row)]
    if not rows:
        return []
    first = [c.strip().lower() for c in rows[0][1]]
    columns = list(CSV_HEADER)  # without a header: path_a,path_b,same
    if set(CSV_HEADER) <= set(first):  # a header: its columns in any order, the kind of question optional
        columns = first
        rows = rows[1:]
    elif first[:2] == ["path_a", "path_b"]:
        raise InputError(f"{source}: the header must be {','.join(CSV_HEADER)} (answers need the 'same' column).")
    at = {name: columns.index(name) for name in (*CSV_HEADER, KIND_COLUMN) if name in columns}
    answers, unknown = [], []
    for line, row in rows:
        if len(row) != len(columns):
            raise InputError(f"{source}, line {line}: expected {len(columns)} columns ({','.join(columns)}), "
                             f"found {len(row)}.")
        a, b, same = (row[at[name]].strip() for name in CSV_HEADER)
        kind = row[at[KIND_COLUMN]].strip() or None if KIND_COLUMN in at else None
        if same not in ("0", "1"):
            raise InputError(f"{source}, line {line}: 'same' must be 1 (same category) or 0 (different), "
                             f"not {same!r}.")
        for p in (a, b):
            if p not in index:
                unknown.append(p)
        if a in index and b in index:
            answers.append(Answer(index[a], index[b], same == "1", kind))
    if unknown:
        shown = ", ".join(sorted(set(unknown))[:5])
        more = f" and {len(set(unknown)) - 5} more" if len(set(unknown)) > 5 else ""
        raise InputError(f"{source}: {len(set(unknown))} path(s) are not images of this folder: {shown}{more}. "
                         "Paths must be as in assignments.csv (relative to the folder).")
    return answers


def write_constraints_csv(path: str | os.PathLike, answers, paths: list[str]) -> Path:
    """Write answers as a ``path_a,path_b,same`` CSV file (atomically)."""
    from .files import write_csv

    answers = as_answers(answers)
    if any(x.kind for x in answers):  # the kinds of questions answered, for the next questions to learn from
        rows = [(paths[x.a], paths[x.b], int(x.same), x.kind or "") for x in answers]
        return write_csv(Path(path), [*CSV_HEADER, KIND_COLUMN], rows)
    rows = [(paths[x.a], paths[x.b], int(x.same)) for x in answers]
    return write_csv(Path(path), list(CSV_HEADER), rows)


# ---------------------------------------------------------------------------------------------------
# answers applied to a clustering

# Label spreading's propagation (Zhou et al., NIPS 2004, who use 0.99): how far the two sides of a split
# reach into the group before the group's own links decide. Not tuned: the value of the original paper.
SPREADING = 0.99


def spread_labels(graph: sp.spmatrix, members: np.ndarray, seeds: list[np.ndarray], *,
                  spreading: float = SPREADING) -> np.ndarray:
    """Which of the ``seeds`` (lists of images, all in ``members``) each of ``members`` goes with: (m,) in
    0..len(seeds)-1.

    Label spreading on the group's own graph (Zhou et al. 2004): ``F = (I - spreading * S)^-1 Y`` with S the
    normalised graph among ``members`` and Y the seeds' indicators, each column of F divided by its sum
    (class mass normalisation); each member takes the seed of its largest F. A member with no link to any
    seed goes with the first seed. The seeds themselves keep their own side.
    """
    from scipy.sparse.linalg import splu

    members = np.asarray(members, dtype=np.int64)
    m = len(members)
    where = {int(x): j for j, x in enumerate(members.tolist())}
    sub = sp.csr_matrix(graph, dtype=np.float64)[members][:, members]
    sub = sub.maximum(sub.T)
    degree = np.asarray(sub.sum(1)).ravel()
    scale = 1.0 / np.sqrt(np.maximum(degree, 1e-12))
    norm = sp.diags(scale) @ sub @ sp.diags(scale)
    rhs = np.zeros((m, len(seeds)))
    for s, images in enumerate(seeds):
        rhs[[where[int(x)] for x in images], s] = 1.0
    spread = splu(sp.csc_matrix(sp.identity(m) - spreading * norm)).solve(rhs)
    # class mass normalisation (Zhu, Ghahramani & Lafferty 2003): without it, the seed of more links takes
    # almost the whole group, since a walk this long nearly forgets where it started
    spread /= np.maximum(spread.sum(0, keepdims=True), 1e-300)
    side = np.argmax(spread, axis=1)
    side[spread.max(1) <= 0] = 0
    for s, images in enumerate(seeds):
        side[[where[int(x)] for x in images]] = s
    return side


def _colour(components: list[int], cannot: set[tuple[int, int]]) -> dict[int, int]:
    """Greedy colouring of must-link components so that no two said to be different share a colour."""
    colour: dict[int, int] = {}
    for c in components:
        taken = {colour[d] for d in colour if (min(c, d), max(c, d)) in cannot}
        colour[c] = next(x for x in range(len(components) + 1) if x not in taken)
    return colour


def _split(graph, embedding: np.ndarray, labels: np.ndarray, groups: list[int], cs: ConstraintSet,
           cannot: set) -> list[int] | None:
    """Split the images of ``groups`` (in place) into as many parts as the answers among them need, so that
    no two components said to be different share one; a member leaves the part that keeps most of the
    images only where label spreading and its features agree. Each part takes the number of the group it
    overlaps most (each number once), the others new numbers, returned; None when nothing needs a split.

    Given several groups that came out of one (its earlier splits), they are split again together from
    every answer about them, so that the parts follow the categories the answers name rather than the
    order the answers came in."""
    members = np.flatnonzero(np.isin(labels, groups))
    told = np.unique(cs.component[np.intersect1d(members, cs.constrained_images())]).tolist()
    conflicting = [c for c in told if any((min(c, d), max(c, d)) in cannot for d in told)]
    if not conflicting:
        return None
    colour = _colour(conflicting, cannot)
    n_colours = max(colour.values()) + 1
    in_members = np.isin(np.arange(len(labels)), members)
    seeds = [np.flatnonzero(np.isin(cs.component, [c for c in conflicting if colour[c] == k]) & in_members)
             for k in range(n_colours)]
    side = spread_labels(graph, members, seeds)
    # a member leaves only where its links and its features agree; otherwise it stays with the part that
    # keeps most of the images (by its links)
    stays = int(np.argmax(np.bincount(side, minlength=n_colours)))
    means = np.stack([embedding[x].mean(0) for x in seeds])
    nearest = np.argmax(embedding[members] @ means.T, axis=1)
    side = np.where(side == nearest, side, stays)
    for k, x in enumerate(seeds):
        side[np.isin(members, x)] = k
    # a component nobody said anything against stays whole, with the side most of it went to
    for c in told:
        if c not in colour:
            inside = np.isin(members, np.flatnonzero(cs.component == c))
            side[inside] = np.bincount(side[inside], minlength=n_colours).argmax()
    overlap = np.zeros((n_colours, len(groups)), dtype=np.int64)
    np.add.at(overlap, (side, np.searchsorted(np.asarray(groups), labels[members])), 1)
    number = np.full(n_colours, -1)
    used = set()
    for flat in np.argsort(-overlap, axis=None, kind="stable"):
        k, j = divmod(int(flat), len(groups))
        if overlap[k, j] and number[k] < 0 and j not in used:
            number[k] = groups[j]
            used.add(j)
    created = []
    next_id = int(labels.max()) + 1
    for k in range(n_colours):
        if not np.any(side == k):
            continue
        if number[k] < 0:
            number[k] = next_id
            created.append(next_id)
            next_id += 1
        labels[members[side == k]] = number[k]
    return created


def apply_answers(graph: sp.spmatrix, embedding: np.ndarray, labels: np.ndarray, cs: ConstraintSet) -> np.ndarray:
    """A clustering (n,) changed by the answers, each one as the person meant it, in the order given.

    * "same" for the most typical images of two groups (what "one category" says in the app, and what a
      merge question asks): the two groups become one, unless some answer says they hold different
      categories;
    * "same" for two images of different groups otherwise: the less typical of the two (the one that is
      not its group's most typical image, else the one further from its group's mean direction) moves to
      the other's group, with every image chained to it by "same" answers;
    * "different" for two images of one group (what "split it" and "not here" say in the app): the group
      is split, the images said to be different seeding the parts; a member of the group leaves with a
      new part only where its own links (:func:`spread_labels`) and its features (the nearest part's mean
      direction) both send it there, else it stays. The groups earlier answers split from the same group
      of the run are split again with it, from all the answers about them (:func:`_split`), so that a
      few answers about one merged group give a few parts, not a fragment per answer;
    * an answer that the clustering already agrees with changes nothing.

    Nothing else moves: images no answer is about keep their group unless their group is merged or split.
    Afterwards every answer holds, with its consequences: the images chained by "same" answers share one
    group, and no group holds two images said to be different (directly or through such chains). The
    groups are numbered as in ``labels``, new ones after them, without gaps. ``embedding``: unit features
    (n, d) that define how typical an image is of its group.
    """
    labels = np.asarray(labels, dtype=np.int64).copy()
    cannot = {(int(a), int(b)) for a, b in cs.cannot.tolist()}
    comp = cs.component
    origin = {g: g for g in np.unique(labels).tolist()}  # the group of the run each group was split from

    for k, ans in enumerate(cs.answers):
        a, b = ans.a, ans.b
        ga, gb = int(labels[a]), int(labels[b])
        if ans.same and ga != gb:
            reps = is_representative(embedding, labels, a), is_representative(embedding, labels, b)
            told_so_far = ConstraintSet(cs.n_images, cs.answers[: k + 1])
            comp_now, cannot_now = told_so_far.component, {(int(x), int(y)) for x, y in told_so_far.cannot.tolist()}
            differ = any((min(x, y), max(x, y)) in cannot_now
                         for x in set(comp_now[labels == ga].tolist()) for y in set(comp_now[labels == gb].tolist()))
            if all(reps) and not differ:
                labels[labels == gb] = ga
                continue
            if reps[0] != reps[1]:
                mover = b if reps[0] else a
            else:
                ta, tb = typicality(embedding, labels, np.array([a, b]))
                mover = a if ta < tb else b
            target = gb if mover == a else ga
            labels[comp_now == comp_now[mover]] = target
        elif not ans.same and ga == gb:
            told_so_far = ConstraintSet(cs.n_images, cs.answers[: k + 1])
            cannot_now = {(int(x), int(y)) for x, y in told_so_far.cannot.tolist()}
            family = sorted(g for g in np.unique(labels).tolist() if origin[g] == origin[ga])
            for g in _split(graph, embedding, labels, family, told_so_far, cannot_now) or []:
                origin[g] = origin[ga]
    # every answer holds: chains of "same" answers in one group, then no group with a "different" inside
    for _ in range(len(cs.answers) + 1):
        changed = False
        for c in np.unique(comp[cs.constrained_images()]).tolist():
            inside = comp == c
            held = labels[inside]
            if len(np.unique(held)) > 1:
                values, counts = np.unique(held, return_counts=True)
                labels[inside] = values[np.argmax(counts)]
                changed = True
        for g in np.unique(labels).tolist():
            changed |= _split(graph, embedding, labels, [g], cs, cannot) is not None
        if not changed:
            break
    _, labels = np.unique(labels, return_inverse=True)
    return labels.astype(np.int64)
