"""Contract tests through gradio_client: every event that starts or reads a job, as the page calls it."""

from __future__ import annotations

import collections
import json
import re
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from app_helpers import DEMO, close_client, wait_until

# Outputs of /poll_discovery and /poll_adaptation, in order (see App._wire_explore).
POLL = ("progress", "curves", "timer", "map", "results", "skipped", "cluster", "clusters", "download")


def unwrap(value):
    """The value of an output, whether sent plainly or as a component update."""
    if isinstance(value, dict) and value.get("__type__") == "update":
        return value.get("value")
    return value


def file_name(value) -> str:
    """The name of a file output (a path, or the client's description of a file)."""
    value = unwrap(value)
    if isinstance(value, dict):
        return value.get("orig_name") or Path(value["path"]).name
    return Path(value).name


def start(client, folder, *, steps=40, k=None, labelled=True, model="omniglot", sharpen=False, previous="",
          device="cpu"):
    """Start a discovery as the page does; returns the job id, or the message the page shows instead."""
    out = client.predict(str(folder), model, "known" if k else "estimate", k or 10, 100, "mcl", steps, device,
                         labelled, sharpen, previous, "", api_name="/start_discovery")
    job_id, message = unwrap(out[0]), unwrap(out[1])
    if not job_id:
        return message
    assert re.fullmatch(r"[0-9a-f]{16}", job_id)
    return job_id


class Tab:
    """What a browser tab shows of one run: the page keeps an output until a poll sends a new value."""

    def __init__(self, client, job_id, api="/poll_discovery", names=POLL):
        self.client, self.job_id, self.api, self.names = client, job_id, api, names
        self.shown: dict = {}

    def poll(self) -> dict:
        out = dict(zip(self.names, map(unwrap, self.client.predict(self.job_id, api_name=self.api))))
        self.shown.update({k: v for k, v in out.items() if v is not None})
        return dict(self.shown)

    def wait(self, predicate, timeout, what, interval=0.25) -> dict:
        return wait_until(lambda: (lambda p: p if predicate(p) else None)(self.poll()), timeout=timeout,
                          interval=interval, what=what)


def status(progress_html: str) -> str:
    m = re.search(r'data-status="(\w+)"', progress_html or "")
    return m.group(1) if m else ""


def curve_points(curves_json) -> int:
    return len(json.loads(curves_json)["points"]) if curves_json else 0


def test_restore_fills_models_card_and_device(client):
    out = client.predict(api_name="/restore")
    model, card, badge = map(unwrap, out[:3])
    assert model == "omniglot"
    assert "never saw" in card
    assert "Computing on:" in badge and ("CPU" in badge or "GPU" in badge)


def test_model_card_and_model_list(client):
    assert "ROC-AUC" in client.predict("omniglot", api_name="/model_card")
    value, card = map(unwrap, client.predict("omniglot", api_name="/list_models"))
    assert value == "omniglot" and "omniglot" in card


