"""Assemble BENCHMARKS.md (and the results block of README.md) from the benchmark scripts' outputs.

Every table comes verbatim from ``benchmarks/results/<name>.md``, written by the script that measured it;
nothing here computes or edits a number. The sections are grouped by the question each answers (``GROUPS``): how
accurate; how each constant was chosen; how fast; does the app stay responsive.

    python benchmarks/make_report.py
"""

from __future__ import annotations

import json
import re

import numpy as np
from common import COLUMN, PUBLISHED_BY_KEY, PUBLISHED_MEANS, RESULTS, normalise_name
from datasets import OMNIGLOT_BACKGROUND, OMNIGLOT_EVALUATION, ROOT, TINY_SOURCE, shown
from photos_settings import best_run

# BENCHMARKS.md's sections, in order: (name of the results file benchmarks/results/<name>.md, title, command).
SECTIONS = [
    (
        "omniglot",
        "Omniglot cross-task transfer (issue: discover unseen alphabets)",
        f"`python benchmarks/omniglot.py --data {shown(OMNIGLOT_EVALUATION)} --seeds 3 --k both "
        "--loss both --threads 2`",
    ),
    ("omniglot_no_self_training", "Omniglot without self-training (ablation)",
     f"`python benchmarks/omniglot.py --data {shown(OMNIGLOT_EVALUATION)} --seeds 3 --k both "
     "--loss mcl --threads 2 --self-training-steps 0 --name omniglot_no_self_training`"),
    ("photos", "Photos: discover unseen categories of colour photographs (three development sets)",
     "`python benchmarks/photos.py --seeds 1`"),
    ("photos_tuned", "Photos with the `photos-tuned` model (the encoder's last two stages trained too; not shipped)",
     "`python benchmarks/photos.py --seeds 1` (its results then renamed `photos_tuned`), run while `models/photos` "
     "was that model (now "
     "`benchmarks/models/photos-tuned.safetensors`, trained by `train-similarity ... --recipe photos-tuned`): "
     "its `ours` rows are the tuned model, its `second photos model` rows the shipped one"),
    ("photos_limits", "What limits the photo results: the `photos` model's neighbourhoods, set by set",
     "`python benchmarks/photos_limits.py`"),
    ("digits_da", "Cross-domain digits: USPS <-> MNIST", "`python benchmarks/digits_da.py`"),
    ("teach", "Teach it: a simulated person answers questions about pairs of images",
     "`pip install -e .[bench]`, then `python benchmarks/teach.py --only omniglot --no-speed`, `python "
     "benchmarks/teach.py --only photos --photo-classes 25 --photo-per-class 20 --no-speed --resume` and the timings "
     "with `python benchmarks/teach.py --timings-only --resume` (the folders can also run in parallel processes with "
     "`--name` and `--alphabets`)"),
    ("teach_photos_full", "Teach it on photos: the whole `novel-dev` folder (25 categories of 50 photos)",
     "`python benchmarks/teach.py --only photos --photo-classes 25 --no-speed --name teach_photos_full`"),
    ("teach_ceiling", "Teach it: how far answers about groups can go (an oracle's corrections, relearnt from)",
     "`python benchmarks/teach_ceiling.py`"),
    ("omniglot_k_rule", "Choosing the K-estimation rule by cross-validation on the background alphabets",
     "`python benchmarks/omniglot_k_rule.py --models DIR --pipeline --threads 2` (the script trains the six fold "
     "models into DIR with the shipped recipe where they are missing; here they had been trained with it "
     "beforehand)"),
    ("omniglot_k_rule_48", "The K rule re-checked with the 48x48 `omniglot` model (background folds 3-5)",
     "`OMP_NUM_THREADS=1 python benchmarks/omniglot_k_rule.py --models DIR --folds 5,4,3 --threads 1 --name "
     "omniglot_k_rule_48` (trains the three fold models with the shipped recipe into DIR)"),
    ("omniglot_self_training", "Choosing the self-training settings on validation alphabets",
     "`python benchmarks/omniglot_self_training.py --model DIR/fold5.safetensors` (the fold-5 model of that "
     "cross-validation)"),
    ("omniglot_self_training_fold3", "The self-training setting and the sharpened graph's K rule on fold 3 (at 1.0, the "
     "significance used before)",
     "`OMP_NUM_THREADS=1 python benchmarks/omniglot_self_training.py --model DIR/fold3.safetensors --fold 3 "
     "--settings 100/0.5 --threads 1 --name omniglot_self_training_fold3` (the fold models of `omniglot_k_rule_48`)"),
    ("omniglot_self_training_fold4", "The self-training setting and the sharpened graph's K rule on fold 4 (at 1.0, the "
     "significance used before)",
     "`OMP_NUM_THREADS=1 python benchmarks/omniglot_self_training.py --model DIR/fold4.safetensors --fold 4 "
     "--settings 100/0.5 --threads 1 --name omniglot_self_training_fold4`"),
    ("sharpened_significance", "The sharpened graph's K rule end to end: significance 1.0 against 0.6 (folds 3-5)",
     "`python benchmarks/omniglot_self_training.py --model DIR/foldF.safetensors --fold F --settings 100/0.5 "
     "--threads 1 --name sig06_foldF --k-sharpened-significance 0.6` for F in 3, 4, 5, then "
     "`python benchmarks/sharpened_significance.py`"),
    ("train_omniglot_model", "Training the shipped `omniglot` similarity model",
     f"`OMP_NUM_THREADS=1 l2c-explorer train-similarity {shown(OMNIGLOT_BACKGROUND)} --recipe "
     "omniglot --out models/omniglot --name omniglot`, then `python benchmarks/train_model.py omniglot --card-only "
     "--threads 1` (or the script alone, which runs the same command)"),
    ("omniglot_resolution", "Teach it with a sharper similarity model: 32x32 against 48x48 inputs (validation alphabets)",
     "`python benchmarks/omniglot_resolution.py`"),
    ("questions_split", "Which groups hold two categories, which two groups are one: the split and merge questions' "
     "probabilities (validation alphabets)",
     "`python benchmarks/questions_split.py --models DIR --folds 3,4,5` (the fold models of `omniglot_k_rule_48`)"),
    ("questions_prior", "Teach it: how much each kind of question learns from its answers (the prior's weight, "
     "validation alphabets)",
     "`OMP_NUM_THREADS=1 python benchmarks/questions_prior.py --model DIR/fold5.safetensors --threads 1` (the fold-5 "
     "model of `omniglot_k_rule_48`)"),
    ("relearn_steps", "Teach it: how long a relearning sharpens the features (validation alphabets)",
     "`OMP_NUM_THREADS=1 python benchmarks/relearn_steps.py --model DIR/fold5.safetensors --threads 1`"),
    ("photos_recipe", "How the `photos` recipe was chosen: tops on the frozen encoder, held-out source classes",
     "`python benchmarks/photos_recipe.py --per-class 40 --threads 1`"),
    ("photos_tuning", "Which of the encoder's blocks the `photos-tuned` recipe trains: held-out source classes",
     "`python benchmarks/photos_tuning.py --per-class 40 --threads 1`"),
    ("photos_features", "What the frozen encoder's features can tell apart: layers, input size, mirror, Lite2",
     "`python benchmarks/photos_features.py`"),
    ("train_photos_model", "Training the shipped `photos` similarity model",
     f"`l2c-explorer train-similarity {shown(TINY_SOURCE)} --recipe photos --out models/photos --name "
     "photos`, then `python benchmarks/train_model.py photos --card-only` (or the script alone, which runs the same "
     "command)"),
    ("photos_settings", "Choosing the `photos` model's discovery settings on its held-out source classes",
     "`python benchmarks/photos_settings.py --model models/photos.safetensors --full 2 --subsets 3 --write`"),
    ("photos_lite2_candidate_settings", "Lite2 against Lite0: the Lite2 model's discovery settings on the 5 held-out "
     "folders the Lite0 model's were chosen on",
     "`python benchmarks/photos_settings.py --model benchmarks/models/photos-lite2.safetensors --full 2 --subsets 3 "
     "--small 0 --write --name photos_lite2_settings`, run while the Lite2 model was a candidate (its results then "
     "renamed); the same folders as the Lite0 model's section below"),
    ("photos_lite2_224_settings", "Lite2 at 224 against 260 pixels: a candidate model's discovery settings on the "
     "7 held-out folders the shipped model's were chosen on",
     f"`l2c-explorer train-similarity {shown(TINY_SOURCE)} --recipe photos --image-size 224 --out "
     "DIR/photos-lite2-224 --name photos` (23 min), then `python benchmarks/photos_settings.py --model "
     "DIR/photos-lite2-224.safetensors --full 2 --subsets 3 --name photos_lite2_224_settings --write`; the same "
     "folders as the shipped model's section above"),
    ("photos_k_sizes", "The first K estimate by photos per category: held-out source classes",
     "`python benchmarks/photos_k_sizes.py`"),
    ("photos_lite0_settings", "Choosing the previous `photos` model's (Lite0) discovery settings on its held-out "
     "source classes",
     "`python benchmarks/photos_settings.py --model benchmarks/models/photos-lite0.safetensors --full 2 --subsets 3 "
     "--write --name photos_lite0_settings`, run while it was `models/photos`"),
    ("photos_tuned_settings", "Choosing the `photos-tuned` model's discovery settings on its held-out source classes",
     "`python benchmarks/photos_settings.py --model benchmarks/models/photos-tuned.safetensors --full 2 --subsets 3 "
     "--write`"),
    ("spectrum_settings", "The spectrum estimate's settings: Chebyshev degree and probes against exact eigenvalues",
     "`python benchmarks/spectrum_settings.py`"),
    ("self_training_cost", "Seconds per self-training step, by the images in its batch (a prior of the time left)",
     "`python benchmarks/self_training_cost.py`"),
    ("spn_speed", "Similarity training speed: the authors' formulation against ours", "`python benchmarks/spn_speed.py --steps 60 --threads 1`"),
    ("discover_speed", "Discovery speed on a 1,000-image folder", "`OMP_NUM_THREADS=1 python benchmarks/discover_speed.py`"),
    ("discover_large", "Discovery on a large folder: 6,180 images, 309 characters",
     "`python benchmarks/discover_large.py --baseline`"),
    ("discover_large_gpu", "The same large folder on a GPU",
     "`python benchmarks/discover_large.py --threads 16` on a machine with a CUDA GPU (the run picks it)"),
    ("scale", "Discovery at scale: 10,000 to 100,000 images, K unknown (up to 1,000) and known",
     "`python benchmarks/scale.py --sets 10k --k unknown --pipelines today`, "
     "`python benchmarks/scale.py --sets 10k 25k --k unknown --pipelines exact`, "
     "`python benchmarks/scale.py --sets 10k 25k 50k 100k --k known --pipelines new`, then "
     "`python benchmarks/scale.py --sets 100k 50k 25k 10k --k unknown --pipelines new` (`--max-k 1000` by default)"),
    ("knn_search", "Nearest-neighbour search at scale: exact, inverted-file (IVF), pynndescent and faiss",
     "`pip install faiss-cpu==1.15.1` (for the faiss rows only), then "
     "`python benchmarks/knn_search.py --threads 2 --also-threads 1`"),
    ("assign", "New images into a finished run (`assign`) against discovery on the union",
     "`python benchmarks/assign.py`"),
    ("threads", "Threads: a discovery run alone and beside a busy process", "`python benchmarks/threads.py`"),
    ("eigen_solvers", "Eigenpairs of the graphs: dense against Lanczos by folder size (where the solver switches)",
     "`python benchmarks/eigen_solvers.py`"),
    ("conv_layout", "The models' convolutions on the CPU: contiguous against channels-last memory layout",
     "`python benchmarks/conv_layout.py`"),
    ("app_explore_20k", "The app's explorer with 20,000 images", "`python benchmarks/app_explore_20k.py`"),
    ("app_explore_100k", "The app's explorer with 100,000 images", "`python benchmarks/app_explore_20k.py --n 100000`"),
    ("app_time_left", "The time left the app shows during a discovery and a relearning",
     "`python benchmarks/app_time_left.py --repeats 3`"),
    ("app_time_left_quiet", "The same, with nothing else running (the `photos` model on Lite2)",
     "`python benchmarks/app_time_left.py --repeats 3 --name app_time_left_quiet`, alone on the machine"),
    ("kill_test", "Killing `discover` at random moments: a finished run or a refused folder, never a misread one",
     "`python benchmarks/kill_test.py`"),
]

