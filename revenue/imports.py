"""Parsing and validating the two CSV imports, whole, before anything is written.

Pure functions: bytes in, rows or errors out. `revenue/services.py` applies a valid file.
Every error names its line (1 = the header; a quoted field spanning lines counts from the line
where its record starts), its column (None when it concerns the file or the whole row) and why.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from .currencies import ISO_4217

MAX_FILE_BYTES = 20 * 1024 * 1024  # larger bodies answer 413
MAX_ERRORS = 1000  # errors reported per import (the count goes on)
MAX_ID_LENGTH = 255
MAX_MRR = Decimal("999999999999.99")  # numeric(14, 2)

ORG_COLUMNS = ("external_org_id", "display_name")
ORG_REQUIRED = ORG_COLUMNS
SUB_COLUMNS = ("external_org_id", "product_code", "mrr", "currency", "start_at", "end_at", "subscription_id")
SUB_REQUIRED = ("external_org_id", "product_code", "mrr", "currency", "start_at")

_AMOUNT = re.compile(r"^[+-]?(\d+)(?:\.(\d+))?$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass
class Report:
    """What a validation found: errors (capped), their total, and the parsed rows when there are none."""

    errors: list[dict] = field(default_factory=list)
    error_count: int = 0
    rows: list[dict] = field(default_factory=list)

    def error(self, line: int | None, column: str | None, reason: str) -> None:
        self.error_count += 1
        if len(self.errors) < MAX_ERRORS:
            self.errors.append({"line": line, "column": column, "reason": reason})


def _decode(data: bytes, report: Report) -> str | None:
    if not data.strip():
        report.error(None, None, "The file is empty.")
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        report.error(line, None, f"The file is not UTF-8 (byte {exc.start + 1} is not valid UTF-8).")
        return None
    return text.removeprefix("\ufeff")  # a UTF-8 BOM (Excel's "CSV UTF-8") is accepted and dropped


def _records(text: str, report: Report) -> tuple[list[str], list[tuple[int, list[str]]]] | None:
    """(header, [(line, cells)]), skipping blank lines; None when the file cannot be read as CSV."""
    lines = io.StringIO(text, newline="")
    reader = csv.reader(lines, strict=True)
    out: list[tuple[int, list[str]]] = []
    header: list[str] | None = None
    start = 1
    try:
        for cells in reader:
            line = start
            start = reader.line_num + 1
            if not cells or cells == [""]:
                continue
            if header is None:
                header = cells
                header_line = line
                continue
            out.append((line, cells))
    except csv.Error as exc:
        report.error(start, None, f"Malformed CSV: {exc}.")
        return None
    if header is None:
        report.error(None, None, "The file is empty.")
        return None
    if header_line != 1:
        report.error(header_line, None, "The header must be the first line.")
    return header, out


def _header(header: list[str], allowed: tuple[str, ...], required: tuple[str, ...], report: Report) -> bool:
    names = [h.strip() for h in header]
    ok = True
    for i, name in enumerate(names):
        if name not in allowed:
            report.error(1, name or f"#{i + 1}", f"Unknown column {name!r}; the columns are {', '.join(allowed)}.")
            ok = False
        elif names.index(name) != i:
            report.error(1, name, f"Column {name!r} appears twice.")
            ok = False
    for name in required:
        if name not in names:
            report.error(1, name, f"Missing column {name!r} in the header ({', '.join(required)} are required).")
            ok = False
    return ok


def _cells(
    line: int, cells: list[str], names: list[str], required: tuple[str, ...], report: Report
) -> dict[str, str] | None:
    if len(cells) != len(names):
        report.error(line, None, f"{len(cells)} fields where the header has {len(names)}.")
        return None
    row = dict(zip(names, cells, strict=True))
    ok = True
    for name in required:
        if not row[name].strip():
            report.error(line, name, "Required, but empty.")
            ok = False
    return row if ok else None


def _id(line: int, row: dict[str, str], name: str, report: Report) -> str | None:
    value = row.get(name, "").strip()
    if len(value) > MAX_ID_LENGTH:
        report.error(line, name, f"At most {MAX_ID_LENGTH} characters (got {len(value)}).")
        return None
    return value


def parse_amount(raw: str) -> tuple[Decimal | None, str | None]:
    """(amount, None) or (None, reason). At most 2 decimals, ≥ 0, finite, within numeric(14, 2)."""
    value = raw.strip()
    if value.lower().lstrip("+-") in {"nan", "snan", "inf", "infinity"}:
        return None, f"{value!r} is not an amount (NaN and Infinity are refused)."
    match = _AMOUNT.match(value)
    if not match:
        return None, f"{value!r} is not a decimal number (use a dot, no thousands separator, e.g. 1234.50)."
    try:
        amount = Decimal(value)
    except InvalidOperation:  # pragma: no cover - the pattern only lets decimals through
        return None, f"{value!r} is not a decimal number."
    if amount < 0:
        return None, f"{value} is negative; MRR is ≥ 0."
    if match.group(2) and len(match.group(2)) > 2:
        return None, f"{value} has more than 2 decimal places."
    if amount > MAX_MRR:
        return None, f"{value} is too large (at most {MAX_MRR})."
    return amount, None


def parse_instant(raw: str) -> tuple[datetime | None, str | None]:
    """An ISO date (midnight UTC) or an ISO timestamp (UTC when it has no offset)."""
    value = raw.strip()
    try:
        if _DATE.match(value):
            return datetime.combine(date.fromisoformat(value), time.min, tzinfo=UTC), None
        if "T" not in value and " " not in value:
            raise ValueError(value)
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None, f"{value!r} is not an ISO date (2026-01-31) or UTC timestamp (2026-01-31T12:00:00Z)."
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC), None


def _table(
    data: bytes, columns: tuple[str, ...], required: tuple[str, ...], report: Report
) -> tuple[list[str], list[tuple[int, list[str]]]] | None:
    """The header's column names and the records, or None once `report` holds why the file is refused."""
    text = _decode(data, report)
    parsed = _records(text, report) if text is not None else None
    if parsed is None:
        return None
    header, records = parsed
    if not _header(header, columns, required, report):
        return None
    return [h.strip() for h in header], records