def test_check_folder_counts_and_explains_bad_paths(client, tmp_path):
    md, sample, skipped, labelled, folder, model, card, note = map(
        unwrap, client.predict(str(DEMO / "omniglot_keble"), "omniglot", api_name="/check_folder"))
    assert "520 images" in md and len(sample) == 12 and labelled is True
    assert Path(folder) == (DEMO / "omniglot_keble").resolve()
    assert note == ""  # the symbol model suits drawings: nothing to say, nothing switched
    # a problem is an answer shown next to the folder box (not an error that the page would badge)
    md = unwrap(client.predict(str(tmp_path / "nowhere"), "omniglot", api_name="/check_folder")[0])
    assert "l2c-problem" in md and "Folder not found" in md
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    assert "Not a folder" in unwrap(client.predict(str(a_file), "omniglot", api_name="/check_folder")[0])
    assert "Folder not found" in start(client, tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    assert "No images in" in start(client, tmp_path / "empty")


def test_discovery_live_curves_map_explore_and_results(client, served_app, tmp_path):
    job_id = start(client, DEMO / "omniglot_keble", steps=60, sharpen=True)  # as the app starts by default
    tab = Tab(client, job_id)
    # live: curve points while it trains, and more on later polls (how soon: benchmarks, not this test)
    first = tab.wait(lambda p: curve_points(p.get("curves")), timeout=300, what="the first curve point")
    n_first = curve_points(first["curves"])
    series = {s["key"] for s in json.loads(first["curves"])["series"]}
    assert series == {"loss"}
    assert status(first["progress"]) in ("running", "done")

    final = tab.wait(lambda p: p.get("map") and json.loads(p["map"])["method"] == "umap", timeout=750,
                     what="the UMAP map", interval=0.5)
    # clustering, sharpening, clustering again: each phase's points on its own curve
    stages = collections.Counter(p.get("stage") for p in json.loads(final["curves"])["points"])
    assert stages["training"] == 2 * 60 and stages["self-training"] == 100
    assert curve_points(final["curves"]) == 2 * 60 + 100 > n_first
    spectrum = json.loads(final["curves"])["spectrum"]  # what K was chosen from, second round
    assert spectrum["k"] == served_app.workbench.result(job_id).n_clusters and "second round" in spectrum["title"]
    assert spectrum["k_true"] == 26 and len(spectrum["eigenvalues"]) > spectrum["k"]
    payload = json.loads(final["map"]) if final["map"] else None
    result = served_app.workbench.result(job_id)
    assert result.summary["settings"]["self_training_steps"] == 100  # the omniglot model's own setting
    assert payload["n"] == 520 and payload["thumb_prefix"].startswith("gradio_api/file=")
    assert "ACC" in final["results"] and "K error" in final["results"]
    assert file_name(final["download"]) == "assignments.csv"

    # selection on the map -> gallery of thumbnails
    sel = client.predict(job_id, [0, 1, 2, 519], api_name="/select_points_discover")
    assert sel["indices"] == [0, 1, 2, 519] and len(sel["gallery"]) == 4
    assert all(Path(thumb).suffix == ".webp" for thumb, _ in sel["gallery"])

    # one cluster: typical and least certain exemplars from that cluster only
    biggest = int(result.labels[0])
    md, typical, uncertain, name = client.predict(job_id, biggest, api_name="/show_cluster_discover")  # + a button
    assert "images" in md and 1 <= len(typical) <= 8 and 1 <= len(uncertain) <= 8
    assert unwrap(name) == result.names[biggest] == f"cluster {biggest:02d}"
    shown = [item["caption"].split(" · ", 1)[1] for item in typical + uncertain]
    assert all(result.labels[result.paths.index(path)] == biggest for path in shown)

    # export into per-cluster folders, and save the clustering model
    out = tmp_path / "export"
    msg = client.predict(job_id, str(out), "copy", api_name="/export_discover")  # (buttons are not in the API)
    assert "520 images" in msg
    copied = [p for p in out.rglob("*.png")]
    assert len(copied) == 520 and (out / "assignments.csv").is_file()
    assert len({p.parent.name for p in copied}) == result.n_clusters
    assert "already holds" in client.predict(job_id, str(out), "copy", api_name="/export_discover")  # asks first
    assert "520 images" in client.predict(job_id, str(out), "copy", api_name="/replace_export_discover")
    assert len(list(out.rglob("*.png"))) == 520
    msg = client.predict(job_id, str(DEMO / "omniglot_keble" / "out"), "copy", api_name="/export_discover")
    assert "inside the folder" in msg and "l2c-problem" in msg
    model_file, msg = client.predict(job_id, "", api_name="/save_model_discover")
    assert file_name(model_file) == "clustering_model.safetensors" and "Saved" in msg

    # new images added to the finished run: a few drawings of the demo again
    new = tmp_path / "new"
    for f in sorted((DEMO / "omniglot_keble").rglob("*.png"))[:6]:
        (new / f.parent.name).mkdir(parents=True, exist_ok=True)
        (new / f.parent.name / f.name).write_bytes(f.read_bytes())
    md, csv_file, unlike, assigned = client.predict(job_id, str(new), "cpu", api_name="/add_images")
    assert "of 6 new images" in md and file_name(csv_file) == "assignments.csv"
    assert len(unlike) + len(assigned) == 6


def test_stop_ends_the_run_and_keeps_results(client, served_app, keble6):
    job_id = start(client, keble6, steps=1000)
    tab = Tab(client, job_id)
    tab.wait(lambda p: curve_points(p.get("curves")) >= 2, timeout=300, what="training points")
    answer = client.predict(job_id, api_name="/stop_discovery")
    assert status(answer) in ("stopping", "stopped")
    stopped = tab.wait(lambda p: status(p["progress"]) == "stopped", timeout=300, interval=0.1,
                       what="the page to show the run stopped")
    job = served_app.workbench.job(job_id)
    assert job.status == "stopped" and job.stop_requested is not None and job.result is not None
    assert "Stopped after" in stopped["progress"]
    final = tab.wait(lambda p: p.get("results"), timeout=150, what="the results of the stopped run")
    assert "stopped early" in final["results"]


def test_a_new_run_in_a_tab_replaces_its_previous_run(client, served_app, keble6):
    first = start(client, keble6, steps=1000)
    Tab(client, first).wait(lambda p: curve_points(p.get("curves")), timeout=300, what="the first run to train")
    second = start(client, keble6, steps=20, previous=first)
    assert served_app.workbench.job(first).wait(300) and served_app.workbench.job(first).status == "stopped"
    final = Tab(client, second).wait(lambda p: p.get("results"), timeout=300, what="the second run's results")
    assert "stopped early" not in final["results"]


def test_two_tabs_do_not_corrupt_each_others_runs(served_app, keble6):
    from gradio_client import Client

    a = Client(served_app.base_url, verbose=False, headers=served_app.headers)
    b = Client(served_app.base_url, verbose=False, headers=served_app.headers)
    try:
        job_a = start(a, keble6, steps=1000, k=5)
        job_b = start(b, keble6, steps=30, k=3)
        assert job_a != job_b
        tab_a, tab_b = Tab(a, job_a), Tab(b, job_b)
        tab_a.wait(lambda p: curve_points(p.get("curves")) >= 1, timeout=300, what="run A to train")
        a.predict(job_a, api_name="/stop_discovery")  # stopping A must not touch B
        res_b = tab_b.wait(lambda p: p.get("results"), timeout=600, what="run B's results")
        res_a = tab_a.wait(lambda p: p.get("results"), timeout=150, what="run A's results")
        assert "**3 categories**" in res_b["results"] and "stopped early" not in res_b["results"]
        assert "**5 categories**" in res_a["results"] and "stopped early" in res_a["results"]
        assert served_app.workbench.job(job_b).status == "done"
        assert served_app.workbench.result(job_a).run_dir != served_app.workbench.result(job_b).run_dir
    finally:
        close_client(a)
        close_client(b)


def test_train_a_similarity_model_live_then_stop(client, served_app):
    source = DEMO / "omniglot_source"
    job_id, progress, curves, *_ = client.predict(str(source), "contract-test-model", 3, 1, "default", "cpu",
                                                  api_name="/start_similarity")
    tab = Tab(client, job_id, "/poll_similarity", ("progress", "curves", "timer", "result", "model", "card"))
    got = tab.wait(lambda p: curve_points(p.get("curves")) >= 1, timeout=450, what="a loss point")
    assert {s["key"] for s in json.loads(got["curves"])["series"]} == {"loss"}
    client.predict(job_id, api_name="/stop_similarity")
    done = tab.wait(lambda p: p.get("result"), timeout=300, what="the saved model")
    assert "contract-test-model" in done["result"] and done["model"] == "contract-test-model"
    assert "contract-test-model" in served_app.workbench.models()
    assert "stopped early" in done["card"]


@pytest.mark.slow
def test_train_a_photo_model_on_the_pretrained_encoder(client, served_app, tmp_path):
    """The Train tab's "Photographs" choice: a top on the installed pretrained encoder, on labelled photos."""
    # the demo's 10 categories, 12 photos each (the encoder's pass over all 500 is most of the time)
    photos = tmp_path / "photos"
    for d in sorted((DEMO / "photos_everyday").iterdir()):
        (photos / d.name).mkdir(parents=True)
        for f in sorted(d.iterdir())[:12]:
            (photos / d.name / f.name).write_bytes(f.read_bytes())
    job_id, *_ = client.predict(str(photos), "contract-photo-model", 2, 1, "pretrained-top", "cpu",
                                api_name="/start_similarity")
    tab = Tab(client, job_id, "/poll_similarity", ("progress", "curves", "timer", "result", "model", "card"))
    done = tab.wait(lambda p: p.get("result"), timeout=600, what="the saved model")
    result = served_app.workbench.registry.get(job_id).result
    try:
        assert done["model"] == "contract-photo-model"
        card = result["card"]
        assert card["architecture"]["type"] == "pretrained-cosine"
        assert card["architecture"]["backbone"] == "efficientnet-lite0"
        assert card["trained_on"]["n_classes"] >= 8  # 10 categories, one or two held out for the pair scores
    finally:  # the app would otherwise propose this photo model to the tests after this one
        Path(result["path"]).unlink()


def test_only_the_apps_own_folders_are_served(served_app, client):
    blocks = served_app.blocks
    home = Path.home().resolve()
    allowed = [Path(p).resolve() for p in blocks.allowed_paths]
    assert allowed and all(served_app.workbench.workspace.root in p.parents for p in allowed)
    assert all(p != home and p not in home.parents for p in allowed)
    assert served_app.base_url.startswith("http://127.0.0.1:")

    def fetch(path: Path) -> int:
        request = urllib.request.Request(f"{served_app.base_url}gradio_api/file={path}", headers=served_app.headers)
        try:
            with urllib.request.urlopen(request) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code

    image = next((DEMO / "omniglot_keble").rglob("*.png"))
    assert fetch(image) == 403  # the user's images are never served
    assert fetch(Path("/etc/passwd")) == 403
    assert fetch(Path(__file__)) == 403
    thumb = served_app.workbench.thumbs.get(image)
    assert thumb is not None and fetch(thumb) == 200  # thumbnails are served, from the app's own cache


def test_same_categories_new_domain_mode(client, served_app, tmp_path):
    if not served_app.workbench.adaptation_available():
        pytest.skip("l2c_explorer.adaptation.DomainAdapter is not available")
    source, target = DEMO / "digits_mnist", DEMO / "digits_usps"
    out = client.predict(str(source), str(target), "source-only", 1, "cpu", True, api_name="/start_adaptation")
    job_id = out[0]
    tab = Tab(client, job_id, "/poll_adaptation")
    first = tab.wait(lambda p: curve_points(p.get("curves")), timeout=300, what="the first loss point")
    assert {s["id"] for s in json.loads(first["curves"])["series"]} == {"similarity", "training"}
    final = tab.wait(lambda p: p.get("map") and p.get("results"), timeout=900, what="the map of the target")
    payload = json.loads(final["map"])
    assert payload["n"] == 600 and payload["names"] == [str(d) for d in range(10)]
    assert "right class" in final["results"]
    result = served_app.workbench.result(job_id)
    assert result.kind == "adapt" and result.truth is not None

    some = [int(i) for i in range(0, 600, 97)]
    sel = client.predict(job_id, some, api_name="/select_points_adapt")
    assert sel["indices"] == some and len(sel["gallery"]) == len(some)
    predicted = int(result.labels[0])
    md, typical, uncertain = client.predict(job_id, predicted, api_name="/show_cluster_adapt")
    assert all(result.labels[result.paths.index(item["caption"].split(" · ", 1)[1])] == predicted
               for item in typical + uncertain)
    msg = client.predict(job_id, str(tmp_path / "by_class"), "copy", api_name="/export_adapt")
    assert "600 images" in msg
    folders = {p.name for p in (tmp_path / "by_class").iterdir() if p.is_dir()}
    assert folders <= {str(d) for d in range(10)} and folders


def test_browse_lists_subfolders_and_refuses_files(client, tmp_path):
    for name in ("b", "a", ".hidden"):
        (tmp_path / name).mkdir()
    (tmp_path / "file.png").write_bytes(b"x")
    at, sub, message = map(unwrap, client.predict(str(tmp_path), api_name="/browse"))
    raw = client.predict(str(tmp_path), api_name="/browse")[1]
    assert Path(at) == tmp_path.resolve() and not message
    assert [c[1] if isinstance(c, (list, tuple)) else c for c in raw["choices"]] == ["a", "b"]
    message = unwrap(client.predict(str(tmp_path / "file.png"), api_name="/browse")[2])
    assert "Not a folder" in message


def test_cuda_without_a_gpu_is_refused_at_start(client, keble6):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert "no CUDA GPU" in start(client, keble6, device="cuda")


def test_photos_with_the_symbol_model_switch_to_the_photo_model_and_say_why(client):
    *_, model, card, note = map(unwrap, client.predict(str(DEMO / "photos_everyday"), "omniglot",
                                                       api_name="/check_folder"))
    assert model == "photos" and "photos" in card
    assert "'omniglot' learnt from grayscale drawings" in note and "chosen for you" in note
    # picking the symbol model again by hand keeps it, with the warning
    assert "do not match" in unwrap(client.predict(str(DEMO / "photos_everyday"), "omniglot", api_name="/model_fit"))
    assert unwrap(client.predict(str(DEMO / "photos_everyday"), "photos", api_name="/model_fit")) == ""


def test_bad_input_through_the_api_gets_a_message_in_plain_words(client, served_app, keble6, tmp_path):
    """What the page never sends but the API accepts: a 10,000-character path, K as text, a selection that is
    not a list of images, a model saved into a folder that does not exist yet. Each is answered beside its
    control (or as the API's error) in words, never Gradio's bare "Error"."""
    from gradio_client.exceptions import AppError

    long_path = "/" + "x" * 10_000
    assert "characters long" in unwrap(client.predict(long_path, "omniglot", api_name="/check_folder")[0])
    assert "characters long" in unwrap(client.predict(long_path, api_name="/browse")[2])
    out = client.predict(long_path, "omniglot", "estimate", 10, 100, "mcl", 20, "cpu", True, False, "", "",
                         api_name="/start_discovery")
    assert "characters long" in unwrap(out[1])
    assert "not a folder of images" in unwrap(client.predict("/proc", "omniglot", api_name="/check_folder")[0])
    job_id = start(client, keble6, steps=20)
    Tab(client, job_id).wait(lambda p: status(p["progress"]) == "done", timeout=300, what="the run to finish")
    with pytest.raises(AppError, match="not understood"):
        client.predict(job_id, "all", api_name="/select_points_discover")
    model_file, message = client.predict(job_id, str(tmp_path / "new" / "folder"), api_name="/save_model_discover")
    assert "Saved the clustering model" in unwrap(message), message
    assert Path(file_name(model_file)).name.startswith("clustering_model")


def test_k_given_as_text_is_refused_with_what_was_expected(client, keble6):
    """Gradio refuses the value before the handler runs: its message says which value and what it expected."""
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="(?s)number.*twelve"):
        client.predict(str(keble6), "omniglot", "known", "twelve", 100, "mcl", 20, "cpu", True, False, "", "",
                       api_name="/start_discovery")


