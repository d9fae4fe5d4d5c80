"""The relay form: one set of fields per platform, checked by the platform's class."""

from django import forms
from django.core.exceptions import ValidationError

from relays.models import WEBHOOK, Relay
from relays.platforms import PLATFORMS
from relays.platforms.slack import DEFAULT_EMOJI, DEFAULT_TEXT
from relays.platforms.webhook import new_secret


class RelayForm(forms.ModelForm):
    url = forms.CharField(
        required=False,
        label="URL",
        max_length=2000,
        help_text="Where to POST each presence change (https:// recommended).",
    )
    tenant_id = forms.CharField(required=False, label="Directory (tenant) id")
    client_id = forms.CharField(required=False, label="Application (client) id")
    status_text = forms.CharField(required=False, initial=DEFAULT_TEXT, max_length=100)
    status_emoji = forms.CharField(required=False, initial=DEFAULT_EMOJI, max_length=100)
    rpc_url = forms.CharField(
        required=False,
        label="Kamailio JSON-RPC URL",
        max_length=2000,
        help_text="SIP lamps: Kamailio's HTTP JSON-RPC address, e.g. http://10.0.0.5:5071/RPC.",
    )
    sip_domain = forms.CharField(
        required=False,
        label="SIP domain",
        max_length=255,
        help_text="SIP lamps: presentities are sip:<extension>@<SIP domain> unless mapped.",
    )
    dnd_lights_lamp = forms.BooleanField(
        required=False, label="DND lights the lamp", help_text="SIP lamps: busy while on DND."
    )
    publish_presence = forms.BooleanField(
        required=False,
        initial=True,
        label="Publish presence (PIDF)",
        help_text="SIP lamps: also 'on-the-phone' for phones whose keys watch presence.",
    )
    new_secret = forms.CharField(
        required=False,
        label="Client secret or token",
        strip=True,
        widget=forms.PasswordInput(render_value=False),
        help_text="Teams: the app's client secret. Slack: the user token (xoxp-…). "
        "Never shown again; leave empty to keep the current one.",
    )

    class Meta:
        model = Relay
        fields = ["domain", "name", "kind", "enabled"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for key, value in (self.instance.config or {}).items():
            if key in self.fields:
                self.initial[key] = value
        platform = PLATFORMS.get(self.instance.kind)
        if platform and platform.secret_label and "new_secret" in self.fields:
            field = self.fields["new_secret"]
            field.label = platform.secret_label
            field.help_text = "Set; never shown again. Enter a new one to replace it."

    def clean(self):
        cleaned = super().clean()
        kind = cleaned.get("kind") or self.instance.kind
        if kind not in PLATFORMS:
            return cleaned
        platform = PLATFORMS[kind]
        try:
            self.instance.config = platform.clean_config(
                {key: cleaned.get(key, "") for key in platform.config_fields}
            )
        except ValidationError as error:
            self.add_error(None, error)
        if kind == WEBHOOK:
            # Generated, not entered; kept when the relay changes.
            if not self.instance.secret.startswith("whsec_"):
                self.instance.secret = new_secret()
        elif not platform.secret_label:
            self.instance.secret = ""  # nothing to enter (SIP lamps)
        elif cleaned.get("new_secret"):
            self.instance.secret = cleaned["new_secret"]
        elif not self.instance.secret or (self.instance.pk and kind != self.instance.kind):
            self.add_error("new_secret", f"{platform.secret_label} is required.")
        return cleaned
