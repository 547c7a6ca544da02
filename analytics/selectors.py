"""Reads of the analytics app that every endpoint and page share: who may read which application."""

import uuid

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import QuerySet
from rest_framework.exceptions import NotFound

from apps_registry.models import Application, Membership


def applications_readable(*, user: AbstractBaseUser | AnonymousUser | None) -> QuerySet[Application]:
    """Applications of the user's company (any role); every application for a superuser."""
    apps = Application.objects.select_related("company")
    if user is None or not user.is_authenticated or not user.is_active:
        return apps.none()
    if user.is_superuser:
        return apps.all()
    membership = Membership.objects.filter(user=user).values_list("company_id", flat=True).first()
    if membership is None:
        return apps.none()
    return apps.filter(company_id=membership)


def application_readable_get(*, user: AbstractBaseUser | AnonymousUser | None, app_uuid: uuid.UUID) -> Application:
    """The application, or 404 — the same answer for another company's app as for an unknown one."""
    app = applications_readable(user=user).filter(uuid=app_uuid).first()
    if app is None:
        raise NotFound("Unknown application.")
    return app


def application_writable(*, user: AbstractBaseUser | AnonymousUser | None, app: Application) -> bool:
    """Owners and admins of the app's company, and superusers, may change its analytics settings."""
    if user is None or not user.is_authenticated or not user.is_active:
        return False
    if user.is_superuser:
        return True
    return Membership.objects.filter(
        user=user, company_id=app.company_id, role__in=[Membership.Role.OWNER, Membership.Role.ADMIN]
    ).exists()
