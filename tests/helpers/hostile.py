"""Hostile input for the loaders and the config, as hypothesis strategies, and a TOML writer.

Names that look like paths, unicode, control characters; numbers past a float (10**400,
inf, nan); junk of every JSON type where a field expects another; text nested tens of
thousands deep; integers of thousands of digits. ``to_toml`` writes the same documents
as TOML, so both graph formats get the same junk.
"""
from __future__ import annotations

import json
import math

from hypothesis import strategies as st

from orchestrator.inputs.config import KEYS

NAMES = st.sampled_from(["a", "b", "c", "d", "../../etc/x", "/abs", "a/b", "..", "ünï", "名前", "☃", "a b",
                         " a", "", "+a", "a,b", "tag:x", "x\x00", "\u202e", "a" * 300]) | st.text(max_size=6)
HUGE = st.sampled_from([10**19, 2**63, 10**400, -10**400, 1e308, math.inf, -math.inf, math.nan, -0.0])
NUMBERS = st.integers(-5, 1000) | st.floats() | HUGE
JUNK = st.recursive(st.none() | st.booleans() | NUMBERS | st.text(max_size=5),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                    max_leaves=10)
CALLS = st.sampled_from(["json:loads", "json:no_such_function", "no_such_module_zz:f", "json:__doc__",
                         "json:<locals>.f", "json", "a:b:c", "tests.helpers.faults:mark"])
SERVICE = st.fixed_dictionaries({"name": NAMES}, optional={
    "after": st.lists(NAMES, max_size=3) | JUNK, "duration": st.floats(0, 5) | NUMBERS | JUNK,
    "estimate": NUMBERS, "timeout": NUMBERS, "retries": NUMBERS, "retry_delay": NUMBERS,
    "pool": st.sampled_from(["db", "api"]) | JUNK, "call": CALLS | JUNK, "params": JUNK,
    "kind": st.sampled_from(["sleep", "cpu", "gpu"]) | JUNK, "tags": st.lists(NAMES, max_size=2) | JUNK,
    "retires": JUNK})
POOLS = st.dictionaries(st.sampled_from(["db", "api"]) | st.text(max_size=3), NUMBERS | JUNK, max_size=3)
DOCUMENTS = st.fixed_dictionaries({}, optional={
    "services": st.lists(SERVICE | JUNK, max_size=6) | JUNK, "pools": POOLS | JUNK, "extra": JUNK})


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else {math.inf: "inf", -math.inf: "-inf"}.get(v, repr(v))
    if isinstance(v, (int, str)):
        return json.dumps(v)  # a JSON string is a TOML basic string (escapes it cannot hold fail to parse)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v if x is not None) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {_toml_value(x)}" for k, x in v.items() if x is not None) + "}"


def to_toml(document: dict) -> str:
    """``document`` as TOML: tables of objects become [[services]]; TOML has no null, so None is left out."""
    lines, tables = [], []
    for key, value in document.items():
        if key == "services" and isinstance(value, list) and value and all(isinstance(s, dict) for s in value):
            for s in value:
                tables += ["[[services]]", *(f"{json.dumps(k)} = {_toml_value(x)}" for k, x in s.items()
                                             if x is not None)]
        elif value is not None:
            lines.append(f"{json.dumps(key)} = {_toml_value(value)}")
    return "\n".join(lines + tables) + "\n"


JUNK_TEXT = st.one_of(
    st.text(max_size=40), st.just(""), st.just("  \n\t"),
    st.integers(1, 50_000).map(lambda n: "[" * n + "]" * n),
    st.integers(1, 50_000).map(lambda n: '{"services": ' + "[" * n + "]" * n + "}"),
    st.integers(1, 5_000).map(lambda n: "services = " + "[" * n + "]" * n),
    st.integers(4_000, 6_000).map(lambda n: '{"services": [{"name": "a", "duration": 1' + "0" * n + "}]}"))

#: numbers a float can hold (tests/test_hostile_input.py checks bigger ones one by one)
SANE = st.integers(-2**63, 2**63) | st.floats()
CONFIG_VALUES = st.recursive(st.none() | st.booleans() | SANE | st.text(max_size=6),
                             lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                                                           max_size=3), max_leaves=6)
CONFIGS = st.dictionaries(st.sampled_from(sorted(KEYS) + ["runer", "wrokers", ""]), CONFIG_VALUES | st.one_of(
    st.sampled_from(["threads", "dask", "g.json", ".critpath", "tag:x"]), st.integers(1, 64),
    st.dictionaries(st.sampled_from(["db", "api"]), SANE, max_size=2)), max_size=6)
