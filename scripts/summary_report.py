"""Print a day's summary as a table and draw it as a PNG: ``python -m scripts.summary_report``.

The code lives in ``devhost/summary_report.py`` (``python -m devhost summary`` and the
devhost's ``run --summary`` use it too); this entry point keeps the operator's command.
"""

from __future__ import annotations

import sys

from devhost.summary_report import load_index, main, render_table, write_png

__all__ = ["load_index", "main", "render_table", "write_png"]

if __name__ == "__main__":
    sys.exit(main())
