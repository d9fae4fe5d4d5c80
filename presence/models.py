from django.db import models
from django.db.models import Q

from domains.models import Domain, Extension
from presence.state import STATES

# Why a call ended.
CLEARED = "cleared"
EXPIRED = "expired"
REPLACED = "replaced"
END_REASONS = [(CLEARED, "Cleared"), (EXPIRED, "Expired"), (REPLACED, "Replaced by a new call")]

# Where a change came from.
SOURCE_CALL_STATE = "call_state"
SOURCE_API = "api"
SOURCE_ADMIN = "admin"
SOURCE_SWEEP = "sweep"
SOURCE_BOARD = "board"
SOURCES = [
    (SOURCE_CALL_STATE, "call_state.htm"),
    (SOURCE_API, "REST API"),
    (SOURCE_ADMIN, "Administrator"),
    (SOURCE_SWEEP, "Expiry sweep"),
    (SOURCE_BOARD, "Presence board"),
]

# What happened, on a PresenceEvent.
CALL_STARTED = "call_started"
CALL_REFRESHED = "call_refreshed"
CALL_REPLACED = "call_replaced"
CALL_CLEARED = "call_cleared"
CALL_EXPIRED = "call_expired"
AVAILABILITY_CHANGED = "availability_changed"
NOTE_CHANGED = "note_changed"
EXTENSION_ADDED = "extension_added"
EXTENSION_ENABLED = "extension_enabled"
EXTENSION_DISABLED = "extension_disabled"
EVENT_REASONS = [
    (CALL_STARTED, "Call started"),
    (CALL_REFRESHED, "Call refreshed"),
    (CALL_REPLACED, "Call replaced by a new one"),
    (CALL_CLEARED, "Call cleared"),
    (CALL_EXPIRED, "Call expired"),
    (AVAILABILITY_CHANGED, "Availability changed"),
    (NOTE_CHANGED, "Note changed"),
    (EXTENSION_ADDED, "Extension added"),
    (EXTENSION_ENABLED, "Extension enabled"),
    (EXTENSION_DISABLED, "Extension disabled"),
]
STATE_CHOICES = [(state, state) for state in STATES]


class Call(models.Model):
    """One external call of an extension, as reported by a provider. Never deleted: history."""

    # No index of its own: call_history and the active-call index both lead with it.
    extension = models.ForeignKey(
        Extension, on_delete=models.CASCADE, related_name="calls", db_index=False
    )
    number = models.CharField(max_length=33, blank=True, help_text="Empty when withheld.")
    withheld = models.BooleanField(default=False)
    call_id = models.CharField(max_length=128, blank=True)
    source = models.CharField(max_length=16, choices=SOURCES)
    started_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)
    end_reason = models.CharField(max_length=16, choices=END_REASONS, blank=True)

    class Meta:
        ordering = ["-started_at"]
        constraints = [
            # The database itself guarantees at most one active call per extension.
            models.UniqueConstraint(
                fields=["extension"],
                condition=Q(ended_at__isnull=True),
                name="one_active_call_per_extension",
            ),
        ]
        indexes = [
            # The expiry sweep scans only live rows, by deadline.
            models.Index(
                fields=["expires_at"],
                condition=Q(ended_at__isnull=True),
                name="active_call_expiry",
            ),
            models.Index(fields=["extension", "-started_at"], name="call_history"),
        ]

    def __str__(self) -> str:
        return f"{self.extension_id}: {self.display_number} at {self.started_at:%Y-%m-%d %H:%M}"

    @property
    def display_number(self) -> str:
        return "withheld" if self.withheld else self.number

    @property
    def duration(self):
        """How long the call lasted; None while it is going on."""
        return self.ended_at - self.started_at if self.ended_at else None


class PresenceEvent(models.Model):
    """Every change of presence facts, written in the transaction that made it.

    The audit trail, the resume point of live streams and the outbox of relays.
    """

    # No index of its own: event_feed leads with it, and every index costs every event insert.
    domain = models.ForeignKey(
        Domain, on_delete=models.CASCADE, related_name="events", db_index=False
    )
    extension = models.ForeignKey(Extension, on_delete=models.CASCADE, related_name="events")
    call = models.ForeignKey(Call, null=True, blank=True, on_delete=models.SET_NULL)
    old_state = models.CharField(max_length=16, choices=STATE_CHOICES)
    new_state = models.CharField(max_length=16, choices=STATE_CHOICES)
    reason = models.CharField(max_length=24, choices=EVENT_REASONS)
    source = models.CharField(max_length=16, choices=SOURCES)
    # The call's deadline as of this event (a refresh moves it).
    expires_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["domain", "id"], name="event_feed")]

    def __str__(self) -> str:
        return f"#{self.id} {self.extension_id} {self.old_state}→{self.new_state} ({self.reason})"
