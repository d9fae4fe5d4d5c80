"""What the API reads and writes. Presence facts are written only through presence.service."""

from datetime import datetime

from django.db import IntegrityError, transaction
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from api.models import ApiToken
from api.tokens import issue_domain_key
from domains.credentials import issue_password
from domains.models import AVAILABILITY_CHOICES, Domain, Extension
from presence import service
from presence.call_state import MAX_CALL_ID, BadParameter, parse_expires, parse_number
from presence.models import END_REASONS, Call, PresenceEvent
from presence.service import CallReport
from presence.state import STATES, call_is_live

NUMBER_TAKEN = "This domain already has an extension with this number."


class ErrorSerializer(serializers.Serializer):
    """The body of every error but validation errors (401, 403, 404, 405, 409, 415)."""

    detail = serializers.CharField()


class DomainSerializer(serializers.ModelSerializer):
    class Meta:
        model = Domain
        fields = ["name", "enabled", "max_call_duration", "show_numbers", "allowed_addresses"]
        # Renaming or disabling a tenant is for the operator (Django admin), not its own API.
        read_only_fields = ["name", "enabled"]


class ExtensionSerializer(serializers.ModelSerializer):
    """An extension. Changes of availability, note and enabled go through the presence
    service, which records them as presence events; the number never changes."""

    class Meta:
        model = Extension
        fields = [
            "number",
            "name",
            "department",
            "enabled",
            "availability",
            "note",
            "has_password",
            "created_at",
        ]
        read_only_fields = ["number", "has_password", "created_at"]

    def update(self, instance: Extension, validated_data: dict) -> Extension:
        service.update_extension(instance, validated_data, source=self.context["source"])
        return instance


class NewExtensionSerializer(ExtensionSerializer):
    """A new extension: the answer carries its call-state password, this once."""

    password = serializers.CharField(
        read_only=True,
        help_text="The call-state password. Shown in this answer only; only a hash is stored.",
    )

    class Meta(ExtensionSerializer.Meta):
        fields = [*ExtensionSerializer.Meta.fields, "password"]
        read_only_fields = ["has_password", "created_at"]

    def validate_number(self, number: str) -> str:
        if self.context["domain"].extensions.filter(number=number).exists():
            raise serializers.ValidationError(NUMBER_TAKEN)
        return number

    def create(self, validated_data: dict) -> Extension:
        extension = Extension(domain=self.context["domain"], **validated_data)
        try:
            with transaction.atomic():
                # Announced with an event, so open boards and relays learn of it.
                service.add_extension(extension, source=self.context["source"])
                extension.password = issue_password(extension)
        except IntegrityError:  # created by a concurrent request since validate_number
            raise serializers.ValidationError({"number": [NUMBER_TAKEN]}) from None
        return extension


class ApiKeySerializer(serializers.ModelSerializer):
    """A domain's API key. Its secret is in the answer that creates it, and nowhere else."""

    class Meta:
        model = ApiToken
        fields = ["id", "name", "read_only", "created_at", "last_used_at"]


class NewApiKeySerializer(ApiKeySerializer):
    key = serializers.CharField(
        read_only=True,
        help_text="The key: `Authorization: Bearer <key>`. Shown in this answer only.",
    )

    class Meta(ApiKeySerializer.Meta):
        fields = [*ApiKeySerializer.Meta.fields, "key"]

    def create(self, validated_data: dict) -> ApiToken:
        token, key = issue_domain_key(self.context["domain"], **validated_data)
        token.key = key
        return token


class NewPasswordSerializer(serializers.Serializer):
    password = serializers.CharField(
        help_text="The new call-state password. Shown in this answer only."
    )


class CallFilterSerializer(serializers.Serializer):
    """Filters of the call history."""

    extension = serializers.CharField(
        required=False, max_length=32, help_text="Calls of this extension (its number)."
    )
    since = serializers.DateTimeField(required=False, help_text="Started at or after.")
    until = serializers.DateTimeField(required=False, help_text="Started before.")
    end_reason = serializers.ChoiceField(
        choices=END_REASONS, required=False, help_text="Ended this way."
    )
    active = serializers.BooleanField(
        required=False, allow_null=True, default=None, help_text="Going on now, or over."
    )


class CallSerializer(serializers.ModelSerializer):
    """A call of the history. The remote number is null where the caller may not see it."""

    extension = serializers.CharField(source="extension.number")
    number = serializers.SerializerMethodField()
    active = serializers.SerializerMethodField()
    ended_at = serializers.SerializerMethodField()
    end_reason = serializers.SerializerMethodField()
    duration = serializers.SerializerMethodField(help_text="Seconds; null while it lasts.")

    class Meta:
        model = Call
        fields = [
            "id",
            "extension",
            "number",
            "withheld",
            "call_id",
            "source",
            "started_at",
            "expires_at",
            "ended_at",
            "end_reason",
            "active",
            "duration",
        ]

    def get_number(self, call: Call) -> str | None:
        return call.number if self.context["shows_numbers"] and not call.withheld else None

    def get_active(self, call: Call) -> bool:
        return call.ended_at is None and call_is_live(call.expires_at, self.context["now"])

    # A call past its deadline that the sweep has not ended yet reads as the sweep will leave
    # it: ended at its deadline, expired. Reads never show a call past its expires_at.
    def get_ended_at(self, call: Call) -> datetime | None:
        if call.ended_at is None and not self.get_active(call):
            return serializers.DateTimeField().to_representation(call.expires_at)
        return serializers.DateTimeField().to_representation(call.ended_at)

    @extend_schema_field(serializers.ChoiceField(choices=END_REASONS, allow_null=True))
    def get_end_reason(self, call: Call) -> str | None:
        if call.ended_at is None:
            return None if self.get_active(call) else "expired"
        return call.end_reason

    def get_duration(self, call: Call) -> float | None:
        ended_at = call.ended_at or (None if self.get_active(call) else call.expires_at)
        return (ended_at - call.started_at).total_seconds() if ended_at else None


