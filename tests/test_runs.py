"""New images assigned to a finished run: predict(), the run folder, and the assign command."""

import csv
import json
import shutil

import numpy as np
import pytest
import torch

from l2c_explorer.clustering import L2CClusterer
from l2c_explorer.errors import InputError, ModelFileError
from l2c_explorer.runs import load_run, read_run_state


@pytest.fixture(scope="module")
def split(tmp_path_factory, demo_keble, omniglot_evaluation):
    """A run folder of 6 Keble characters (14 drawings each), 6 more drawings of each as new images, and 20
    drawings of 2 Tengwar characters (categories the run never saw)."""
    root = tmp_path_factory.mktemp("split")
    for char_dir in sorted(demo_keble.iterdir())[:6]:
        files = sorted(char_dir.glob("*.png"))
        for dest, part in ((root / "run" / char_dir.name, files[:14]), (root / "new" / char_dir.name, files[14:])):
            dest.mkdir(parents=True)
            for f in part:
                shutil.copy(f, dest / f.name)
    for char_dir in sorted((omniglot_evaluation / "Tengwar").iterdir())[:2]:
        shutil.copytree(char_dir, root / "unknown" / char_dir.name)
    return root


@pytest.fixture(scope="module")
def fitted(split):
    return L2CClusterer(random_state=0, self_training_steps=20, cache=False).fit(split / "run", labelled=True)


def majority_names(c) -> dict:
    """Cluster id -> most common true label among the run's images."""
    out = {}
    for k in range(c.n_clusters_):
        names, counts = np.unique(np.asarray(c.true_labels_)[c.labels_ == k], return_counts=True)
        out[k] = names[np.argmax(counts)] if len(names) else None
    return out


def test_predict_puts_new_drawings_of_known_characters_in_their_cluster(fitted, split):
    c = fitted
    assigned = c.assign(split / "new", labelled=True)
    names = majority_names(c)
    right = np.mean([names[k] == t for k, t in zip(assigned["labels"], assigned["true_labels"])])
    assert right >= 0.9, right
    assert np.array_equal(c.predict(split / "new"), assigned["labels"])
    assert np.all((assigned["confidence"] > 0) & (assigned["confidence"] <= 1))
    assert assigned["unlike_any"].mean() <= 0.2  # drawings of categories the run has


def test_unknown_characters_are_flagged_more_often_than_known_ones(fitted, split):
    known = fitted.assign(split / "new")["unlike_any"].mean()
    unknown = fitted.assign(split / "unknown")["unlike_any"].mean()
    assert unknown >= 0.5 and unknown > known + 0.3, (known, unknown)


def test_the_run_folder_restores_a_clusterer_that_assigns_the_same(fitted, split, tmp_path):
    from l2c_explorer.results import write_discovery_results

    write_discovery_results(fitted, tmp_path / "out", score=True)
    restored = load_run(tmp_path / "out")
    a, b = fitted.assign(split / "new"), restored.assign(split / "new")
    assert np.array_equal(a["labels"], b["labels"]) and np.allclose(a["confidence"], b["confidence"], atol=1e-5)
    assert restored.n_clusters_ == fitted.n_clusters_ and restored.paths_ == fitted.paths_
    assert restored.unlike_threshold_ == pytest.approx(fitted.unlike_threshold_)
    # the embedding model is the self-trained one, not the shipped model
    shipped = fitted.similarity_model_.net.state_dict()
    saved = restored.embedding_model_.net.state_dict()
    assert any(not torch.equal(shipped[k], saved[k]) for k in shipped)
    # the same file holds what asking questions about the run needs
    state = read_run_state(tmp_path / "out")
    assert state["paths"] == fitted.paths_ and np.array_equal(state["labels"], fitted.labels_)
    assert np.allclose(state["probabilities"], fitted.probabilities_, atol=1e-6)
    assert np.allclose(state["embedding"], fitted.embedding_, atol=1e-6) and state["answers"] == []
    assert (state["pair_scale"], state["pair_bias"]) == pytest.approx(fitted.pair_head_)
    assert restored.pair_head_ == pytest.approx(fitted.pair_head_)
    # a whole estimator: the fitted graph itself comes back, and questions about the run are the fitted run's
    assert restored.graph_.shape == fitted.graph_.shape and (restored.graph_ != fitted.graph_).nnz == 0
    assert (state["graph"] != fitted.graph_).nnz == 0
    asked = [[(q.a, q.b, q.kind, q.score) for q in c.questions(3)] for c in (restored, fitted)]
    assert asked[0] == asked[1] and len(asked[0]) == 3


