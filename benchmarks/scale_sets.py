"""Build one of the large folders of the scale benchmarks and print where it is (and how many images it holds).

The sets (their content, and how they are made from ``../shared/data``) are described and built by
``benchmarks/datasets.py``; the scale benchmarks build the ones they need themselves. This makes one ahead of
time, e.g. to look at it:

    python benchmarks/scale_sets.py 25k --scratch /tmp/l2c-scale     # prints the folder
"""

from __future__ import annotations

import argparse

from datasets import SETS, build_set, set_images


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("set", choices=sorted(SETS))
    ap.add_argument("--scratch", default=None)
    args = ap.parse_args()
    folder = build_set(args.set, args.scratch)
    print(folder, len(set_images(folder)))


if __name__ == "__main__":
    main()
