"""Relays: presence changes of a domain delivered to other platforms (DESIGN §8).

The PresenceEvent table is the outbox. The dispatcher (relays/outbox.py) turns each relay's
new events into Delivery rows and moves the relay's cursor in the same transaction; delivery
tasks (relays/sending.py) send them. A Delivery row is the truth, tasks are only nudges: a lost
task or a killed worker delays a delivery, it never loses one.
"""

import uuid

from django.db import models
from django.db.models import Q

from domains.models import Domain, Extension
from presence.models import PresenceEvent
from relays.fields import EncryptedTextField

WEBHOOK = "webhook"
TEAMS = "teams"
SLACK = "slack"
SIP = "sip"
KIND_CHOICES = [
    (WEBHOOK, "Webhook"),
    (TEAMS, "Microsoft Teams"),
    (SLACK, "Slack"),
    (SIP, "SIP desk-phone lamps (Kamailio)"),
]

PENDING = "pending"
SENT = "sent"
FAILED = "failed"
DELIVERY_STATUSES = [(PENDING, "Pending"), (SENT, "Sent"), (FAILED, "Failed")]

# What one attempt ended with.
OK = "ok"
RETRY = "retry"
GAVE_UP = "gave_up"
RELAY_DISABLED = "relay_disabled"
OUTCOMES = [
    (OK, "Delivered"),
    (RETRY, "Failed, will retry"),
    (GAVE_UP, "Failed, given up"),
    (RELAY_DISABLED, "Failed, relay disabled"),
]


def latest_event_id() -> int:
    return PresenceEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0


