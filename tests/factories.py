"""factory_boy factories, one per model. Credentials come from the services so they are real."""

import uuid
from datetime import timedelta
from decimal import Decimal
from typing import Any

import factory
from django.contrib.auth import get_user_model
from django.utils import timezone
from factory.django import DjangoModelFactory

from analytics.models import Feature, Organization, OrgSignal, PersonalApiKey
from analytics.services import new_personal_key
from apps_registry import crypto
from apps_registry.models import ApiSecret, Application, Company, Membership, Plan, SdkKey, Usage
from ingest.models import (
    Event,
    ExportBatch,
    ExportCursor,
    ExportRetry,
    ExportState,
    IdempotencyKey,
    IdentifyKey,
    IdentifyLink,
    RawPartition,
    SdkEvent,
    SdkEventKey,
    WriteProbe,
)
from revenue.models import CustomerOrg, FxRate, Import, RevenueSettings
from tests import export_ledger
from webhooks.models import WebhookAttempt, WebhookEndpoint, WebhookMessage


class PlanFactory(DjangoModelFactory):
    class Meta:
        model = Plan
        django_get_or_create = ("tier",)

    tier = Plan.Tier.GROWTH
    events_per_month = 10_000_000
    apps_max = 10
    retention_days = 365
    orgs_max = 1000


class CompanyFactory(DjangoModelFactory):
    class Meta:
        model = Company

    name = factory.Sequence(lambda n: f"Company {n}")
    plan = factory.SubFactory(PlanFactory)


