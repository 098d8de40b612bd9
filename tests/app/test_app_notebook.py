"""examples/quickstart.ipynb runs from top to bottom in a real kernel and returns real results."""

from __future__ import annotations

import pytest
from app_helpers import REPO, need_demo_and_model

NOTEBOOK = REPO / "examples" / "quickstart.ipynb"


@pytest.mark.slow
def test_quickstart_notebook_runs(tmp_path, monkeypatch):
    need_demo_and_model()
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv("GRADIO_ANALYTICS_ENABLED", "False")
    monkeypatch.setenv("L2C_WORK_DIR", str(tmp_path / "work"))  # the kernel inherits it: no shared cache
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=900, kernel_name="python3",
                                     resources={"metadata": {"path": str(NOTEBOOK.parent)}})
    client.execute()

    outputs = {i: cell.get("outputs", []) for i, cell in enumerate(nb.cells) if cell.cell_type == "code"}
    texts = "\n".join(o.get("text", "") for outs in outputs.values() for o in outs if o.get("output_type") == "stream")
    html = "\n".join(o.get("data", {}).get("text/html", "") for outs in outputs.values() for o in outs
                     if o.get("output_type") in ("display_data", "execute_result"))
    errors = [o for outs in outputs.values() for o in outs if o.get("output_type") == "error"]
    assert not errors, errors
    assert "<iframe" in html and "?token=" in html  # the app is shown inline, at its address with the token
    assert "groups found in 520 images" in texts and "ACC" in texts
    assert "confidence" in html  # the assignments table
    assert "done http://127.0.0.1:" in texts  # the run, as the page would show it
