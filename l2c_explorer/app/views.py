"""Words and small HTML/JSON pieces the page shows, from plain Python objects (no gradio here).

Everything a person reads is written for someone who has never trained a model: what a number means,
not just its name.
"""

from __future__ import annotations

import html
import itertools
import json
import math

from ..jobs import DONE, FAILED, QUEUED, RUNNING, STOPPED, STOPPING, JobSnapshot

STAGE_WORDS = {
    "reading": "Reading your images",
    "features": "Looking at each image with the similarity model",
    "graph": "Linking the images the model finds alike",
    "training": "Learning to group the images",
    "self-training": "Sharpening the model on the clearest groups, then grouping again",
    "finishing": "Tidying up and writing the results",
    "map": "Drawing the map",
}
# Where a stage means something else for another kind of run.
STAGE_WORDS_BY_KIND = {
    "similarity": {"training": "Learning which images show the same category",
                   "finishing": "Testing the model on categories it did not learn from"},
    "adapt": {"similarity": "Learning from pairs of source images",
              "training": "Learning from both folders",
              "finishing": "Naming each target image with a source category"},
}

# A relearning's points are recorded in its run's metrics under stages of their own (Teacher.relearn), so that
# they draw their own curves instead of continuing (and spiking) the run's.
RELEARNING_STAGES = {"self-training": "relearning self-training", "training": "relearning training"}

# What the live charts show, per kind of run: (metric key, chart title, colour). A discovery also shows
# the spectrum the number of categories was read from (:func:`curves_json`'s ``spectrum``). Each phase that
# learns has its own chart, so that one moves while its phase runs and no phase's losses land on another's.
DISCOVER_SERIES = [
    {"key": "loss", "stage": "training", "title": "Training loss (lower is better)", "color": "#1f77b4"},
    {"id": "sharpening", "key": "loss", "stage": "self-training", "title": "Sharpening (self-training loss)",
     "color": "#ff7f0e"},
    {"id": "relearning-sharpening", "key": "loss", "stage": RELEARNING_STAGES["self-training"],
     "title": "Relearning from the answers: sharpening (self-training loss)", "color": "#2ca02c"},
    {"id": "relearning", "key": "loss", "stage": RELEARNING_STAGES["training"],
     "title": "Relearning from the answers: grouping (training loss)", "color": "#9467bd"},
]
SIMILARITY_SERIES = [{"key": "loss", "title": "Training loss (lower is better)", "color": "#1f77b4"}]
ADAPT_SERIES = [
    {"id": "similarity", "key": "loss", "stage": "similarity", "color": "#9467bd",
     "title": "Learning pairs on the source (loss; ccn+ and ccn++ only)"},
    {"id": "training", "key": "loss", "stage": "training", "title": "Training loss (lower is better)",
     "color": "#1f77b4"},
]


# Below this many images the number of categories is hard to read from the images alone.
SMALL_FOLDER = 30


def esc(text) -> str:
    return html.escape(str(text), quote=True)


def problem(text: str) -> str:
    """A problem with what the user gave, shown next to that input until it is fixed (never a pop-up that
    fades, never a badge over the inputs)."""
    return f'<div class="l2c-problem" role="alert">{esc(text)}</div>'