class UserFactory(DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    password = factory.django.Password("pw-for-tests")
    is_staff = True


class MembershipFactory(DjangoModelFactory):
    class Meta:
        model = Membership

    user = factory.SubFactory(UserFactory)
    company = factory.SubFactory(CompanyFactory)
    role = Membership.Role.ADMIN


class ApplicationFactory(DjangoModelFactory):
    class Meta:
        model = Application

    company = factory.SubFactory(CompanyFactory)
    name = factory.Sequence(lambda n: f"App {n}")


class ApiSecretFactory(DjangoModelFactory):
    """`factory.build`-style access to the raw value: ApiSecretFactory().secret is the plaintext."""

    class Meta:
        model = ApiSecret

    application = factory.SubFactory(ApplicationFactory)
    secret = factory.LazyFunction(crypto.new_api_secret)
    hint = factory.LazyAttribute(lambda s: s.secret[-4:])


class SdkKeyFactory(DjangoModelFactory):
    """The raw key is not stored; the created instance carries it as `.raw_key`."""

    class Meta:
        model = SdkKey

    application = factory.SubFactory(ApplicationFactory)

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        raw, prefix = crypto.new_sdk_key()
        kwargs.setdefault("prefix", prefix)
        kwargs["key_hash"] = crypto.hash_key(raw)
        obj = super()._create(model_class, *args, **kwargs)
        obj.raw_key = raw
        return obj


class UsageFactory(DjangoModelFactory):
    class Meta:
        model = Usage

    company = factory.SubFactory(CompanyFactory)
    month = factory.LazyFunction(lambda: timezone.now().date().replace(day=1))
    event_count = 0


class ExportStateMixin:
    """Outbox row factories: `export_state=EXPORTED` or `SENDING` goes to the export ledger, as the exporter would."""

    @classmethod
    def _create(cls, model_class: type, *args: Any, **kwargs: Any) -> Any:
        state = kwargs.get("export_state")
        if state in (ExportState.EXPORTED, ExportState.SENDING):
            kwargs["export_state"] = ExportState.PENDING
        row = super()._create(model_class, *args, **kwargs)  # type: ignore[misc]
        if state in (ExportState.EXPORTED, ExportState.SENDING):
            export_ledger.mark(row, ExportState(state))
        return row


class EventFactory(ExportStateMixin, DjangoModelFactory):
    class Meta:
        model = Event

    application = factory.SubFactory(ApplicationFactory)
    company = factory.SelfAttribute("application.company")
    event = "page_view"
    user_hash = factory.LazyFunction(lambda: uuid.uuid4().hex * 2)
    customer_org_id = "org_1"
    path = "/"
    session_id = factory.LazyFunction(uuid.uuid4)
    occurred_at = factory.LazyFunction(timezone.now)


class SdkEventFactory(ExportStateMixin, DjangoModelFactory):
    class Meta:
        model = SdkEvent
        skip_postgeneration_save = True  # the hook writes another table, not this row

    application = factory.SubFactory(ApplicationFactory)
    company = factory.SelfAttribute("application.company")
    event_id = factory.LazyFunction(uuid.uuid4)
    event_name = "app_open"
    ts_ms = factory.LazyFunction(lambda: int(timezone.now().timestamp() * 1000))
    occurred_at = factory.LazyFunction(timezone.now)
    anon_id = factory.LazyFunction(uuid.uuid4)
    platform = "ios"
    os = "17.0"
    app_version = "1.0.0"
    sdk_version = "1.0.0"
    locale = "en_US"
    bundle_version = 1
    country = "US"
    session_id = factory.LazyFunction(uuid.uuid4)
    consent_analytics = True

    @factory.post_generation
    def key(self, create: bool, extracted, **kwargs) -> None:
        """Its dedup key, as the ingest statement writes it beside every stored event."""
        if create:
            SdkEventKey.objects.create(
                application_id=self.application_id, event_id=self.event_id, received_at=self.received_at, row_id=self.id
            )


class IdentifyLinkFactory(ExportStateMixin, DjangoModelFactory):
    class Meta:
        model = IdentifyLink
        skip_postgeneration_save = True  # the hook writes another table, not this row

    application = factory.SubFactory(ApplicationFactory)
    company = factory.SelfAttribute("application.company")
    anon_id = factory.LazyFunction(uuid.uuid4)
    user_id = factory.Sequence(lambda n: f"user-{n}")

    @factory.post_generation
    def key(self, create: bool, extracted, **kwargs) -> None:
        """Its dedup key, as the identify statement writes it beside every stored link."""
        if create:
            IdentifyKey.objects.create(
                application_id=self.application_id, anon_id=self.anon_id, user_id=self.user_id, row_id=self.id
            )


class SdkEventKeyFactory(DjangoModelFactory):
    """A dedup key alone (SdkEventFactory writes one beside each event)."""

    class Meta:
        model = SdkEventKey

    application = factory.SubFactory(ApplicationFactory)
    event_id = factory.LazyFunction(uuid.uuid4)
    received_at = factory.LazyFunction(timezone.now)
    row_id = factory.Sequence(lambda n: n + 1)


class IdentifyKeyFactory(DjangoModelFactory):
    """An identify dedup key alone (IdentifyLinkFactory writes one beside each link)."""

    class Meta:
        model = IdentifyKey

    application = factory.SubFactory(ApplicationFactory)
    anon_id = factory.LazyFunction(uuid.uuid4)
    user_id = factory.Sequence(lambda n: f"user-{n}")
    row_id = factory.Sequence(lambda n: n + 1)


class RawPartitionFactory(DjangoModelFactory):
    class Meta:
        model = RawPartition
        django_get_or_create = ("table", "number")

    table = "ingest_event"
    number = factory.Sequence(lambda n: 10_000 + n)
    opened_at = factory.LazyFunction(timezone.now)


class IdempotencyKeyFactory(DjangoModelFactory):
    class Meta:
        model = IdempotencyKey

    application = factory.SubFactory(ApplicationFactory)
    key = factory.Sequence(lambda n: f"idem-{n}")
    event_id = factory.LazyFunction(uuid.uuid4)


class ExportBatchFactory(DjangoModelFactory):
    class Meta:
        model = ExportBatch

    table = ExportBatch.Table.EVENTS
    lease_until = factory.LazyFunction(lambda: timezone.now() + timedelta(minutes=3))


class ExportCursorFactory(DjangoModelFactory):
    class Meta:
        model = ExportCursor
        django_get_or_create = ("table",)

    table = ExportBatch.Table.EVENTS


class ExportRetryFactory(DjangoModelFactory):
    class Meta:
        model = ExportRetry

    table = ExportBatch.Table.EVENTS
    ids = factory.LazyFunction(lambda: [1])


class WriteProbeFactory(DjangoModelFactory):
    class Meta:
        model = WriteProbe
        django_get_or_create = ("id",)

    id = 1
    checked_at = factory.LazyFunction(timezone.now)


class WebhookEndpointFactory(DjangoModelFactory):
    class Meta:
        model = WebhookEndpoint

    company = factory.SubFactory(CompanyFactory)
    url = "http://127.0.0.1:9/hook"
    event_types = factory.LazyFunction(lambda: ["onboarding.started"])
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    secret_hint = "LaSw"


class WebhookMessageFactory(DjangoModelFactory):
    class Meta:
        model = WebhookMessage

    id = factory.LazyFunction(lambda: f"msg_{uuid.uuid4().hex}")
    endpoint = factory.SubFactory(WebhookEndpointFactory)
    event_type = "onboarding.started"
    payload = factory.LazyFunction(lambda: {"type": "onboarding.started", "data": {}})
    source = factory.Sequence(lambda n: f"test:{n}")


class WebhookAttemptFactory(DjangoModelFactory):
    class Meta:
        model = WebhookAttempt

    message = factory.SubFactory(WebhookMessageFactory)
    status_code = 200


class PersonalApiKeyFactory(DjangoModelFactory):
    """The raw key is not stored; the created instance carries it as `.raw_key`."""

    class Meta:
        model = PersonalApiKey

    user = factory.SubFactory(UserFactory)
    name = "tests"

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        raw, prefix = new_personal_key()
        kwargs.setdefault("prefix", prefix)
        kwargs["key_hash"] = crypto.hash_key(raw)
        obj = super()._create(model_class, *args, **kwargs)
        obj.raw_key = raw
        return obj


class FeatureFactory(DjangoModelFactory):
    class Meta:
        model = Feature

    application = factory.SubFactory(ApplicationFactory)
    name = factory.Sequence(lambda n: f"feature {n}")
    events = factory.LazyFunction(lambda: ["report_exported"])
    path_prefixes = factory.LazyFunction(lambda: ["/reports"])


class OrganizationFactory(DjangoModelFactory):
    class Meta:
        model = Organization

    application = factory.SubFactory(ApplicationFactory)
    customer_org_id = factory.Sequence(lambda n: f"org_{n}")
    first_seen = factory.LazyFunction(lambda: timezone.now() - timedelta(days=40))
    last_seen = factory.LazyFunction(timezone.now)


class OrgSignalFactory(DjangoModelFactory):
    class Meta:
        model = OrgSignal

    application = factory.SubFactory(ApplicationFactory)
    customer_org_id = factory.Sequence(lambda n: f"org_{n}")
    kind = OrgSignal.Kind.USAGE_DROP
    active_since = factory.LazyFunction(timezone.now)


# --- revenue (issue 20) --------------------------------------------------------------------------------


class RevenueSettingsFactory(DjangoModelFactory):
    class Meta:
        model = RevenueSettings

    application = factory.SubFactory(ApplicationFactory)
    reporting_currency = "EUR"


class FxRateFactory(DjangoModelFactory):
    class Meta:
        model = FxRate

    company = factory.SubFactory(CompanyFactory)
    currency = factory.Iterator(["USD", "GBP", "CHF", "JPY"])
    rate = Decimal("0.9")


class CustomerOrgFactory(DjangoModelFactory):
    class Meta:
        model = CustomerOrg

    application = factory.SubFactory(ApplicationFactory)
    external_org_id = factory.Sequence(lambda n: f"cust_{n}")
    display_name = factory.LazyAttribute(lambda o: o.external_org_id.title())


class ImportFactory(DjangoModelFactory):
    class Meta:
        model = Import

    application = factory.SubFactory(ApplicationFactory)
    kind = Import.Kind.ORGANIZATIONS
    status = Import.Status.APPLIED
    file_name = "orgs.csv"
