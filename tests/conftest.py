"""Shared fixtures: real PostgreSQL (pytest-django's test database) and real Redis (db 15)."""

import pytest
from rest_framework.test import APIClient

from apps_registry.selectors import credentials_cache_clear
from ingest.db import write_outcome_forget
from ingest.partitions import registry_forget
from ingest.probes import verdicts_forget
from saastracker.redis_client import get_redis

from .factories import ApiSecretFactory, ApplicationFactory, CompanyFactory, SdkKeyFactory

pytest_plugins = ["tests.fixtures.receiver", "tests.fixtures.bigquery", "tests.fixtures.serve"]


@pytest.fixture(autouse=True)
def _fresh_redis_and_caches():
    """Each test starts with empty rate-limit buckets, no cached credentials and no cached partition registry."""
    get_redis().flushdb()
    credentials_cache_clear()
    registry_forget()
    yield
    credentials_cache_clear()
    registry_forget()


@pytest.fixture(autouse=True)
def _fresh_health_verdicts(settings):
    """Health verdicts are computed afresh in each test (the tests of the cache turn it back on)."""
    settings.HEALTH_CACHE_SECONDS = 0
    verdicts_forget()
    write_outcome_forget()
    yield
    verdicts_forget()
    write_outcome_forget()


@pytest.fixture
def api_client() -> APIClient:
    return APIClient()


@pytest.fixture
def company(db):
    return CompanyFactory()


@pytest.fixture
def application(company):
    return ApplicationFactory(company=company)


@pytest.fixture
def api_secret(application) -> str:
    """The raw API secret of `application`."""
    return ApiSecretFactory(application=application).secret


@pytest.fixture
def sdk_key(application) -> str:
    """The raw SDK key of `application`."""
    return SdkKeyFactory(application=application).raw_key
