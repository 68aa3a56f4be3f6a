"""text_table: aligned columns, a rule under the header, free text in the last column."""
from __future__ import annotations

from visdet.utils.tables import text_table


def test_columns_align_and_the_last_is_free_text():
    lines = text_table(["name", "n", "about"], [["AdamW", 1, "Adam with decoupled decay"], ["SGD", 22, ""]])
    assert lines == [
        "name   n   about",
        "-----  --  -----",
        "AdamW  1   Adam with decoupled decay",
        "SGD    22",  # trailing spaces dropped
    ]


def test_a_table_without_rows_is_its_header_and_rule():
    assert text_table(["group", "lr"], []) == ["group  lr", "-----  --"]
