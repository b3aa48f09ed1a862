"""Publish: the analysts' DuckDB snapshot and the self-contained HTML summary."""
from __future__ import annotations

from html.parser import HTMLParser

import duckdb
import pytest

from services.refinery import marts, publish
from services.refinery import warehouse as wh

from .util import rows


def test_snapshot_holds_every_mart_with_the_same_rows(built):
    path = built / publish.SNAPSHOT
    con = duckdb.connect(str(path), read_only=True)
    try:
        tables = {t for (t,) in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
        assert tables == {name.split(".")[1] for name in marts.TABLES} | {"refresh_info"}
        for name in marts.TABLES:
            table = name.split(".")[1]
            assert con.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == len(rows(built, name))
        info = con.execute("SELECT table_name, row_count FROM refresh_info ORDER BY table_name").fetchall()
        assert dict(info) == {name.split(".")[1]: len(rows(built, name)) for name in marts.TABLES}
        total = con.execute("SELECT sum(revenue) FROM daily_revenue").fetchone()[0]
        assert total == sum(r["revenue"] for r in rows(built, "marts.daily_revenue"))
    finally:
        con.close()
    assert sorted(p.name for p in path.parent.iterdir()) == ["marts.duckdb", "summary.html"]  # no temp, no WAL


def test_a_failed_snapshot_leaves_the_previous_one_and_no_temp_files(clean_copy):
    before = (clean_copy / publish.SNAPSHOT).read_bytes()
    wh.table_path(clean_copy, "marts.funnel_conversion").write_bytes(b"not parquet")
    with pytest.raises(duckdb.Error):
        publish.publish_snapshot(warehouse=clean_copy)
    folder = (clean_copy / publish.SNAPSHOT).parent
    assert (clean_copy / publish.SNAPSHOT).read_bytes() == before
    assert sorted(p.name for p in folder.iterdir()) == ["marts.duckdb", "summary.html"]


def test_publishing_without_the_marts_names_what_is_missing(tmp_path):
    with pytest.raises(wh.WarehouseError, match=r"'marts.daily_revenue'.*'marts.funnel_conversion'"):
        publish.publish_snapshot(warehouse=tmp_path)
    assert not (tmp_path / "publish").exists()


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.captions, self.text, self._in_caption = [], [], [], False

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self._in_caption = tag == "caption"
        for name, value in attrs:
            assert name not in ("src", "href") and not name.startswith("on"), (tag, name, value)

    def handle_data(self, data):
        self.text.append(data)
        if self._in_caption:
            self.captions.append(data)
            self._in_caption = False


def test_summary_is_one_self_contained_page_with_the_headline_numbers(built):
    page = (built / publish.SUMMARY).read_text(encoding="utf-8")
    parsed = _Page()
    parsed.feed(page)
    assert "script" not in parsed.tags and "link" not in parsed.tags and "img" not in parsed.tags
    assert parsed.captions == ["Revenue by month", "Funnel", "Top products by revenue", "Most urgent reorders",
                               "Customers by country", "Cohort retention (first purchase month)"]
    text = " ".join(parsed.text)
    revenue = sum(r["revenue"] for r in rows(built, "marts.daily_revenue"))
    sessions = sum(r["sessions"] for r in rows(built, "marts.funnel_conversion"))
    assert f"{revenue:,.2f}" in text and f"{sessions:,}" in text
    assert f"Reorder alerts{len(rows(built, 'marts.reorder_alerts')):,}" in "".join(parsed.text)


def test_summary_is_the_same_when_rebuilt_from_the_same_marts(clean_copy):
    before = (clean_copy / publish.SUMMARY).read_bytes()
    publish.publish_summary_html(warehouse=clean_copy)
    assert (clean_copy / publish.SUMMARY).read_bytes() == before


def test_table_cells_are_escaped():
    html = publish._table("a <b> & c", ["x<y"], [("<script>alert(1)</script>",)])
    assert "<script>" not in html and "&lt;script&gt;" in html and "a &lt;b&gt; &amp; c" in html
