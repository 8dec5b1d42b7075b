"""The hot statements stay short enough for psycopg to keep them parsed and prepared.

psycopg caches a statement's converted text, and prepares it on the server, only up to
MAX_CACHED_STATEMENT_LENGTH characters; past that every request parses it again (the label save
crossed it once and cost a third more Python per save: benchmarks/annotation_load.py).
"""

import pytest
from psycopg import _queries

from annotation.services import statements

BUILDERS = ["_label_save_sql", "_next_item_sql", "_submit_sql", "_screen_sql", "_project_member_sql",
            "_time_add_sql"]


@pytest.mark.parametrize("builder", BUILDERS)
def test_each_statement_fits_psycopgs_statement_cache(builder):
    sql = getattr(statements, builder)()
    assert len(sql) <= _queries.MAX_CACHED_STATEMENT_LENGTH, f"{builder}: {len(sql)} characters"
    outside_literals = sql.split("'")[::2]
    assert not any("  " in part or "\n" in part for part in outside_literals), "layout is squeezed outside literals"


def test_quoted_literals_keep_their_spaces():
    assert statements._sql("SELECT  'a  b' ,\n  x") == "SELECT 'a  b' , x"
