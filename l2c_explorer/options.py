"""Every option of every kind of run, declared once: name, default, allowed values, help and app label.

A :class:`RunSpec` lists the options of one kind of run (:data:`DISCOVER`, :data:`TRAIN_SIMILARITY`,
:data:`ADAPT`, and the app's own :data:`APP`). Everything else is derived from it:

* the estimators' keyword defaults (``L2CClusterer(steps=DISCOVER.defaults.steps, ...)``) and their
  validation (:meth:`RunSpec.validate`, in the spirit of scikit-learn's ``_parameter_constraints``: one
  place, messages for people, :class:`~l2c_explorer.errors.InputError`);
* the command line's flags, defaults, choices and ``--help`` (:mod:`l2c_explorer.cli`);
* the app's widgets: labels, first values, choices and ranges (:mod:`l2c_explorer.app.layout`), and the
  checks of the app's engine (:mod:`l2c_explorer.app.workbench`).

This module imports neither torch nor gradio: the command line and the app read it before anything
heavy is loaded.
"""

from __future__ import annotations

import inspect
import math
import numbers
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType, SimpleNamespace
from typing import Any

from .errors import InputError

# ---------------------------------------------------------------------------------------------------
# choices and tuned values that several parts of the package name


CLUSTERING_LOSSES = ("mcl", "kcl")  # the functions: l2c_explorer.losses.CLUSTERING_LOSSES
DEVICES = ("auto", "cpu", "cuda")
ADAPTATION_METHODS = ("source-only", "dann", "ccn+", "ccn++", "srdc")
SRDC_ASSIGNMENT_NORMS = ("sum", "softmax")
SRDC_CENTRE_INITS = ("mean", "target")
SRDC_COLUMN_SUMS = ("target", "batch")
NEIGHBOUR_SEARCHES = ("auto", "exact", "ivf")  # l2c_explorer.neighbours
SPECTRUM_METHODS = ("auto", "exact", "stochastic")  # l2c_explorer.graph.stochastic_spectrum

DISCOVERY_METHODS = ("graph", "paper")  # ours (l2c_explorer.clustering) and the paper's CCN (l2c_explorer.paper)

# Fine-tuning steps and share of each cluster kept by self-training (l2c_explorer.selftrain), chosen on
# held-out background alphabets (benchmarks/omniglot_self_training.py). Re-checked with the 48x48 `omniglot`
# model on the same 5 validation alphabets (fold 5, one seed; K unknown, mean ACC / |K error|): no
# self-training 89.7% / 1.4; 100 steps keeping 0.3, 0.5, 0.7, 1.0 of each cluster 91.9 / 0.8, 91.3 / 1.0,
# 91.5 / 1.0, 90.7 / 1.0; 200 steps 91.1 / 1.0. Kept: the spread among 0.3-0.7 is one alphabet's worth of noise.
# Rerun on 2 threads (the BENCHMARKS.md table): none 89.3 / 1.4; 50 steps 91.2 / 1.2 (2.0x faster, but
# below 100 steps' 91.9 / 1.0); keeping 0.3 / 0.5 / 0.7 / 1.0: 91.8 / 91.9 / 91.0 / 90.4; 200 steps 91.9 / 0.8.
SELF_TRAINING_STEPS = 100
SELF_TRAINING_KEEP = 0.5
# Self-training steps of a relearning from a person's answers (L2CClusterer.relearn). A relearning starts from
# the run's features, already sharpened by SELF_TRAINING_STEPS on this folder, so it needs fewer. Chosen with
# benchmarks/relearn_steps.py on fold 5's validation alphabets (48x48 fold model, never the evaluation
# alphabets; our questions relearnt at each budget, mean ACC / |K error| after 10, 25, 50 answers): 50 steps
# 93.3 / 0.4, 93.6 / 0.4, 94.1 / 0.4; 100 steps 93.4 / 0.4, 93.0 / 0.6, 93.5 / 0.8, in 1.5x the time.
RELEARN_STEPS = 50

