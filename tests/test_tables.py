"""lib.workbook.tables: the one aligned-table helper the notebooks print with."""

import numpy as np

from lib.workbook.tables import show_table, table


def test_numbers_align_right_under_one_format_and_text_aligns_left():
    text = table([["a", np.float32(1.2345678), 3], ["bb", 1e-7, np.int64(12)]], ["name", "value", "n"],
                 floatfmt=".4g")
    assert text.splitlines() == [
        "name      value    n",
        "------  -------  ---",
        "a         1.235    3",
        "bb        1e-07   12",
    ]


def test_one_format_per_column_and_thousands_separators(capsys):
    show_table([["a", 1.5, 3000]], ["x", "y", "n"], floatfmt=("", ".2f", ""), intfmt=",")
    assert capsys.readouterr().out.splitlines()[-1] == "a    1.50  3,000"


def test_one_alignment_for_every_column():
    assert table([["a", 1]], ["name", "n"], align="left").splitlines()[-1] == "a       1"


def test_a_missing_value_prints_as_asked():
    lines = table([["a", None], ["b", 3]], ["name", "n"], missingval="-").splitlines()
    assert lines[-2:] == ["a         -", "b         3"]
