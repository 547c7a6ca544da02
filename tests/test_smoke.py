"""The project boots: migrations are complete and the factories build valid rows."""

from django.core.management import call_command

from apps_registry.selectors import app_credentials_get, sdk_key_credentials_get

from .factories import ApiSecretFactory, SdkKeyFactory


def test_no_missing_migrations(db):
    call_command("makemigrations", "--check", "--dry-run", verbosity=0)


def test_credentials_round_trip_through_encryption_and_hashing(db):
    secret = ApiSecretFactory()
    key = SdkKeyFactory(application=secret.application)

    creds = app_credentials_get(app_uuid=secret.application.uuid)
    sdk = sdk_key_credentials_get(key=key.raw_key)

    assert creds.live_secrets(0) == [secret.secret.encode()]
    assert sdk.app_id == secret.application.pk
    assert sdk.is_active
    stored = type(secret).objects.extra(select={"raw": "secret"}).values_list("raw", flat=True).get()
    assert secret.secret not in stored  # encrypted at rest


def test_every_periodic_task_names_a_registered_task():
    from saastracker.celery import app

    app.loader.import_default_modules()
    registered = set(app.tasks)
    scheduled = {entry["task"] for entry in app.conf.beat_schedule.values()}

    assert scheduled <= registered, scheduled - registered