# Discovery settings a similarity model may carry in its card (``"discovery"``), chosen for that model on
# classes held out of its training (photos: benchmarks/photos_settings.py). A discover option left at None
# takes the model's value, else the package value below; a value given always wins.
MODEL_SETTINGS = {
    "n_neighbors": 10,
    "diffusion_time": 1.0,
    "self_training_steps": SELF_TRAINING_STEPS,
    "self_training_keep": SELF_TRAINING_KEEP,
    "relearn_steps": RELEARN_STEPS,
    # A drop in the spectrum counts as a boundary between groups when it is at least this fraction of the
    # largest drop. This, and the graph it is read from (k_graph_*), were chosen by 6-fold cross-validation
    # on the 30 Omniglot background alphabets, each fold's 5 held out from its similarity model's training
    # (benchmarks/omniglot_k_rule.py), never on the evaluation alphabets. Re-checked with the 48x48 model on
    # folds 3-5 (15 alphabets, benchmarks/results/omniglot_k_rule_48): this graph and significance 1.60 mean
    # |K error| in the first pass, the best of the grid 1.20 (0/1 ten-neighbour graph, 0.6) and 1.27 (this
    # graph, 0.4); kept, as the final K is the second pass's and the 0/1 graph's split characters (30
    # alphabets, 32x32 model) were what self-training could not undo.
    "k_significance": 0.5,
    # The same rule on the graph of the self-trained features: with the 32x32 model every significance from
    # 0.6 to 1.0 gave the same, lowest K error on fold 5's validation alphabets (benchmarks/
    # omniglot_self_training.py). Re-chosen for the 48x48 model on folds 3-5 (15 validation alphabets, never
    # the evaluation alphabets): re-reading the final spectrum at 0.3 / 0.4 / 0.5 / 0.6 / 0.7 / 0.8 / 0.9 / 1.0
    # gives mean |K error| 1.27 / 0.53 / 0.60 / 0.67 / 0.73 / 0.73 / 1.20 / 1.33; the whole pipeline at 0.6
    # (omniglot_self_training.py --fold F --k-sharpened-significance 0.6; results/sig06_fold{3,4,5}) against
    # 1.0, mean ACC with K unknown / |K error| per fold: fold 3 93.3 / 0.8 -> 93.4 / 0.8, fold 4 90.8 / 2.2 ->
    # 93.2 / 0.4 (Malay 8 -> 1), fold 5 91.9 / 1.0 -> 92.1 / 0.8; all 15: 92.0 / 1.33 -> 92.9 / 0.67.
    # 0.6 rather than 0.4, whose re-read error is lower: 0.4 sits next to 0.3's over-splitting.
    "k_sharpened_significance": 0.6,
    # The first K estimate reads the spectrum of a self-tuning graph with this many neighbours per image and
    # the local scale of this neighbour (l2c_explorer.graph.self_tuning_graph).
    "k_graph_neighbours": 20,
    "k_graph_scale_neighbour": 7,
}


def discovery_settings(model_settings: Mapping | None, given: Mapping) -> dict:
    """The discovery settings a run uses: each given option (not None), else the model's, else the package's."""
    carried = dict(model_settings or {})
    return {name: given.get(name) if given.get(name) is not None else carried.get(name, default)
            for name, default in MODEL_SETTINGS.items()}


# ---------------------------------------------------------------------------------------------------
# allowed values


class Whole:
    """A whole number in [low, high] (``high`` None: no upper bound)."""

    def __init__(self, low: int, high: int | None = None):
        self.low, self.high = low, high

    def accepts(self, value) -> bool:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            return False
        return value >= self.low and (self.high is None or value <= self.high)

    def parse(self, text: str):
        return int(text)

    def describe(self) -> str:
        if self.high is None:
            return f"a whole number of at least {self.low}"
        return f"a whole number from {self.low} to {self.high}"


class Number:
    """A real number in a range; ``low_open``/``high_open`` exclude the ends."""

    def __init__(self, low: float | None = None, high: float | None = None, *, low_open: bool = False,
                 high_open: bool = False):
        self.low, self.high, self.low_open, self.high_open = low, high, low_open, high_open

    def accepts(self, value) -> bool:
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or math.isnan(value):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        if self.high is not None and (value >= self.high if self.high_open else value > self.high):
            return False
        return True

    def parse(self, text: str):
        return float(text)

    def describe(self) -> str:
        if self.high is None:
            if self.low == 0:
                return "a positive number" if self.low_open else "0 or a positive number"
            if self.low is None:
                return "any number"
            return f"a number {'above' if self.low_open else 'of at least'} {self.low:g}"
        left = "(" if self.low_open else "["
        right = ")" if self.high_open else "]"
        return f"a number in {left}{self.low:g}, {self.high:g}{right}"


class OneOf:
    """One of a fixed set of values."""

    def __init__(self, values: Iterable):
        self.values = tuple(values)

    def accepts(self, value) -> bool:
        return any(_same(value, v) for v in self.values)

    def parse(self, text: str):
        for v in self.values:
            if str(v) == text:
                return v
        raise ValueError(text)

    def describe(self) -> str:
        return "one of " + ", ".join(str(v) for v in self.values)