# The sections grouped by the question each answers, each group under its own heading, in this order.
GROUPS = {
    "How accurate": (
        "omniglot", "omniglot_no_self_training", "photos", "photos_tuned", "photos_limits", "digits_da", "teach",
        "teach_photos_full", "teach_ceiling",
    ),
    "How each constant was chosen": (
        "omniglot_k_rule", "omniglot_k_rule_48", "omniglot_self_training", "omniglot_self_training_fold3",
        "omniglot_self_training_fold4", "sharpened_significance", "train_omniglot_model", "omniglot_resolution",
        "questions_split", "questions_prior", "relearn_steps",
        "photos_recipe", "photos_tuning", "photos_features", "train_photos_model", "photos_settings", "photos_lite2_candidate_settings",
        "photos_lite2_224_settings", "photos_k_sizes", "photos_lite0_settings",
        "photos_tuned_settings", "spectrum_settings", "self_training_cost",
    ),
    "How fast": (
        "spn_speed", "discover_speed", "discover_large", "discover_large_gpu", "scale", "knn_search", "assign",
        "threads", "eigen_solvers", "conv_layout",
    ),
    "Does the app stay responsive": ("app_explore_20k", "app_explore_100k", "app_time_left", "app_time_left_quiet",
                                     "kill_test"),
}


