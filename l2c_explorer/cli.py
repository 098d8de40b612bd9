"""The ``l2c-explorer`` command.

``l2c-explorer [FOLDER] [--port N] [--no-browser] ...``   open the app (the default)
``l2c-explorer train-similarity SOURCE_DIR --out model``    learn a similarity model from labelled folders
``l2c-explorer discover TARGET_DIR --out results/``        find the categories of an unlabelled folder
``l2c-explorer questions RUN_DIR --n N``                  the next questions worth asking about a run
``l2c-explorer assign NEW_DIR --run results/ --out new/``  put new images into a finished run's categories
``l2c-explorer adapt SOURCE_DIR TARGET_DIR --out results/`` same categories, new domain
``l2c-explorer models``                                    list the similarity models available by name
``l2c-explorer backbones``                                 list the encoders ``train-similarity --backbone`` takes

Every subcommand calls the same Python API as the app. Problems with the input (missing folders, no
images, bad model files, impossible options) print one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from . import __version__
from .errors import L2CError
from .options import (
    ADAPT,
    APP,
    ASSIGN,
    BOOLEAN,
    DISCOVER,
    QUESTIONS,
    TRAIN_SIMILARITY,
    Number,
    OneOf,
    Option,
    RunSpec,
    Whole,
)
from .recipes import PRETRAINED_TOP, SIMILARITY_RECIPES, similarity_recipe

SUBCOMMANDS = ("app", "train-similarity", "discover", "questions", "assign", "adapt", "models", "backbones")
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


class StageLines:
    """A progress callback for a log or a pipe: one line per stage when it ends (bars there would write
    thousands of carriage-return updates)."""

    def __init__(self, stream=None):
        self.stream = stream
        self.current = None  # (stage, step, total, metrics, started)
        self.started = time.perf_counter()

    def __call__(self, progress) -> None:
        now = time.perf_counter()
        if self.current is None or progress.stage != self.current[0] or progress.step < self.current[1]:
            self.close(now)
            self.current = (progress.stage, progress.step, progress.total, {}, now)
        stage, _, _, _, began = self.current
        self.current = (stage, progress.step, progress.total, dict(progress.metrics), began)

    def close(self, now: float | None = None) -> None:
        if self.current is None:
            return
        stage, step, total, metrics, began = self.current
        now = time.perf_counter() if now is None else now
        parts = [f"l2c-explorer: {_STAGE_NAMES.get(stage, stage)}"]
        if total and stage in _STAGE_UNITS:
            parts.append(f"{step:,}/{total:,} {_STAGE_UNITS[stage]}")
        parts.append(f"{now - began:.1f} s")
        parts += [f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items()]
        print(", ".join(parts), file=self.stream or sys.stderr, flush=True)
        self.current = None


def progress_display(quiet: bool):
    """Bars on a terminal, one line per stage elsewhere, nothing with ``--quiet``."""
    if quiet:
        return TqdmProgress(disable=True)
    return TqdmProgress() if sys.stderr.isatty() else StageLines()


_STAGE_NAMES = {"reading": "reading images", "features": "features", "graph": "similarity graph",
                "similarity": "similarity model", "self-training": "self-training",
                "training": "training", "finishing": "finishing"}
_STAGE_UNITS = {"reading": "img", "features": "img", "similarity": "step", "training": "step", "self-training": "step"}


FORCE_HELP = "write into --out even when it holds files that are not an earlier run's results"


def _fail(message: str) -> int:
    print(f"l2c-explorer: error: {message}", file=sys.stderr)
    return EXIT_USAGE


# ---------------------------------------------------------------------------------------------------
# parsers: every option of a run comes from its spec (l2c_explorer.options)


def _converter(option: Option):
    """argparse ``type``: text -> value, refused with the option's own description of what is allowed."""

    def convert(text: str):
        try:
            value = option.spellings[text] if option.spellings else option.allowed.parse(text)
        except (KeyError, ValueError):
            value = text
        if not option.accepts(value):
            raise argparse.ArgumentTypeError(f"must be {_allowed_words(option)}, not {text}")
        return value

    convert.__name__ = option.name  # argparse names the type in some messages
    return convert


