"""The notebooks run top to bottom (executed with nbclient in a fresh kernel), on small settings.

Each notebook keeps its knobs (data path, size, epochs, ...) in one code cell tagged `parameters`. A notebook may
hold small values for tests in its metadata, `metadata.learner.test_parameters` (a dict): the test inserts a cell
assigning them right after the `parameters` cell, as papermill does, so users see the real defaults and CI runs
the small ones. A failing cell fails the test, naming the cell.
"""
import json
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / 'notebooks').glob('*.ipynb'))


def _with_test_parameters(nb, nbformat):
    """The notebook with a cell assigning `metadata.learner.test_parameters` after its `parameters` cell."""
    overrides = nb.metadata.get('learner', {}).get('test_parameters')
    if not overrides:
        return nb
    index = next((i for i, c in enumerate(nb.cells) if 'parameters' in c.get('metadata', {}).get('tags', [])), None)
    assert index is not None, 'a notebook with test_parameters needs a code cell tagged "parameters"'
    source = '\n'.join(f'{name} = {json.dumps(value) if isinstance(value, str) else repr(value)}'
                       for name, value in overrides.items())
    nb.cells.insert(index + 1, nbformat.v4.new_code_cell(source, metadata={'tags': ['injected-parameters']}))
    return nb


@pytest.mark.slow
@pytest.mark.parametrize('path', NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_executes(path, monkeypatch):
    # one intra-op thread per kernel: with loader workers beside it, 2 threads on a 2-core machine contend
    # (measured 4-25x slower notebooks under load)
    monkeypatch.setenv('OMP_NUM_THREADS', '1')
    nbformat = pytest.importorskip('nbformat', reason='pip install -e ".[test]" installs nbformat/nbclient')
    nbclient = pytest.importorskip('nbclient')
    nb = _with_test_parameters(nbformat.read(path, as_version=4), nbformat)
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name='python3',
                                     resources={'metadata': {'path': str(path.parent)}})
    client.execute()  # raises CellExecutionError naming the failing cell
    errors = [o for c in nb.cells if c.cell_type == 'code' for o in c.get('outputs', []) if o.output_type == 'error']
    assert not errors
    assert any(o.output_type == 'display_data' for c in nb.cells for o in c.get('outputs', [])), 'plots are shown'


@pytest.mark.slow
def test_every_plot_shows_exactly_once_in_a_notebook():
    """A plot as a cell's value, mid-cell, or silenced with `;` shows once (0.7's plots always showed, once)."""
    nbformat = pytest.importorskip('nbformat')
    nbclient = pytest.importorskip('nbclient')
    cells = ['%matplotlib inline\nimport numpy as np\nfrom learner import plots, plot_confusion_matrix',
             'plots(np.zeros((2, 8, 8, 3)))',                                  # the cell's value
             'fig = plots([np.zeros((8, 8, 3)), np.zeros((5, 9, 3))]);\nx = 1',  # mid-cell, images of two sizes
             'plot_confusion_matrix(np.eye(2), ["a", "b"]);']                  # silenced
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    nbclient.NotebookClient(nb, timeout=120, kernel_name='python3').execute()
    shown = [sum('image/png' in o.get('data', {}) for o in cell.outputs) for cell in nb.cells[1:]]
    assert shown == [1, 1, 1]
