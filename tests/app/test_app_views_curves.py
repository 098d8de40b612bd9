"""The live charts of a discovery: each phase that learns draws its own curve (training, sharpening, a
relearning), so that none sits still while another runs and no phase's losses land on another's; the
spectrum's note says only what its numbers show."""

from __future__ import annotations

import json

from l2c_explorer.app import views
from l2c_explorer.progress import Progress


def drawn(data: dict) -> dict[str, list[tuple[int, float]]]:
    """(step, loss) of each chart, picked as assets/curves.js picks them: by metric and stage."""
    return {s.get("id", s["key"]): [(p[data["x"]], p[s["key"]]) for p in data["points"]
                                    if p.get(s["key"]) is not None and (not s.get("stage") or p["stage"] == s["stage"])]
            for s in data["series"]}


def a_run_and_a_relearning() -> list[dict]:
    """The metrics a job records: first pass, sharpening, second pass, then a relearning (Teacher.relearn)."""
    points = [{"stage": "training", "step": s, "loss": 0.04} for s in (1, 2, 3)]
    points += [{"stage": "self-training", "step": s, "loss": 1.5 - 0.1 * s, "epoch": None} for s in (1, 2, 3)]
    points += [{"stage": "training", "step": s, "loss": 0.013} for s in (1, 2, 3)]
    points += [{"stage": views.RELEARNING_STAGES["self-training"], "step": s, "loss": 1.2} for s in (1, 2)]
    points += [{"stage": views.RELEARNING_STAGES["training"], "step": s, "loss": 0.17} for s in (1, 2)]
    return points


def test_sharpening_and_relearning_draw_their_own_curves():
    charts = drawn(json.loads(views.curves_json(a_run_and_a_relearning(), views.DISCOVER_SERIES)))
    # the run's training: both passes, the second continuing the axis; nothing of the sharpening or relearning
    assert charts["loss"] == [(1, 0.04), (2, 0.04), (3, 0.04), (4, 0.013), (5, 0.013), (6, 0.013)]
    assert charts["sharpening"] == [(1, 1.4), (2, 1.3), (3, 1.2)]  # moves while the sharpening runs
    assert charts["relearning-sharpening"] == [(1, 1.2), (2, 1.2)]
    assert charts["relearning"] == [(1, 0.17), (2, 0.17)]  # apart: no spike at the end of the run's curve


def test_each_series_has_a_chart_and_a_title_of_its_own():
    ids = [s.get("id", s["key"]) for s in views.DISCOVER_SERIES]
    assert len(set(ids)) == len(ids) and ids[0] == "loss"  # the run's training chart keeps its name
    titles = [s["title"] for s in views.DISCOVER_SERIES]
    assert len(set(titles)) == len(titles)
    assert any("Sharpening" in t for t in titles) and any("Relearning from the answers" in t for t in titles)
    # a relearning's stages are drawn, and only there
    assert {s.get("stage") for s in views.DISCOVER_SERIES} >= set(views.RELEARNING_STAGES.values())


def test_the_spectrum_note_claims_a_drop_only_where_the_numbers_show_one():
    flat = [round(1.0 - 0.012 * i, 5) for i in range(40)]  # evenly falling: no drop anywhere
    half = "the last drop at least half the largest"
    note = views.spectrum_chart({"eigenvalues": flat, "k": 14, "k_eigengap": 14, "rule": half})["note"]
    assert note.startswith("K = 14:") and "0.844" in note and "0.832" in note  # eigenvalues 14 and 15
    assert "no clear drop" in note and "uncertain" in note and "close to 1" not in note
    assert f"(chosen by the rule: {half})" in note
    clear = [1.0, 0.99, 0.98, 0.4, 0.3] + [0.2] * 60
    note = views.spectrum_chart({"eigenvalues": clear, "k": 3, "k_eigengap": 3, "rule": "the largest drop"})["note"]
    assert "a drop of 0.580, the largest in the chart (rule: the largest drop)" in note and "uncertain" not in note
    second = [1.0, 0.99, 0.7, 0.69, 0.5] + [round(0.49 - 0.005 * i, 5) for i in range(30)]
    note = views.spectrum_chart({"eigenvalues": second, "k": 4, "k_eigengap": 4, "rule": "the largest drop"})["note"]
    assert "not the largest in the chart (0.290, after eigenvalue 2" in note


def test_a_relearning_under_way_says_its_time_left():
    progress = Progress("self-training", 25, 100, message="Relearning from the answers: step 25/100",
                        time_left=100.0)
    html = views.relearning_html(progress)
    assert "25%" in html and "about 1 min 40 s left" in html
    assert "left" not in views.relearning_html(None)
