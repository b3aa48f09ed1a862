"""Fixtures for the refinery tests.

``built`` is one complete refresh at ``SCALE``, made once per session: content
tests read it and never write to it. A test that changes data (fault injection)
copies it first with ``clean_copy``.
"""
from __future__ import annotations

import shutil

import pytest

from .util import KNOBS, build


@pytest.fixture(autouse=True)
def no_ambient_knobs(monkeypatch):
    """The machine's $CRITPATH_* variables must not change what a test sees."""
    for name in KNOBS:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("refinery")
    build(root)
    return root


@pytest.fixture
def clean_copy(built, tmp_path):
    """A private copy of the built warehouse, to damage."""
    root = tmp_path / "warehouse"
    shutil.copytree(built, root)
    return root
