"""The import endpoints and commands: text/csv bodies, who may import, 413, the report, exit codes."""

import json
import subprocess
import sys

import pytest
from django.core.management import call_command

from revenue import imports
from revenue.models import CustomerOrg, Import, Subscription
from tests.factories import PersonalApiKeyFactory

pytestmark = pytest.mark.django_db

SUBS = "external_org_id,product_code,mrr,currency,start_at\nacme,pro,100,EUR,2026-01-01\n"


def url(app, kind: str, query: str = "") -> str:
    return f"/api/v1/analytics/apps/{app.uuid}/imports/{kind}{query}"


def post_csv(client, path: str, body: bytes | str, **extra):
    data = body.encode() if isinstance(body, str) else body
    return client.generic("POST", path, data, content_type="text/csv", **extra)


def test_an_admin_imports_by_session(api_client, application, admin_user):
    api_client.force_login(admin_user)
    response = post_csv(api_client, url(application, "subscriptions", "?file_name=subs.csv"), SUBS)
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["status"] == "applied"
    assert body["counts"]["rows"] == 1
    assert body["file_name"] == "subs.csv"
    assert Subscription.objects.get().external_org_id == "acme"


def test_a_personal_key_of_an_admin_imports(api_client, application, admin_user):
    key = PersonalApiKeyFactory(user=admin_user)
    response = post_csv(
        api_client,
        url(application, "organizations"),
        "external_org_id,display_name\nacme,Acme\n",
        HTTP_AUTHORIZATION=f"Bearer {key.raw_key}",
    )
    assert response.status_code == 200
    assert CustomerOrg.objects.get().display_name == "Acme"


def test_errors_answer_400_with_every_error_and_change_nothing(api_client, application, admin_user):
    api_client.force_login(admin_user)
    response = post_csv(
        api_client,
        url(application, "subscriptions"),
        "external_org_id,product_code,mrr,currency,start_at\nacme,pro,x,EUR,2026-01-01\nb,pro,1,EUR,nope\n",
    )
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "invalid_file"
    assert [(d["line"], d["field"]) for d in body["details"]] == [(2, "mrr"), (3, "start_at")]
    assert body["report"]["status"] == "failed"
    assert not Subscription.objects.exists()


def test_a_dry_run_reports_and_changes_nothing(api_client, application, admin_user):
    api_client.force_login(admin_user)
    response = post_csv(api_client, url(application, "subscriptions", "?dry_run=true"), SUBS)
    assert response.status_code == 200
    assert response.json()["status"] == "dry_run"
    assert response.json()["counts"]["mrr_after"] in {"0.00", "100.00"}  # depends on today vs 2026-01-01
    assert not Subscription.objects.exists()


def test_members_may_not_import(api_client, application, member):
    api_client.force_login(member)
    response = post_csv(api_client, url(application, "subscriptions"), SUBS)
    assert response.status_code == 403
    assert not Subscription.objects.exists()
    assert not Import.objects.exists()


def test_another_company_gets_404(api_client, application, outsider):
    api_client.force_login(outsider)
    assert post_csv(api_client, url(application, "subscriptions"), SUBS).status_code == 404
    assert api_client.get(f"/api/v1/analytics/apps/{application.uuid}/imports").status_code == 404


def test_anonymous_is_401(api_client, application):
    assert post_csv(api_client, url(application, "subscriptions"), SUBS).status_code == 401


def test_not_csv_is_415(api_client, application, admin_user):
    api_client.force_login(admin_user)
    response = api_client.post(url(application, "subscriptions"), {"a": 1}, format="json")
    assert response.status_code == 415


def test_over_20_mb_is_413_and_changes_nothing(api_client, application, admin_user):
    api_client.force_login(admin_user)
    row = "acme,pro,1,EUR,2026-01-01\n"
    body = "external_org_id,product_code,mrr,currency,start_at\n" + row * (imports.MAX_FILE_BYTES // len(row) + 1)
    response = post_csv(api_client, url(application, "subscriptions"), body)
    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"
    assert not Subscription.objects.exists()


def test_a_20_mb_file_is_accepted(api_client, application, admin_user):
    """Exactly at the cap: well past Django's in-memory body limit, still read and imported."""
    api_client.force_login(admin_user)
    header = "external_org_id,display_name\n"
    row = "acme,Acme\n"
    body = header + row + "\n" * (imports.MAX_FILE_BYTES - len(header) - len(row))
    assert len(body) == imports.MAX_FILE_BYTES
    response = post_csv(api_client, url(application, "organizations"), body)
    assert response.status_code == 200, response.content[:300]


def test_the_import_list(api_client, application, admin_user, member):
    api_client.force_login(admin_user)
    post_csv(api_client, url(application, "subscriptions", "?file_name=a.csv"), SUBS)
    api_client.force_login(member)
    body = api_client.get(f"/api/v1/analytics/apps/{application.uuid}/imports").json()
    assert [(i["kind"], i["status"], i["file_name"]) for i in body["imports"]] == [
        ("subscriptions", "applied", "a.csv")
    ]


def test_commands_print_json_and_exit_non_zero_on_errors(application, tmp_path, capsys):
    good = tmp_path / "orgs.csv"
    good.write_text("external_org_id,display_name\nacme,Acme\n")
    call_command("import_orgs", "--app", str(application.uuid), str(good), "--dry-run", "--json")
    report = json.loads(capsys.readouterr().out)
    assert (report["status"], report["counts"]["orgs_created"]) == ("dry_run", 1)
    assert not CustomerOrg.objects.exists()
    call_command("import_orgs", "--app", str(application.uuid), str(good), "--json")
    assert CustomerOrg.objects.get().display_name == "Acme"
    capsys.readouterr()

    bad = tmp_path / "subs.csv"
    bad.write_text("external_org_id,product_code,mrr,currency,start_at\nacme,pro,-1,EUR,2026-01-01\n")
    with pytest.raises(SystemExit) as exit_info:
        call_command("import_subscriptions", "--app", str(application.uuid), str(bad), "--json")
    assert exit_info.value.code == 1
    report = json.loads(capsys.readouterr().out)
    assert report["errors"] == [{"line": 2, "column": "mrr", "reason": "-1 is negative; MRR is ≥ 0."}]
    assert Import.objects.filter(via="command").count() == 3


def test_command_exit_code_seen_by_a_shell(tmp_path):
    """The real process: `manage.py import_subscriptions` with an unknown app exits non-zero."""
    bad = tmp_path / "subs.csv"
    bad.write_text("x\n")
    result = subprocess.run(  # noqa: S603 - fixed argv
        [sys.executable, "manage.py", "import_subscriptions", "--app", "00000000-0000-0000-0000-000000000000", bad],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
