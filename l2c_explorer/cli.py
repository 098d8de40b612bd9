"""The ``l2c-explorer`` command.

``l2c-explorer [FOLDER] [--port N] [--no-browser] ...``   open the app (the default)
``l2c-explorer train-similarity SOURCE_DIR --out model``    learn a similarity model from labelled folders
``l2c-explorer discover TARGET_DIR --out results/``        find the categories of an unlabelled folder
``l2c-explorer adapt SOURCE_DIR TARGET_DIR --out results/`` same categories, new domain
``l2c-explorer models``                                    list the similarity models available by name

Every subcommand calls the same Python API as the app. Problems with the input (missing folders, no
images, bad model files, impossible options) print one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path

from . import __version__
from .errors import L2CError

SUBCOMMANDS = ("app", "train-similarity", "discover", "adapt", "models")
EXIT_USAGE = 2


# ---------------------------------------------------------------------------------------------------
# progress bars


class TqdmProgress:
    """A progress callback that draws one tqdm bar per stage on stderr."""

    def __init__(self, disable: bool = False):
        self.disable = disable
        self.bar = None
        self.stage = None

    def __call__(self, progress) -> None:
        from tqdm.auto import tqdm

        if progress.stage != self.stage:
            self.close()
            self.stage = progress.stage
            if progress.total:
                self.bar = tqdm(total=progress.total, desc=_STAGE_NAMES.get(progress.stage, progress.stage),
                                unit=_STAGE_UNITS.get(progress.stage, "it"), disable=self.disable,
                                dynamic_ncols=True, leave=False)
        if self.bar is not None and progress.total:
            if progress.total != self.bar.total or progress.step < self.bar.n:  # a new pass of the same stage
                self.bar.reset(total=progress.total)
            self.bar.n = progress.step
            postfix = {k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in progress.metrics.items()}
            if postfix:
                self.bar.set_postfix(postfix, refresh=False)
            self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


_STAGE_NAMES = {"reading": "reading images", "features": "features", "graph": "similarity graph",
                "similarity": "similarity model", "self-training": "self-training",
                "training": "training", "finishing": "finishing"}
_STAGE_UNITS = {"reading": "img", "features": "img", "similarity": "step", "training": "step", "self-training": "step"}


def _fail(message: str) -> int:
    print(f"l2c-explorer: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {text}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or a positive integer, not {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, not {text}")
    return value


# ---------------------------------------------------------------------------------------------------
# parsers


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="l2c-explorer",
        description="Discover the categories in a folder of unlabelled images by learning to cluster.",
    )
    parser.add_argument("--version", action="version", version=f"l2c-explorer {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    app = sub.add_parser("app", help="open the interactive app (the default command)")
    add_app_arguments(app)

    ts = sub.add_parser("train-similarity", help="learn a similarity model from a labelled folder")
    ts.add_argument("source", metavar="SOURCE_DIR", help="folder with one subfolder of images per class")
    ts.add_argument("--out", required=True, help="model file to write (.safetensors is added if missing)")
    ts.add_argument("--epochs", type=_positive_float, default=None,
                    help="passes over the images (default: the recipe's, 20 for 'default')")
    ts.add_argument("--image-size", type=_positive_int, default=32, help="square input size in pixels (default 32)")
    ts.add_argument("--channels", type=int, choices=(1, 3), default=1, help="1 = grayscale, 3 = colour (default 1)")
    ts.add_argument("--invert", choices=("auto", "yes", "no"), default="auto",
                    help="flip intensities so the background is dark (auto: when images have light borders)")
    ts.add_argument("--class-depth", type=_positive_int, default=None,
                    help="folder levels that name a class, e.g. 2 for ALPHABET/CHARACTER/ (default: the recipe's, 1)")
    ts.add_argument("--holdout", type=float, default=0.1,
                    help="share of classes held out to measure pair precision/recall/F1/ROC-AUC (default 0.1)")
    ts.add_argument("--quarter-turns", action="store_true",
                    help="also learn from 90/180/270-degree rotated copies as extra classes (symbols only)")
    ts.add_argument("--recipe", choices=("default", "omniglot"), default="default",
                    help="preset hyper-parameters; 'omniglot' reproduces the shipped model")
    ts.add_argument("--name", default=None, help="name to store in the model card")
    add_common_arguments(ts)

    di = sub.add_parser("discover", help="find the categories in an unlabelled folder")
    di.add_argument("target", metavar="TARGET_DIR", help="folder of images (searched recursively; only read)")
    di.add_argument("--model", default="omniglot", help="similarity model: a file or a shipped name (default omniglot)")
    di.add_argument("--out", required=True, help="output folder for assignments.csv and summary.json")
    di.add_argument("--k", type=_positive_int, default=None, help="number of categories, when known")
    di.add_argument("--max-k", type=_positive_int, default=100,
                    help="upper bound on the number of categories when --k is not given (default 100)")
    di.add_argument("--loss", choices=("mcl", "kcl"), default="mcl", help="clustering loss (default mcl)")
    di.add_argument("--epochs", type=_positive_int, default=None, help="training steps of the clustering network (default 100; each step sees every pair "
                         "of up to 2,048 images)")
    di.add_argument("--score", action="store_true",
                    help="evaluate against TARGET_DIR's first-level subfolder names (ground truth, for evaluation only)")
    di.add_argument("--neighbors", type=_positive_int, default=10,
                    help="links per image in the similarity graph (default 10)")
    di.add_argument("--self-training-steps", type=_non_negative_int, default=100,
                    help="fine-tune a copy of the similarity model on its confident first clusters for this many "
                         "steps, then cluster again (default 100; 0: one pass, faster)")
    di.add_argument("--save-model", action="store_true", help="also save the trained clustering model in --out")
    add_common_arguments(di)

    ad = sub.add_parser("adapt", help="predict source classes in a new domain (labelled source, unlabelled target)")
    ad.add_argument("source", metavar="SOURCE_DIR", help="labelled folder: one subfolder per class")
    ad.add_argument("target", metavar="TARGET_DIR", help="unlabelled images of the same classes (only read)")
    ad.add_argument("--method", default="ccn+", help="source-only, dann, ccn+, ccn++ or srdc (default ccn+)")
    ad.add_argument("--out", required=True, help="output folder for assignments.csv and summary.json")
    ad.add_argument("--epochs", type=_positive_int, default=None, help="training epochs (default: the method's)")
    ad.add_argument("--image-size", type=_positive_int, default=None, help="square input size (default 32)")
    ad.add_argument("--channels", type=int, choices=(1, 3), default=None, help="1 = grayscale, 3 = colour")
    ad.add_argument("--score", action="store_true",
                    help="evaluate against TARGET_DIR's subfolder names (ground truth, for evaluation only)")
    add_common_arguments(ad)

    sub.add_parser("models", help="list the similarity models available by name")
    return parser


def add_common_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="where to compute: auto = GPU when available (default auto)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def add_app_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("folder", nargs="?", default=None, help="target folder to open (optional)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=None, help="port (default 7860, or the next free one)")
    p.add_argument("--no-browser", action="store_true", help="do not open a browser tab")
    p.add_argument("--models-dir", action="append", default=None,
                   help="extra folder of similarity models (may be repeated)")
    p.add_argument("--work-dir", default=None,
                   help="where the app keeps thumbnails, runs and exports (default: a per-user cache folder)")


# ---------------------------------------------------------------------------------------------------
# commands


def cmd_train_similarity(args) -> int:
    from .recipes import similarity_recipe
    from .similarity import SimilarityLearner

    options = similarity_recipe(args.recipe)
    if args.epochs is not None:
        options["epochs"] = args.epochs
    if args.class_depth is not None:
        options["class_depth"] = args.class_depth
    options.update(
        image_size=args.image_size,
        channels=args.channels,
        invert={"auto": "auto", "yes": True, "no": False}[args.invert],
        holdout=args.holdout,
        device=args.device,
        random_state=args.seed,
        name=args.name,
    )
    if args.quarter_turns:
        options["quarter_turns"] = True
    bar = TqdmProgress(disable=args.quiet)
    learner = SimilarityLearner(**options)
    try:
        learner.fit(args.source, callback=bar)
    finally:
        bar.close()
    path = learner.model_.save(args.out)
    m = learner.holdout_metrics_
    t = learner.model_.card["training"]
    line = f"Saved {path} ({learner.n_classes_} classes, {t['seconds']:.0f} s on {t['device']})"
    if m:
        line += (f"; held-out pairs: precision {m['precision']:.3f}, recall {m['recall']:.3f}, F1 {m['f1']:.3f}, "
                 f"ROC-AUC {m['roc_auc']:.4f}")
    if learner.skipped_:
        line += f"; {len(learner.skipped_)} file(s) skipped"
    print(line)
    return 0


def cmd_discover(args) -> int:
    from .clustering import L2CClusterer
    from .results import check_output_folder, write_discovery_results

    out = check_output_folder(args.out, args.target)
    clusterer = L2CClusterer(
        similarity=args.model,
        n_clusters=args.k,
        max_clusters=args.max_k,
        loss=args.loss,
        epochs=args.epochs,
        n_neighbors=args.neighbors,
        self_training_steps=args.self_training_steps,
        device=args.device,
        random_state=args.seed,
    )
    bar = TqdmProgress(disable=args.quiet)
    try:
        clusterer.fit(args.target, callback=bar, labelled=args.score)
    finally:
        bar.close()
    summary = write_discovery_results(clusterer, out, score=args.score, save_model=args.save_model)
    line = (f"{summary['n_images']} images -> {summary['k_estimated']} clusters"
            f"{' (K given)' if args.k else f' (estimated, at most {args.max_k})'} in {summary['seconds']:.1f} s "
            f"on {summary['device']}")
    if args.score:
        m = summary["metrics"]
        line += f"; ACC {m['acc']:.3f}, NMI {m['nmi']:.3f}, ARI {m['ari']:.3f}, true K {m['k_true']}"
    if summary["n_skipped"]:
        line += f"; {summary['n_skipped']} file(s) skipped (see summary.json)"
    print(line + f"; results in {out}")
    return 0


def cmd_adapt(args) -> int:
    from .adaptation import DomainAdapter
    from .results import check_output_folder, write_adaptation_results

    out = check_output_folder(args.out, [args.target, args.source])  # both folders are only read
    options = dict(method=args.method, device=args.device, random_state=args.seed)
    if args.epochs is not None:
        options["epochs"] = args.epochs
    if args.image_size is not None:
        options["image_size"] = args.image_size
    if args.channels is not None:
        options["channels"] = args.channels
    adapter = DomainAdapter(**options)
    bar = TqdmProgress(disable=args.quiet)
    try:
        adapter.fit(args.source, args.target, callback=bar, labelled_target=args.score)
    finally:
        bar.close()
    summary = write_adaptation_results(adapter, out, score=args.score)
    line = f"{summary['method']}: {summary['n_images']} target images in {summary['seconds']:.1f} s on {summary['device']}"
    if args.score:
        line += f"; target accuracy {summary['metrics']['accuracy']:.3f}"
    print(line + f"; results in {out}")
    return 0


def cmd_models(args) -> int:
    from .similarity import list_models, SimilarityModel

    models = list_models()
    if not models:
        print("No similarity models found. Train one with: l2c-explorer train-similarity SOURCE_DIR --out model")
        return 0
    for name, path in models.items():
        try:
            card = SimilarityModel.load(path).card
            m = card.get("holdout_pair_metrics", {})
            info = f"{card['trained_on']['n_classes']} classes"
            if m:
                info += f", held-out pair F1 {m['f1']:.3f}, ROC-AUC {m['roc_auc']:.4f}"
        except L2CError as exc:
            info = f"unusable: {exc}"
        print(f"{name:20s} {info}  [{path}]")
    return 0


def cmd_app(args) -> int:
    from .app.server import serve

    serve(
        folder=args.folder,
        host=args.host,
        port=args.port,
        open_browser=not args.no_browser,
        models_dirs=args.models_dir,
        work_dir=args.work_dir,
    )
    return 0


COMMANDS = {
    "app": cmd_app,
    "train-similarity": cmd_train_similarity,
    "discover": cmd_discover,
    "adapt": cmd_adapt,
    "models": cmd_models,
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0] not in SUBCOMMANDS and argv[0] not in ("-h", "--help", "--version")):
        argv = ["app", *argv]
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except L2CError as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        print("Interrupted.", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
