"""The app's engine without the page: runs, follow-ups (summaries, map), exports, words shown to users."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from app_helpers import wait_until

from l2c_explorer.app import views
from l2c_explorer.app.workbench import RunResult, Workbench
from l2c_explorer.errors import FolderNotEmptyError, InputError
from l2c_explorer.jobs import DONE, STOPPED


def snapshot(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def bench(tmp_path):
    b = Workbench(tmp_path / "work")
    yield b
    b.close()


def test_importing_the_app_engine_pulls_in_neither_gradio_nor_torch():
    code = ("import sys, l2c_explorer.app, l2c_explorer.app.workbench, l2c_explorer.app.views, "
            "l2c_explorer.jobs, l2c_explorer.thumbnails, l2c_explorer.explore; "
            "print(sorted(m for m in ('gradio', 'torch', 'umap') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.stdout.strip() == "[]", out.stderr


def test_workspace_serves_only_its_own_folders(bench, tmp_path):
    served = bench.workspace.served_dirs()
    home = Path.home().resolve()
    for d in served:
        assert d.is_dir() and bench.workspace.root in d.parents
        assert d != home and d not in home.parents  # never a home folder or one above it


@pytest.mark.parametrize("bad, message", [("/definitely/not/here", "Folder not found"), (__file__, "Not a folder")])
def test_bad_folders_are_rejected_clearly(bench, bad, message):
    with pytest.raises(InputError, match=message):
        bench.check_folder(bad)
    with pytest.raises(InputError, match=message):
        bench.start_discovery(bad, model="omniglot")


def test_a_folder_without_images_is_explained_before_a_run_starts(bench, tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "readme.txt").write_text("no images here")
    with pytest.raises(InputError, match=r"No images in .* \(only 1 other file\): l2c-explorer looks for .*PNG"):
        bench.start_discovery(tmp_path / "docs", model="omniglot")
    assert not bench.registry.jobs(kind="discover")
    text = views.folder_markdown(bench.check_folder(tmp_path / "docs"))
    assert "l2c-problem" in text and "No images in" in text


def test_models_and_card_in_plain_words(bench):
    assert "omniglot" in bench.models()
    card = bench.model_card("omniglot")
    text = views.model_card_markdown("omniglot", card)
    assert "never saw" in text and "ROC-AUC" in text and "%" in text
    with pytest.raises(InputError):
        bench.resolve_model("no-such-model")


def test_discovery_run_map_exports_and_model(bench, keble6, tmp_path):
    before = snapshot(keble6)
    # self-training on, a few steps (how good the groups are is not looked at here)
    job = bench.start_discovery(keble6, model="omniglot", steps=30, labelled=True, device="cpu",
                                self_training_steps=5)
    assert job.wait(600), "discovery did not finish"
    assert job.status == DONE, job.error
    result = bench.result(job.id)
    assert isinstance(result, RunResult) and len(result.paths) == 120
    assert result.truth is not None and result.metrics is not None
    assert (result.run_dir / "assignments.csv").is_file()
    points, _ = job.metrics.read()
    assert len(points) >= 5 and {"loss", "k_estimated"} <= set(points[-1])

    # the follow-up job publishes cluster summaries, a PCA preview, then the UMAP map
    wait_until(lambda: job.extra("map_final"), timeout=900, what="the UMAP map")
    payload = job.extra("map")
    assert payload["method"] == "umap" and payload["n"] == 120 and not payload["preview"]
    assert bench.registry.latest(kind="thumbnails").wait(300)
    assert all(k and (bench.workspace.thumbnails / f"{k}.webp").is_file() for k in payload["thumb"])
    clusters = bench.clusters(job.id)
    assert sum(s.size for s in clusters) == 120

    sel = bench.selection(job.id, [0, 5, 5, 119, 999])
    assert sel["indices"] == [0, 5, 119] and sum(k for _, k in sel["counts"]) == 3 and len(sel["gallery"]) == 3
    with open(bench.write_selection_csv(job.id, [1, 2])) as f:
        assert len(list(csv.reader(f))) == 3

    # a group renamed: its name on the map, in the CSV (downloaded or exported) and as its folder
    with pytest.raises(InputError, match="already called"):
        bench.rename_group(job.id, 1, result.names[0])
    bench.rename_group(job.id, 0, "  the   big one ")
    assert result.names[0] == "the big one" and job.extra("map")["names"][0] == "the big one"
    with open(result.run_dir / "assignments.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {r["name"] for r in rows if r["cluster"] == "0"} == {"the big one"}
    assert {r["name"] for r in rows if r["cluster"] == "1"} == {"cluster 01"}

    out = tmp_path / "export"
    info = bench.export(job.id, out)
    assert info["n_files"] == 120 and (out / "assignments.csv").is_file() and (out / "summary.json").is_file()
    assert sum(len(list(d.iterdir())) for d in out.iterdir() if d.is_dir()) == 120
    assert "the_big_one" in info["counts"] and "cluster_01" in info["counts"]
    with pytest.raises(FolderNotEmptyError):  # again into the same folder: only with a go-ahead
        bench.export(job.id, out)
    bench.rename_group(job.id, 0, "")  # back to its own name
    info = bench.export(job.id, out, overwrite=True)
    assert "cluster_00" in info["counts"] and not (out / "the_big_one").exists()
    with pytest.raises(InputError, match="inside the folder"):
        bench.export(job.id, keble6 / "out")
    model_file = bench.save_model(job.id)
    assert model_file.is_file() and model_file.parent == result.run_dir
    assert snapshot(keble6) == before  # the analysed folder is never written to

    # new images added to the finished run: two characters' drawings again
    new = tmp_path / "new"
    for char_dir in sorted(keble6.iterdir())[:2]:
        (new / char_dir.name).mkdir(parents=True)
        for f in sorted(char_dir.glob("*.png"))[:5]:
            (new / char_dir.name / f.name).write_bytes(f.read_bytes())
    added = bench.assign_images(job.id, new)
    assert added["summary"]["n_images"] == 10 and added["csv"].is_file()
    assert added["folder"].parent == result.run_dir and len(added["assigned"]) + len(added["unlike"]) == 10
    assert "new images" in views.added_markdown(added["summary"])
    with pytest.raises(InputError):
        bench.assign_images(job.id, tmp_path / "missing")

    text = views.results_markdown(result)
    assert "ACC" in text and "K error" in text
    # one definition of the clusters found, in the heading and in the K error alike
    k, k_true = result.estimator.n_clusters_, result.metrics["k_true"]
    assert result.n_clusters == k == result.summary["k_estimated"]
    assert f"**{k} categories**" in text and f"| K error | {abs(k - k_true)} | groups found ({k})" in text


def test_stopping_a_discovery_keeps_a_result(bench, keble6):
    job = bench.start_discovery(keble6, model="omniglot", steps=5000, device="cpu")
    wait_until(lambda: len(job.metrics) >= 2, timeout=300, what="training points")
    job.stop(grace=1.5)
    assert job.wait(300), "stop must end the run"  # how fast: a matter for benchmarks, not for this test
    assert job.status == STOPPED and job.result is not None
    assert job.result.stopped and job.result.summary["stopped_early"]
    assert len(job.result.labels) == 120


def test_results_in_one_shape_as_a_dataframe(bench, keble6):
    job = bench.start_discovery(keble6, model="omniglot", steps=10, n_clusters=6, device="cpu", make_map=False,
                                self_training_steps=5)  # a few: the shape of the results is what is looked at
    assert job.wait(600) and job.status == DONE, job.error
    frame = bench.result().to_frame()
    assert list(frame.columns) == ["path", "cluster", "name", "confidence"]
    assert len(frame) == 120 and frame["cluster"].nunique() <= 6
    summary = json.loads((job.result.run_dir / "summary.json").read_text())
    assert summary["k_given"] == 6


def test_views_progress_and_curves():
    from l2c_explorer.jobs import JobSnapshot

    snap = JobSnapshot(id="j", kind="discover", status="running", stage="training", step=30, total=300,
                       fraction=0.1, epoch=5.0, metrics={"loss": 0.3, "k_estimated": 12}, elapsed=12.0, eta=108.0,
                       message="", error=None, n_points=5, version=5)
    html = views.progress_html(snap)
    assert "Learning to group" in html and "step 30 of 300" in html and "12 categories" in html
    assert "about 1 min 48 s left" in html and 'width:10.0%' in html
    snap.time_left = 200.0  # the whole run's time left wins over the stage's
    assert "about 3 min 20 s left" in views.progress_html(snap)
    data = json.loads(views.curves_json([{"step": 1, "loss": 0.5, "k_estimated": 9, "stage": "training"}],
                                        views.DISCOVER_SERIES))
    assert data["points"] == [{"step": 1, "stage": "training", "loss": 0.5}] and data["spectrum"] is None
    assert {s["key"] for s in data["series"]} == {"loss"}  # one chart per phase (test_app_views_curves.py)
    spectrum = {"eigenvalues": [1.0, 0.99, 0.98, 0.4, 0.3] + [0.2] * 60, "k_eigengap": 3, "k": 3, "k_given": False,
                "pass": 2, "rule": "the largest drop"}
    chart = json.loads(views.curves_json([], views.DISCOVER_SERIES, spectrum=spectrum, k_true=4))["spectrum"]
    assert chart["k"] == 3 and chart["k_true"] == 4 and "second round" in chart["title"]
    assert len(chart["eigenvalues"]) == 30 and chart["note"].startswith("K = 3: the first 3 eigenvalues")
    read_in_parts = dict(spectrum, k=40, parts=3)  # a large folder's K, read again inside 3 parts
    note = views.spectrum_chart(read_in_parts)["note"]
    assert note.startswith("K = 40: the first few drops") and "its 3 parts" in note
    assert views.duration(3725) == "1 h 02 min" and views.duration(None) == "?"
    assert np.isclose(float(views.esc("1.5")), 1.5)


def test_user_models_folders_are_listed(tmp_path):
    import shutil as sh

    from app_helpers import MODELS

    mine = tmp_path / "mine"
    mine.mkdir()
    sh.copy(MODELS / "omniglot.safetensors", mine / "my-symbols.safetensors")
    b = Workbench(tmp_path / "work", models_dirs=[mine])
    assert b.models()["my-symbols"] == mine / "my-symbols.safetensors"
    assert "omniglot" in b.models()  # the shipped ones stay available
    with pytest.raises(InputError, match="Models folder not found"):
        Workbench(tmp_path / "work", models_dirs=[tmp_path / "nope"])


def test_curves_continue_when_a_later_phase_restarts_its_step_count():
    points = [{"stage": "training", "step": s, "loss": 1.0} for s in (10, 20, 30)]
    points += [{"stage": "training", "step": s, "loss": 0.5} for s in (5, 10)]
    data = json.loads(views.curves_json(points, views.DISCOVER_SERIES))
    assert [p["step"] for p in data["points"]] == [10, 20, 30, 35, 40]


def test_the_thumbnails_of_a_stopped_run_stop_with_it(bench, keble6):
    """Stop pressed: the run's background thumbnails end too (after the one being made), instead of going on
    through the whole folder. Each thumbnail waits here until the test lets it go, so the count is exact."""
    import threading

    made, gate = [], threading.Semaphore(0)
    real_get = bench.thumbs.get

    def slow_get(image):
        gate.acquire()
        made.append(image)
        return real_get(image)

    bench.thumbs.get = slow_get
    job = bench.start_discovery(keble6, model="omniglot", steps=5000, device="cpu", make_map=False)
    thumbs = next(j for j in bench.registry.jobs(kind="thumbnails") if j.params["folder"] == str(keble6))
    for _ in range(3):
        gate.release()
    wait_until(lambda: len(made) == 3, timeout=120, what="three thumbnails")
    job.stop(grace=1.5)
    assert job.wait(300)
    for _ in range(120):  # as many go-aheads as there are images: only the one already waiting may use one
        gate.release()
    assert thumbs.wait(120) and thumbs.finished
    assert len(made) <= 4, len(made)


def test_results_say_when_a_persons_answers_changed_the_groups(tmp_path, keble6):
    """The headline gives the groups as the answers left them, and what the run itself had estimated."""
    from l2c_explorer.app.workbench import run_result
    from l2c_explorer.clustering import L2CClusterer

    small = tmp_path / "small"
    for char_dir in sorted(keble6.iterdir())[:3]:
        (small / char_dir.name).mkdir(parents=True)
        for f in sorted(char_dir.glob("*.png"))[:4]:
            (small / char_dir.name / f.name).write_bytes(f.read_bytes())
    c = L2CClusterer(similarity="omniglot", steps=20, self_training_steps=0, random_state=0, device="cpu")
    c.fit(small)
    k_run = c.n_clusters_
    before = views.results_markdown(run_result(c, tmp_path, c.summary(), False))
    assert "(the number was estimated) in" in before and "answer" not in before
    c.refit([(0, 1, True), (0, 11, False)])
    after = views.results_markdown(run_result(c, tmp_path, c.summary(), False))
    k = c.n_clusters_
    assert after.startswith(f"**{k} categor")
    took = views.duration(c.summary()["seconds"])
    assert f"after 2 answers (the run estimated {k_run} in {took} on" in after
    assert "the number was estimated" not in after


def test_results_after_answers_with_k_given_and_a_relearning():
    from types import SimpleNamespace

    result = SimpleNamespace(
        kind="discover", paths=["x.png"] * 40, n_clusters=5, stopped=False, skipped=[],
        estimator=SimpleNamespace(constraints_=[object()] * 3),
        summary={"k_given": 5, "seconds": 124, "device": "CPU",
                 "answers": {"n_answers": 3, "k_before_answers": 5, "relearnt_with": [3]}})
    text = views.results_markdown(result)
    assert text.startswith("**5 categories** in **40 images** after 3 answers and a relearning (the number was "
                           "given as 5; the run took 2 min 04 s on CPU).")


def test_results_of_a_folder_whose_names_are_no_categories_say_why_there_are_no_scores():
    from types import SimpleNamespace

    result = SimpleNamespace(
        kind="discover", paths=["a.png", "b.png", "c.png"], n_clusters=1, stopped=False, skipped=[],
        estimator=None, summary={"k_given": None, "seconds": 3, "device": "CPU",
                                 "no_scores": "the sub-folders do not name at least two categories"})
    text = views.results_markdown(result)
    assert "**No scores**: the sub-folders do not name at least two categories" in text
    assert "ACC" not in text and "1.000" not in text


def test_a_folder_with_images_outside_its_sub_folders_does_not_look_labelled(bench, keble6):
    assert bench.check_folder(keble6).looks_labelled
    loose = next(keble6.rglob("*.png"))
    (keble6 / "loose.png").write_bytes(loose.read_bytes())
    report = bench.check_folder(keble6)
    assert report.loose == 1 and len(report.subfolders) == 6 and not report.looks_labelled