class Device(OneOf):
    """A device name (``auto``, ``cpu``, ``cuda`` or ``cuda:N``) or a ``torch.device``."""

    def __init__(self):
        super().__init__(DEVICES)

    def accepts(self, value) -> bool:
        if isinstance(value, str):
            name = value.lower()
            return name in self.values or (name.startswith("cuda:") and name[5:].isdigit())
        return type(value).__name__ == "device" and hasattr(value, "type")  # a torch.device

    def describe(self) -> str:
        return super().describe() + " (or cuda:N)"


class Ranges:
    """Augmentation ranges: an ``AffineJitter`` or a mapping of its four ranges, each 0 or more."""

    KEYS = ("rotation", "scale", "shift", "shear")

    def accepts(self, value) -> bool:
        ranges = value.to_dict() if hasattr(value, "to_dict") else value
        if not isinstance(ranges, Mapping) or set(ranges) != set(self.KEYS):
            return False
        return all(Number(0).accepts(v) for v in ranges.values())

    def describe(self) -> str:
        return "an AffineJitter, or a mapping of " + ", ".join(self.KEYS) + " (each 0 or more)"


class Augmentations:
    """An augmentation (``AffineJitter`` or ``PhotoAugment``) or its mapping: a ``kind`` and its ranges."""

    KEYS = {"affine": ("rotation", "scale", "shift", "shear"),
            "photo": ("min_area", "aspect", "flip", "brightness", "contrast", "saturation")}

    def accepts(self, value) -> bool:
        ranges = value.to_dict() if hasattr(value, "to_dict") else value
        if not isinstance(ranges, Mapping):
            return False
        kind = ranges.get("kind", "affine")
        keys = set(ranges) - {"kind"}
        if kind not in self.KEYS or keys != set(self.KEYS[kind]) or not all(Number(0).accepts(v) for k, v in ranges.items()
                                                                            if k != "kind"):
            return False
        if kind == "photo":
            return 0 < ranges["min_area"] <= 1 and ranges["aspect"] >= 1 and ranges["flip"] <= 1
        return True

    def describe(self) -> str:
        return ("an AffineJitter or PhotoAugment, or a mapping of kind 'affine' (" + ", ".join(self.KEYS["affine"])
                + ") or 'photo' (" + ", ".join(self.KEYS["photo"]) + "), each 0 or more")


class Holdout:
    """Classes held out: a share in [0, 0.9) or a number of classes (a whole number of at least 1)."""

    def accepts(self, value) -> bool:
        if not Number(0).accepts(value):
            return False
        return value < 0.9 or float(value).is_integer()

    def parse(self, text: str):
        value = float(text)
        return int(value) if value >= 1 and value.is_integer() else value

    def describe(self) -> str:
        return "a share of the classes in [0, 0.9) or a number of classes"


class Text:
    """Any non-empty text (a name checked later, where the list of names is known)."""

    def accepts(self, value) -> bool:
        return isinstance(value, str) and bool(value.strip())

    def parse(self, text: str):
        return text

    def describe(self) -> str:
        return "a name"


class Sizes:
    """A sequence of whole numbers of at least 1 (layer widths, block counts)."""

    def accepts(self, value) -> bool:
        return isinstance(value, (tuple, list)) and bool(value) and all(Whole(1).accepts(v) for v in value)

    def describe(self) -> str:
        return "a sequence of whole numbers of at least 1"


class CacheSetting:
    """Where a folder's decoded images, features and neighbour lists are kept: True (the per-user cache folder),
    False (nothing is kept) or a folder."""

    def accepts(self, value) -> bool:
        import os

        return isinstance(value, (bool, str, os.PathLike)) and value != ""

    def parse(self, text: str):
        return text

    def describe(self) -> str:
        return "yes, no or a folder"


BOOLEAN = OneOf((True, False))


