"""The learner notebooks (docs/notebooks/) run top to bottom without error, and carry their figures.

Each runs in a fresh kernel with FNET_NOTEBOOK_QUICK=1 (its first cell then picks small data
and few epochs); the committed copies keep the outputs of a full run, so they read on a code
hosting site without running. Executing never writes back to the committed files.
"""

import shutil

import nbformat
import pytest
from nbclient import NotebookClient
from script_runner import ROOT

NOTEBOOKS = sorted((ROOT / "docs" / "notebooks").glob("*.ipynb"))


def test_the_notebooks_are_there():
    assert [p.stem for p in NOTEBOOKS] == ["ch05_backprop", "ch06_training", "ch07_convnets",
                                           "ch07_seq2seq_attention", "cs231n_saliency"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_notebook_has_outputs_and_images(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.get("execution_count") for c in code), f"{path.name}: run it and commit the outputs"
    errors = [o for c in code for o in c.outputs if o.output_type == "error"]
    assert not errors, f"{path.name} was committed with an error output"
    images = [o for c in code for o in c.outputs if {"image/png", "image/svg+xml"} & set(o.get("data", {}))]
    assert len(images) >= 3, f"{path.name}: its figures must be in the committed outputs"


@pytest.mark.skipif(shutil.which("dot") is None, reason="the notebooks draw graphs with Graphviz's dot")
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_top_to_bottom(path, monkeypatch, tmp_path):
    monkeypatch.setenv("FNET_NOTEBOOK_QUICK", "1")  # inherited by the kernel
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    quick = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.get("name") == "stdout"]
    assert "quick" in quick[0]["text"]  # the reduced budget was in effect
    if path.stem == "ch07_convnets":  # Figure 7-24's lesson: training visibly changes the filters
        said = " ".join(o["text"] for o in quick)
        factor = float(said.split("training changed the filters by ")[1].split()[0])
        assert factor > 1, said
