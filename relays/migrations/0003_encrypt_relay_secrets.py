"""Relay secrets were stored as plain text; from here on they are encrypted (relays/fields.py).

The column becomes text (a Fernet token is longer than the secret) and every stored secret is
encrypted in place. Values are read and written with plain SQL: the field would try to
decrypt what is still plain text. Reversible: going back decrypts them again.
"""

from django.db import migrations

import relays.fields


def _rewrite(apps, schema_editor, convert) -> None:
    table = apps.get_model("relays", "Relay")._meta.db_table
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(f"SELECT id, secret FROM {table} WHERE secret <> ''")
        for relay_id, stored in cursor.fetchall():
            cursor.execute(f"UPDATE {table} SET secret = %s WHERE id = %s", [convert(stored), relay_id])


def encrypt_stored(apps, schema_editor) -> None:
    _rewrite(apps, schema_editor, relays.fields.encrypt)


def decrypt_stored(apps, schema_editor) -> None:
    _rewrite(apps, schema_editor, relays.fields.decrypt)


class Migration(migrations.Migration):
    dependencies = [
        ("relays", "0002_sip_lamps"),
    ]

    operations = [
        migrations.AlterField(
            model_name="relay",
            name="secret",
            field=relays.fields.EncryptedTextField(blank=True),
        ),
        migrations.RunPython(encrypt_stored, decrypt_stored),
    ]
