"""Markdown tables for reports.

Not ``pandas.DataFrame.to_markdown``: it needs the optional ``tabulate`` package, a
dependency for one feature, and it escapes neither ``|`` in cells nor aligns per column as
the reports need; this ten-line writer does both.
"""

from __future__ import annotations

__all__ = ["markdown_table"]


def markdown_table(header: list[str], rows: list[list[object]], align: str | None = None) -> str:
    """A Markdown table; ``align`` gives one character per column: ``l`` or ``r`` (default:
    first column left, the others right). Cells are written with ``str``; a ``|`` inside a
    cell is escaped."""
    align = align or "l" + "r" * (len(header) - 1)
    rule = "|" + "|".join("---" if a == "l" else "---:" for a in align) + "|"

    def line(cells):
        return "| " + " | ".join(str(c).replace("|", "&#124;") for c in cells) + " |"

    return "\n".join([line(header), rule, *(line(r) for r in rows)])