def _allowed_words(option: Option) -> str:
    if option.spellings:
        return "one of " + ", ".join(option.spellings)
    return option.allowed.describe()


def _help(option: Option) -> str:
    if option.allowed is BOOLEAN:
        return option.help + (" (on by default; this flag turns it off)" if option.default else "")
    if option.default is None:
        return f"{option.help} (default: {option.default_text()})"
    return f"{option.help} (default {option.default_text()})"


def _metavar(option: Option) -> str | None:
    if option.metavar:
        return option.metavar
    if option.spellings:
        return "{" + ",".join(option.spellings) + "}"
    return {Whole: "N", Number: "X"}.get(type(option.allowed))


class _DeprecatedAlias(argparse.Action):
    """An old spelling of a flag: stores into the same option and says which flag to use instead."""

    def __init__(self, option_strings, dest, *, new: str, **kwargs):
        super().__init__(option_strings, dest, **kwargs)
        self.new = new

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"l2c-explorer: warning: {option_string} is deprecated; use {self.new}", file=sys.stderr)
        setattr(namespace, self.dest, values)


def add_options(parser: argparse.ArgumentParser, spec: RunSpec) -> None:
    """One argument per option of ``spec`` offered on the command line, its value stored under the option's name."""
    for option in spec.on_command_line():
        kwargs = dict(default=option.default, help=_help(option))
        if option.positional:
            parser.add_argument(option.name, nargs="?", metavar=option.metavar, **kwargs)
            continue
        if option.allowed is BOOLEAN:
            kwargs["action"] = "store_false" if option.default else "store_true"
        elif option.repeat:
            kwargs.update(action="append", metavar=option.metavar)
        elif option.allowed is None:
            kwargs["metavar"] = option.metavar
        elif isinstance(option.allowed, OneOf) and not option.spellings:
            kwargs.update(type=_converter(option), choices=option.allowed.values)
        else:
            kwargs.update(type=_converter(option), metavar=_metavar(option))
        parser.add_argument(option.flag, dest=option.name, **kwargs)
        for alias in option.aliases:
            parser.add_argument(alias, dest=option.name, type=kwargs.get("type"), metavar=kwargs.get("metavar"),
                                action=_DeprecatedAlias, new=option.flag, default=argparse.SUPPRESS,
                                help=f"deprecated spelling of {option.flag}")


def options_from(args: argparse.Namespace, spec: RunSpec) -> dict:
    """The values of ``spec``'s options found in parsed ``args``."""
    return {name: getattr(args, name) for name in spec.options if hasattr(args, name)}


