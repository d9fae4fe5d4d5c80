"""Relay credentials are stored encrypted (relays/fields.py): a copy of the database alone
does not give away a webhook signing secret, an Entra client secret or a Slack token."""

import pytest
from django.core.management import call_command
from django.db import connection

from relays.models import Relay

SLACK_TOKEN = "xoxb-1234-5678-abcdefghijklmnop"


def stored_secret(relay: Relay) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT secret FROM relays_relay WHERE id = %s", [relay.pk])
        return cursor.fetchone()[0]


@pytest.fixture
def relay(domain) -> Relay:
    return Relay.objects.create(domain=domain, name="Slack", kind="slack", secret=SLACK_TOKEN)


def test_the_database_holds_no_plain_secret(relay):
    stored = stored_secret(relay)
    assert SLACK_TOKEN not in stored and len(stored) > len(SLACK_TOKEN)
    assert Relay.objects.get(pk=relay.pk).secret == SLACK_TOKEN


def test_no_secret_stays_empty(domain):
    relay = Relay.objects.create(domain=domain, name="Lamps", kind="sip", secret="")
    assert stored_secret(relay) == ""
    assert Relay.objects.get(pk=relay.pk).secret == ""


def test_a_new_secret_key_reads_old_secrets_through_the_fallbacks(relay, settings, capsys):
    old_key = settings.SECRET_KEY
    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = "a new secret key " * 4, [old_key]
    assert Relay.objects.get(pk=relay.pk).secret == SLACK_TOKEN

    call_command("reencrypt_relay_secrets")
    assert "Encrypted 1 relay secret(s) again." in capsys.readouterr().out

    settings.SECRET_KEY_FALLBACKS = []
    assert Relay.objects.get(pk=relay.pk).secret == SLACK_TOKEN


def test_without_the_old_key_the_secret_is_unreadable_and_named(relay, settings, capsys, caplog):
    settings.SECRET_KEY = "an unrelated secret key " * 3
    assert Relay.objects.get(pk=relay.pk).secret == ""
    assert "cannot be decrypted" in caplog.text

    call_command("reencrypt_relay_secrets")
    assert f"Cannot decrypt the secret of {relay}" in capsys.readouterr().err
    assert SLACK_TOKEN not in caplog.text


def test_the_migration_encrypts_what_was_stored_in_plain_text(relay):
    from django.apps import apps as installed_apps

    import relays.fields

    migration = __import__(
        "relays.migrations.0003_encrypt_relay_secrets", fromlist=["decrypt_stored"]
    )
    with connection.schema_editor() as editor:
        migration.decrypt_stored(installed_apps, editor)
        assert stored_secret(relay) == SLACK_TOKEN  # as before the migration
        migration.encrypt_stored(installed_apps, editor)
    assert relays.fields.decrypt(stored_secret(relay)) == SLACK_TOKEN
