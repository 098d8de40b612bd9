"""Names people can read: for the groups found, and for categories named by codes.

* Groups found by a clustering are called ``cluster 00``, ``cluster 01``, ... (:func:`group_names`):
  zero-padded, so that they sort in order as text and as exported folder names; a person may rename them.
* Category folders are often named by codes, e.g. Tiny ImageNet's WordNet ids (``n02927161``). A names
  file, one ``code<TAB>name, other names`` per line (ImageNet's ``words.txt``), in the folder or in its
  parent, gives them their names (:func:`category_names`). Folders already named in words keep their
  names.

Plain Python (no torch, no gradio): the command line, the app and the estimators' result writers share it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

# Names files looked for, in this order, in the folder and then in its parent.
NAMES_FILES = ("words.txt", "names.txt")
NAMES_FILE_LIMIT = 50_000_000  # bytes read at most (ImageNet's full words.txt is 2.7 MB)


def group_names(n_groups: int) -> list[str]:
    """``["cluster 00", "cluster 01", ...]``: the default names of ``n_groups`` groups, padded to sort."""
    width = max(2, len(str(max(n_groups - 1, 0))))
    return [f"cluster {i:0{width}d}" for i in range(n_groups)]


def find_names_file(folder: str | os.PathLike) -> Path | None:
    """The names file of a folder of category sub-folders: in the folder itself, else in its parent."""
    folder = Path(folder)
    for place in (folder, folder.parent):
        for name in NAMES_FILES:
            candidate = place / name
            if candidate.is_file():
                return candidate
    return None


def read_names_file(path: str | os.PathLike) -> dict[str, list[str]]:
    """Code -> its names, from lines ``code<TAB>name, other name, ...``; other lines are ignored."""
    out: dict[str, list[str]] = {}
    with open(path, encoding="utf-8", errors="replace") as f:
        text = f.read(NAMES_FILE_LIMIT)
    for line in text.splitlines():
        code, tab, rest = line.partition("\t")
        names = [n.strip() for n in rest.split(",") if n.strip()]
        if tab and code.strip() and names:
            out[code.strip()] = names
    return out


def category_names(codes: Iterable[str], folder: str | os.PathLike | None) -> dict[str, str]:
    """A readable name for each category code (a first-level folder name of ``folder``).

    From the folder's names file when it has one (see :func:`find_names_file`), else the code itself. Two
    codes with the same first name (ImageNet has two "crane"s) keep their code in brackets, so that no two
    categories share a name.
    """
    codes = list(dict.fromkeys(str(c) for c in codes))
    known = {}
    names_file = find_names_file(folder) if folder is not None else None
    if names_file is not None:
        try:
            known = read_names_file(names_file)
        except OSError:
            known = {}
    named = {code: known[code][0] if code in known else code for code in codes}
    counts: dict[str, int] = {}
    for name in named.values():
        counts[name] = counts.get(name, 0) + 1
    return {code: name if counts[name] == 1 or name == code else f"{name} ({code})" for code, name in named.items()}


def has_readable_names(names: dict[str, str]) -> bool:
    """Whether :func:`category_names` found a name other than the code for at least one category."""
    return any(name != code for code, name in names.items())


def names_from_truth(labels, truth: list[str]) -> list[str]:
    """Each group named after the true category most of its images belong to (by group number).

    For evaluation, when the folder names are the true categories: a second group mostly of the same
    category is ``"<name> 2"``, and so on.
    """
    labels = [int(label) for label in labels]
    n_groups = max(labels) + 1 if labels else 0
    counts: list[dict[str, int]] = [{} for _ in range(n_groups)]
    for label, category in zip(labels, truth):
        counts[label][category] = counts[label].get(category, 0) + 1
    defaults = group_names(n_groups)
    names, used = [], {}
    for group, count in enumerate(counts):
        if not count:
            names.append(defaults[group])
            continue
        main = max(sorted(count), key=count.get)
        used[main] = used.get(main, 0) + 1
        names.append(main if used[main] == 1 else f"{main} {used[main]}")
    return names