class Relay(models.Model):
    """One destination of a domain's presence changes: a webhook, a Teams tenant, a Slack
    workspace. `config` holds the platform's settings (checked by its class in
    relays/platforms/), `secret` its credential."""

    domain = models.ForeignKey(Domain, on_delete=models.CASCADE, related_name="relays")
    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=16, choices=KIND_CHOICES)
    enabled = models.BooleanField(default=True)
    config = models.JSONField(default=dict, blank=True)
    # The webhook signing secret (whsec_…), the Entra client secret or the Slack token;
    # encrypted in the database (relays/fields.py).
    secret = EncryptedTextField(blank=True)
    disabled_reason = models.TextField(blank=True)
    disabled_at = models.DateTimeField(null=True, blank=True)
    # Written by the dispatcher and the delivery tasks only (see WORKER_FIELDS).
    cursor = models.BigIntegerField(
        default=0, help_text="The last presence event turned into deliveries."
    )
    paused_until = models.DateTimeField(
        null=True, blank=True, help_text="The platform asked us to wait (429 Retry-After)."
    )
    last_error = models.TextField(blank=True)
    last_error_at = models.DateTimeField(null=True, blank=True)
    last_success_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    #: Fields that only the dispatcher and the delivery tasks write, with queryset updates.
    #: A form saved from a copy read a minute ago must not move the cursor back.
    WORKER_FIELDS = ("cursor", "paused_until", "last_error", "last_error_at", "last_success_at")

    class Meta:
        ordering = ["domain__name", "name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_kind_display()}, {self.domain.name})"

    def save(self, *args, **kwargs):
        if self._state.adding:
            # A new relay starts with the events that happen from now on, not the history.
            self.cursor = self.cursor or latest_event_id()
        elif kwargs.get("update_fields") is None and not kwargs.get("force_insert"):
            kwargs["update_fields"] = [
                field.name
                for field in self._meta.concrete_fields
                if not field.primary_key and field.name not in self.WORKER_FIELDS
            ]
        super().save(*args, **kwargs)


class RelayMapping(models.Model):
    """Which platform user an extension is: an Entra user id (Teams), a Slack user id.

    Also remembers what we set there, so we renew it (Teams) or reset only our own status
    (Slack).
    """

    relay = models.ForeignKey(Relay, on_delete=models.CASCADE, related_name="mappings")
    extension = models.ForeignKey(Extension, on_delete=models.CASCADE, related_name="+")
    remote_user = models.CharField(
        "platform user",
        max_length=255,
        help_text="Teams: the user's Entra object id or user principal name. "
        "Slack: the member id (U…).",
    )
    # Teams: when our presence session there runs out unless renewed; null when cleared.
    presence_until = models.DateTimeField(null=True, blank=True, editable=False)
    # Slack: we set the status that is there now (cleared when we reset it).
    status_set = models.BooleanField(default=False, editable=False)

    class Meta:
        ordering = ["extension__number"]
        constraints = [
            models.UniqueConstraint(fields=["relay", "extension"], name="one_mapping_per_extension")
        ]
        indexes = [
            models.Index(
                fields=["presence_until"],
                condition=Q(presence_until__isnull=False),
                name="relay_presence_renewal",
            )
        ]

    def __str__(self) -> str:
        return f"{self.extension.number} → {self.remote_user}"


class Delivery(models.Model):
    """One message for one relay: an event (webhooks), or the latest state of an extension
    (Teams, Slack: a pending delivery takes the newer event instead of queueing another)."""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    relay = models.ForeignKey(Relay, on_delete=models.CASCADE, related_name="deliveries")
    # Null only for test deliveries sent from the admin.
    extension = models.ForeignKey(
        Extension, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    event = models.ForeignKey(
        PresenceEvent, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    coalesced = models.PositiveIntegerField(
        default=1, help_text="How many events this delivery stands for (the latest one counts)."
    )
    renewal = models.BooleanField(default=False, help_text="Renews presence during a long call.")
    payload = models.JSONField()
    status = models.CharField(max_length=8, choices=DELIVERY_STATUSES, default=PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField()
    # A delivery task holds a lease while it sends; one that died lets it run out.
    claimed_until = models.DateTimeField(null=True, blank=True)
    claim = models.UUIDField(null=True, blank=True)
    enqueued_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        verbose_name_plural = "deliveries"
        indexes = [
            # The head of each (relay, extension) queue: per-extension order.
            models.Index(
                fields=["relay", "extension", "id"],
                condition=Q(status=PENDING),
                name="delivery_queue",
            ),
            # Deliveries due again (retries, lost tasks): the dispatcher's scan.
            models.Index(
                fields=["next_attempt_at"], condition=Q(status=PENDING), name="delivery_due"
            ),
            models.Index(fields=["relay", "-id"], name="delivery_log"),
        ]

    def __str__(self) -> str:
        return f"Delivery {self.pk} ({self.status})"

    @property
    def webhook_id(self) -> str:
        """Stable across retries and redeliveries: receivers deduplicate on it."""
        return f"msg_{self.uuid.hex}"


class DeliveryAttempt(models.Model):
    """Every try at sending a delivery, for the administrators' log."""

    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="tries")
    number = models.PositiveIntegerField()
    at = models.DateTimeField()
    duration_ms = models.PositiveIntegerField()
    status_code = models.PositiveIntegerField(null=True, blank=True)
    outcome = models.CharField(max_length=16, choices=OUTCOMES)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["delivery", "number"]

    def __str__(self) -> str:
        return f"Attempt {self.number}: {self.outcome}"


class SipLamp(models.Model):
    """What a SIP relay has published to Kamailio for one extension (relays/platforms/sip.py).

    `dialog_id` is the pua publication id of the lit dialog (one per call, or one per DND
    spell); `lit_key` says what lit it (a call id or "dnd"); `published_until` is when the
    publications run out unless re-published. Kamailio keeps publications in memory only, so
    `sip_refresh` re-publishes every lit lamp after a restart.
    """

    relay = models.ForeignKey(Relay, on_delete=models.CASCADE, related_name="lamps")
    extension = models.ForeignKey(Extension, on_delete=models.CASCADE, related_name="+")
    dialog_id = models.CharField(max_length=64, blank=True)
    lit_key = models.CharField(max_length=64, blank=True)
    # The dialog was published as terminated; it still has to be removed (expires 0).
    terminated = models.BooleanField(default=False)
    published_until = models.DateTimeField(null=True, blank=True)
    sequence = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["extension__number"]
        constraints = [
            models.UniqueConstraint(fields=["relay", "extension"], name="one_lamp_per_extension")
        ]

    def __str__(self) -> str:
        return f"{self.extension_id}: {'lit' if self.lit_key else 'dark'}"


class OutboxState(models.Model):
    """One row: how far the dispatcher has read the event table, and the ids it is waiting for.

    Event ids are handed out at insert but become visible at commit, so an event with a lower
    id can appear after a higher one. `gaps` maps each id not seen yet to when it was first
    missed; an event that shows up later is delivered then (see relays/outbox.py).
    """

    horizon = models.BigIntegerField(default=0)
    gaps = models.JSONField(default=dict, blank=True)
    # One dispatcher at a time: a lease, so a dispatcher that died is replaced.
    lease_until = models.DateTimeField(null=True, blank=True)
    lease = models.UUIDField(null=True, blank=True)

    def __str__(self) -> str:
        return f"Outbox read up to event {self.horizon}"