def test_folder_names_that_are_no_categories_untick_the_box_and_are_never_scored(client, served_app, keble6, tmp_path):
    """Three drawings of three characters, directly in a folder: one group, and no perfect 1.000 for it."""
    three = tmp_path / "three"
    three.mkdir()
    for char_dir in sorted((DEMO / "omniglot_keble").iterdir())[:3]:
        first = sorted(char_dir.glob("*.png"))[0]
        (three / f"{char_dir.name}_{first.name}").write_bytes(first.read_bytes())

    def box_after_check(folder):
        return unwrap(client.predict(str(folder), "omniglot", api_name="/check_folder")[3])

    assert box_after_check(DEMO / "omniglot_keble") is True  # a sample folder: ticked for the person
    assert box_after_check(three) is False  # no sub-folders: a tick left from the demo goes
    assert box_after_check(keble6) is None  # sub-folders that may be categories: as the person set it
    # ticked all the same (through the API, or Start pressed before the folder was checked): still no scores
    job_id = start(client, three, steps=20, labelled=True)
    final = Tab(client, job_id).wait(lambda p: p.get("results"), timeout=300, what="the results")
    assert "1.000" not in final["results"] and "ACC" not in final["results"]
    assert "**No scores**: 3 images sit directly in the folder" in final["results"]
    assert served_app.workbench.result(job_id).truth is None


