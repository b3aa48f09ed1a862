"""``load_config``: critpath.toml or ``[tool.critpath]`` in pyproject.toml, read into a ``Config``;
every bad key or value is a ``CritpathError`` naming the file, the key and the rule.

(Which of a flag, the file and a default wins is the CLI's business, tested with the CLI.)
"""
from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.inputs.config import KEYS, Config, load_config
from orchestrator.planning.errors import CritpathError
from orchestrator.planning.ranges import MAX_RETRIES, MAX_SLOTS

FULL = """\
modules = ["services.refinery", "services.demo"]
runner = "dask"
workers = 4
max_concurrency = 6
address = "tcp://scheduler:8786"
retries = 2
retry_delay = 1.5
timeout = 600
state_dir = "state"
json_report = "out/run.json"
time_scale = 0.1
select = "tag:load"

[pools]
warehouse = 4

[schedule]
cron = "0 2 * * *"
timezone = "Europe/Paris"
"""

EXPECTED = dict(modules=("services.refinery", "services.demo"), runner="dask", workers=4, max_concurrency=6,
                address="tcp://scheduler:8786", retries=2, retry_delay=1.5, timeout=600, state_dir="state",
                json_report="out/run.json", time_scale=0.1, select="tag:load", pools={"warehouse": 4},
                schedule={"cron": "0 2 * * *", "timezone": "Europe/Paris"}, graph=None)


def critpath_toml(folder: Path, text: str) -> Path:
    path = folder / "critpath.toml"
    path.write_text(text)
    return path


def problem(folder: Path, text: str) -> str:
    path = critpath_toml(folder, text)
    with pytest.raises(CritpathError) as err:
        load_config(folder=folder)
    message = str(err.value)
    assert message.startswith(f"{path}: "), message
    return message.removeprefix(f"{path}: ")


def test_no_config_file_gives_the_defaults(tmp_path):
    assert load_config(folder=tmp_path) == Config()
    assert (Config().runner, Config().state_dir, Config().time_scale, Config().path) == ("threads", ".critpath",
                                                                                            1.0, None)


def test_critpath_toml_is_read_whole(tmp_path):
    path = critpath_toml(tmp_path, FULL)
    cfg = load_config(folder=tmp_path)
    assert cfg.path == str(path)
    assert {k: getattr(cfg, k) for k in EXPECTED} == EXPECTED


def test_tool_critpath_in_pyproject_is_read_the_same(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n\n'
                                             + FULL.replace("[pools]", "[tool.critpath.pools]")
                                             .replace("[schedule]", "[tool.critpath.schedule]")
                                             .replace("modules =", "[tool.critpath]\nmodules =", 1))
    cfg = load_config(folder=tmp_path)
    assert cfg.path == str(tmp_path / "pyproject.toml")
    assert {k: getattr(cfg, k) for k in EXPECTED} == EXPECTED


