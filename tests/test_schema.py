"""The indexes call_state.htm and the expiry sweep rely on, after all migrations ran."""

import pytest
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from presence.models import Call, PresenceEvent


def indexes(model) -> dict[str, dict]:
    with connection.cursor() as cursor:
        return connection.introspection.get_constraints(cursor, model._meta.db_table)


def test_calls_keep_their_unique_active_call_index_and_lose_the_redundant_one(db):
    call_indexes = indexes(Call)
    # ON CONFLICT in presence/service.py names this index's predicate.
    assert call_indexes["one_active_call_per_extension"]["unique"]
    assert call_indexes["active_call_expiry"]["columns"] == ["expires_at"]
    assert call_indexes["call_history"]["columns"] == ["extension_id", "started_at"]
    plain_extension_indexes = [
        name
        for name, index in call_indexes.items()
        if index["index"] and not index["unique"] and index["columns"] == ["extension_id"]
    ]
    assert plain_extension_indexes == []


def test_events_are_indexed_for_the_feed_not_twice_by_domain(db):
    event_indexes = indexes(PresenceEvent)
    assert event_indexes["event_feed"]["columns"] == ["domain_id", "id"]
    by_domain_only = [
        name
        for name, index in event_indexes.items()
        if index["index"] and index["columns"] == ["domain_id"]
    ]
    assert by_domain_only == []


def test_the_database_refuses_a_second_active_call(extension):
    now = timezone.now()
    fields = {"extension": extension, "source": "api", "started_at": now, "expires_at": now}
    Call.objects.create(number="1", **fields)
    with pytest.raises(IntegrityError), transaction.atomic():
        Call.objects.create(number="2", **fields)
    Call.objects.create(number="3", ended_at=now, end_reason="cleared", **fields)  # history