def input_size_note() -> str:
    """Whether the 224-pixel candidate beat the shipped 260-pixel `photos` model on the same held-out folders."""
    if not all((RESULTS / f"{n}.json").exists() for n in ("photos_settings", "photos_lite2_224_settings")):
        return ""
    shipped, candidate = (json.loads((RESULTS / f"{n}.json").read_text())
                          for n in ("photos_settings", "photos_lite2_224_settings"))

    def best(record: dict) -> tuple[float, float, float]:
        run = best_run(record["runs"])
        known = max(r["acc"] for r in record["smoothing"])
        return 100 * run["acc"], run["k_error"], 100 * known

    (s_acc, s_err, s_known), (c_acc, c_err, c_known) = best(shipped), best(candidate)
    adopted = c_acc > s_acc and c_known > s_known
    features = json.loads((RESULTS / "photos_features.json").read_text())["results"]["held-out source classes"]
    alone = (f"On the frozen Lite2 features alone, k-means clustered the held-out source classes at "
             f"{features['Lite2 head, 224 px']:.1f}% from 224-pixel inputs and {features['Lite2 head, 260 px']:.1f}% "
             "from the encoder's own 260 (`photos_features` above). " if "Lite2 head, 224 px" in features else "")
    return (
        "**Reading the input size.** " + alone + "With the top trained at 224 "
        f"and its settings chosen on the same 7 folders, discovery scored {c_acc:.1f}% with K estimated (|K error| "
        f"{c_err:.2f}) and {c_known:.1f}% with K known, against {s_acc:.1f}% ({s_err:.2f}) and {s_known:.1f}% for "
        "the shipped 260-pixel model. "
        + ("The candidate is better on both: adopt it." if adopted else
           "Not better on both, so the shipped model stays at 260 pixels (224-pixel inputs have (224/260)^2 = "
           "0.74 of the pixels, and discovery already meets its time target).")
    )