def test_a_pyproject_without_tool_critpath_is_no_config(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n\n[tool.other]\nworkers = "many"\n')
    assert load_config(folder=tmp_path) == Config()


def test_critpath_toml_is_preferred_to_pyproject(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[tool.critpath]\nrunner = "ray"\n')
    critpath_toml(tmp_path, 'runner = "processes"\n')
    assert load_config(folder=tmp_path).runner == "processes"


def test_an_explicit_path_is_read_whatever_its_name(tmp_path):
    (tmp_path / "other.toml").write_text("workers = 3\n")
    (tmp_path / "pyproject.toml").write_text('[tool.critpath]\nworkers = 5\n')
    assert load_config(tmp_path / "other.toml").workers == 3
    assert load_config(tmp_path / "pyproject.toml").workers == 5


def test_an_explicit_path_that_does_not_exist_is_bad_input(tmp_path):
    with pytest.raises(CritpathError, match=r"config file '.*nope\.toml' not found; give an existing file to "
                                            r"--config"):
        load_config(tmp_path / "nope.toml")


def test_a_single_module_may_be_a_string(tmp_path):
    critpath_toml(tmp_path, 'modules = "services.demo"\n')
    assert load_config(folder=tmp_path).modules == ("services.demo",)


def test_an_unknown_key_is_named_with_a_suggestion_and_the_known_keys(tmp_path):
    assert problem(tmp_path, 'runer = "dask"\n') == (
        f"unknown key 'runer' (did you mean 'runner'?); known keys: {', '.join(sorted(KEYS))}")


def test_an_unknown_key_far_from_any_known_one_gets_no_suggestion(tmp_path):
    assert problem(tmp_path, "xyzzy = 1\n").startswith("unknown key 'xyzzy'; known keys: address, ")


def test_every_problem_is_reported_at_once(tmp_path):
    message = problem(tmp_path, 'runer = "dask"\nwrokers = 2\nworkers = 0\n')
    head, *items = message.split("\n  - ")
    assert head == "3 problems:"
    assert [i.split(";")[0].split(":")[0] for i in items] == [
        "unknown key 'runer' (did you mean 'runner'?)", "unknown key 'wrokers' (did you mean 'workers'?)",
        "workers = 0"]


SLOTS = f"must be a whole number from 1 to {MAX_SLOTS}"


@pytest.mark.parametrize("text, message", [
    ("workers = 0", f"workers = 0: {SLOTS}"),
    ("workers = 1.5", f"workers = 1.5: {SLOTS}"),
    ("workers = true", f"workers = True: {SLOTS}"),
    ('workers = "4"', f"workers = '4': {SLOTS}"),
    (f"max_concurrency = {MAX_SLOTS + 1}", f"max_concurrency = {MAX_SLOTS + 1}: {SLOTS}"),
    ("retries = -1", f"retries = -1: must be a whole number from 0 to {MAX_RETRIES}"),
    (f"retries = {MAX_RETRIES + 1}", f"retries = {MAX_RETRIES + 1}: must be a whole number from 0 to {MAX_RETRIES}"),
    ("retry_delay = -1", "retry_delay = -1: must be a number of seconds from 0 to 1e+07"),
    ("timeout = 0", "timeout = 0: must be a number of seconds > 0, at most 1e+07"),
    ("timeout = nan", "timeout = nan: must be a number of seconds > 0, at most 1e+07"),
    ("timeout = inf", "timeout = inf: must be a number of seconds > 0, at most 1e+07"),
    ("time_scale = 0", "time_scale = 0: must be a finite number > 0, e.g. 0.1 to run ten times faster"),
    ("[pools]\ndb = 0", "pools: pool 'db' has limit 0; a pool limit is a whole number from 1 to "
                        f"{MAX_SLOTS} (how many of its services may run at once)"),
    ("[pools]\ndb = 1.5", "pools: pool 'db' has limit 1.5; a pool limit is a whole number from 1 to "
                          f"{MAX_SLOTS} (how many of its services may run at once)"),
], ids=["zero-workers", "fractional-workers", "boolean-workers", "string-workers", "too-many-slots",
        "negative-retries", "too-many-retries", "negative-delay", "zero-timeout", "nan-timeout", "inf-timeout",
        "zero-time-scale", "zero-pool-limit", "fractional-pool-limit"])
def test_a_bad_number_is_named_with_its_rule(tmp_path, text, message):
    assert problem(tmp_path, text + "\n") == message


def test_a_number_of_thousands_of_digits_is_one_error(tmp_path):
    assert problem(tmp_path, "workers = 1" + "0" * 5000 + "\n").startswith("a number has thousands of digits")


def test_broken_toml_names_the_file_and_the_fix(tmp_path):
    assert problem(tmp_path, "workers = [\n").endswith("; fix the TOML syntax there")


@pytest.mark.parametrize("value", ['"yes"', "1"])
def test_shared_pools_must_be_true_or_false(tmp_path, value):
    (tmp_path / "critpath.toml").write_text(f"shared_pools = {value}\n")
    with pytest.raises(CritpathError, match=r"shared_pools = .*: must be true or false"):
        load_config(folder=tmp_path)
    (tmp_path / "critpath.toml").write_text("shared_pools = true\n")
    assert load_config(folder=tmp_path).shared_pools is True