def _same(a, b) -> bool:
    """Equal, without mistaking 1 for True or 0 for False."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    return bool(a == b)


# ---------------------------------------------------------------------------------------------------
# one option, and the options of one kind of run


SAME = object()  # a widget that first shows the option's default


@dataclass(frozen=True)
class Widget:
    """How the app shows an option.

    ``value`` is what the widget first shows when that differs from the default (e.g. a short first
    similarity model); ``minimum``/``maximum`` bound a slider or number box inside the allowed range;
    ``choice_labels`` names the choices for people. ``toggle``: a checkbox that switches the option
    between its default (ticked) and 0.
    """

    label: str
    info: str = ""
    minimum: float | None = None
    maximum: float | None = None
    step: float | None = None
    value: Any = SAME
    choice_labels: Mapping = field(default_factory=dict)
    toggle: bool = False

    def first_value(self, option: Option):
        if self.toggle:  # None: the model's setting, which is on
            return option.default is None or bool(option.default)
        return option.default if self.value is SAME else self.value

    def choices(self, option: Option) -> list[tuple[str, Any]]:
        return [(self.choice_labels.get(v, str(v)), v) for v in option.allowed.values]


@dataclass(frozen=True)
class Option:
    """One option: its name (the estimator's parameter), default, allowed values, help and app widget.

    ``none`` says what None means when None is allowed (e.g. ``"estimated"``). ``flag`` is the command-line
    flag (None: not on the command line; for a boolean, the flag sets the opposite of the default), with
    ``aliases`` kept for old spellings (deprecated, they warn) and ``spellings`` for values typed
    differently on the command line (``--invert yes``). ``repeat``: the flag may be given several times.
    """

    name: str
    default: Any
    help: str
    allowed: Any = None
    none: str = ""
    flag: str | None = None
    aliases: tuple[str, ...] = ()
    spellings: Mapping[str, Any] = field(default_factory=dict)
    metavar: str | None = None
    repeat: bool = False
    positional: bool = False
    widget: Widget | None = None

    def accepts(self, value) -> bool:
        if value is None:
            return bool(self.none)
        return self.allowed is None or self.allowed.accepts(value)

    def describe(self) -> str:
        text = self.allowed.describe() if self.allowed is not None else "given"
        return text + (f", or None ({self.none})" if self.none else "")

    def check(self, value, *, called: str | None = None) -> None:
        """Raise :class:`InputError` unless ``value`` is allowed; ``called`` names it (default: its name)."""
        if not self.accepts(value):
            raise InputError(f"{called or self.name} must be {self.describe()}, not {value!r}.")

    def default_text(self) -> str:
        """The default as ``--help`` shows it."""
        if self.default is None:
            return self.none or "none"
        for text, value in self.spellings.items():
            if value == self.default and type(value) is type(self.default):
                return text
        return str(self.default)


class RunSpec:
    """The options of one kind of run, in order.

    ``spec["steps"]`` is an :class:`Option`; ``spec.defaults.steps`` its default.
    """

    def __init__(self, name: str, options: Iterable[Option]):
        self.name = name
        self.options = {o.name: o for o in options}
        self.defaults = SimpleNamespace(**{o.name: o.default for o in self.options.values()})

    def __getitem__(self, name: str) -> Option:
        return self.options[name]

    def __iter__(self) -> Iterator[Option]:
        return iter(self.options.values())

    def __contains__(self, name: str) -> bool:
        return name in self.options

    def default_dict(self) -> dict:
        return dict(vars(self.defaults))

    def validate(self, params: Mapping) -> None:
        """Raise :class:`InputError` for the first value in ``params`` that is not an allowed one.

        Names that are not options of this run are refused too (a misspelt option must not be ignored).
        """
        for key, value in params.items():
            if key not in self.options:
                raise InputError(f"Unknown option {key!r} for a {self.name} run; known: {', '.join(self.options)}.")
            self.options[key].check(value)

    def on_command_line(self) -> list[Option]:
        return [o for o in self if o.flag or o.positional]

    def estimator_init(self, *, positional: tuple[str, ...] = ()):
        """The ``__init__`` of this run's estimator: it stores every option given, or its default, and nothing else.

        Its signature, which scikit-learn reads for ``get_params`` and ``clone``, is the spec's: the options in
        order, each with its default; ``positional`` ones (first in the spec) may also be given by position.
        """
        names = list(self.options)
        assert names[: len(positional)] == list(positional), "positional options come first"
        kinds = {name: inspect.Parameter.POSITIONAL_OR_KEYWORD if name in positional else inspect.Parameter.KEYWORD_ONLY
                 for name in names}
        signature = inspect.Signature(
            [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
            + [inspect.Parameter(name, kinds[name], default=_copyable(self.options[name].default)) for name in names]
        )

        def __init__(self, *args, **kwargs):
            bound = signature.bind(self, *args, **kwargs)
            bound.apply_defaults()
            for name in names:
                setattr(self, name, bound.arguments[name])

        __init__.__signature__ = signature
        __init__.__doc__ = f"Store the options of a {self.name} run (see :data:`l2c_explorer.options`)."
        return __init__

    def in_app(self) -> list[Option]:
        return [o for o in self if o.widget is not None]


def _frozen(**values) -> Mapping:
    return MappingProxyType(dict(values))


def _copyable(value):
    """A default an estimator can hold: scikit-learn's ``clone`` deep-copies parameters (not mapping proxies)."""
    return dict(value) if isinstance(value, MappingProxyType) else value


def _model_setting(name: str) -> str:
    return f"the similarity model's setting; else {MODEL_SETTINGS[name]}"


DEVICE = Option("device", "auto", "where to compute: auto = a GPU when there is one", allowed=Device(), flag="--device",
                widget=Widget("Compute on", choice_labels=_frozen(auto="Automatic (GPU if there is one)", cpu="CPU",
                                                                   cuda="GPU (CUDA)")))
SEED = Option("random_state", 0, "random seed", allowed=Whole(0), flag="--seed")
FOLLOW_LINKS = Option("follow_links", False, "also read links (to images or folders) that lead outside the chosen "
                      "folder; by default they are skipped and listed", allowed=BOOLEAN, flag="--follow-links")
THREADS = Option("n_jobs", None, "CPU threads", allowed=Whole(1), flag="--threads",
                 none="the physical cores this process may use, or $L2C_THREADS (l2c_explorer.threads)")


# ---------------------------------------------------------------------------------------------------
# finding the categories of a folder (l2c_explorer.clustering.L2CClusterer)

DISCOVER = RunSpec("discover", [
    Option("similarity", "omniglot", "similarity model: a shipped name (see `l2c-explorer models`) or a model file",
           flag="--model", metavar="MODEL",
           widget=Widget("Similarity model", value=None)),  # the list of models is filled when the page loads
    Option("n_clusters", None, "number of categories, when known", allowed=Whole(1), none="estimated",
           flag="--k", metavar="K", widget=Widget("How many categories", minimum=1, value=10)),
    Option("max_clusters", 100, "the largest number of categories considered when K is estimated",
           allowed=Whole(2), flag="--max-k",
           widget=Widget("At most (when estimating)", minimum=2, maximum=1000, step=1)),
    Option("loss", "mcl", "the clustering network's pairwise loss: mcl (meta classification likelihood) or kcl "
           "(KL-divergence contrastive loss)", allowed=OneOf(CLUSTERING_LOSSES), flag="--loss",
           widget=Widget("Training loss", info="Two ways of learning from pairs; MCL is usually better.",
                         choice_labels=_frozen(mcl="MCL (recommended)", kcl="KCL"))),
    Option("steps", 100, "training steps of the clustering network (each step sees every pair of up to 2,048 "
           "images, or one mini-batch of a larger folder)", allowed=Whole(1), flag="--steps", aliases=("--epochs",),
           widget=Widget("Training length (steps)", minimum=10, maximum=1000, step=10,
                         info="100 is plenty for most folders; more refines the groups a little.")),
    Option("method", "graph", "graph: ours (similarity graph, eigengap K, clustering network, self-training); paper: "
           "the L2C paper's clustering network on dense P(same) > 0.5 targets with over-provisioned outputs and its "
           "dominant-cluster K (a baseline)", allowed=OneOf(DISCOVERY_METHODS), flag="--method"),
    Option("n_neighbors", None, "links per image in the similarity graph", allowed=Whole(1), flag="--neighbors",
           none=_model_setting("n_neighbors")),
    Option("diffusion_time", None, "random-walk steps of the diffusion features (larger: smoother, fewer fine "
           "distinctions)", allowed=Number(0), none=_model_setting("diffusion_time")),
    Option("adapt_norm", True, "re-estimate the similarity model's batch-norm statistics on the target images",
           allowed=BOOLEAN),
    Option("self_training_steps", None, "fine-tune a copy of the similarity model on its confident "
           "first clusters for this many steps, then cluster again (0: one pass, faster)", allowed=Whole(0),
           flag="--self-training-steps", none=_model_setting("self_training_steps"),
           widget=Widget("Sharpen the similarity model on these images, then group again (more accurate, and "
                         "longer: the time left counts it)", toggle=True)),
    Option("self_training_keep", None, "the share of each cluster's members, most confident first, used as examples "
           "for self-training", allowed=Number(0, 1, low_open=True), none=_model_setting("self_training_keep")),
    Option("relearn_steps", None, "self-training steps of a relearning from answers (--relearn); never more than the "
           "run's own self-training steps, when it had any", allowed=Whole(1),
           flag="--relearn-steps", none=_model_setting("relearn_steps")),
    Option("k_significance", None, "first K estimate: a drop in the spectrum counts as a boundary between groups when "
           "it is at least this fraction of the largest drop", allowed=Number(0, 1, low_open=True),
           none=_model_setting("k_significance")),
    Option("k_sharpened_significance", None, "the same after self-training", allowed=Number(0, 1, low_open=True),
           none=_model_setting("k_sharpened_significance")),
    Option("k_graph_neighbours", None, "neighbours per image of the self-tuning graph the first K estimate reads",
           allowed=Whole(2), none=_model_setting("k_graph_neighbours")),
    Option("k_graph_scale_neighbour", None, "the neighbour whose distance sets each image's local scale in that graph",
           allowed=Whole(1), none=_model_setting("k_graph_scale_neighbour")),
    Option("neighbours", "auto", "nearest-neighbour search: exact, or ivf (approximate, an inverted-file search: "
           "faiss's on the CPU, else torch's); auto: exact up to 20,000 images (l2c_explorer.neighbours)",
           allowed=OneOf(NEIGHBOUR_SEARCHES), flag="--neighbour-search"),
    Option("spectrum", "auto", "graph spectrum and diffusion features: exact eigenpairs, or stochastic (estimated "
           "at a cost linear in the folder); auto: estimated when exact ones would cost much",
           allowed=OneOf(SPECTRUM_METHODS), flag="--spectrum"),
    Option("cache", True, "keep the folder's decoded images, features and neighbour lists for the next run on it: "
           "yes (in the per-user cache folder, $L2C_CACHE_DIR), no, or a folder", allowed=CacheSetting(),
           flag="--cache", spellings=_frozen(yes=True, no=False), metavar="{yes,no,DIR}"),
    FOLLOW_LINKS,
    THREADS,
    DEVICE,
    SEED,
])


# ---------------------------------------------------------------------------------------------------
# new images into the categories of a finished run (l2c_explorer.runs.load_run, L2CClusterer.assign)

ASSIGN = RunSpec("assign", [FOLLOW_LINKS, THREADS, DEVICE])


# ---------------------------------------------------------------------------------------------------
# learning a similarity model (l2c_explorer.similarity_learner.SimilarityLearner)

TRAIN_SIMILARITY = RunSpec("train-similarity", [
    Option("epochs", 20, "passes over the images", allowed=Number(0, low_open=True), flag="--epochs",
           # a first model in a few minutes on a CPU; train longer once it proves useful
           widget=Widget("Epochs (passes over the images)", minimum=1, maximum=50, step=1, value=5)),
    Option("image_size", 32, "side of the square model input, in pixels (for 'conv': a multiple of 2 ** number of "
           "blocks)", allowed=Whole(1), flag="--image-size"),
    Option("channels", 1, "1 = grayscale, 3 = colour", allowed=OneOf((1, 3)), flag="--channels"),
    Option("invert", "auto", "flip intensities so the background is dark (auto: when images have light borders)",
           allowed=OneOf(("auto", True, False)), flag="--invert", spellings=_frozen(auto="auto", yes=True, no=False)),
    Option("backbone", "conv", "the encoder: conv (small VGG-style, for symbols), resnet (small ResNet, for photos), "
           "an installed ImageNet-pretrained encoder (efficientnet-lite0, -lite1, -lite2: a top is trained on its "
           "features, and its last --tuned-blocks blocks with it) or a torchvision classification model (resnet18, resnet50, efficientnet_b0, "
           "convnext_tiny, vit_b_16, ...; `l2c-explorer backbones` lists them)", allowed=Text(), flag="--backbone",
           metavar="NAME"),
    Option("backbone_weights", None, "a state-dict file of the torchvision backbone's weights (e.g. ImageNet weights "
           "downloaded elsewhere; .pth or .safetensors, read without running code); nothing is ever downloaded",
           allowed=Text(), none="trained from scratch", flag="--backbone-weights", metavar="FILE"),
    Option("widths", (32, 64, 128, 128), "channels of the convolutional blocks (conv: each halves the side) or of the "
           "ResNet stages", allowed=Sizes()),
    Option("blocks", (1, 1, 1, 1), "residual blocks per ResNet stage (resnet only)", allowed=Sizes()),
    Option("stem_stride", 1, "stride of the ResNet's first convolution (resnet only; 2 halves the input side)",
           allowed=OneOf((1, 2))),
    Option("embedding_dim", 128, "size of the embedding", allowed=Whole(1)),
    Option("hidden", 1024, "width of the hidden layer of the top trained on a pretrained backbone's features (0: "
           "a linear projection; pretrained backbones only)", allowed=Whole(0)),
    Option("feature_dropout", 0.0, "dropout on a pretrained backbone's features while the top trains (pretrained "
           "backbones only)", allowed=Number(0, 1, high_open=True)),
    Option("tuned_blocks", 0, "last blocks of a pretrained backbone trained with the top, from the activations "
           "before them computed once per image (0: the backbone stays frozen; pretrained backbones only)",
           allowed=Whole(0), flag="--tuned-blocks", metavar="N"),
    Option("max_images_per_class", None, "train on at most this many images of each class, a seeded sample (for "
           "a large labelled folder; pretrained backbones only)", allowed=Whole(2), none="all of them",
           flag="--max-per-class", metavar="N"),
    Option("classes_per_batch", 20, "classes in a training batch", allowed=Whole(2)),
    Option("images_per_class", 5, "images of each class in a training batch", allowed=Whole(2)),
    Option("same_group", 0.5, "share of batches drawn inside one group of classes (with class_depth > 1)",
           allowed=Number(0, 1)),
    Option("quarter_turns", False, "also learn from 90/180/270-degree rotated copies as extra classes (symbols only)",
           allowed=BOOLEAN, flag="--quarter-turns"),
    Option("augmentation", _frozen(kind="affine", rotation=10.0, scale=0.15, shift=0.1, shear=0.15),
           "random augmentation of training batches: affine (largest rotation in degrees, zoom, shift, shear) for "
           "symbols, or photo (random resized crops, mirror images, colour jitter)", allowed=Augmentations()),
    Option("proto_weight", 0.0, "weight of the in-batch prototype loss added to the pair loss", allowed=Number(0)),
    Option("class_weight", 0.0, "weight of a cosine-classifier cross-entropy over all training classes (0: pair losses "
           "only)", allowed=Number(0)),
    Option("label_smoothing", 0.1, "label smoothing of that cross-entropy", allowed=Number(0, 1, high_open=True)),
    Option("lr", 1e-3, "peak learning rate (warm-up, then cosine decay to 0)", allowed=Number(0, low_open=True)),
    Option("weight_decay", 0.0, "decoupled weight decay (AdamW) of the network; 0: plain Adam", allowed=Number(0)),
    Option("warmup", 0.0, "share of the steps spent warming the learning rate up from 0",
           allowed=Number(0, 1, high_open=True)),
    Option("mixed_precision", False, "run the network in bfloat16 where the hardware supports it (about twice as fast "
           "on CPUs with AVX-512 BF16 and on recent GPUs)", allowed=BOOLEAN, flag="--mixed-precision"),
    Option("channels_last", False, "channels-last memory order (faster convolutions on most CPUs)", allowed=BOOLEAN),
    Option("mirror_average", False, "the model embeds an image as the average of its own and its mirror image's "
           "embedding (for photos, where a mirror image shows the same thing)", allowed=BOOLEAN),
    Option("holdout", 0.1, "classes held out to measure pair precision/recall/F1/ROC-AUC: a share below 0.9, or a "
           "number of classes", allowed=Holdout(), flag="--holdout"),
    Option("class_depth", 1, "folder levels that name a class, e.g. 2 for ALPHABET/CHARACTER/", allowed=Whole(1),
           flag="--class-depth",
           widget=Widget("Folder levels that name a category", info="2 for ALPHABET/CHARACTER/ folders", minimum=1,
                         maximum=3, step=1)),
    FOLLOW_LINKS,
    DEVICE,
    SEED,
    Option("name", None, "name stored in the model card", none="the folder's name", flag="--name",
           widget=Widget("Name of the new model", value="my-model")),
])


# ---------------------------------------------------------------------------------------------------
# same categories, new domain (l2c_explorer.adaptation.DomainAdapter)

ADAPT = RunSpec("adapt", [
    Option("method", "ccn+", "source-only, dann, ccn+, ccn++ or srdc (see `l2c-explorer adapt --help`)",
           allowed=OneOf(ADAPTATION_METHODS), flag="--method",
           widget=Widget("Method", info="ccn+ learns from pairs in both domains; source-only ignores the target "
                                        "while training (a baseline).")),
    # The same for every method, so that each gets the same number of steps; tuned on the digits benchmark
    # (benchmarks/digits_da.py), where 6 epochs left the adaptation methods still improving.
    Option("epochs", 10, "training epochs (an epoch: max(source, target images) / batch size steps, within "
           "[min_steps_per_epoch, max_steps_per_epoch])", allowed=Whole(1), flag="--epochs",
           widget=Widget("Epochs", minimum=1)),
    Option("image_size", 32, "side of the square network input, in pixels (a multiple of 2 ** number of blocks)",
           allowed=Whole(1), flag="--image-size"),
    Option("channels", 1, "1 = grayscale, 3 = colour", allowed=OneOf((1, 3)), flag="--channels"),
    Option("invert", "auto", "flip intensities so the background is dark; auto decides for each domain",
           allowed=OneOf(("auto", True, False))),
    Option("widths", (16, 32, 64), "channels of the convolutional blocks (each halves the side)"),
    Option("hidden_dim", 128, "size of the hidden features", allowed=Whole(1)),
    Option("batch_size", 64, "images per domain and step", allowed=Whole(2)),
    Option("lr", 1e-3, "Adam learning rate, annealed as lr / (1 + 10 p)^0.75", allowed=Number(0, low_open=True)),
    Option("weight_decay", 5e-4, "Adam weight decay", allowed=Number(0)),
    # Stronger than similarity training's jitter: two domains often differ in the size, position and slant of
    # the same content (USPS digits fill their frame, MNIST digits keep a margin), and augmentation that spans
    # such differences is cheap adaptation for every method, the source-only baseline included.
    Option("jitter", _frozen(rotation=15.0, scale=0.3, shift=0.15, shear=0.3),
           "random affine augmentation of both domains: largest rotation (degrees), zoom, shift and shear",
           allowed=Ranges()),
    Option("min_steps_per_epoch", 50, "fewest steps of an epoch", allowed=Whole(1)),
    Option("max_steps_per_epoch", 60, "most steps of an epoch", allowed=Whole(1)),
    Option("cluster_loss", "mcl", "CCN+ clustering loss on target pairs", allowed=OneOf(CLUSTERING_LOSSES)),
    Option("cluster_weight", 1.0, "weight of the clustering loss", allowed=Number(0)),
    Option("similarity_steps", 200, "training steps of the similarity model learnt on the source (ccn+, ccn++)",
           allowed=Whole(1)),
    Option("similarity_proto_weight", 1.0, "weight of the similarity model's in-batch prototype loss",
           allowed=Number(0)),
    Option("domain_weight", 1.0, "final strength of the gradient reversal (dann, ccn++)", allowed=Number(0)),
    Option("srdc_detach_q", True, "SRDC: the auxiliary distribution is a fixed target (paper) or not (code)",
           allowed=BOOLEAN),
    Option("srdc_assignment", "sum", "SRDC: normalisation of the Student-t kernel (paper: sum; code: softmax)",
           allowed=OneOf(SRDC_ASSIGNMENT_NORMS)),
    Option("srdc_soft_select", True, "SRDC: weight source images by their likeness to the target (paper)",
           allowed=BOOLEAN),
    Option("srdc_column_sums", "target", "SRDC: cluster sizes over the whole target (paper) or the batch (code)",
           allowed=OneOf(SRDC_COLUMN_SUMS)),
    Option("srdc_centre_init", "mean", "SRDC: centres re-initialised at the mean of both domains' centroids or "
           "at the target's", allowed=OneOf(SRDC_CENTRE_INITS)),
    Option("srdc_kmeans_iterations", 5, "SRDC: Lloyd iterations of the per-epoch K-means", allowed=Whole(1)),
    Option("srdc_kmeans_sample", 3000, "SRDC: at most this many images per domain feed the per-epoch K-means",
           allowed=Whole(2)),
    Option("track_accuracy", False, "with a labelled target: record the target accuracy after every epoch",
           allowed=BOOLEAN),
    DEVICE,
    SEED,
])


# ---------------------------------------------------------------------------------------------------
# the app itself (`l2c-explorer [FOLDER] ...`, l2c_explorer.app.server.serve)

APP = RunSpec("app", [
    Option("folder", None, "target folder to open", none="none", positional=True, metavar="FOLDER"),
    Option("host", "127.0.0.1", "address to listen on (127.0.0.1: this machine only)", flag="--host"),
    Option("port", None, "port to listen on", allowed=Whole(1, 65535), none="7860 or the next free one",
           flag="--port"),
    Option("open_browser", True, "open a browser tab", allowed=BOOLEAN, flag="--no-browser"),
    Option("models_dirs", None, "extra folder of similarity models (may be repeated)", none="none",
           flag="--models-dir", repeat=True, metavar="DIR"),
    Option("work_dir", None, "where the app keeps thumbnails, runs and exports", none="a per-user cache folder",
           flag="--work-dir", metavar="DIR"),
    Option("token", True, "require this launch's secret token (in the address the app opens and prints) with "
           "every request, as Jupyter does", allowed=BOOLEAN, flag="--no-token"),
    THREADS,
])


# ---------------------------------------------------------------------------------------------------
# the next questions about a finished run (`l2c-explorer questions RUN_DIR`, l2c_explorer.questions)

QUESTIONS = RunSpec("questions", [
    Option("n", 10, "how many questions", allowed=Whole(1), flag="--n"),
    Option("out", None, "CSV file to write", none="standard output", flag="--out", metavar="FILE"),
])

RUNS = {spec.name: spec for spec in (DISCOVER, ASSIGN, TRAIN_SIMILARITY, ADAPT, APP)}