def k_sizes_note() -> str:
    """What the first estimate's errors by folder shape say (from benchmarks/results/photos_k_sizes.json)."""
    path = RESULTS / "photos_k_sizes.json"
    if not path.exists():
        return ""
    record = json.loads(path.read_text())
    rows, settings = record["rows"], record["settings"]
    shipped = f"{settings['k_graph_neighbours']},{settings['k_graph_scale_neighbour']},{settings['k_significance']}"

    def error(key: str, keep=lambda r: True) -> float:
        return float(np.mean([abs(r["fixed"][key] - r["classes"]) for r in rows if keep(r)]))

    best = min(rows[0]["fixed"], key=error)
    smallest = min(r["per_class"] for r in rows)
    few = [error(key, lambda r: r["classes"] == 25 and r["per_class"] <= 1.5 * smallest) for key in rows[0]["fixed"]]
    return (
        f"**Reading the first estimate by folder shape.** The lowest mean |K error| over all shapes is the fixed "
        f"graph {best}'s, {error(best):.2f}, against {error(shipped):.2f} for the model's settings; no rule is best "
        "on every shape, and neither is a graph sized by the folder's own first estimate (the adaptive rows). On "
        f"folders of 25 categories with at most {int(1.5 * smallest)} photos each, every rule misses by "
        f"{min(few):.1f} to {max(few):.1f} groups on average: the spectrum of so few photos per category does not "
        "show the categories. The model's settings stay (they were chosen on the whole discovery, whose second "
        "estimate on sharpened features is the one shown; `photos_settings` above)."
    )