def test_teach_actions_without_what_they_need_say_so_beside_the_answers(client, served_app, keble6):
    """An answer with no question shown, a merge of one group, a split of none: a line in the teach status
    (never an error that Gradio would badge over every output), and nothing changes."""
    job = served_app.discover(keble6, wait=False, labelled=True, device="cpu", steps=20, self_training_steps=0)
    assert job.wait(600) and job.result is not None, job.error
    labels = job.result.labels.copy()
    status = 2  # Handlers.teach_outputs' status line (the client leaves out the question's gr.State)
    for api, args, words in (("/teach_same", (job.id, None), "no question to answer"),
                             ("/teach_merge", (job.id, None), "Choose two groups"),
                             ("/teach_split", (job.id, None), "Choose the group"),
                             ("/teach_undo", (job.id,), "no answer to undo")):
        out = client.predict(*args, api_name=api)
        assert "l2c-problem" in unwrap(out[status]) and words in unwrap(out[status]), (api, out[status])
    out = client.predict(job.id, None, api_name="/teach_propose_split")
    assert "Choose the group" in unwrap(out[-1])
    assert np.array_equal(job.result.labels, labels)
    # asked for, a question comes
    out = client.predict(job.id, api_name="/teach_ask")
    assert "data-a=" in unwrap(out[0])
