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


def test_every_model_has_a_factory():
    import inspect

    from django.apps import apps
    from factory.django import DjangoModelFactory

    from . import factories

    covered = {
        obj._meta.model
        for _, obj in inspect.getmembers(factories, inspect.isclass)
        if issubclass(obj, DjangoModelFactory) and obj is not DjangoModelFactory
    }
    ours = {m for name in ("apps_registry", "ingest", "webhooks") for m in apps.get_app_config(name).get_models()}

    assert ours - covered == set()


def test_every_factory_saves_a_valid_row(db):
    import inspect

    from factory.django import DjangoModelFactory

    from . import factories

    for name, factory_class in inspect.getmembers(factories, inspect.isclass):
        if issubclass(factory_class, DjangoModelFactory) and factory_class is not DjangoModelFactory:
            obj = factory_class()
            obj.full_clean()
            assert obj.pk is not None, name
