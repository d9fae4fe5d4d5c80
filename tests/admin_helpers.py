"""Small helpers of the admin tests."""

import re

from django.db.models import Model
from django.urls import reverse


def admin_url(obj: Model, view: str = "change") -> str:
    opts = obj._meta
    return reverse(f"admin:{opts.app_label}_{opts.model_name}_{view}", args=[obj.pk])


def changelist_url(model_name: str) -> str:
    apps = {"call": "presence", "presenceevent": "presence", "apitoken": "api"}
    app = apps.get(model_name, "domains")
    return reverse(f"admin:{app}_{model_name}_changelist")


def shown_secrets(response, css_class: str) -> list[str]:
    """The secrets a shown-once page shows, by the class of their <code> element."""
    return re.findall(rf'<code class="{css_class}">([^<]+)</code>', response.content.decode())


def run_action(client, model_name: str, action: str, objects: list[Model], **extra):
    """Run a changelist action on some objects, as the action form does."""
    data = {"action": action, "_selected_action": [obj.pk for obj in objects], **extra}
    return client.post(changelist_url(model_name), data)
