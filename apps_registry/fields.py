"""A text field encrypted at rest with Fernet (FIELD_ENCRYPTION_KEY)."""

from django.db import models

from .crypto import decrypt, encrypt


class EncryptedTextField(models.TextField):
    """Plaintext in Python, Fernet token in the database. Never searchable, never logged."""

    def from_db_value(self, value, expression, connection):
        return None if value is None else decrypt(value)

    def get_prep_value(self, value):
        value = super().get_prep_value(value)
        return None if value in (None, "") else encrypt(value)
