"""CSV export and import of a domain's extensions.

An import is all or nothing: every row is checked first, and only a file without errors is
applied, in one transaction. Presence facts (availability, note, enabled) of existing
extensions change through the presence service, so boards, relays and the event log hear of
it. Secrets are never in the file; new extensions get passwords, which the caller shows once.
"""

import copy
import csv
import io
from dataclasses import dataclass, field
from typing import TextIO

from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db import transaction

from domains.credentials import issue_password
from domains.models import Domain, Extension
from presence import service

COLUMNS = ("number", "name", "department", "enabled", "availability", "note")
MAX_ROWS = 10_000
TRUE_WORDS = {"true", "yes", "y", "1", "on"}
FALSE_WORDS = {"false", "no", "n", "0", "off"}

# A spreadsheet runs a cell that starts with one of these as a formula. Notes are written by
# staff on the board, so such cells are exported behind an apostrophe, which import removes.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_ESCAPE = "'"


def _escape(value: str) -> str:
    return _ESCAPE + value if value.startswith((*_FORMULA_START, _ESCAPE)) else value


def _unescape(value: str) -> str:
    if value.startswith(_ESCAPE) and value[1:].startswith((*_FORMULA_START, _ESCAPE)):
        return value[1:]
    return value


def write_csv(domain: Domain, out: TextIO) -> None:
    """The domain's extensions, one row each, ordered by number."""
    writer = csv.writer(out)
    writer.writerow(COLUMNS)
    for ext in domain.extensions.order_by("number"):
        writer.writerow(
            [
                _escape(ext.number),
                _escape(ext.name),
                _escape(ext.department),
                "true" if ext.enabled else "false",
                ext.availability,
                _escape(ext.note),
            ]
        )


@dataclass
class ImportPlan:
    """What an import would do. Apply it only when `errors` is empty."""

    domain: Domain
    new: list[Extension] = field(default_factory=list)
    # Existing extensions with the values that change: {field name: new value}.
    changes: list[tuple[Extension, dict]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def plan_import(domain: Domain, text: str) -> ImportPlan:
    """Check a CSV file against the domain's extensions, changing nothing.

    Steps: read the header (known columns only, `number` required); then for each row: the
    number is there and not repeated in the file, and the values pass the model's validation.
    Rows are counted like a spreadsheet's: the header is row 1.
    """
    plan = ImportPlan(domain)
    rows = csv.reader(io.StringIO(text, newline=""), delimiter=_delimiter(text))
    header = [name.strip().lower() for name in next(rows, [])]
    plan.errors = _header_errors(header)
    if plan.errors:
        return plan
    existing = {ext.number: ext for ext in domain.extensions.all()}
    first_seen: dict[str, int] = {}
    for row_number, cells in enumerate(rows, start=2):
        if not any(cell.strip() for cell in cells):
            continue  # blank lines, often at the end of a file
        if row_number > MAX_ROWS + 1:
            plan.errors.append(f"Row {row_number}: too many rows, at most {MAX_ROWS} per file.")
            break
        if len(cells) != len(header):
            error = f"{len(cells)} values for {len(header)} columns."
        else:
            values = dict(zip(header, map(_unescape, cells), strict=True))
            error = _plan_row(plan, values, existing, first_seen, row_number)
        if error:
            plan.errors.append(f"Row {row_number}: {error}")
    return plan


def _delimiter(text: str) -> str:
    # Spreadsheets in many European locales save CSV with semicolons.
    header = text.split("\n", 1)[0]
    return ";" if header.count(";") > header.count(",") else ","


def _header_errors(header: list[str]) -> list[str]:
    if not header:
        return ["The file is empty."]
    errors = []
    unknown = [f'"{name}"' for name in header if name not in COLUMNS]
    if unknown:
        errors.append(
            f"Row 1: unknown column {', '.join(unknown)}; the columns are {', '.join(COLUMNS)}."
        )
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        errors.append(f"Row 1: column {', '.join(repeated)} appears more than once.")
    if "number" not in header:
        errors.append("Row 1: the column number is required.")
    return errors


def _plan_row(plan, values, existing, first_seen, row_number) -> str | None:
    """Add one row to the plan; returns what is wrong with it instead, if anything."""
    number = values.pop("number").strip()
    if not number:
        return "the number is missing."
    if number in first_seen:
        return f"number {number} is already on row {first_seen[number]}."
    first_seen[number] = row_number
    try:
        wanted = _parse_values(values)
    except ValidationError as error:
        return " ".join(error.messages)
    current = existing.get(number)
    candidate = copy.copy(current) if current else Extension(domain=plan.domain, number=number)
    for name, value in wanted.items():
        setattr(candidate, name, value)
    try:
        # Uniqueness needs no query per row: numbers were matched above.
        candidate.full_clean(exclude=["domain"], validate_unique=False, validate_constraints=False)
    except ValidationError as error:
        return _describe(error)
    if current is None:
        plan.new.append(candidate)
    elif changed := {name: v for name, v in wanted.items() if getattr(current, name) != v}:
        plan.changes.append((current, changed))
    return None


def _parse_values(values: dict[str, str]) -> dict:
    """Cell texts to field values. An empty enabled or availability cell keeps the value."""
    wanted: dict = {}
    for name, text in values.items():
        text = text.strip()
        if name == "enabled":
            if text:
                wanted[name] = _parse_bool(text)
        elif name == "availability":
            if text:
                wanted[name] = text.lower()
        else:
            wanted[name] = text
    return wanted


def _parse_bool(text: str) -> bool:
    if text.lower() in TRUE_WORDS:
        return True
    if text.lower() in FALSE_WORDS:
        return False
    raise ValidationError(f"enabled: “{text}” is neither true nor false.")


def _describe(error: ValidationError) -> str:
    parts = []
    for name, messages in error.message_dict.items():
        prefix = "" if name == NON_FIELD_ERRORS else f"{name}: "
        parts.append(prefix + " ".join(messages))
    return "; ".join(parts)


@transaction.atomic
def apply_import(plan: ImportPlan, source: str) -> list[tuple[Extension, str]]:
    """Create and update as planned, in one transaction. Returns (new extension, password)."""
    if plan.errors:
        raise ValueError("an import plan with errors cannot be applied")
    issued = []
    for extension in plan.new:
        service.add_extension(extension, source=source)
        issued.append((extension, issue_password(extension)))
    for extension, changed in plan.changes:
        _update(extension, changed, source)
    return issued


def _update(extension: Extension, changed: dict, source: str) -> None:
    service.update_extension(extension, changed, source=source)
