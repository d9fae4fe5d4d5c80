"""One class per relay kind behind one small interface (relays/platforms/base.py)."""

from relays.errors import DeliveryError
from relays.platforms.base import Platform
from relays.platforms.sip import Sip
from relays.platforms.slack import Slack
from relays.platforms.teams import Teams
from relays.platforms.webhook import Webhook

PLATFORMS: dict[str, type[Platform]] = {cls.kind: cls for cls in (Webhook, Teams, Slack, Sip)}


def platform_for(relay) -> Platform:
    return PLATFORMS[relay.kind](relay)


__all__ = ["PLATFORMS", "DeliveryError", "Platform", "platform_for"]
