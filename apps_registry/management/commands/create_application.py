"""create_application --company NAME --name NAME [--plan TIER] [--events-per-month N] [--json]

A contract other tools rely on (bench, scripts/dev): creates the company if needed, then the
application with one API secret and one SDK key, and prints them once.
"""

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from apps_registry.models import Plan
from apps_registry.services import application_create, company_get_or_create, plan_get_or_create
from apps_registry.snippets import batch_url, ingest_url

from ._output import emit


class Command(BaseCommand):
    help = "Create (if needed) a company and an application; print its API secret and SDK key once."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--company", required=True, help="Company name; created when it does not exist.")
        parser.add_argument("--name", required=True, help="Application name.")
        parser.add_argument(
            "--plan",
            choices=Plan.Tier.values,
            default=None,
            help="Plan tier of the company (default trial for a new company; changes an existing one).",
        )
        parser.add_argument("--events-per-month", type=int, default=None, help="Per-company override of the limit.")
        parser.add_argument("--environment", action="append", default=[], help="Environment label (repeatable).")
        parser.add_argument("--json", action="store_true", help="Print one JSON object.")

    def handle(self, *args, **options) -> None:
        if options["events_per_month"] is not None and options["events_per_month"] < 0:
            raise CommandError("--events-per-month must be a non-negative number")
        company = company_get_or_create(
            name=options["company"],
            tier=options["plan"] or Plan.Tier.TRIAL,
            events_per_month=options["events_per_month"],
        )
        if options["plan"] and company.plan.tier != options["plan"]:
            company.plan = plan_get_or_create(tier=options["plan"])
            company.save(update_fields=["plan"])
        try:
            new = application_create(company=company, name=options["name"], environments=options["environment"])
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from None
        app = new.application
        emit(
            self,
            {
                "company_id": company.pk,
                "company": company.name,
                "plan": company.plan.tier,
                "app_id": app.pk,
                "app_uuid": str(app.uuid),
                "app_name": app.name,
                "api_secret": new.api_secret,
                "sdk_key": new.sdk_key,
                "ingest_url": ingest_url(),
                "batch_url": batch_url(),
            },
            as_json=options["json"],
            title=f"Created application {app.name!r} for {company.name!r}.",
        )
