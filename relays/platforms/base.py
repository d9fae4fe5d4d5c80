"""The interface every platform implements."""

from typing import TYPE_CHECKING, ClassVar

from django.core.exceptions import ValidationError

if TYPE_CHECKING:
    from relays.models import Delivery, Relay, RelayMapping


class Platform:
    """One relay kind. Subclasses live in their own module and register in __init__."""

    kind: ClassVar[str]
    #: Rate-limited platforms get only the latest state of each extension: a delivery still
    #: waiting takes the newer event instead of another one queueing behind it.
    coalesce: ClassVar[bool] = False
    #: Deliver only for extensions mapped to a platform user.
    needs_mapping: ClassVar[bool] = False
    #: Keys of Relay.config, each a field of the relay form.
    config_fields: ClassVar[tuple[str, ...]] = ()
    #: What Relay.secret is to this platform, for the form; empty: generated, not entered.
    secret_label: ClassVar[str] = ""

    def __init__(self, relay: "Relay"):
        self.relay = relay
        self.config = relay.config

    @classmethod
    def clean_config(cls, config: dict) -> dict:
        """The config to store; raise ValidationError({field: message}) when it is wrong."""
        return {key: config.get(key, "") for key in cls.config_fields}

    @classmethod
    def clean_remote_user(cls, value: str) -> str:
        """Check a mapping's platform user id."""
        value = value.strip()
        if not value:
            raise ValidationError("Required.")
        return value

    @classmethod
    def wants(cls, old_state: str, new_state: str) -> bool:
        """Whether an event with these states means anything to the platform."""
        return True

    def send(self, delivery: "Delivery", mapping: "RelayMapping | None") -> int | None:
        """Deliver one delivery's payload; return the final HTTP status, raise DeliveryError."""
        raise NotImplementedError

    def test(self, delivery: "Delivery") -> tuple[int | None, str]:
        """The admin's "send a test event": (HTTP status, what happened) or DeliveryError."""
        raise NotImplementedError
