"""``critpath emit``, ``watch`` and ``serve`` refusing bad input: one ``critpath: error:``
line naming the problem and the fix, exit status 2, no traceback, nothing sent or served.

    extract -> transform -> publish
"""
from __future__ import annotations

import pytest

from tests.helpers.processes import assert_bad_input, critpath
from tests.helpers.projects import graph_file

GRAPH = [{"name": "extract", "duration": 0.05},
         {"name": "transform", "after": ["extract"], "duration": 0.05},
         {"name": "publish", "after": ["transform"], "duration": 0.05}]


@pytest.fixture
def project(tmp_path):
    graph_file(tmp_path, GRAPH)
    (tmp_path / "landing").mkdir()
    return tmp_path


@pytest.mark.parametrize("args, needles", [
    # an unknown name is refused before anything is sent (no server is even asked)
    (["emit", "transform", "transfrom"], ["unknown service 'transfrom'", "did you mean 'transform'",
                                           "nothing was sent"]),
    (["emit"], ["Missing argument 'NAMES...'"]),
    (["watch", "nowhere", "--service", "extract"], ["watch 'nowhere': does not exist", "create the landing folder"]),
    (["watch", "g.json", "--service", "extract"], ["watch 'g.json': is not a folder"]),
    (["watch", "landing", "--service", "extrct"], ["unknown service 'extrct'", "did you mean 'extract'"]),
    (["watch", "landing", "--service", "extract", "--debounce", "0"], ["--debounce 0.0: must be a number of "
                                                                       "seconds > 0"]),
    (["watch", "landing", "--service", "extract", "--debounce", "-2"], ["--debounce -2.0"]),
    (["watch", "landing", "--service", "extract", "--debounce", "nan"], ["--debounce nan"]),
    (["watch", "landing"], ["give the service its files update: --service NAME"]),
    (["watch"], ["nothing to watch", "[[watch]]"]),
    (["serve", "--debounce", "0"], ["--debounce", "0"]),
    (["serve", "--collision", "drop"], ["--collision", "'drop' is not one of 'queue', 'skip'"]),
])
def test_bad_input_is_one_line_and_exit_2(project, args, needles):
    assert_bad_input(critpath(*args, "--graph", "g.json", cwd=project), *needles)


def test_emit_without_a_server_to_send_to_is_one_line(project):
    assert_bad_input(critpath("emit", "transform", "--graph", "g.json", cwd=project), "no PREFECT_API_URL")


@pytest.mark.parametrize("toml, needle", [
    ("debounce = 0\n", "debounce = 0: must be a number of seconds > 0"),
    ('serve_collision = "later"\n', "serve_collision = 'later'"),
    ('[[watch]]\npath = "landing"\nservice = "extract"\ndebounce = "2s"\n', "watch #1: debounce = '2s'"),
])
def test_bad_settings_in_critpath_toml_are_one_line(project, toml, needle):
    (project / "critpath.toml").write_text('graph = "g.json"\n' + toml)
    assert_bad_input(critpath("watch", cwd=project), needle)


def test_watch_pairs_from_critpath_toml_are_checked_too(project):
    (project / "critpath.toml").write_text('graph = "g.json"\n[[watch]]\npath = "landing"\nservice = "extract"\n'
                                           '[[watch]]\npath = "missing"\nservice = "publish"\n')
    assert_bad_input(critpath("watch", cwd=project), "watch 'missing': does not exist")
