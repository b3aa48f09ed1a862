"""Helpers shared by the refinery tests: build a warehouse, read a table as Python rows."""
from __future__ import annotations

import functools
from pathlib import Path

import pyarrow.parquet as pq

from services import refinery
from services.refinery import warehouse

#: small enough that a whole refresh takes about a second, big enough for every kind of row
SCALE = 0.01
KNOBS = (warehouse.ENV_ROOT, warehouse.ENV_SCALE, warehouse.ENV_FAULT)


def build(root: Path, names=None, **kwargs) -> None:
    """Run the named services (default: all) in dependency order, like a sequential refresh.

    ``fault=""`` unless given, so an ambient $CRITPATH_FAULT cannot leak in.
    """
    kwargs.setdefault("scale", SCALE)
    kwargs.setdefault("fault", "")
    for fn in refinery.SERVICES:
        if names is None or fn.__name__ in names:
            fn(warehouse=root, **kwargs)


def rows(root: Path, name: str) -> list[dict]:
    """Table ``name`` (``staging.orders``) as a list of dicts, in file order. Do not modify the result."""
    path = warehouse.table_path(root, name)
    stat = path.stat()
    # cached by file identity: tests read the same built tables many times, and a
    # rewritten table (fault injection) has a new inode or mtime, so is read afresh
    return _read(str(path), stat.st_ino, stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=64)
def _read(path: str, inode: int, mtime_ns: int, size: int) -> list[dict]:
    return pq.read_table(path).to_pylist()