# Reading notes: fixed text, or a function that words the note from the results files.
NOTES = {
    "photos_k_sizes": k_sizes_note,
    "photos_lite2_224_settings": input_size_note,
    "teach": """
The Omniglot rows were measured with the 48x48 `omniglot` model and this version's questions: split and merge
questions scored by the weights `questions.py` holds, refitted on background folds 3-5 for this version's
first clusterings (`questions_split.py`), discovery's sharpened K rule at significance 0.6 and relearnings of
`RELEARN_STEPS` steps (all chosen on background folds, see "How each constant was chosen"). With the weights
fitted on the earlier version's clusterings, the same first clusterings gave, after 25 answers, 92.9% one at a
time, 94.7% (lowest 91.4%) relearnt and 94.3% (lowest 90.0%) in the batch flow, and |K error| 0.5 after 50
relearnt answers: the refit raised the one-at-a-time rows and lowered the relearnt ones (the weights were not
chosen on these alphabets, and were not changed back for them).
Relearning is what moves the score: one answer at a time without it, the refit only moves the images the
answers are about (and the images tied to them by the graph), so the mean rises slowly, while relearning
teaches the features what the answers mean and carries the correction to the rest of the folder; a relearning
on few answers can also go wrong (the batch flow's Sylheti after 10 answers: 85.9% -> 80.7%, 9 groups too
many; 93.6% after 25). After 25 answers the lowest alphabets (Sylheti relearnt, Tengwar in the batch flow) are
those with the most look-alike characters; most answers still confirm what the clustering says (the share that
changed the groups is in the lines above), because a wrong group is rarely where the model is least sure. The
photo part of this benchmark is the next section (the whole `novel-dev` folder, this version's questions).
""",
    "omniglot_self_training": """
Run with the sharpened graph's K rule at significance 1.0, the value used then (the "(used)" beside it); 0.6 is used
since the comparison "The sharpened graph's K rule end to end" below.
""",
    "sharpened_significance": """
The 1.0 runs of fold 5 used 2 threads, the others 1: with K and the steps the same, that alone moves an
alphabet's accuracy by up to a point (Balinese, K error +1 in both). 0.6 became the package's value
(`options.MODEL_SETTINGS`); the development-alphabet tables above were rerun with it.
""",
    "teach_ceiling": """
The Omniglot part was run with the 48x48 `omniglot` model and this version's discovery and relearning
(`teach_ceiling.py --only omniglot --resume`), the photo part with the shipped `photos` model (Lite2) on the
whole `novel-dev` folder, as `teach.py`'s photo part now uses it (`teach_ceiling.py --only photos --resume`;
it had been measured on 20 photos per category, where the first clustering finds 5 groups for 25).
""",
    "photos_tuning": """
A run of this script on a machine shared with two other jobs (1 thread, about 25 min a variant) was stopped
before its last variant to leave the cores to the test suite; it is to be rerun as a whole.
""",
    "kill_test": """
Writing the results takes a few hundredths of a second, so a kill rarely lands inside it: the folders such a
kill leaves (the new run's assignments.csv beside the earlier run's files, or its run file without its
summary.json) are made on purpose by `tests/test_runs.py`, and refused there.
""",
    "scale": """
**Reading the scale table.** The 10k set holds drawings only, and there the default pipeline's estimated
spectrum and filtered features are compared with the same code computing exact neighbours and eigenpairs
(the "exact" row): the check line says how far apart their accuracies are. The pipeline from before the
scale work ("today") ran at 10k only: it took longer there than the exact row, whose time grows much faster
than the folder (the 25k rows); neither was run on the larger sets. The 100k set mixes drawings,
digits and photos, most of them images the `omniglot` model was not made for. Its spectrum opens with a
few big drops, after which the K rule alone stops at a few dozen groups of thousands of images each; the
estimate reads the spectrum again inside the parts those drops separate (coarse to fine,
`l2c_explorer.graph.coarse_to_fine_k`), each estimated spectrum as the median of three sets of probes, and
reaches about `--max-k`; the 25k and 50k sets are steps between the two. The per-source table shows what
remains: drawings sort far better than digits and photos, which this model cannot tell apart; one folder per
kind of image, each with its own model, is the way to sort such a collection. The `assign` section below
shows the same estimate on 19,000 drawings of 1,000 characters.
The "today" row was measured with an earlier `omniglot` model (the last column says which); every other row
with the shipped one. With the 48x48 model the 25k set's default pipeline falls 2 points below the exact one
(the check line), where the 32x32 model's was 0.4 above: the approximate search and estimated spectrum cost
more on this mixed set than they did; at 10k they still match. With the 48x48 model the mixed 25k and 50k sets
score lower than with the 32x32 one, drawings included (the per-source table), while 10k drawings alone score
the same; not analysed further.
""",
    "photos_limits": """
**Reading the limits.** Our accuracy with K known follows the share of each image's nearest neighbours
that show its category, a few points above it: the graph every later stage is built on cannot be much
purer than the embedding's neighbourhoods. The first `photos` model (trained from scratch on 32x32
photos) put fewer than a third of a photo's neighbours in its category; the ImageNet-pretrained encoder
raises that on photos of animals and objects (Tiny ImageNet, birds), and barely on young plant seedlings
photographed from above, which ImageNet's classes never had to tell apart.
""",
    "omniglot": """
**Reading the Omniglot results.** Every setting is well above the authors' code on the same alphabets,
and discovery takes seconds per alphabet (the seconds in these tables were measured with one torch thread
while other benchmarks shared the 2 cores: the speed sections below, `discover_speed` and
`discover_large`, are the measurements of speed). Self-training (fine-tuning a copy of the similarity model on the
confident half of each first-pass cluster, then clustering again) is what lifts the accuracy past the
targets: it was measured and its settings chosen on held-out background alphabets (validation tables
below); the same benchmark without it is the next section. The first estimate of K reads the spectrum of
a self-tuning graph (each image's 20 nearest neighbours, weighted on the local scale of its neighbourhood)
instead of the 0/1 ten-neighbour graph: cross-validated on all 30 background alphabets, the 0/1 graph
split characters drawn in several styles into several groups (Grantha, Braille, Hebrew, Armenian), and
self-training then entrenched the split.
The first pass alone does not transfer as well as the validation promised: there the self-tuning graph
under-splits Tengwar (see the ablation section) and Kannada, and it is the second pass, on self-trained
features, that recovers them (Kannada's 41 with MCL, every seed; Tengwar within two). Since the similarity model reads 48x48
drawings (it read 32x32 until the models' card changed; `omniglot_resolution` shows why), the second pass no
longer merges Sylheti's look-alike rest into a few groups, and KCL's Sylheti no longer collapses.
The K-unknown rows were last rerun after the sharpened graph's K rule went from significance 1.0 to 0.6, a
choice made on background folds 3-5 ("The sharpened graph's K rule end to end" below), where it halved the
mean |K error|. On these development alphabets it did not: MCL's accuracy fell and its K error rose, almost
all of it Sylheti, now split into more groups still (it was already over-split at 1.0); KCL rose a little
(the tables of commit f9cb924 are the runs at 1.0). The constant stays as the validation alphabets chose it.
What remains is mostly over- and under-splitting by one to a few characters: Sylheti and ULOG split
characters drawn in two styles already in the first pass, and self-training keeps the split; Ge_ez and Avesta
merge look-alikes. No K rule we cross-validated removed both kinds of error at once
(a self-tuning graph in the second pass too was worse on the validation alphabets; the rules were re-checked
on background folds 3-5 with the 48x48 model: `omniglot_k_rule_48`). What we measured and dropped:
the paper's CCN alone (over-provisioned outputs on dense P(same) > 0.5 targets: several points lower with
K unknown), correlation-clustering refinement, fine-tuning the encoder with the clustering loss,
test-time augmentation, merging clusters whose mean P(same) exceeds one half (on the validation
alphabets P(same) between groups does not separate same from different characters), KCL's first-pass
clusters as pseudo-labels for an MCL second pass (lower accuracy on the validation alphabets); the CCN
stage on the diffusion features changes accuracy by a fraction of a point against k-means alone, and is
kept for its calibrated cluster probabilities and live curves.
""",
}

