"""The page offers every run option as its spec declares it: label, first value, choices and range."""

from __future__ import annotations

import re

import gradio as gr
import pytest

from l2c_explorer.options import RUNS


@pytest.fixture(scope="module")
def blocks(tmp_path_factory):
    from l2c_explorer.app.ui import build_app
    from l2c_explorer.app.workbench import Workbench

    bench = Workbench(tmp_path_factory.mktemp("work"))
    demo, _ = build_app(bench)
    yield demo
    bench.close()


@pytest.fixture(scope="module")
def page(blocks):
    return blocks.l2c_page


def in_spec():
    return [(spec, option) for spec in RUNS.values() for option in spec.in_app()]


def test_public_endpoints_keep_the_names_they_were_given(blocks):
    # Gradio renames a clash (/check_folder -> /check_folder_1), which breaks every client of the API.
    public = sorted(fn.api_name for fn in blocks.fns.values() if fn.api_visibility == "public")
    assert {"check_folder", "start_discovery", "poll_discovery", "start_similarity", "restore"} <= set(public)
    assert not [name for name in public if re.search(r"_\d+$", name)], public


def test_every_option_with_a_widget_is_on_the_page(page):
    assert set(page.widgets) == {(spec.name, option.name) for spec, option in in_spec()}


@pytest.mark.parametrize("spec, option", in_spec(), ids=lambda x: getattr(x, "name", ""))
def test_each_widget_is_made_from_its_option(page, spec, option):
    widget, w = page.widgets[(spec.name, option.name)], option.widget
    assert widget.label == w.label
    assert widget.value == w.first_value(option)  # the option's default, or the first value the spec gives
    if w.info:
        assert widget.info == w.info
    if isinstance(widget, (gr.Radio, gr.Dropdown)) and option.allowed is not None:
        assert [tuple(c) for c in widget.choices] == [(label, value) for label, value in w.choices(option)]
        assert [value for _, value in widget.choices] == list(option.allowed.values)
    if isinstance(widget, (gr.Slider, gr.Number)):
        assert (widget.minimum, widget.maximum) == (w.minimum, w.maximum)
        for bound in (w.minimum, w.maximum):  # the widget never offers a value the run would refuse
            assert bound is None or option.accepts(type(option.default or 1)(bound))
    if isinstance(widget, gr.Slider):
        assert widget.step == w.step
    if w.toggle:
        assert isinstance(widget, gr.Checkbox) and widget.value is w.first_value(option) is True


def test_the_replace_button_comes_and_goes_with_the_line_that_explains_it(blocks, page):
    """The red "Replace the earlier export" button stands beside the line asking for it: every event that
    writes the export line (export, replace, save the model, a new run) also shows or hides the button."""
    for e in (page.explore, page.adapt_explore):
        writers = [fn for fn in blocks.fns.values() if e.export_md._id in {o._id for o in fn.outputs}]
        assert len(writers) >= 3
        silent = [fn.name for fn in writers if e.replace_btn._id not in {o._id for o in fn.outputs}]
        assert not silent, f"these write the export line but leave the replace button as it was: {silent}"