class EventSerializer(serializers.ModelSerializer):
    """One change of presence. Ids increase: resume the feed with `after=<last id seen>`."""

    extension = serializers.CharField(source="extension.number")
    call = serializers.IntegerField(source="call_id", allow_null=True)

    class Meta:
        model = PresenceEvent
        fields = [
            "id",
            "extension",
            "call",
            "old_state",
            "new_state",
            "reason",
            "source",
            "expires_at",
            "created_at",
        ]


@extend_schema_field({"type": "integer", "minimum": 0, "maximum": 10**12 - 1})
class ExpiresField(serializers.Field):
    """Seconds, by the rule of call_state.htm's `expires` (a whole number, 0 clears)."""

    default_error_messages = {"invalid": "must be a whole number of seconds"}

    def to_internal_value(self, data) -> int | None:
        # bool is an int to Python; JSON true is no number of seconds.
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        try:
            return parse_expires(str(data))
        except BadParameter as error:
            raise serializers.ValidationError(str(error)) from None

    def to_representation(self, value: int) -> int:
        return value


class TextField(serializers.CharField):
    """A string and nothing else: a phone number sent as a JSON number has lost its leading
    zeros and its +, so it is refused rather than guessed at."""

    default_error_messages = {"invalid": "must be a string"}

    def to_internal_value(self, data) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class CallReportSerializer(serializers.Serializer):
    """A call to set (with `number`) or to clear (without), read as call_state.htm reads it."""

    number = TextField(
        required=False,
        allow_blank=True,
        allow_null=True,
        help_text="The remote party: digits with an optional leading +, * and #; spaces, "
        "dashes, dots and parentheses are ignored; anonymous, unknown, private or restricted "
        "for a withheld number. Empty, null or absent: clear the call.",
    )
    expires = ExpiresField(
        required=False,
        help_text="Seconds until the call ends by itself unless refreshed; default and upper "
        "limit: the domain's maximum call duration. 0 clears.",
    )
    call_id = TextField(
        required=False,
        allow_blank=True,
        max_length=MAX_CALL_ID,
        help_text="Your identifier of the call. A clear with a call_id ends only that call.",
    )

    def validate(self, attrs: dict) -> dict:
        number = (attrs.get("number") or "").strip()
        call_id = attrs.get("call_id", "")
        if not number:
            return {"report": CallReport(busy=False, call_id=call_id)}
        try:
            digits, withheld = parse_number(number)
        except BadParameter as error:
            raise serializers.ValidationError({"number": [str(error)]}) from None
        report = CallReport(
            busy=True,
            number=digits,
            withheld=withheld,
            expires=attrs.get("expires"),
            call_id=call_id,
        )
        return {"report": report}


class CallStateSerializer(serializers.Serializer):
    """The extension's call after a report, as call_state.htm answers it in JSON."""

    state = serializers.ChoiceField(choices=STATES)
    number_withheld = serializers.BooleanField(allow_null=True)
    started_at = serializers.DateTimeField(allow_null=True)
    expires_at = serializers.DateTimeField(allow_null=True)
    expires_in = serializers.IntegerField(allow_null=True, help_text="Seconds.")


class AvailabilitySerializer(serializers.Serializer):
    availability = serializers.ChoiceField(choices=AVAILABILITY_CHOICES)
    note = serializers.CharField(
        required=False, allow_blank=True, max_length=Extension._meta.get_field("note").max_length
    )


class TileTimeField(serializers.DateTimeField):
    """The board's tiles carry ISO 8601 text; answer it in the API's own format."""

    def to_representation(self, value):
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        return super().to_representation(value)


class ShownCallSerializer(serializers.Serializer):
    started_at = TileTimeField()
    expires_at = TileTimeField()
    remote = serializers.CharField(
        help_text="The number if the domain shows numbers, else 'External call'; "
        "'Withheld number' when withheld."
    )


class PresenceSerializer(serializers.Serializer):
    """One extension's presence, as the board shows it (presence.board.tile)."""

    id = serializers.IntegerField()
    number = serializers.CharField()
    name = serializers.CharField()
    department = serializers.CharField()
    state = serializers.ChoiceField(choices=STATES)
    label = serializers.CharField(help_text="The state in words, e.g. 'On the phone'.")
    availability = serializers.ChoiceField(choices=AVAILABILITY_CHOICES)
    note = serializers.CharField()
    call = ShownCallSerializer(allow_null=True, help_text="The live call; null without one.")


class CountsSerializer(serializers.Serializer):
    on_call = serializers.IntegerField()
    dnd = serializers.IntegerField()
    away = serializers.IntegerField()
    available = serializers.IntegerField()


class SnapshotSerializer(serializers.Serializer):
    """Every enabled extension's presence, and the event id to follow the feed from."""

    domain = serializers.CharField()
    now = serializers.DateTimeField()
    last_event_id = serializers.IntegerField(
        help_text="Follow changes with the event feed's `after=<last_event_id>`."
    )
    counts = CountsSerializer()
    extensions = PresenceSerializer(many=True)
