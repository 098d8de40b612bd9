"""One home for every option: the estimators, the command line and the app's engine all take the spec's."""

from __future__ import annotations

import inspect
import subprocess
import sys

import numpy as np
import pytest

from l2c_explorer import options
from l2c_explorer.cli import build_parser, main
from l2c_explorer.errors import InputError
from l2c_explorer.options import ADAPT, APP, DISCOVER, TRAIN_SIMILARITY, RunSpec

ESTIMATORS = {"discover": "l2c_explorer.clustering.L2CClusterer",
              "train-similarity": "l2c_explorer.similarity_learner.SimilarityLearner",
              "adapt": "l2c_explorer.adaptation.DomainAdapter"}
MINIMAL_COMMANDS = {"discover": ["discover", "FOLDER", "--out", "OUT"],
                    "train-similarity": ["train-similarity", "FOLDER", "--out", "OUT"],
                    "adapt": ["adapt", "SOURCE", "TARGET", "--out", "OUT"],
                    "app": ["app"]}


def estimator(spec: RunSpec):
    module, name = ESTIMATORS[spec.name].rsplit(".", 1)
    return getattr(__import__(module, fromlist=[name]), name)


def comparable(value):
    """Jitter ranges compare as dicts, sequences as tuples."""
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if isinstance(value, (list, tuple)):
        return tuple(value)
    if hasattr(value, "items"):
        return dict(value)
    return value


