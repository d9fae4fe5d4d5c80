"""Pages of lists: cursors for extensions and calls, `after=<id>` for the event feed.

Both are keyset pagination: a page costs an index range scan however deep it is, and rows
added meanwhile neither repeat nor vanish between pages.
"""

from django.core.exceptions import ValidationError
from rest_framework.exceptions import NotFound
from rest_framework.exceptions import ValidationError as BadRequest
from rest_framework.pagination import BasePagination, CursorPagination
from rest_framework.response import Response

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
MAX_ID = 2**63 - 1  # PostgreSQL bigint: a larger `after` would be a database error


class Cursor(CursorPagination):
    page_size = DEFAULT_LIMIT
    page_size_query_param = "limit"
    max_page_size = MAX_LIMIT

    def paginate_queryset(self, queryset, request, view=None):
        self._model = queryset.model
        return super().paginate_queryset(queryset, request, view)

    def decode_cursor(self, request):
        """A cursor is opaque to clients, but a forged one must be a 404, not a 500."""
        cursor = super().decode_cursor(request)
        if cursor is not None and cursor.position is not None:
            field = self._model._meta.get_field(self.ordering[0].lstrip("-"))
            try:
                if "\x00" in cursor.position:
                    raise ValidationError("NUL")
                field.to_python(cursor.position)
            except ValidationError:
                raise NotFound(self.invalid_cursor_message) from None
        return cursor


class DomainCursor(Cursor):
    ordering = "name"


class ExtensionCursor(Cursor):
    ordering = "number"


class CallCursor(Cursor):
    ordering = "-started_at"


def _whole_number(request, name: str, default: int, minimum: int, maximum: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit()) or not minimum <= int(raw) <= maximum:
        raise BadRequest({name: [f"must be a whole number from {minimum} to {maximum}"]})
    return int(raw)


class AfterId(BasePagination):
    """`?after=<id>&limit=N`: the next N rows with a larger id, in id order.

    The answer's `next` names the page after it; `last_id` is where to resume, also when the
    page is empty (then it is the `after` that was asked for).
    """

    def paginate_queryset(self, queryset, request, view=None):
        self.request = request
        self.after = _whole_number(request, "after", 0, 0, MAX_ID)
        self.limit = _whole_number(request, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
        rows = list(queryset.filter(id__gt=self.after).order_by("id")[: self.limit + 1])
        self.has_more = len(rows) > self.limit
        self.page = rows[: self.limit]
        return self.page

    def last_id(self) -> int:
        return self.page[-1].id if self.page else self.after

    def get_paginated_response(self, data) -> Response:
        next_url = None
        if self.has_more:
            next_url = self.request.build_absolute_uri(
                self.request.path + f"?after={self.last_id()}&limit={self.limit}"
            )
        return Response({"next": next_url, "last_id": self.last_id(), "results": data})

    def get_paginated_response_schema(self, schema: dict) -> dict:
        return {
            "type": "object",
            "required": ["next", "last_id", "results"],
            "properties": {
                "next": {"type": "string", "format": "uri", "nullable": True},
                "last_id": {"type": "integer"},
                "results": schema,
            },
        }

    def get_schema_operation_parameters(self, view) -> list[dict]:
        return [
            {
                "name": "after",
                "in": "query",
                "required": False,
                "description": "Only events with a larger id (the last id you have seen).",
                "schema": {"type": "integer", "minimum": 0, "maximum": MAX_ID, "default": 0},
            },
            {
                "name": "limit",
                "in": "query",
                "required": False,
                "description": f"At most this many events (default {DEFAULT_LIMIT}).",
                "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT},
            },
        ]