def test_damaged_or_mismatched_run_folders_are_refused(fitted, tmp_path):
    from l2c_explorer.results import write_discovery_results

    with pytest.raises(InputError, match="no run.safetensors"):
        load_run(tmp_path)
    write_discovery_results(fitted, tmp_path / "a")
    write_discovery_results(L2CClusterer(n_clusters=2, self_training_steps=0, cache=False).fit(
        np.random.default_rng(0).integers(0, 255, (20, 32, 32), dtype=np.uint8)), tmp_path / "b")
    shutil.copy(tmp_path / "b" / "embedding_model.safetensors", tmp_path / "a" / "embedding_model.safetensors")
    with pytest.raises(ModelFileError, match="does not belong"):
        load_run(tmp_path / "a")
    data = bytearray((tmp_path / "b" / "run.safetensors").read_bytes())
    data[-5] ^= 0xFF
    (tmp_path / "b" / "run.safetensors").write_bytes(bytes(data))
    with pytest.raises(ModelFileError):
        load_run(tmp_path / "b")


def test_a_run_folder_whose_writing_was_cut_short_is_refused(fitted, split, tmp_path):
    """Writing a run over an earlier one, stopped after its assignments.csv (26 clusters beside the earlier
    run's 10, as a crash leaves them), after its run file, or before its summary: the folder is no run,
    for assign, questions and load_run, with a one-line reason."""
    import l2c_explorer.runfile as runfile
    from l2c_explorer.cli import main
    from l2c_explorer.results import write_discovery_results

    run = tmp_path / "run"
    write_discovery_results(fitted, run)
    load_run(run)
    other = L2CClusterer(n_clusters=2, self_training_steps=0, cache=False).fit(split / "run")  # other clusters

    def cut_short(where):
        original = getattr(runfile, where)

        def crash(*args, **kwargs):
            if where == "save_model_file" and not str(args[0]).endswith(runfile.RUN_FILE):
                return original(*args, **kwargs)
            if where == "save_model_file":
                original(*args, **kwargs)  # the run file is written, the summary is not
            raise KeyboardInterrupt

        return crash

    for where in ("write_run", "save_model_file"):
        write_discovery_results(fitted, run)
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(runfile, where, cut_short(where))
            with pytest.raises(KeyboardInterrupt):
                write_discovery_results(other, run)
        for read in (load_run, read_run_state):
            with pytest.raises(InputError, match="not a finished run") as caught:
                read(run)
            assert "\n" not in str(caught.value), where
        out = tmp_path / f"out-{where}"
        assert main(["assign", str(split / "new"), "--run", str(run), "--out", str(out), "--quiet"]) == 2
        assert main(["questions", str(run)]) == 2
    (run / "summary.json").unlink()
    with pytest.raises(InputError, match="has no summary.json"):
        load_run(run)
    write_discovery_results(other, run)  # written to the end: a run again
    assert load_run(run).n_clusters_ == 2 and read_run_state(run)["labels"].max() == 1


def test_assign_command_writes_assignments_and_summary(fitted, split, tmp_path):
    from folder_snapshot import tree_snapshot

    from l2c_explorer.cli import main
    from l2c_explorer.results import write_discovery_results

    write_discovery_results(fitted, tmp_path / "run")
    before = tree_snapshot(split / "new")
    assert main(["assign", str(split / "new"), "--run", str(tmp_path / "run"), "--out", str(tmp_path / "out"),
                 "--quiet"]) == 0
    assert tree_snapshot(split / "new") == before
    with open(tmp_path / "out" / "assignments.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["path", "cluster", "confidence", "unlike_any"] and len(rows) == 36
    assert {int(r["cluster"]) for r in rows} <= set(range(fitted.n_clusters_))
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["n_images"] == 36 and summary["n_clusters"] == fitted.n_clusters_ and "rule" in summary
    # a folder that is no run, and an output folder inside the new images, are refused with exit code 2
    assert main(["assign", str(split / "new"), "--run", str(tmp_path), "--out", str(tmp_path / "x"), "--quiet"]) == 2
    assert main(["assign", str(split / "new"), "--run", str(tmp_path / "run"),
                 "--out", str(split / "new" / "out"), "--quiet"]) == 2
    assert not (tmp_path / "x").exists()  # a failed command leaves no empty output folder
    # nor is the run its own output: its clusters would be lost
    before_run = tree_snapshot(tmp_path / "run")
    assert main(["assign", str(split / "new"), "--run", str(tmp_path / "run"), "--out", str(tmp_path / "run"),
                 "--quiet"]) == 2
    assert tree_snapshot(tmp_path / "run") == before_run and main(["questions", str(tmp_path / "run")]) == 0