def test_the_spec_imports_neither_torch_nor_gradio():
    code = ("import sys, l2c_explorer.options, l2c_explorer.cli; l2c_explorer.cli.build_parser(); "
            "print(sorted(m for m in ('gradio', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "[]", out.stderr


@pytest.mark.parametrize("spec", [DISCOVER, TRAIN_SIMILARITY, ADAPT], ids=lambda s: s.name)
def test_every_estimator_parameter_is_in_the_spec_with_its_default(spec):
    parameters = inspect.signature(estimator(spec)).parameters
    assert list(parameters) == list(spec.options)  # the same options, in the same order
    for name, parameter in parameters.items():
        assert comparable(parameter.default) == comparable(spec[name].default), name


@pytest.mark.parametrize("spec", [DISCOVER, TRAIN_SIMILARITY, ADAPT, APP], ids=lambda s: s.name)
def test_every_command_line_default_is_the_spec_default(spec):
    args = build_parser().parse_args(MINIMAL_COMMANDS[spec.name])
    offered = spec.on_command_line()
    assert offered, spec.name
    for option in offered:
        assert getattr(args, option.name) == option.default, option.name
    help_text = build_parser()._subparsers._group_actions[0].choices[spec.name].format_help()
    for option in offered:
        assert option.positional or option.flag in help_text


def test_the_app_command_and_the_notebook_launcher_take_the_spec_defaults():
    from l2c_explorer.app import launch_app
    from l2c_explorer.app.server import serve, start

    for function in (serve, start, launch_app):
        for name, parameter in inspect.signature(function).parameters.items():
            if name in APP and name != "open_browser":  # notebooks show the app inline instead of a new tab
                assert parameter.default == APP[name].default, (function.__name__, name)
    assert inspect.signature(serve).parameters["open_browser"].default == APP["open_browser"].default


def test_the_app_engine_fills_in_the_spec_defaults(tmp_path):
    from l2c_explorer.app.workbench import Workbench

    bench = Workbench(tmp_path / "work")
    assert inspect.signature(bench.start_discovery).parameters["model"].default == DISCOVER.defaults.similarity
    filled = bench._checked(DISCOVER, {"steps": 7}, given_elsewhere=("similarity",))
    assert filled == {**{k: v for k, v in DISCOVER.default_dict().items() if k != "similarity"}, "steps": 7}
    with pytest.raises(InputError, match="Unknown option 'epochs'"):
        bench._checked(DISCOVER, {"epochs": 7})
    with pytest.raises(InputError, match="loss must be one of mcl, kcl"):
        bench._checked(DISCOVER, {"loss": "xyz"})


def test_choices_named_in_one_place():
    from l2c_explorer.adaptation import METHODS
    from l2c_explorer.adaptation.functional import ASSIGNMENT_NORMS
    from l2c_explorer.device import DEVICES
    from l2c_explorer.losses import CLUSTERING_LOSSES

    assert tuple(CLUSTERING_LOSSES) == options.CLUSTERING_LOSSES  # each offered loss has its function
    assert DISCOVER["loss"].allowed.values == ADAPT["cluster_loss"].allowed.values == options.CLUSTERING_LOSSES
    assert DEVICES is options.DEVICES and METHODS is options.ADAPTATION_METHODS
    assert ASSIGNMENT_NORMS is options.SRDC_ASSIGNMENT_NORMS


def test_tuned_discovery_values_have_one_home():
    from l2c_explorer import graph, selftrain

    settings = options.MODEL_SETTINGS
    assert selftrain.SELF_TRAINING_STEPS is options.SELF_TRAINING_STEPS == settings["self_training_steps"]
    assert selftrain.SELF_TRAINING_KEEP is options.SELF_TRAINING_KEEP == settings["self_training_keep"]
    assert inspect.signature(selftrain.self_train).parameters["steps"].default == settings["self_training_steps"]
    assert graph.SIGNIFICANT_GAP == settings["k_significance"]
    assert graph.SHARPENED_SIGNIFICANT_GAP == settings["k_sharpened_significance"]
    assert (graph.K_GRAPH_NEIGHBOURS, graph.K_GRAPH_SCALE_NEIGHBOUR) == (settings["k_graph_neighbours"],
                                                                        settings["k_graph_scale_neighbour"])
    for name, value in settings.items():  # each is the model's setting unless given, and says its fallback
        assert DISCOVER[name].default is None and DISCOVER[name].none.endswith(f"else {value}")


def test_a_model_carries_its_own_discovery_settings_and_given_options_win():
    carried = {"k_significance": 0.8, "self_training_steps": 0}
    used = options.discovery_settings(carried, {"self_training_steps": 50, "n_neighbors": None})
    assert used["k_significance"] == 0.8 and used["self_training_steps"] == 50
    assert used["n_neighbors"] == options.MODEL_SETTINGS["n_neighbors"]
    assert options.discovery_settings(None, {}) == options.MODEL_SETTINGS


@pytest.mark.parametrize("name, value, message", [
    ("n_clusters", 0, "n_clusters must be a whole number of at least 1, or None (estimated), not 0."),
    ("steps", 2.5, "steps must be a whole number of at least 1, not 2.5."),
    ("self_training_keep", 0, "self_training_keep must be a number in (0, 1], or None (the similarity model's "
                              "setting; else 0.5), not 0."),
    ("loss", "xyz", "loss must be one of mcl, kcl, not 'xyz'."),
    ("adapt_norm", 1, "adapt_norm must be one of True, False, not 1."),
    ("device", "gpu", "device must be one of auto, cpu, cuda (or cuda:N), not 'gpu'."),
])
def test_validation_says_what_is_allowed(name, value, message):
    with pytest.raises(InputError) as info:
        DISCOVER.validate({name: value})
    assert str(info.value) == message
    assert isinstance(info.value, ValueError)  # scikit-learn's convention for bad parameters


def test_accepted_values():
    DISCOVER.validate({"n_clusters": None, "steps": np.int64(5), "device": "cuda:1", "diffusion_time": 0,
                       "self_training_keep": 1.0})
    TRAIN_SIMILARITY.validate({"invert": True, "channels": 3, "holdout": 0.0})
    TRAIN_SIMILARITY.validate({"holdout": 25, "backbone": "resnet18", "augmentation": {"kind": "photo", "min_area": 0.5,
                               "aspect": 1.2, "flip": 0.5, "brightness": 0.1, "contrast": 0.1, "saturation": 0.0}})
    for bad in (0.9, 2.5, -1):
        with pytest.raises(InputError, match=r"holdout must be a share of the classes in \[0, 0.9\) or a number"):
            TRAIN_SIMILARITY.validate({"holdout": bad})
    with pytest.raises(InputError, match="augmentation must be"):
        TRAIN_SIMILARITY.validate({"augmentation": {"kind": "photo", "min_area": 0.5}})  # ranges missing


def test_old_epochs_flag_of_discover_still_works_and_warns(capsys):
    args = build_parser().parse_args(["discover", "FOLDER", "--out", "OUT", "--epochs", "30"])
    assert args.steps == 30
    assert "--epochs is deprecated; use --steps" in capsys.readouterr().err
    args = build_parser().parse_args(["discover", "FOLDER", "--out", "OUT", "--steps", "40"])
    assert args.steps == 40 and not capsys.readouterr().err


def test_command_line_values_are_checked_with_the_spec(capsys):
    with pytest.raises(SystemExit, match="2"):
        main(["discover", "FOLDER", "--out", "OUT", "--max-k", "1"])
    assert "argument --max-k: must be a whole number of at least 2, not 1" in capsys.readouterr().err


def test_a_recipe_replaces_defaults_and_flags_given_still_win():
    args = build_parser(recipe="omniglot").parse_args(["train-similarity", "F", "--out", "O", "--recipe", "omniglot",
                                                        "--class-depth", "3"])
    assert args.class_depth == 3 and args.quarter_turns is True and args.proto_weight == 1.0
    assert build_parser().parse_args(["train-similarity", "F", "--out", "O"]).class_depth == 1
