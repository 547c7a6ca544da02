"""Readers of the analytics API: members of a company (each role), outsiders, keys."""

import pytest

from apps_registry.models import Membership
from tests.factories import ApplicationFactory, CompanyFactory, MembershipFactory, PersonalApiKeyFactory


@pytest.fixture
def member(application):
    """A plain member (role `member`) of `application`'s company."""
    return MembershipFactory(company=application.company, role=Membership.Role.MEMBER).user


@pytest.fixture
def outsider(db):
    """An owner of another company, with an application of its own."""
    other = CompanyFactory()
    ApplicationFactory(company=other)
    return MembershipFactory(company=other, role=Membership.Role.OWNER).user


@pytest.fixture
def member_key(member) -> str:
    """A personal API key of `member`, raw."""
    return PersonalApiKeyFactory(user=member).raw_key
