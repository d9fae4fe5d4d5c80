from django.conf import settings
from django.db import models
from django.db.models import Q

from domains.models import Domain


class ApiToken(models.Model):
    """A credential of the REST API: a person's token or a domain's API key.

    A person's token (`user` set) acts with that person's memberships. A domain key (`domain`
    set) acts on that one domain as its administrator would, for an integration that belongs
    to no person. Either may be read-only: then it may only read. Only a hash of the key is
    stored; the key itself is shown once, when it is issued.
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="api_tokens",
    )
    domain = models.ForeignKey(
        Domain, null=True, blank=True, on_delete=models.CASCADE, related_name="api_keys"
    )
    name = models.CharField(max_length=100, help_text="What it is for, e.g. 'CRM sync'.")
    read_only = models.BooleanField(default=False)
    # SHA-256 of the key (hex). Keys carry 192 random bits, so a fast unkeyed hash is enough,
    # and it does not tie tokens to CALL_STATE_KEY (rotating that key keeps them working).
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        verbose_name = "API token"
        ordering = ["created_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(user__isnull=False, domain__isnull=True)
                | Q(user__isnull=True, domain__isnull=False),
                name="api_token_user_xor_domain",
            ),
        ]

    def __str__(self) -> str:
        owner = self.user or self.domain
        return f"{self.name} ({owner}{', read-only' if self.read_only else ''})"
