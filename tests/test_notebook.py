"""The example notebook runs (nbclient, a real kernel) and its results display as pictures and tables."""

from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "quickstart.ipynb"


def test_the_example_notebook_executes_and_shows_its_results(tmp_path):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    shown = [o for o in outputs if o.output_type == "execute_result"]
    assert sum("image/png" in o.data for o in shown) >= 2  # the inversion and the saliency maps
    assert any("<table>" in o.data.get("text/html", "") and "cka" in o.data["text/html"] for o in shown)
    assert (tmp_path / "notebook-out").is_dir() and any((tmp_path / "notebook-out").glob("invert_*.json"))