def build_parser(*, recipe: str = "default") -> argparse.ArgumentParser:
    """The command's parser; ``recipe`` (of ``train-similarity``) replaces defaults with the recipe's values."""
    parser = argparse.ArgumentParser(
        prog="l2c-explorer",
        description="Discover the categories in a folder of unlabelled images by learning to cluster.",
    )
    parser.add_argument("--version", action="version", version=f"l2c-explorer {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    app = sub.add_parser("app", help="open the interactive app (the default command)")
    add_options(app, APP)

    ts = sub.add_parser("train-similarity", help="learn a similarity model from a labelled folder")
    ts.add_argument("source", metavar="SOURCE_DIR", help="folder with one subfolder of images per class")
    ts.add_argument("--out", required=True, help="model file to write (.safetensors is added if missing)")
    ts.add_argument("--recipe", choices=tuple(SIMILARITY_RECIPES), default="default",
                    help="preset hyper-parameters that replace the defaults below (flags given still win); "
                         "'omniglot' and 'photos' reproduce the shipped models; a pretrained --backbone "
                         f"(efficientnet-lite0, ...) takes '{PRETRAINED_TOP}' unless another is given")
    add_options(ts, TRAIN_SIMILARITY)
    ts.set_defaults(**similarity_recipe(recipe))
    add_quiet(ts)

    di = sub.add_parser("discover", help="find the categories in an unlabelled folder")
    di.add_argument("target", metavar="TARGET_DIR", help="folder of images (searched recursively; only read)")
    di.add_argument("--out", required=True, help="output folder for assignments.csv and summary.json")
    di.add_argument("--force", action="store_true", help=FORCE_HELP)
    add_options(di, DISCOVER)
    di.add_argument("--score", action="store_true",
                    help="evaluate against TARGET_DIR's first-level subfolder names (ground truth, for evaluation only)")
    di.add_argument("--save-model", action="store_true", help="also save the trained clustering model in --out")
    di.add_argument("--constraints", metavar="FILE",
                    help="answers about pairs of images: a CSV file path_a,path_b,same (paths as in assignments.csv, "
                         "same 1 or 0); the clusters honour them (see `l2c-explorer questions`)")
    di.add_argument("--relearn", action="store_true",
                    help="with --constraints: also relearn the features and the clusters from the answers (a "
                         "second self-training on the corrected groups: seconds per thousand images, and the "
                         "answers then also fix images nobody was asked about)")
    add_quiet(di)

    qu = sub.add_parser("questions", help="the next pairs of images worth asking a person about, for a finished run",
                        description="Write the next N questions about a finished `discover` run as CSV path_a,path_b "
                                    "(paths as in its assignments.csv): pairs whose answer would change the clusters "
                                    "most and does not follow from the answers it used. Answer them (add a column "
                                    "same: 1 or 0) and run `discover ... --constraints answers.csv` again.")
    qu.add_argument("run_dir", metavar="RUN_DIR", help="the --out folder of a `discover` run")
    add_options(qu, QUESTIONS)
    asg = sub.add_parser("assign", help="assign new images to the categories of a finished discover run")
    asg.add_argument("new", metavar="NEW_DIR", help="folder of new images (searched recursively; only read)")
    asg.add_argument("--run", required=True, metavar="RESULTS_DIR", help="the --out folder of a finished discover run")
    asg.add_argument("--out", required=True, help="output folder for assignments.csv and summary.json")
    asg.add_argument("--force", action="store_true", help=FORCE_HELP)
    add_options(asg, ASSIGN)
    add_quiet(asg)

    ad = sub.add_parser("adapt", help="predict source classes in a new domain (labelled source, unlabelled target)")
    ad.add_argument("source", metavar="SOURCE_DIR", help="labelled folder: one subfolder per class")
    ad.add_argument("target", metavar="TARGET_DIR", help="unlabelled images of the same classes (only read)")
    ad.add_argument("--out", required=True, help="output folder for assignments.csv and summary.json")
    ad.add_argument("--force", action="store_true", help=FORCE_HELP)
    add_options(ad, ADAPT)
    ad.add_argument("--score", action="store_true",
                    help="evaluate against TARGET_DIR's subfolder names (ground truth, for evaluation only)")
    add_quiet(ad)

    sub.add_parser("models", help="list the similarity models available by name")
    sub.add_parser("backbones", help="list the encoders train-similarity --backbone accepts")
    return parser


def add_quiet(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quiet", action="store_true", help="no progress bars")


# ---------------------------------------------------------------------------------------------------
# commands


def cmd_train_similarity(args) -> int:
    from .similarity_learner import SimilarityLearner

    bar = progress_display(args.quiet)
    learner = SimilarityLearner(**options_from(args, TRAIN_SIMILARITY))
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
    from .errors import InputError
    from .names import category_names, has_readable_names, names_from_truth
    from .results import check_output_folder, write_discovery_results

    out = check_output_folder(args.out, args.target, results=True, force=args.force)
    warn_if_the_model_does_not_fit(args.similarity, args.target, follow_links=args.follow_links)
    if args.constraints is not None and not Path(args.constraints).expanduser().is_file():
        raise InputError(f"Answers file not found: {args.constraints}")
    if args.relearn and args.constraints is None:
        raise InputError("--relearn learns from answers: give them with --constraints FILE.")
    clusterer = L2CClusterer(**options_from(args, DISCOVER))
    bar = progress_display(args.quiet)
    try:
        clusterer.fit(args.target, constraints=args.constraints, relearn=args.relearn, callback=bar,
                      labelled=args.score)
    finally:
        bar.close()
    names = None
    # folders named by codes, with a names file: each group is named after its main category
    if clusterer.true_labels_ is not None:
        readable = category_names(clusterer.true_labels_, clusterer.root_)
        if has_readable_names(readable):
            names = names_from_truth(clusterer.labels_, [readable[t] for t in clusterer.true_labels_])
    summary = write_discovery_results(clusterer, out, score=args.score, save_model=args.save_model, names=names)
    given = clusterer.n_clusters is not None
    line = (f"{summary['n_images']} images -> {summary['k_estimated']} clusters"
            f"{' (K given)' if given else f' (estimated, at most {clusterer.max_clusters})'} in "
            f"{summary['seconds']:.1f} s on {summary['device']}")
    m = summary.get("metrics")
    if m:
        line += f"; ACC {m['acc']:.3f}, NMI {m['nmi']:.3f}, ARI {m['ari']:.3f}, true K {m['k_true']}"
    elif summary.get("no_scores"):
        line += f"; no scores: {summary['no_scores']}"
    if summary["n_skipped"]:
        line += f"; {summary['n_skipped']} file(s) skipped (see summary.json)"
    if summary.get("answers"):
        line += f"; {summary['answers']['n_answers']} answers used"
        if summary["answers"].get("relearnt_with"):
            line += " (relearnt from them)"
    print(line + f"; results in {out}")
    return 0


def warn_if_the_model_does_not_fit(model_name: str, target: str, *, follow_links: bool = False) -> None:
    """Say so on stderr (the run goes on) when the similarity model does not suit the folder's images."""
    from .data import find_images
    from .similarity_model import load_similarity_model, model_fit_advice

    better, message = model_fit_advice(load_similarity_model(model_name),
                                       find_images(target, follow_links=follow_links)[0])
    if message:
        hint = f" (--model {better})" if better else ""
        print(f"l2c-explorer: warning: {message}{hint}", file=sys.stderr)
def cmd_assign(args) -> int:
    import time

    from .results import check_output_folder, write_assignment_results
    from .runs import load_run

    started = time.perf_counter()
    out = check_output_folder(args.out, args.new, run=args.run, results=True, force=args.force)
    clusterer = load_run(args.run)
    bar = TqdmProgress(disable=args.quiet)
    try:
        assigned = clusterer.assign(args.new, device=args.device, callback=bar,  # threads: set by main()
                                    follow_links=args.follow_links)
    finally:
        bar.close()
    summary = write_assignment_results(clusterer, assigned, out, run_dir=args.run,
                                       seconds=time.perf_counter() - started)
    line = (f"{summary['n_images']} new images -> {summary['n_clusters']} clusters of {args.run}; "
            f"{summary['n_unlike_any']} unlike any of them, in {summary['seconds']:.1f} s")
    if summary["n_skipped"]:
        line += f"; {summary['n_skipped']} file(s) skipped (see summary.json)"
    print(line + f"; results in {out}")
    return 0


def cmd_questions(args) -> int:
    import csv
    import io

    import torch

    from .constraints import ConstraintSet
    from .files import write_csv
    from .graph import NEIGHBOUR_SHARE, knn_graph, neighbourhood
    from .questions import next_questions
    from .runfile import read_run_state

    state = read_run_state(args.run_dir)
    paths = state["paths"]
    answers = ConstraintSet(len(paths), state["answers"], names=paths)
    graph = state["graph"]  # the fitted graph, kept with the run
    if graph is None:  # a run written before it was kept: the exact graph discovery would first have made
        linked = neighbourhood(state["n_neighbors"], len(paths), share=NEIGHBOUR_SHARE)
        graph = knn_graph(torch.from_numpy(state["embedding"]), k=linked)
    found = next_questions(state["embedding"], graph, state["labels"], state["probabilities"], answers,
                           scale=state["pair_scale"], bias=state["pair_bias"], n=args.n)
    # the kind of each question goes along, so that the answers (path_a,path_b,kind plus a same column) teach
    # the next round which kinds of question change the groups here
    rows = [(paths[q.a], paths[q.b], q.kind) for q in found]
    if args.out:
        write_csv(Path(args.out).expanduser(), ["path_a", "path_b", "kind"], rows)
        print(f"{len(rows)} question(s) written to {args.out}", file=sys.stderr)
    else:
        text = io.StringIO()
        writer = csv.writer(text)
        writer.writerow(["path_a", "path_b", "kind"])
        writer.writerows(rows)
        sys.stdout.write(text.getvalue())
    return 0


def cmd_adapt(args) -> int:
    from .adaptation import DomainAdapter
    from .results import check_output_folder, write_adaptation_results

    out = check_output_folder(args.out, {"Target folder": args.target, "Source folder": args.source}, results=True,
                              force=args.force)  # both only read
    adapter = DomainAdapter(**options_from(args, ADAPT))
    bar = progress_display(args.quiet)
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
    from .model_fit import describe, model_statistics
    from .similarity_model import SimilarityModel, list_models

    models = list_models()
    if not models:
        print("No similarity models found. Train one with: l2c-explorer train-similarity SOURCE_DIR --out model")
        return 0
    for name, path in models.items():
        try:
            model = SimilarityModel.load(path)
            card = model.card
            m = card.get("holdout_pair_metrics", {})
            kind = describe(model_statistics(card, model.preprocessing.to_dict()))
            info = f"{card['trained_on']['n_classes']} classes of {kind}"
            if m:
                info += f", held-out pair F1 {m['f1']:.3f}, ROC-AUC {m['roc_auc']:.4f}"
        except L2CError as exc:
            info = f"unusable: {exc}"
        print(f"{name:20s} {info}  [{path}]")
    return 0


def cmd_backbones(args) -> int:
    from .backbones import FIXED_INPUT_SIZE, backbone_names
    from .pretrained import PRETRAINED, pretrained_names

    print("conv      small VGG-style network (symbols, digits; the default)")
    print("resnet    small ResNet, trained from scratch (photos)")
    print("ImageNet-pretrained, installed with l2c-explorer (frozen; a top is trained on their features; the "
          "`photos` recipe):")
    for name in pretrained_names():
        spec = PRETRAINED[name]
        print(f"  {name}  (input {spec.native_size}x{spec.native_size} native; package {spec.requirement})")
    print("torchvision classification models (train-similarity --backbone NAME [--backbone-weights FILE]):")
    for name in backbone_names():
        size = FIXED_INPUT_SIZE.get(name)
        print(f"  {name}" + (f"  (input {size}x{size} only)" if size else ""))
    return 0


def cmd_app(args) -> int:
    from .app.server import serve

    serve(**options_from(args, APP))
    return 0


COMMANDS = {
    "app": cmd_app,
    "train-similarity": cmd_train_similarity,
    "discover": cmd_discover,
    "questions": cmd_questions,
    "assign": cmd_assign,
    "adapt": cmd_adapt,
    "models": cmd_models,
    "backbones": cmd_backbones,
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0] not in SUBCOMMANDS and argv[0] not in ("-h", "--help", "--version")):
        argv = ["app", *argv]
    args = build_parser().parse_args(argv)
    recipe = getattr(args, "recipe", "default")
    if recipe == "default" and getattr(args, "backbone", None) not in (None, "conv", "resnet"):
        from .pretrained import is_pretrained  # (torch: only when training on a named backbone)

        if is_pretrained(args.backbone):
            recipe = PRETRAINED_TOP  # a top on a pretrained encoder trains with its own defaults
    if recipe != "default":  # the recipe's values become the defaults
        args = build_parser(recipe=recipe).parse_args(argv)
    from .threads import configure_environment, set_threads

    threads = configure_environment(getattr(args, "n_jobs", None))  # before torch and BLAS start their pools
    previous = _terminate_as_interrupt()
    try:
        if args.command != "app" or getattr(args, "n_jobs", None):
            set_threads(threads)
        return COMMANDS[args.command](args)
    except L2CError as exc:
        return _fail(str(exc))
    except Terminated:
        print("Terminated: stopped, nothing half-written left behind.", file=sys.stderr)
        return 128 + 15
    except KeyboardInterrupt:
        print("Interrupted.", file=sys.stderr)
        return 130
    finally:
        if previous is not None:  # main() called from a program (a test): its own handler back
            import signal

            signal.signal(signal.SIGTERM, previous)


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, a service manager), raised where Ctrl+C would be: the same clean-up runs."""


def _terminate_as_interrupt():
    """Turn SIGTERM into :class:`Terminated`; returns the handler it replaced (None: not the main thread)."""
    import signal
    import threading

    def terminate(signum, frame):
        raise Terminated

    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, terminate)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
