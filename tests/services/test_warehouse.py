"""The storage layer: knobs resolved at call time, and tables that appear atomically."""
from __future__ import annotations

import os
import threading
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from services.refinery import ingest
from services.refinery import warehouse as wh


# -- knobs -----------------------------------------------------------------------
def test_explicit_arguments_win_over_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(wh.ENV_ROOT, str(tmp_path / "from-env"))
    monkeypatch.setenv(wh.ENV_SCALE, "3")
    monkeypatch.setenv(wh.ENV_FAULT, "stale_orders")
    assert wh.root(tmp_path / "given") == tmp_path / "given"
    assert wh.scale(0.5) == 0.5
    assert wh.faults("") == frozenset()


def test_environment_is_read_at_call_time_not_at_import(monkeypatch, tmp_path):
    monkeypatch.setenv(wh.ENV_ROOT, str(tmp_path / "one"))
    monkeypatch.setenv(wh.ENV_SCALE, "0.002")
    ingest.ingest_products()
    monkeypatch.setenv(wh.ENV_ROOT, str(tmp_path / "two"))
    ingest.ingest_products()
    for name in ("one", "two"):
        table = pq.read_table(tmp_path / name / "raw" / "products.parquet")
        assert len(set(table.column("product_id").to_pylist())) == ingest.sizes(0.002)["products"]


def test_defaults_are_documented_values(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    assert wh.root() == tmp_path / ".critpath" / "warehouse"
    assert wh.root().is_absolute()
    assert wh.scale() == 1.0
    assert wh.faults() == frozenset()


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "big"])
def test_a_bad_scale_in_the_environment_names_the_variable(monkeypatch, value):
    monkeypatch.setenv(wh.ENV_SCALE, value)
    with pytest.raises(wh.WarehouseError, match=rf"CRITPATH_SCALE is {value!r}: it must be a positive number"):
        wh.scale()


def test_a_bad_scale_argument_names_the_argument():
    with pytest.raises(wh.WarehouseError, match=r"scale= is -2"):
        wh.scale(-2)


def test_faults_are_comma_separated_and_unknown_ones_are_rejected_with_a_suggestion(monkeypatch):
    assert wh.faults(" orphan_order_lines, stale_orders ") == {"orphan_order_lines", "stale_orders"}
    monkeypatch.setenv(wh.ENV_FAULT, "orphan_order_line")
    with pytest.raises(wh.WarehouseError) as info:
        wh.faults()
    message = str(info.value)
    assert "CRITPATH_FAULT names unknown fault 'orphan_order_line'" in message
    assert "did you mean 'orphan_order_lines'?" in message
    assert all(name in message for name in wh.FAULTS)


def test_every_fault_is_described_with_the_check_that_catches_it():
    for name, text in wh.FAULTS.items():
        assert "check_" in text, name


# -- table names and missing inputs --------------------------------------------------
def test_table_path_maps_layer_and_table(tmp_path):
    assert wh.table_path(tmp_path, "staging.orders") == tmp_path / "staging" / "orders.parquet"
    for bad in ("orders", "gold.orders", "raw.", "raw.x;drop"):
        with pytest.raises(wh.WarehouseError, match=rf"table name {bad!r} must be 'layer.table'"):
            wh.table_path(tmp_path, bad)


def test_missing_inputs_are_all_named_with_their_paths(tmp_path):
    with pytest.raises(wh.WarehouseError) as info:
        with wh.sql(tmp_path, ["raw.orders", "staging.orders"]):
            pass
    message = str(info.value)
    assert "'raw.orders'" in message and "'staging.orders'" in message
    assert str(tmp_path / "raw" / "orders.parquet") in message
    assert "run the services that build them first" in message


# -- atomic writes ------------------------------------------------------------------
def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_the_final_name_appears_only_once_the_file_is_complete(tmp_path, monkeypatch):
    final = wh.table_path(tmp_path, "raw.numbers")
    seen = {}
    real_replace = os.replace

    def spying_replace(src, dst):
        # at the moment of the rename: the final name does not exist yet and the
        # temporary file beside it already holds the whole table
        seen["final_existed"] = Path(dst).exists()
        seen["same_folder"] = Path(src).parent == Path(dst).parent
        seen["rows_in_temp"] = pq.read_table(src).num_rows
        real_replace(src, dst)

    monkeypatch.setattr(wh.os, "replace", spying_replace)
    with wh.sql(tmp_path) as con:
        rows = wh.write(con, tmp_path, "raw.numbers", "SELECT range AS n FROM range(50000)")
    assert rows == 50000
    assert seen == {"final_existed": False, "same_folder": True, "rows_in_temp": 50000}
    assert pq.read_table(final).num_rows == 50000
    assert _leftovers(final.parent) == []


def test_a_failed_write_keeps_the_previous_table_and_leaves_no_temp_file(tmp_path):
    final = wh.table_path(tmp_path, "raw.numbers")
    with wh.sql(tmp_path) as con:
        wh.write(con, tmp_path, "raw.numbers", "SELECT range AS n FROM range(10)")
        before = final.read_bytes()
        with pytest.raises(wh.WarehouseError, match=r"could not build 'raw.numbers' .*boom halfway.*unchanged"):
            # fails after many rows have been produced
            wh.write(con, tmp_path, "raw.numbers",
                     "SELECT CASE WHEN range < 150000 THEN range ELSE error('boom halfway') END AS n "
                     "FROM range(300000)")
    assert final.read_bytes() == before
    assert _leftovers(final.parent) == []


def test_a_query_failing_part_way_fails_promptly_every_time(tmp_path):
    """Regression guard: DuckDB 2.0.0's ``COPY ... TO`` now and then hung on such a query.

    Run in a daemon thread so a hang fails this test instead of stalling the suite.
    """
    outcomes = []

    def attempt_many():
        with wh.sql(tmp_path) as con:
            for _ in range(25):
                try:
                    wh.write(con, tmp_path, "raw.numbers",
                             "SELECT CASE WHEN range < 150000 THEN range ELSE error('boom') END AS n FROM range(300000)")
                except wh.WarehouseError as e:
                    outcomes.append("boom" in str(e))

    worker = threading.Thread(target=attempt_many, daemon=True)
    worker.start()
    worker.join(timeout=120)
    assert not worker.is_alive(), f"a failing write hung after {len(outcomes)} attempts"
    assert outcomes == [True] * 25


def test_a_failed_first_write_leaves_nothing_at_all(tmp_path):
    with wh.sql(tmp_path) as con:
        with pytest.raises(wh.WarehouseError, match="could not build 'raw.numbers'.*boom"):
            wh.write(con, tmp_path, "raw.numbers", "SELECT error('boom') AS n FROM range(3)")
    assert list((tmp_path / "raw").iterdir()) == []


def test_write_bytes_is_atomic_too(tmp_path):
    final = tmp_path / "publish" / "page.html"
    wh.write_bytes(final, b"<p>one</p>")
    with pytest.raises(TypeError):
        wh.write_bytes(final, "not bytes")  # fails while writing the temporary file
    assert final.read_bytes() == b"<p>one</p>"
    assert _leftovers(final.parent) == []


def test_each_call_gets_its_own_connection_with_only_the_views_it_asked_for(tmp_path):
    with wh.sql(tmp_path) as con:
        wh.write(con, tmp_path, "raw.numbers", "SELECT 1 AS n")
    with wh.sql(tmp_path, ["raw.numbers"]) as con:
        assert con.execute("SELECT n FROM raw.numbers").fetchall() == [(1,)]
        assert con.execute("SELECT count(*) FROM duckdb_views() WHERE NOT internal").fetchone()[0] == 1
