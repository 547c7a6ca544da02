"""Revenue fixtures: roles of the app's company, an outsider, and helpers to import CSV text."""

from decimal import Decimal

import pytest

from apps_registry.models import Membership
from revenue.models import FxRate
from revenue.services import import_run
from tests.factories import ApplicationFactory, CompanyFactory, MembershipFactory


@pytest.fixture
def admin_user(application):
    return MembershipFactory(company=application.company, role=Membership.Role.ADMIN).user


@pytest.fixture
def member(application):
    return MembershipFactory(company=application.company, role=Membership.Role.MEMBER).user


@pytest.fixture
def outsider(db):
    other = CompanyFactory()
    ApplicationFactory(company=other)
    return MembershipFactory(company=other, role=Membership.Role.OWNER).user


@pytest.fixture
def usd_rate(application):
    """1 USD = 0.9 EUR in the company's FX table."""
    return FxRate.objects.create(company=application.company, currency="USD", rate=Decimal("0.9"))


def import_subs(app, text: str, **kwargs) -> dict:
    return import_run(app=app, kind="subscriptions", data=text.encode(), **kwargs)


def import_orgs(app, text: str, **kwargs) -> dict:
    return import_run(app=app, kind="organizations", data=text.encode(), **kwargs)