def organizations_validate(data: bytes) -> Report:
    """Rows `{external_org_id, display_name}`; an id twice in the file is an error."""
    report = Report()
    table = _table(data, ORG_COLUMNS, ORG_REQUIRED, report)
    if table is None:
        return report
    names, records = table
    seen: dict[str, int] = {}
    for line, cells in records:
        row = _cells(line, cells, names, ORG_REQUIRED, report)
        if row is None:
            continue
        org_id = _id(line, row, "external_org_id", report)
        name = row["display_name"].strip()
        if len(name) > MAX_ID_LENGTH:
            report.error(line, "display_name", f"At most {MAX_ID_LENGTH} characters (got {len(name)}).")
            continue
        if org_id is None:
            continue
        if org_id in seen:
            report.error(line, "external_org_id", f"{org_id!r} already appears on line {seen[org_id]}.")
            continue
        seen[org_id] = line
        report.rows.append({"external_org_id": org_id, "display_name": name})
    if report.error_count:
        report.rows = []
    return report


def subscriptions_validate(data: bytes, *, reporting_currency: str, rates: dict[str, Decimal]) -> Report:
    """Rows with `mrr` converted into the reporting currency (rounded half up to the cent)."""
    report = Report()
    table = _table(data, SUB_COLUMNS, SUB_REQUIRED, report)
    if table is None:
        return report
    names, records = table
    seen_ids: dict[str, int] = {}
    for line, cells in records:
        row = _cells(line, cells, names, SUB_REQUIRED, report)
        if row is None:
            continue
        before = report.error_count
        org_id = _id(line, row, "external_org_id", report)
        product = _id(line, row, "product_code", report)
        sub_id = _id(line, row, "subscription_id", report) if "subscription_id" in row else ""
        amount, reason = parse_amount(row["mrr"])
        if reason:
            report.error(line, "mrr", reason)
        currency = row["currency"].strip()
        rate: Decimal | None = None
        if currency not in ISO_4217:
            report.error(line, "currency", f"{currency!r} is not an ISO 4217 currency code (e.g. EUR, USD).")
        elif currency == reporting_currency:
            rate = Decimal(1)
        elif currency in rates:
            rate = rates[currency]
        else:
            report.error(
                line, "currency", f"No FX rate for {currency} into {reporting_currency}: add it to the FX table."
            )
        start_at, reason = parse_instant(row["start_at"])
        if reason:
            report.error(line, "start_at", reason)
        end_at = None
        if row.get("end_at", "").strip():
            end_at, reason = parse_instant(row["end_at"])
            if reason:
                report.error(line, "end_at", reason)
            elif start_at is not None and end_at is not None and end_at <= start_at:
                report.error(line, "end_at", "Must be after start_at.")
        if sub_id:
            if sub_id in seen_ids:
                report.error(line, "subscription_id", f"{sub_id!r} already appears on line {seen_ids[sub_id]}.")
            else:
                seen_ids[sub_id] = line
        if report.error_count > before or amount is None or rate is None or start_at is None:
            continue
        converted = (amount * rate).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
        if converted > MAX_MRR:
            report.error(line, "mrr", f"{amount} {currency} is too large once converted to {reporting_currency}.")
            continue
        report.rows.append(
            {
                "external_org_id": org_id,
                "product_code": product,
                "subscription_id": sub_id or "",
                "mrr": converted,
                "original_mrr": amount,
                "original_currency": currency,
                "fx_rate": rate,
                "start_at": start_at,
                "end_at": end_at,
            }
        )
    if report.error_count:
        report.rows = []
    return report
