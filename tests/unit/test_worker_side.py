"""The worker side of the runner contract (``runners.base``), in this process: how a service's
exception is described, that an outcome always pickles, and every form of a secret masked."""
from __future__ import annotations

import json
import logging
import os
import pickle
import traceback
import uuid

import pytest

from runners.base import Job, Outcome, describe_exception, execute, redact, register_secret, secret_forms
from runners.procworker import HEADER, split_frames

BODIES = "tests.helpers.worker_faults"


def raised(exc: BaseException) -> BaseException:
    """``exc`` with a traceback, as a service's exception has one."""
    try:
        raise exc
    except BaseException as caught:
        return caught


class BrokenStr(Exception):
    def __str__(self):
        raise RuntimeError("__str__ exploded")


class BrokenBoth(BrokenStr):
    def __repr__(self):
        raise RuntimeError("__repr__ exploded")


class Unreprable:
    def __repr__(self):
        raise ValueError("no repr")


class OddStr(str):
    """A str subclass that cannot be pickled."""

    def __reduce__(self):
        raise TypeError("not picklable")


class OddMessage(Exception):
    def __str__(self):
        return OddStr("odd but printable")


def test_an_ordinary_exception_is_described_as_before():
    error, tb = describe_exception(raised(ValueError("bad row 7")))
    assert error == "ValueError: bad row 7"
    assert tb.startswith("Traceback (most recent call last):") and tb.rstrip().endswith("ValueError: bad row 7")


@pytest.mark.parametrize("exc,expected", [
    (BrokenStr("disk full"), "BrokenStr: BrokenStr('disk full') (its str() raised RuntimeError)"),
    (BrokenBoth("disk full"), "BrokenBoth: 'disk full' (its str() raised RuntimeError)"),
    (BrokenBoth(Unreprable()), "BrokenBoth: <unprintable Unreprable> (its str() raised RuntimeError)"),
])
def test_an_unprintable_exception_keeps_its_type_and_whatever_message_can_be_had(exc, expected):
    error, tb = describe_exception(raised(exc))
    assert error == expected
    assert "Traceback (most recent call last):" in tb and "raise exc" in tb


def test_with_nothing_to_show_it_says_unprintable():
    assert describe_exception(raised(BrokenBoth()))[0] == \
        "BrokenBoth: <unprintable BrokenBoth object> (its str() raised RuntimeError)"


def test_a_traceback_that_cannot_be_formatted_falls_back_to_its_frames(monkeypatch):
    def explode(*a, **k):
        raise RuntimeError("formatting failed")

    monkeypatch.setattr(traceback, "format_exception", explode)
    error, tb = describe_exception(raised(KeyError("k")))
    assert error == "KeyError: 'k'"
    assert tb.startswith("Traceback (most recent call last):") and "raise exc" in tb
    assert tb.rstrip().endswith("KeyError: 'k'")


@pytest.mark.parametrize("kind", ["str", "repr"])
def test_execute_reports_an_unprintable_exception_as_a_failure_that_pickles(kind):
    out = execute(Job("bad#1", "bad", f"{BODIES}:raise_unprintable", {"kind": kind}))
    assert not out.ok and out.error.startswith(("Unprintable: ", "Unrepresentable: "))
    assert "raise_unprintable" in out.traceback
    assert pickle.loads(pickle.dumps(out)) == out


def test_an_outcome_holds_plain_strings_only(monkeypatch):
    """A message that is a str subclass which refuses pickling, as an error and as a log line:
    the outcome still pickles (processes, Dask and Ray send it back)."""
    monkeypatch.setattr("tests.helpers.worker_faults.raise_unprintable",
                        lambda kind: (logging.getLogger("tests.odd").warning(OddStr("odd line")),
                                      (_ for _ in ()).throw(OddMessage())))
    out = execute(Job("odd#1", "odd", f"{BODIES}:raise_unprintable", {"kind": "x"}, package="tests"))
    assert out.error == "OddMessage: odd but printable"
    assert [m for *_, m in out.logs] == ["odd line"]
    assert type(pickle.loads(pickle.dumps(out))) is Outcome


def test_split_frames_keeps_a_partial_frame():
    data = pickle.dumps("x")
    buf = bytearray(HEADER.pack(len(data)) + data + HEADER.pack(len(data)) + data[:2])
    assert split_frames(buf) == [data]
    assert len(buf) == HEADER.size + 2
    buf += data[2:]
    assert split_frames(buf) == [data] and not buf


# -- secrets ------------------------------------------------------------------------------------

def test_every_form_of_a_secret_is_masked():
    value = f"hunter2'\\xyz\"é-{uuid.uuid4().hex[:6]}"
    register_secret(value)
    texts = [value, repr(value), f"{value!r}", ascii(value), json.dumps(value), json.dumps(value, ensure_ascii=False),
             str(KeyError(value)), repr([value]), repr({"k": value}), "%r" % value]
    for text in texts:
        assert "hunter2" not in redact(text), (text, redact(text))


def test_forms_include_both_quote_styles_without_their_quotes():
    value = "hunter2'\\xyz"
    assert {"hunter2'\\xyz", "hunter2'\\\\xyz", "hunter2\\'\\\\xyz"} <= secret_forms(value)
    assert all(len(f) >= 3 for f in secret_forms("ab\\"))


def test_a_short_value_is_never_a_secret():
    register_secret("ab")
    assert redact("ab cab") == "ab cab"


def test_execute_masks_declared_secrets_before_the_body_runs(monkeypatch):
    """``Job.secrets`` names environment variables (upper-cased first, as ``secret()`` reads
    them); the body reads the variable itself, and its log lines and error are masked. The
    outcome names every variable this worker masks."""
    name = f"critpath_unit_{uuid.uuid4().hex[:6]}"
    value = f"pa'\\ss-{uuid.uuid4().hex}"
    monkeypatch.setenv(name.upper(), value)
    out = execute(Job("r#1", "r", f"{BODIES}:leak_forms", {"name": name, "env": True}, package="tests",
                      secrets=(name,)))
    assert out.error == "KeyError: \"***\""
    text = "\n".join([*(m for *_, m in out.logs), out.error, out.traceback])
    assert not [f for f in secret_forms(value) if f in text]
    assert name.upper() in out.secret_names


def test_a_value_registered_by_secret_names_its_variable(monkeypatch):
    var = f"CRITPATH_UNIT_{uuid.uuid4().hex[:6].upper()}"
    value = f"v-{uuid.uuid4().hex}"
    monkeypatch.setenv(var, value)
    register_secret(os.environ[var])  # what secret() does with the value it read
    assert var in execute(Job("s#1", "s", duration=0.0)).secret_names