README_START = "<!-- results:start (written by benchmarks/make_report.py) -->"
README_END = "<!-- results:end -->"


def load(name: str) -> dict | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def omniglot_summary(res: dict) -> list[str]:
    """Means over alphabets and seeds per setting, next to the authors' numbers and our targets."""
    lines = [
        f"**Omniglot, 10 unseen alphabets** ({res['machine']}; {res['args']['seeds']} seeds; clustering "
        "accuracy with images in extra clusters counted as errors):",
        "",
        "| setting | ACC % | NMI | mean abs K error | s per alphabet | authors' code, same alphabets (their 20) | our target |",
        "|---|---|---|---|---|---|---|",
    ]
    for setting, runs in res["results"].items():
        loss, kmode = setting.split("-")
        rows = [r for rs in runs.values() for r in rs]
        acc = 100 * np.mean([np.mean([r["acc"] for r in rs]) for rs in runs.values()])
        kerr = np.mean([r["k_error"] for r in rows])
        pub = [PUBLISHED_BY_KEY[normalise_name(a)][COLUMN[setting]] for a in runs if normalise_name(a) in PUBLISHED_BY_KEY]
        # the sharper-model issue's targets (MCL, the loss discovery uses by default); KCL keeps the earlier ones
        lowest = 100 * min(np.mean([r["acc"] for r in rs]) for rs in runs.values())
        if kmode == "known":
            floor = 95 if loss == "mcl" else 92
            target = f"ACC >= {floor}%: {'met' if acc >= floor else 'not met'}"
        elif loss == "mcl":
            met = acc >= 93 and lowest >= 85 and kerr <= 1.0
            target = (f"ACC >= 93%, every alphabet >= 85% (lowest {lowest:.1f}), K error <= 1.0: "
                      f"{'met' if met else 'not met'}")
        else:
            met = acc >= 90 and kerr <= 1.5
            target = f"ACC >= 90%, K error <= 1.5: {'met' if met else 'not met'}"
        lines.append(
            f"| {loss.upper()}, K {kmode} | **{acc:.1f}** | {np.mean([r['nmi'] for r in rows]):.3f} | "
            f"{kerr:.2f} | {np.mean([r['seconds'] for r in rows]):.1f} | "
            f"{np.mean(pub):.1f} ({PUBLISHED_MEANS[setting]}) | {target} |"
        )
    return lines


