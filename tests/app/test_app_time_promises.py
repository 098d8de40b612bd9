"""No fixed time promise on the page or in an option's help: a CPU busy with other work runs the same step
ten times slower, so every time the page states comes from what this machine measured (the time left of a
run, the estimate of a relearning: :mod:`l2c_explorer.progress`)."""

from __future__ import annotations

import re

import pytest

from l2c_explorer.options import RUNS

# "about 10 seconds", "a few seconds", "10 seconds more", "about 10 s", "takes a second or two"
FIXED_TIME = re.compile(r"\b(?:a few|a couple of|several|\d+(?:\.\d+)?)\s+(?:more\s+)?seconds?\b"
                        r"|\babout\s+\d+(?:\.\d+)?\s*(?:s|sec|min)\b|\ba second or two\b", re.IGNORECASE)


def option_texts() -> list[tuple[str, str]]:
    out = []
    for spec in RUNS.values():
        for option in spec.options.values():
            out.append((f"{spec.name}.{option.name} help", option.help))
            if option.widget is not None:
                w = option.widget
                out += [(f"{spec.name}.{option.name} label", w.label), (f"{spec.name}.{option.name} info", w.info)]
                out += [(f"{spec.name}.{option.name} choice", str(label)) for label in w.choice_labels.values()]
    return out


@pytest.fixture(scope="module")
def page_texts(tmp_path_factory) -> list[tuple[str, str]]:
    from l2c_explorer.app.ui import build_app
    from l2c_explorer.app.workbench import Workbench

    bench = Workbench(tmp_path_factory.mktemp("work"))
    demo, _ = build_app(bench)
    out = []
    for block in demo.blocks.values():
        for attr in ("value", "label", "info", "placeholder"):
            text = getattr(block, attr, None)
            if isinstance(text, str) and text:
                out.append((f"{type(block).__name__} {getattr(block, 'elem_id', None) or ''} {attr}", text))
    bench.close()
    return out


def test_the_matcher_finds_fixed_promises():
    for text in ("more accurate; about 10 seconds more on a CPU", "Relearn (a few seconds)", "about 40 s"):
        assert FIXED_TIME.search(text), text
    for text in ("the time left counts it", "computed once, then a top is trained", "in 1.5 s: 12 groups"):
        assert not FIXED_TIME.search(text), text


def test_no_option_help_promises_a_fixed_time():
    found = [(where, text) for where, text in option_texts() if FIXED_TIME.search(text)]
    assert not found, found


def test_no_page_text_promises_a_fixed_time(page_texts):
    assert len(page_texts) > 50  # the whole page was read
    found = [(where, text) for where, text in page_texts if FIXED_TIME.search(text)]
    assert not found, found
