"""The notebooks run top to bottom on the real data (a small slice) and draw their figures; the
committed files stay small and free of outputs."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from moodify.training.explore import training_log_path

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
TOUR = "01_fer2013_tour.ipynb"
REPORT = "02_model_report.ipynb"
LIMIT = 300  # faces per split: enough for every figure to have content, small enough for CI
MAX_BYTES = 2_000_000
TRAINING_LOG = training_log_path(None)
# Figures each notebook draws on the slice (PNG outputs): a cell that silently stops drawing is a
# regression. The tour's grid of conflicting duplicates may be empty in a slice; the report draws
# training curves only once the shipped model's log is committed.
MIN_FIGURES = {TOUR: 7, REPORT: 7 + TRAINING_LOG.exists()}


def _with_parameters(nb: nbformat.NotebookNode, **values) -> nbformat.NotebookNode:
    """Insert a cell setting ``values`` after the cell tagged ``parameters`` (as papermill does)."""
    index = next((i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])), None)
    assert index is not None, "the notebook has no cell tagged 'parameters'"
    source = "\n".join(f"{k} = {v!r}" for k, v in values.items())
    cell = nbformat.v4.new_code_cell(source, metadata={"tags": ["injected-parameters"]})
    nb.cells.insert(index + 1, cell)
    return nb


@pytest.mark.parametrize("name", [TOUR, REPORT])
def test_notebook_is_committed_small_and_without_outputs(name):
    path = NOTEBOOKS / name
    assert path.stat().st_size < MAX_BYTES
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), "clear the outputs before committing"
    assert "parameters" in code[0].metadata.get("tags", []), "the first code cell must be tagged 'parameters'"
    assert "LIMIT = None" in code[0].source


@pytest.mark.data
@pytest.mark.slow
@pytest.mark.parametrize("name", [TOUR, REPORT])
def test_notebook_runs_on_a_slice_of_the_real_data(name, data_root, monkeypatch, tmp_path):
    nbclient = pytest.importorskip("nbclient", reason="executing notebooks needs nbclient and ipykernel")
    pytest.importorskip("ipykernel", reason="executing notebooks needs nbclient and ipykernel")
    pytest.importorskip("skimage", reason="the model report's real photo comes from scikit-image")
    monkeypatch.setenv("MOODIFY_DATA", str(data_root))  # the kernel inherits this environment
    # One torch thread: the slice is small, and on a busy CPU extra OpenMP threads spin-wait for
    # each other (a shared 2-core machine took minutes for a cell that needs seconds).
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    nb = _with_parameters(nbformat.read(NOTEBOOKS / name, as_version=4), LIMIT=LIMIT)
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": str(NOTEBOOKS)}})
    try:
        client.execute()  # raises CellExecutionError, naming the cell and its traceback, if a cell fails
    finally:
        # Keep the executed copy for a look at the figures when something is off.
        nbformat.write(nb, tmp_path / name)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    figures = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(figures) >= MIN_FIGURES[name], f"{name} drew {len(figures)} figures (executed copy: {tmp_path / name})"
    errors = [o for o in outputs if o.get("output_type") == "error"]
    assert not errors
