import ipaddress
from functools import lru_cache

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.db.models.functions import Lower

DEFAULT_MAX_CALL_DURATION = 7200

AVAILABLE = "available"
AWAY = "away"
DND = "dnd"
AVAILABILITY_CHOICES = [(AVAILABLE, "Available"), (AWAY, "Away"), (DND, "Do not disturb")]


def normalize_domain_name(name: str) -> str:
    """`ABC.com.` and `abc.com` name the same tenant."""
    return name.strip().rstrip(".").lower()


@lru_cache(maxsize=1024)
def parse_networks(text: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """Parse an allowlist: addresses or CIDR networks separated by commas, spaces or lines."""
    items = text.replace(",", " ").split()
    return tuple(ipaddress.ip_network(item, strict=False) for item in items)


def validate_networks(text: str) -> None:
    try:
        parse_networks(text)
    except ValueError as error:
        raise ValidationError(f"Not an IP address or network: {error}") from None


def address_allowed(allowlist: str, address: str) -> bool:
    """An empty allowlist allows every address."""
    if not allowlist:
        return True
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in parse_networks(allowlist))


class Domain(models.Model):
    """A tenant: one office, with its extensions."""

    name = models.CharField(
        max_length=253,
        unique=True,
        help_text="DNS-style tenant name, e.g. abc.com. Case does not matter.",
    )
    enabled = models.BooleanField(default=True)
    max_call_duration = models.PositiveIntegerField(
        default=DEFAULT_MAX_CALL_DURATION,
        validators=[MinValueValidator(1), MaxValueValidator(7 * 24 * 3600)],
        help_text="Seconds. A call nobody clears ends by itself after this long; larger "
        "'expires' values are cut to it.",
    )
    show_numbers = models.BooleanField(
        default=False,
        help_text="Show the remote party's number to colleagues (hidden by default).",
    )
    allowed_addresses = models.TextField(
        blank=True,
        validators=[validate_networks],
        help_text="Addresses or networks (CIDR) allowed to send call states, separated by "
        "commas or lines. Empty: any address.",
    )
    # SHA-256 of the wall-screen (kiosk) token; empty: no kiosk link. The token is shown once.
    kiosk_token_hash = models.CharField(max_length=64, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(Lower("name"), name="domain_name_unique_ci"),
        ]

    def __str__(self) -> str:
        return self.name

    def save(self, *args, **kwargs):
        self.name = normalize_domain_name(self.name)
        super().save(*args, **kwargs)


class Extension(models.Model):
    """A user's extension within a domain. Presence facts live here and on its calls."""

    domain = models.ForeignKey(Domain, on_delete=models.CASCADE, related_name="extensions")
    number = models.CharField(
        max_length=32,
        validators=[
            RegexValidator(r"^[A-Za-z0-9_.+*#-]+$", "Letters, digits and _ . + * # - only.")
        ],
        help_text="The extension, e.g. 123: the 'user' of call_state.htm.",
    )
    name = models.CharField(max_length=100, blank=True)
    department = models.CharField(max_length=100, blank=True)
    enabled = models.BooleanField(default=True)
    availability = models.CharField(max_length=16, choices=AVAILABILITY_CHOICES, default=AVAILABLE)
    note = models.CharField(max_length=200, blank=True, help_text="Status note, e.g. 'Back at 3'.")
    # HMAC-SHA256 of the call-state password under settings.CALL_STATE_KEY (hex); empty until
    # a password is issued. The password itself is shown once and never stored.
    secret_hash = models.CharField(max_length=64, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["domain__name", "number"]
        constraints = [
            models.UniqueConstraint(fields=["domain", "number"], name="extension_number_unique"),
        ]

    def __str__(self) -> str:
        label = f"{self.number}@{self.domain.name}"
        return f"{label} ({self.name})" if self.name else label

    @property
    def has_password(self) -> bool:
        return bool(self.secret_hash)


ADMIN = "admin"
STAFF = "staff"
ROLE_CHOICES = [(ADMIN, "Domain administrator"), (STAFF, "Staff")]


class Membership(models.Model):
    """A user's place in a domain: an administrator manages it, staff see its board."""

    user = models.ForeignKey("auth.User", on_delete=models.CASCADE, related_name="memberships")
    domain = models.ForeignKey(Domain, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=8, choices=ROLE_CHOICES, default=STAFF)
    extension = models.ForeignKey(
        Extension,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        help_text="The member's own extension: they may set its availability and note.",
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "domain"], name="one_membership_per_domain"),
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.domain} ({self.role})"

    def clean(self):
        if self.extension_id and self.extension.domain_id != self.domain_id:
            raise ValidationError({"extension": "The extension must belong to the same domain."})


class ProviderKey(models.Model):
    """One call-state credential for a provider serving the whole domain.

    Accepted as `password` for any extension of the domain, only from its allowed addresses.
    """

    domain = models.ForeignKey(Domain, on_delete=models.CASCADE, related_name="provider_keys")
    label = models.CharField(max_length=100, help_text="Who uses it, e.g. the provider's name.")
    allowed_addresses = models.TextField(
        validators=[validate_networks],
        help_text="Addresses or networks (CIDR) the provider sends from. Required.",
    )
    enabled = models.BooleanField(default=True)
    # HMAC-SHA256 under CALL_STATE_KEY, like extension passwords; the key is shown once.
    secret_hash = models.CharField(max_length=64, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["domain__name", "label"]

    def __str__(self) -> str:
        return f"{self.label} ({self.domain})"
