"""One YAML layer under both grammars: a grid and a search space read the same file the same way."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlframework.exceptions import GridError
from mlframework.sweep.params.grid_file import load_grid
from mlframework.sweep.params.space import load_space


def _error(load, path: Path) -> str:
    with pytest.raises(GridError) as caught:
        load(path)
    return str(caught.value)


@pytest.mark.parametrize(
    "text",
    [
        None,  # no file
        "",  # empty
        "a: [1, 2\n",  # YAML syntax
        "- 1\n- 2\n",  # not a mapping
        "a: 1\nb: 2\na: 3\n",  # a name twice
        "1a: 3\n",  # not an option name
        "a: !!python/object:os.system [ls]\n",  # unsafe tag
    ],
)
def test_a_grid_and_a_search_space_give_the_same_one_line_error_for_the_same_file(tmp_path, text) -> None:
    path = tmp_path / "parameters.yml"
    if text is not None:
        path.write_text(text)
    grid_error, space_error = _error(load_grid, path), _error(load_space, path)
    assert grid_error == space_error
    assert grid_error.startswith(str(path)) and "\n" not in grid_error


def test_a_directory_is_the_same_error_for_both(tmp_path) -> None:
    assert (
        _error(load_grid, tmp_path)
        == _error(load_space, tmp_path)
        == f"{tmp_path}: is a directory, not a parameters file"
    )
