"""ASGI entry point of the board stream process (uvicorn, one worker; see presence/stream.py)."""

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pbx.settings")
django.setup()

from pbx.startup import require_secrets  # noqa: E402
from presence.stream import application  # noqa: E402

require_secrets()

__all__ = ["application"]