# The photo issue's targets per development set: (K known ACC %, K estimated ACC %, largest mean |K error|)
PHOTO_TARGETS = {"novel-dev": (75, 70, 3), "birds-dev": (70, 65, 4), "seedlings-dev": (70, None, None)}
PHOTO_MARGIN = 8  # points above k-means on the frozen encoder's features, on every set
CROSS_TARGET = 80


def photos_summary(res: dict) -> list[str]:
    """Means over seeds per development set: ours and the baselines, next to the targets."""
    lines = [
        f"**Photos: categories the `photos` model never trained on** ({res['machine']}; "
        f"{res['args']['seeds']} seed(s); clustering accuracy, images in extra clusters counted as errors):",
        "",
        "| set | ours, K known | ours, K estimated (K error) | paper's pipeline, known / estimated | k-means on the "
        "frozen encoder | previous `photos` model (Lite0), known / estimated | targets |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, runs in res["results"].items():
        def acc(method):
            return 100 * float(np.mean([r[method]["acc"] for r in runs])) if method in runs[0] else float("nan")

        kerr = float(np.mean([r["ours-unknown"]["k_error"] for r in runs]))
        known, est, worst = PHOTO_TARGETS.get(name, (None, None, None))
        checks = []
        if known is not None:
            checks.append(f"K known >= {known}%: {'met' if acc('ours-known') >= known else 'not met'}")
        if est is not None:
            met = acc("ours-unknown") >= est and kerr <= worst
            checks.append(f"K estimated >= {est}%, K error <= {worst}: {'met' if met else 'not met'}")
        margin = acc("ours-known") - acc("kmeans-backbone")
        checks.append(f"+{PHOTO_MARGIN} over k-means: {'met' if margin >= PHOTO_MARGIN else 'not met'} "
                      f"({margin:+.1f})")
        if "cross-known" in runs[0]:
            checks.append(f"cross-task K known >= {CROSS_TARGET}%: {acc('cross-known'):.1f}, "
                          f"{'met' if acc('cross-known') >= CROSS_TARGET else 'not met'}")
        lines.append(
            f"| {name} ({runs[0]['ours-known']['k_true']} categories) | **{acc('ours-known'):.1f}** | "
            f"**{acc('ours-unknown'):.1f}** ({kerr:.1f}) | {acc('paper-known'):.1f} / {acc('paper-unknown'):.1f} | "
            f"{acc('kmeans-backbone'):.1f} | {acc('lite0-known'):.1f} / {acc('lite0-unknown'):.1f} | "
            + "; ".join(checks) + " |")
    lines += ["", "The encoder's ImageNet-1k pretraining saw the labels of the Tiny ImageNet classes (novel-dev); "
                  "it saw none of the bird and seedling species."]
    return lines


def other_summaries() -> list[str]:
    lines = []
    model = load("train_omniglot_model")
    if model:
        t, m = model["card"]["training"], model["card"]["holdout_pair_metrics"]
        lines.append(f"- Shipped `omniglot` similarity model: trained in {t['seconds'] / 60:.1f} min "
                     f"({model['machine']}); held-out pair F1 {m['f1']:.3f}, ROC-AUC {m['roc_auc']:.4f}.")
    model = load("train_photos_model")
    if model:
        t, m = model["card"]["training"], model["card"]["holdout_pair_metrics"]
        whole = f", {model['wall_seconds'] / 60:.1f} min for the whole command" if model.get("wall_seconds") else ""
        lines.append(f"- Shipped `photos` similarity model: {t['seconds'] / 60:.1f} min of training steps{whole} "
                     f"({model['machine']}; target 60 min); held-out pair ROC-AUC {m['roc_auc']:.4f}.")
    spn = load("spn_speed")
    if spn:
        lines.append(f"- Similarity training step: **{spn['speedup_per_step']:.0f}x** faster than the authors' "
                     f"pair-concatenation network (held-out pair F1 {spn['ours_same_time']['pairs']['f1']:.3f} vs "
                     f"{spn['authors']['pairs']['f1']:.3f} in the same training time).")
    speed = load("discover_speed")
    if speed:
        walls = [r["wall_seconds"] for r in speed["rows"]]
        lines.append(f"- Discovering the categories of {speed['n_images']:,} images: at most {max(walls):.0f} s "
                     f"for the whole command on 2 CPU cores (target: under a minute).")
    large = load("discover_large")
    if large and large.get("baseline"):
        before = large["baseline"]
        lines.append(f"- A large folder ({large['n_images']:,} drawings of {large['n_characters']} characters, K known): "
                     f"{large['seconds']:.0f} s on 2 CPU cores, **{before['seconds'] / large['seconds']:.1f}x** faster "
                     f"than before the large-folder work ({100 * large['scores']['acc']:.1f}% against "
                     f"{100 * before['scores']['acc']:.1f}%; target: 3x at the same accuracy).")
    scale = (load("scale") or {}).get("runs", {})
    huge = scale.get("100k/unknown/new")
    if huge and huge.get("finished"):
        lines.append(f"- {huge['n_images']:,} images with K unknown (up to {huge['max_k']:,}): "
                     f"{huge['seconds'] / 60:.1f} min and {huge['peak_rss_gb']:.1f} GB peak on 2 CPU cores "
                     "(target: 15 min, 6 GB).")
    teach = load("teach")
    if teach and "omniglot" in teach["results"] and "ours" in next(iter(teach["results"]["omniglot"].values())):
        rows = teach["results"]["omniglot"].values()
        which = "every development alphabet" if len(rows) == 10 else f"{len(rows)} of the 10 development alphabets"
        line = f"- Teach it (a simulated person answering from the folder names, K unknown, {which}): "
        parts = []
        for method, words in (("ours", "refit after each answer"), ("relearn", "relearnt"),
                              ("rounds", "5 questions at a time, each round relearnt (the batch flow)")):
            if method not in next(iter(rows)):
                continue
            accs = {b: [100 * r[method]["scores"][str(b)][0] for r in rows] for b in (0, 25)}
            part = (f"{words}, mean accuracy {np.mean(accs[0]):.1f}% with no answer, **{np.mean(accs[25]):.1f}%** "
                    f"after 25 answers (lowest alphabet {np.min(accs[25]):.1f}%)")
            if all("50" in r[method]["scores"] for r in rows):
                part += f", mean K error {np.mean([abs(r[method]['scores']['50'][1]) for r in rows]):.2f} after 50"
            parts.append(part)
        line += "; ".join(parts) + " (targets: 95%, every alphabet 91%; K error 0.3)"
        if teach.get("speed"):
            worst = teach["speed"]["max"]
            took = f"{1000 * worst:.0f} ms" if worst < 1 else f"{worst:.1f} s"
            line += (f"; one answer re-clusters {teach['speed']['n_images']:,} images in at most {took} (target 3 s; "
                     f"load average {teach['speed']['load_before'][0]:.0f} on 2 cores when measured)")
        lines.append(line + ".")
    for name in ("digits_da", "app_explore_20k"):
        md = RESULTS / f"{name}.headline.md"
        if md.exists():
            lines.append("- " + md.read_text().strip())
    return lines


def summary_block() -> str:
    parts = []
    omni = load("omniglot")
    if omni:
        parts += omniglot_summary(omni) + [""]
    photos = load("photos")
    if photos:
        parts += photos_summary(photos) + [""]
    parts += other_summaries()
    return "\n".join(parts).rstrip()


def main() -> None:
    parts = [
        "# Benchmarks",
        "",
        "Every number below is written by a script in `benchmarks/` (command under each heading; raw results in "
        "`benchmarks/results/*.json`) and copied here by `python benchmarks/make_report.py`. Rerun a script, then "
        "the report, to check or refresh them.",
        "",
        "The sections answer four questions in turn: " + "; ".join(f"**{group.lower()}**" for group in GROUPS) + ".",
        "",
    ]
    sections = {name: (title, command) for name, title, command in SECTIONS}
    grouped = [name for names in GROUPS.values() for name in names]
    if sorted(grouped) != sorted(sections):
        raise SystemExit("Every section belongs to exactly one group of GROUPS; not so for "
                         + ", ".join(sorted(set(grouped) ^ set(sections) | {n for n in grouped if grouped.count(n) > 1})))
    for group, names in GROUPS.items():
        parts += [f"## {group}", ""]
        for name in names:
            title, command = sections[name]
            md = RESULTS / f"{name}.md"
            parts += [f"### {title}", "", f"Command: {command}", ""]
            parts += [md.read_text().rstrip() if md.exists() else "_Not run yet._", ""]
            if name in NOTES:
                note = NOTES[name]
                parts += [(note() if callable(note) else note).strip(), ""]
    (ROOT / "BENCHMARKS.md").write_text("\n".join(parts).rstrip() + "\n")

    readme = ROOT / "README.md"
    if readme.exists():
        text = readme.read_text()
        block = f"{README_START}\n{summary_block()}\n{README_END}"
        pattern = re.compile(re.escape(README_START) + r".*?" + re.escape(README_END), re.S)
        if pattern.search(text):
            readme.write_text(pattern.sub(lambda _: block, text))


if __name__ == "__main__":
    main()