def duration(seconds: float | None) -> str:
    """``"42 s"``, ``"3 min 05 s"``, ``"1 h 02 min"``."""
    if seconds is None or not math.isfinite(seconds):
        return "?"
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {(s % 3600) // 60:02d} min"


# ---------------------------------------------------------------------------------------------------
# models and devices


def model_card_markdown(name: str, card: dict) -> str:
    """A similarity model's card in plain words: what it learnt from and how well it tells pairs apart."""
    trained = card.get("trained_on", {}) or {}
    training = card.get("training", {}) or {}
    arch = card.get("architecture", {}) or {}
    m = card.get("holdout_pair_metrics", {}) or {}
    folder = trained.get("folder")
    src = f" (folder `{folder.rsplit('/', 1)[-1]}`)" if folder else ""
    lines = [f"**{esc(name)}** learnt what makes two images \"the same kind\" from "
             f"{trained.get('n_images', '?'):,} labelled images of {trained.get('n_classes', '?')} categories{src}."
             if isinstance(trained.get("n_images"), int) else f"**{esc(name)}**"]
    if m:
        held = trained.get("n_holdout_classes")
        lines.append(
            f"Tested on {held or 'some'} categories it never saw: when it says two images show the same category "
            f"it is right **{m.get('precision', 0):.0%}** of the time, and it finds **{m.get('recall', 0):.0%}** "
            f"of the pairs that really are the same. Its ranking score (ROC-AUC) is **{m.get('roc_auc', 0):.3f}** "
            "(1 = perfect, 0.5 = guessing)."
        )
    else:
        lines.append("It was not tested on held-out categories, so how well it transfers is unknown.")
    details = []
    if arch.get("input_size"):
        colour = "grayscale" if arch.get("in_channels", 1) == 1 else "colour"
        details.append(f"looks at images as {arch['input_size']}×{arch['input_size']} {colour}")
    if training.get("epochs") is not None:
        details.append(f"trained for {training['epochs']} epochs"
                       + (f" in {duration(training.get('seconds'))}" if training.get("seconds") else "")
                       + (" (stopped early)" if training.get("stopped_early") else ""))
    if details:
        lines.append("It " + ", ".join(details) + ".")
    if arch.get("type") == "pretrained-cosine":
        lines.append(f"It stands on **{esc(str(arch.get('backbone')))}**, an image encoder pretrained on the 1,000 "
                     "ImageNet categories (installed with l2c-explorer, never downloaded): it knows photos of "
                     "animals, plants, objects and scenes well beyond the categories above.")
    lines.append("It works best on images that look like the ones it learnt from.")
    return "\n\n".join(lines)


def device_badge_html(label: str) -> str:
    kind = "gpu" if label.upper().startswith("GPU") else "cpu"
    hint = "" if kind == "gpu" else " — fine for the demo; large folders are much faster on a GPU"
    return (f'<span class="l2c-badge {kind}" title="Where the training runs">Computing on: {esc(label)}</span>'
            f"{esc(hint)}")


# ---------------------------------------------------------------------------------------------------
# folders


def folder_markdown(report) -> str:
    """What a folder check found, for the page."""
    n = report.n_images
    skipped = len(report.skipped)
    files = f"{skipped} file{'s' if skipped != 1 else ''}"
    if n == 0:
        others = f" ({files} that are not images are listed below)" if skipped else ""
        return problem(f"No images in {report.folder}: none of its files, in any sub-folder, is a PNG, JPEG, BMP, "
                       f"GIF, WebP or TIFF image that can be read{others}. Choose the folder that holds the images.")
    parts = [f"Found **{n:,} image{'s' if n != 1 else ''}**"]
    if skipped:
        parts[0] += f", **{files} skipped**"
    parts[0] += f" in `{esc(report.folder)}`"
    if report.subfolders:
        parts[0] += f", in {len(report.subfolders)} sub-folder{'s' if len(report.subfolders) != 1 else ''}"
    parts[0] += "."
    if skipped:
        parts.append("The skipped files are listed below with the reason.")
    if not report.checked_all:
        parts.append("Files that turn out not to be readable images are listed when the run reads them.")
    if n < SMALL_FOLDER:
        parts.append("With so few images the number of categories is hard to estimate: if you know it, give it in "
                     "step 3.")
    if report.looks_labelled:
        parts.append("The images are sorted into sub-folders. If their names are the true categories, tick the box "
                     "below to score the result against them (they are never used to find the categories).")
    return " ".join(parts)


# ---------------------------------------------------------------------------------------------------
# jobs


def progress_html(snap: JobSnapshot | None, *, what: str = "run") -> str:
    """A progress bar and one sentence: stage, position, time spent and time left."""
    if snap is None:
        return ""
    status = snap.status
    frac = snap.fraction
    css = ""
    if status == QUEUED:
        text = "Waiting for another run to finish (one run computes at a time)…"
        frac = 0.0
    elif status in (RUNNING, STOPPING):
        words = {**STAGE_WORDS, **STAGE_WORDS_BY_KIND.get(snap.kind, {})}
        stage = words.get(snap.stage or "", snap.stage or "Starting")
        text = f"{stage}"
        if snap.total:
            text += f" · step {snap.step:,} of {snap.total:,} ({frac:.0%})"
        m = snap.metrics
        if "k_estimated" in m and snap.stage == "training":
            text += f" · {m['k_estimated']} categories so far"
        text += f" · {duration(snap.elapsed)} spent"
        left = snap.time_left if snap.time_left is not None else snap.eta
        if left is not None and status == RUNNING:
            text += f" · about {duration(left)} left"
        if status == STOPPING:
            text = "Stopping… keeping what was learnt so far. " + text
            css = " stopped"
    elif status == DONE:
        text = f"Finished in {duration(snap.elapsed)}."
        frac = 1.0
    elif status == STOPPED:
        text = (f"Stopped after {duration(snap.elapsed)}. " +
                (snap.error or "The results below use what was learnt until then."))
        css = " stopped"
    elif status == FAILED:
        text = f"The {what} could not finish: {snap.error}"
        css = " failed"
        frac = 1.0
    else:
        text = status
    return bar_html(status, frac, text, css=css, job=snap.id)


def bar_html(status: str, frac: float, text: str, *, css: str = "", job: str | None = None) -> str:
    """The progress bar's markup: ``status`` in data-status (what the tests and the page's script read)."""
    job_attr = f' data-job="{esc(job)}"' if job is not None else ""
    return (f'<div class="l2c-progress{css}" data-status="{esc(status)}"{job_attr}>'
            f'<div class="track"><div class="bar" style="width:{100 * frac:.1f}%"></div></div>'
            f'<div class="text">{esc(text)}</div></div>')


def curves_json(points: list[dict], series: list[dict], *, x: str = "step", x_title: str = "training step",
                references: dict | None = None, spectrum: dict | None = None, k_true: int | None = None) -> str:
    """The JSON the live-curves component draws (see ``assets/curves.js``).

    A series ``{"key", "title", "color"}`` draws metric ``key`` against ``x``; with ``"stage"`` only the
    points of that stage (e.g. "similarity" or "training"), and ``"id"`` names its chart when two series
    draw the same metric. ``spectrum`` (published by a discovery as soon as it has chosen K, see
    :func:`~l2c_explorer.discovery.spectrum_details`) adds a chart of what K
    was chosen from; ``k_true`` marks the true number of categories on it.
    """
    keys = {s["key"] for s in series}
    staged = any("stage" in s for s in series)
    slim, offset, last = [], {}, {}
    for p in points:
        if p.get(x) is None or not keys & set(p):
            continue
        # a later phase of the same stage that counts its steps from 1 again continues the axis
        stage = p.get("stage")
        if p[x] <= last.get(stage, float("-inf")) - offset.get(stage, 0):
            offset[stage] = last[stage]
        value = p[x] + offset.get(stage, 0)
        last[stage] = value
        slim.append({x: value, **({"stage": stage} if staged else {}), **{k: _round(p[k]) for k in keys if k in p}})
    out_series = []
    for s in series:
        s = dict(s)
        if references and s["key"] in references and references[s["key"]] is not None:
            s["reference"], s["reference_title"] = references[s["key"]]
        out_series.append(s)
    return json.dumps({"series": out_series, "x": x, "x_title": x_title, "points": slim,
                       "spectrum": spectrum_chart(spectrum, k_true)}, separators=(",", ":"))


def spectrum_chart(spectrum: dict | None, k_true: int | None = None) -> dict | None:
    """What the spectrum chart shows: the eigenvalues around the chosen K, and sentences saying why that K."""
    if not spectrum or not spectrum.get("eigenvalues"):
        return None
    values = spectrum["eigenvalues"]
    k, k_gap = int(spectrum["k"]), int(spectrum["k_eigengap"])
    shown = values[: max(30, 2 * max(k, k_gap, k_true or 0) + 5)]
    second = spectrum.get("pass", 1) > 1
    title = "How many categories: the spectrum" + (" (second round)" if second else "")
    if spectrum.get("k_given"):
        note = (f"K = {k} was given. The spectrum alone would suggest {k_gap}: the drop after eigenvalue {k_gap}"
                f" is the one the rule picks ({spectrum['rule']}).")
    elif spectrum.get("parts", 1) > 1:
        note = (f"K = {k}: the first few drops of this spectrum set a few large parts of the folder apart; "
                f"read again inside each of its {spectrum['parts']} parts (rule: {spectrum['rule']}), the "
                f"parts' spectra add up to {k} groups.")
    else:
        note = f"K = {k}: {_drop_words(shown, k, spectrum['rule'])}"
    return {"eigenvalues": shown, "k": k, "k_eigengap": k_gap, "k_given": bool(spectrum.get("k_given")),
            "k_true": k_true, "title": title, "note": note}


def _drop_words(values: list[float], k: int, rule: str) -> str:
    """The eigenvalues either side of the chosen K and how that drop compares with the others the chart
    shows, from the numbers: a drop is called clear only when the chart shows one."""
    if not 1 <= k < len(values):
        return f"the choice of the rule ({rule})."
    steps = [a - b for a, b in itertools.pairwise(values)]
    drop = steps[k - 1]
    others = steps[: k - 1] + steps[k:]
    typical = sorted(others)[len(others) // 2] if others else 0.0
    largest = max(range(len(steps)), key=steps.__getitem__)
    head = (f"the first {k} eigenvalues run from {values[0]:.3f} down to {values[k - 1]:.3f}, and eigenvalue "
            f"{k + 1} is {values[k]:.3f}")
    if drop < 2 * typical or drop <= 0:
        return (f"{head}: a step of {drop:.3f}, no larger than those around it. The chart shows no clear drop "
                f"there, so this number is uncertain (chosen by the rule: {rule}).")
    if largest == k - 1:
        return (f"{head}: a drop of {drop:.3f}, the largest in the chart (rule: {rule}). Each well-separated "
                "group of images gives one eigenvalue near 1.")
    larger = f"{drop / typical:.0f} times a typical step between neighbours, " if typical > 0 else ""
    return (f"{head}: a drop of {drop:.3f}, {larger}though not the largest in the chart ({steps[largest]:.3f}, "
            f"after eigenvalue {largest + 1}; rule: {rule}).")


def _round(v):
    return round(v, 5) if isinstance(v, float) else v


# ---------------------------------------------------------------------------------------------------
# results


def results_markdown(result) -> str:
    """The headline of a finished run, with metrics explained when the folder names are ground truth."""
    s = result.summary
    n = len(result.paths)
    took = f"{duration(s.get('seconds'))} on {s.get('device', '?')}"
    if result.kind == "discover":
        k = result.n_clusters
        given = s.get("k_given")
        found = f"**{k} categor{'y' if k == 1 else 'ies'}**"
        answers = _answers_words(result)
        if answers:  # the groups are no longer the run's own: say so, and what the run itself found
            k_run = (s.get("answers") or {}).get("k_before_answers", "?")
            run = (f"the number was given as {k_run}; the run took {took}" if given
                   else f"the run estimated {k_run} in {took}")
            head = f"{found} in **{n:,} images** after {answers} ({run})."
        else:
            head = (f"{found} found in **{n:,} images**"
                    + (" (the number was given)" if given else " (the number was estimated)") + f" in {took}.")
    else:
        head = (f"**{n:,} images** sorted into the {len(result.names)} source categories with "
                f"`{s.get('method', '?')}` in {took}.")
    if result.stopped:
        head += " The run was stopped early: these results use what was learnt until then."
    lines = [head]
    if result.kind == "discover" and not s.get("k_given") and n < SMALL_FOLDER:
        lines.append(f"With only {n} images the number of categories is a rough estimate. If you know how many "
                     "there are, give the number (step 3, *I know it*) and start again.")
    if result.skipped:
        lines.append(f"{len(result.skipped)} file(s) were skipped (see the list below).")
    if s.get("no_scores"):  # the folder names were offered as the truth but cannot be (data.truth_problem)
        lines.append(f"**No scores**: {s['no_scores']}, so there are no true categories to compare the groups "
                     "with.")
    m = s.get("metrics")
    if m and result.kind == "discover":
        lines.append(
            "Compared with the folder names (the true categories):\n\n"
            "| measure | value | what it means |\n|---|---|---|\n"
            f"| ACC | {m['acc']:.3f} | share of images in the right group, after matching each group to a category |\n"
            f"| NMI | {m['nmi']:.3f} | how much the groups tell about the true categories (1 = everything) |\n"
            f"| ARI | {m['ari']:.3f} | agreement on which pairs belong together (0 = chance, 1 = perfect) |\n"
            f"| K error | {abs(k - int(m['k_true']))} | groups found ({k}) minus true categories ({m['k_true']}), "
            "in absolute value |"
        )
    elif m:
        acc = m.get("accuracy")
        if acc is not None:
            lines.append(f"Compared with the folder names: **{acc:.1%}** of the target images get the right class.")
    return "\n\n".join(lines)


def _answers_words(result) -> str:
    """"5 answers" (and the relearnings from them) when a person's answers shaped the groups, else ""."""
    given = getattr(result.estimator, "constraints_", None)
    n = len(given) if given is not None else 0
    if not n:
        return ""
    words = f"{n} answer{'s' if n != 1 else ''}"
    relearnt = len((result.summary.get("answers") or {}).get("relearnt_with") or ())
    if relearnt:
        words += " and a relearning" if relearnt == 1 else f" and {relearnt} relearnings"
    return words


def cluster_rows(summaries, names: list[str]) -> list[list]:
    """Rows of the clusters table: name, size, mean confidence (and main true label, purity)."""
    rows = []
    for s in summaries:
        row = [names[s.cluster], s.size, round(s.mean_confidence, 3)]
        if s.top_label is not None:
            row += [s.top_label, round(s.purity, 3)]
        rows.append(row)
    return rows


def cluster_choices(summaries, names: list[str]) -> list[tuple[str, int]]:
    """Dropdown choices: ("cluster 3 · 24 images", 3), largest first, plus "all"."""
    out = [("All clusters (show everything)", -1)]
    for s in summaries:
        label = f"{names[s.cluster]} · {s.size} image{'s' if s.size != 1 else ''}"
        if s.top_label is not None:
            label += f" · {s.purity:.0%} {s.top_label}"
        out.append((label, s.cluster))
    return out


def cluster_markdown(summary, names: list[str]) -> str:
    text = (f"**{esc(names[summary.cluster])}**: {summary.size} images, average confidence "
            f"{summary.mean_confidence:.2f}. First its most typical images (closest to the group's centre), then "
            "the ones the model is least sure about (check these first).")
    if summary.top_label is not None:
        text += f" Its most common true category is `{esc(summary.top_label)}` ({summary.purity:.0%} of it)."
    return text


def selection_markdown(selection: dict, limit: int) -> str:
    n = len(selection["indices"])
    if n == 0:
        return "Select images on the map with the lasso or box tool (in the map's toolbar) to see them here."
    counts = ", ".join(f"{k} from {esc(name)}" for name, k in selection["counts"][:8])
    more = "" if len(selection["counts"]) <= 8 else ", …"
    shown = f" (showing the first {limit})" if n > limit else ""
    return f"**{n} image{'s' if n != 1 else ''} selected**{shown}: {counts}{more}."


def fit_note_markdown(message: str) -> str:
    """The model-fit message of the folder step, or nothing when the model suits the images."""
    return f"⚠️ **Similarity model and images do not match.** {message}" if message else ""


# ---------------------------------------------------------------------------------------------------
# teach it


def question_html(question: dict | None, url_a: str, url_b: str) -> str:
    """A question as two thumbnails and one sentence (``question``: a Teacher question, or None).

    Each image is named by its file name only: the folder it sits in may be its category, which would give
    the answer away. A click on an image shows it large over the page (a ``<details>`` the page's CSS turns
    into an overlay; no script, and the same file from the app), a second click closes it.
    """
    if question is None:
        return "<div class='l2c-question'>No question left worth asking: the groups look settled.</div>"

    def cell(url: str, path: str, i: int) -> str:
        name = esc(str(path).replace("\\", "/").rsplit("/", 1)[-1])
        return (f"<figure><details class='l2c-zoom'><summary title='Click to enlarge (click again to close)'>"
                f"<img src='{esc(url)}' alt='{name}' data-index='{i}'/></summary></details>"
                f"<figcaption>{name}</figcaption></figure>")

    cells = cell(url_a, question["path_a"], question["a"]) + cell(url_b, question["path_b"], question["b"])
    return (f"<div class='l2c-question' data-kind='{esc(question['kind'])}' data-a='{question['a']}' "
            f"data-b='{question['b']}'><p>{esc(question['text'])}</p><div class='l2c-pair'>{cells}</div>"
            "<p class='l2c-help'>Do these two images show the same category?</p></div>")


def teach_status(teacher, before: int | None, after: int | None) -> str:
    """One line after a change: what it did and how long it took."""
    if before is None:
        if not teacher.answers:
            return "Answer a few questions: the groups change at once."
        return f"{_answers(teacher)} so far."
    seconds = f" in {teacher.seconds:.1f} s" if teacher.seconds is not None else ""
    return (f"Re-grouped with {_answers(teacher)}{seconds}: {_groups_now(before, after)}; "
            f"{teacher.last_change}. {_held(teacher)}")


def _held(teacher) -> str:
    """The page's own measure of the answers: how many of them the groups shown agree with."""
    n, held = len(teacher.answers), teacher.answers_held()
    if not n:
        return ""
    if held == n:
        return f"The groups agree with all {n} of your answers." if n > 1 else "The groups agree with your answer."
    return f"⚠️ The groups agree with {held} of your {n} answers."


def _answers(teacher) -> str:
    n = len(teacher.answers)
    return f"{n} answer{'s' if n != 1 else ''}"


def _groups_now(before: int, after: int) -> str:
    return f"**{after} groups**" + ("" if before == after else f" ({before} → {after} groups)")


def relearning_html(progress) -> str:
    """The progress bar of a relearning under way (``progress``: its latest report, None before the first)."""
    frac = progress.fraction if progress is not None else 0.0
    text = "Relearning from your answers"
    if progress is not None and progress.message:
        text += f": {progress.message}"
    seconds = progress.time_left_now() if progress is not None else None
    left = f", about {duration(seconds)} left" if seconds is not None else ""
    text += f" ({frac:.0%}{left}). The groups below change when it ends."
    return bar_html("relearning", frac, text)


def relearn_status(teacher, before: int, after: int) -> str:
    """One line after relearning: from how many answers, how long, and the groups now."""
    return (f"Relearnt the features from {_answers(teacher)} in {teacher.seconds:.1f} s: {_groups_now(before, after)}; "
            f"{teacher.last_change}. {_held(teacher)} The map keeps its layout; the colours show the new groups.")


def added_markdown(summary: dict) -> str:
    """What adding new images to a finished run did, in plain words."""
    n, unlike = summary["n_images"], summary["n_unlike_any"]
    used = sum(1 for c in summary["assigned_per_cluster"] if c)
    text = (f"Put **{n - unlike:,} of {n:,} new images** into {used} of the {summary['n_clusters']} groups. "
            f"**{unlike:,}** look unlike every group (less alike to their nearest group member than 99% of the "
            "images the groups were found from): check them, they may be a new category.")
    if summary.get("n_skipped"):
        text += f" {summary['n_skipped']} file(s) could not be read."
    return text
