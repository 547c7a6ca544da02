"""A hand-computed scenario (now = 2026-06-15 12:00 UTC): every figure in the tests is worked out below.

Month-end MRR (a subscription ending exactly at midnight on the 1st still counts in the month before):
  2025-06..2025-11: d 60                                  =  60
  2025-12: b 200 + d 60                                   = 260
  2026-01: a 100 + b 200 + d 60 (ends 02-01 00:00)        = 360
  2026-02: a 100 + b 200 + f 120                          = 420
  2026-03: a 100 + a/addon 50 + b 200 (ends 04-01) + f 120 = 470
  2026-04: a 150 + c 80 + f 120                           = 350
  2026-05: a 100 + c 80 + e 27 (30 USD × 0.9) + f 120     = 327
  2026-06 (now): a 100 + c 80 + c/team 40 + d 70 + f 90   = 380
Health: a healthy 80, c at_risk 30, d healthy 75, e inactive 10; f never seen.
"""

from datetime import UTC, datetime
from decimal import Decimal

from revenue.models import FxRate

from .conftest import import_orgs, import_subs

NOW = datetime(2026, 6, 15, 12, tzinfo=UTC)

SUBSCRIPTIONS = """external_org_id,product_code,mrr,currency,start_at,end_at,subscription_id
a,pro,100,EUR,2026-01-01,,a1
a,addon,50.00,EUR,2026-03-15,2026-05-20,a2
b,pro,200,EUR,2025-12-10T09:00:00Z,2026-04-01T00:00:00Z,b1
c,pro,80,EUR,2026-04-10,,c1
c,team,40,EUR,2026-06-05,,c2
d,pro,60,EUR,2025-06-01,2026-02-01,d1
d,pro,70,EUR,2026-06-02,,d2
e,pro,30,USD,2026-05-01,2026-06-10,e1
f,pro,120,EUR,2026-02-01,2026-06-01,f1
f,pro,90,EUR,2026-06-01,,f2
"""


def load(app) -> None:
    FxRate.objects.create(company=app.company, currency="USD", rate=Decimal("0.9"))
    report = import_subs(app, SUBSCRIPTIONS, now=NOW)
    assert report["status"] == "applied", report["errors"]
    import_orgs(app, "external_org_id,display_name\na,Acme\nc,Contoso\nd,Dunder\n")


def health(app) -> None:
    from tests.factories import OrganizationFactory

    for org, score, bucket in (("a", 80, "healthy"), ("c", 30, "at_risk"), ("d", 75, "healthy"), ("e", 10, "inactive")):
        OrganizationFactory(
            application=app,
            customer_org_id=org,
            health_score=score,
            health_bucket=bucket,
            first_seen=datetime(2026, 1, 1, tzinfo=UTC),
            last_seen=datetime(2026, 6, 14, tzinfo=UTC),
        )
