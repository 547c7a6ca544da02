"""add_member --company NAME --username U --role owner|admin|member [--staff] [--password-stdin] [--json]."""

import secrets
import sys
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from apps_registry.management.commands._output import emit
from apps_registry.models import Company, Membership


class Command(BaseCommand):
    stealth_options = ("stdin",)  # call_command(..., stdin=...) in place of the process's stdin
    help = (
        "Make a user a member of a company (creating the user if needed, with the password from stdin or a "
        "generated one printed once)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--company", required=True, help="Company name.")
        parser.add_argument("--username", required=True)
        parser.add_argument("--role", required=True, choices=Membership.Role.values)
        parser.add_argument("--staff", action="store_true", help="May log in to the admin.")
        parser.add_argument("--password-stdin", action="store_true", help="Read a new user's password from stdin.")
        parser.add_argument("--json", action="store_true", help="Print one JSON object.")

    @transaction.atomic
    def handle(self, *args: Any, **options: Any) -> None:
        company = Company.objects.filter(name=options["company"]).first()
        if company is None:
            raise CommandError(f"No company {options['company']!r}.")
        user_model = get_user_model()
        user = user_model.objects.filter(username=options["username"]).first()
        password = None
        created = user is None
        if user is None:
            stdin = options.get("stdin") or sys.stdin
            password = stdin.readline().rstrip("\n") if options["password_stdin"] else None
            if options["password_stdin"] and not password:
                raise CommandError("Empty password on stdin.")
            generated = password is None
            password = password or secrets.token_urlsafe(16)
            user = user_model.objects.create_user(username=options["username"], password=password)
            if not generated:
                password = None  # the caller knows it; never echo it
        if options["staff"] and not user.is_staff:
            user.is_staff = True
            user.save(update_fields=["is_staff"])
        membership = Membership.objects.filter(user=user).first()
        if membership is not None and membership.company_id != company.id:
            raise CommandError(f"{user.get_username()!r} is already a member of another company.")
        if membership is None:
            membership = Membership.objects.create(user=user, company=company, role=options["role"])
        elif membership.role != options["role"]:
            membership.role = options["role"]
            membership.save(update_fields=["role"])
        payload = {
            "username": user.get_username(),
            "company": company.name,
            "role": membership.role,
            "staff": user.is_staff,
            "created": created,
        }
        if password is not None:
            payload["password"] = password
        emit(
            self,
            payload,
            as_json=options["json"],
            title=f"{user.get_username()!r} is a {membership.role} of {company.name}.",
        )
