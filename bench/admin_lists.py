#!/usr/bin/env python3
"""The back office at scale: admin change lists over 10 million rows per event-like table.

    bench/admin_lists.py [--rows 10000000] [--generate-only] [--repeat 3]

1. creates/migrates the PostgreSQL database `ops_bench` (prod settings), 20 companies with one
   application and one webhook endpoint each;
2. fills `ingest_event`, `ingest_sdkevent`, `ingest_identifylink`, `webhooks_webhookmessage` and
   `webhooks_webhookattempt` with `--rows` rows each, in SQL (`INSERT ... SELECT generate_series`,
   one million rows per statement; skipped for a table that already holds them), then ANALYZE;
3. logs a superuser into the admin with Django's test client (in process, the production
   settings) and times every list page a support person uses: the plain list, an exact search,
   a filter, a date filter and a sort, for each table, `--repeat` times (the best and worst are
   printed; the first run of each page warms the cache);
4. prints one `ADMIN_BENCH_JSON {...}` line; exit status 1 when a page is at or over 300 ms.

Needs PostgreSQL on 127.0.0.1:5432 (trust, user postgres). Generating 5 x 10 million rows takes
roughly 20-40 minutes on a 2-core machine and about 12 GB of disk.
"""

import argparse
import json
import os
import statistics
import sys
import time

from common import PG, ROOT, database_prepare, manage, prod_env, psql

DB_NAME = "ops_bench"
COMPANIES = 20
CHUNK = 1_000_000
BAR_MS = 300.0

_SETUP_SNIPPET = """
import django
django.setup()
from apps_registry.models import Application
from apps_registry.services import application_create, company_get_or_create
from webhooks import services
from django.contrib.auth import get_user_model
for i in range(int(__import__("sys").argv[1])):
    company = company_get_or_create(name=f"bench-company-{i:02d}", tier="enterprise")
    if not Application.objects.filter(company=company).exists():
        app = application_create(company=company, name="bench").application
        services.endpoint_create(company=company, application=app, url=f"https://hooks{i}.example.com/in",
                                 event_types=["onboarding.started", "user.identified"])
User = get_user_model()
user, _ = User.objects.get_or_create(username="bench-admin")
user.is_staff = user.is_superuser = True
user.set_password("bench-admin-password")
user.save()
"""

# Each statement inserts rows [lo, hi): ids, times and values derived from the row number, so a
# rerun is deterministic. Indexed uuids grow with the row number (sequential b-tree inserts; random
# ones made the load four times slower) and cost the same to look up. Times run over the last 30
# days, newest at the highest id, as ingest does.
_T0 = "now() - interval '30 days'"
_EVENTS = """
insert into ingest_event (id, company_id, application_id, received_at, export_state, export_attempts,
  export_error, webhook_pending, event_id, event, user_hash, customer_org_id, path, session_id,
  session_inferred, plan, environment, occurred_at, properties)
select i, a.cs[1 + i % @COMPANIES], a.ids[1 + i % @COMPANIES], @T0 + i * interval '259 milliseconds',
  case i % 100000 when 7 then 2 when 13 then 4 when 17 then 0 else 1 end, 0,
  '', i % 100000 = 19, lpad(to_hex(i), 32, '0')::uuid,
  (array['page_view','signup_completed','onboarding_flow_started','click'])[1 + i % 4],
  md5('u' || (i % 200000)), 'org_' || (i % 50000), '/p/' || (i % 100), md5('s' || (i / 20))::uuid, true, 'growth',
  'production', @T0 + i * interval '259 milliseconds', '{"k": 1}'::jsonb
from generate_series(@LO, @HI - 1) i
cross join (select array_agg(id order by id) ids, array_agg(company_id order by id) cs from apps_registry_application) a
"""
_SDK_EVENTS = """
insert into ingest_sdkevent (id, company_id, application_id, received_at, export_state, export_attempts, export_error,
  webhook_pending, event_id, schema_version, event_name, ts_ms, occurred_at, anon_id, user_id, platform, os,
  app_version, sdk_version, locale, bundle_version, country, session_id, properties, consent_analytics)
select i, a.cs[1 + i % @COMPANIES], a.ids[1 + i % @COMPANIES], @T0 + i * interval '259 milliseconds',
  case when i % 1000 = 11 then 3 else case i % 100000 when 7 then 2 when 13 then 4 when 17 then 0 else 1 end end, 0,
  '', i % 100000 = 19, lpad(to_hex(i), 32, '0')::uuid, 1,
  (array['screen_view','tap','purchase','app_open'])[1 + i % 4], 0,
  @T0 + i * interval '259 milliseconds', md5('a' || (i % 300000))::uuid,
  case when i % 3 = 0 then 'user_' || (i % 100000) end, (array['ios','android'])[1 + i % 2], '17.1', '2.3.0',
  '1.4.0', 'en_US', 1.0, 'US', md5('t' || (i / 20))::uuid, null, i % 1000 <> 11
from generate_series(@LO, @HI - 1) i
cross join (select array_agg(id order by id) ids, array_agg(company_id order by id) cs from apps_registry_application) a
"""
_IDENTIFY = """
insert into ingest_identifylink (id, company_id, application_id, received_at, export_state, export_attempts,
  export_error, webhook_pending, link_id, anon_id, user_id, last_seen_at)
select i, a.cs[1 + i % @COMPANIES], a.ids[1 + i % @COMPANIES], @T0 + i * interval '259 milliseconds',
  case i % 100000 when 7 then 2 when 13 then 4 when 17 then 0 else 1 end, 0, '', i % 100000 = 19,
  lpad(to_hex(i), 32, '0')::uuid, lpad(to_hex(i), 32, '0')::uuid, 'user_' || (i % 2000000),
  @T0 + i * interval '259 milliseconds'
from generate_series(@LO, @HI - 1) i
cross join (select array_agg(id order by id) ids, array_agg(company_id order by id) cs from apps_registry_application) a
"""
_MESSAGES = """
insert into webhooks_webhookmessage (id, endpoint_id, event_type, payload, source, state, attempt_count,
  next_attempt_at, locked_until, created_at, delivered_at)
select 'msg_' || lpad(to_hex(i), 11, '0') || substr(md5('m' || i), 1, 20), e.ids[1 + i % @COMPANIES],
  (array['onboarding.started','user.identified'])[1 + i % 2], '{"type": "x"}'::jsonb, 'sdk_event:' || i,
  case when i % 1000 = 3 then 'failed' when i % 100000 = 5 then 'pending' else 'delivered' end, 1, null, null,
  @T0 + i * interval '259 milliseconds', @T0 + i * interval '259 milliseconds'
from generate_series(@LO, @HI - 1) i
cross join (select array_agg(id order by id) ids from webhooks_webhookendpoint) e
"""
_ATTEMPTS = """
insert into webhooks_webhookattempt (id, message_id, attempted_at, status_code, duration_ms, response_body, error)
select i, 'msg_' || lpad(to_hex(i), 11, '0') || substr(md5('m' || i), 1, 20),
  @T0 + i * interval '259 milliseconds', 200, 40, 'ok', ''
from generate_series(@LO, @HI - 1) i
"""
TABLES = {
    "ingest_event": _EVENTS,
    "ingest_sdkevent": _SDK_EVENTS,
    "ingest_identifylink": _IDENTIFY,
    "webhooks_webhookmessage": _MESSAGES,
    "webhooks_webhookattempt": _ATTEMPTS,
}


def say(message: str) -> None:
    print(message, flush=True)


def _sql(template: str, *, lo: int, hi: int) -> str:
    """The statement for rows [lo, hi): the placeholders are replaced with numbers and constants only."""
    values = {"@COMPANIES": str(COMPANIES), "@T0": _T0, "@LO": str(int(lo)), "@HI": str(int(hi))}
    for token, value in values.items():
        template = template.replace(token, value)
    return template


def table_rows(table: str) -> int:
    return int(psql(f"{PG}/{DB_NAME}", f"select count(*) from {table}"))  # noqa: S608 (constant names)


def data_generate(rows: int, tables: list[str] | None = None) -> None:
    """Fill every table up to `rows` rows, a million at a time (resumable: it continues where it stopped)."""
    for table, statement in TABLES.items():
        if tables and table not in tables:
            continue
        have = table_rows(table)
        while have < rows:
            hi = min(rows, have - have % CHUNK + CHUNK)
            started = time.monotonic()
            sql = _sql(statement, lo=have + 1, hi=hi + 1)
            psql(f"{PG}/{DB_NAME}", sql)
            say(f"{table}: rows {have + 1:,}..{hi:,} in {time.monotonic() - started:.0f} s")
            have = hi
    for table in TABLES:
        psql(f"{PG}/{DB_NAME}", f"analyze {table}")
    psql(f"{PG}/{DB_NAME}", "checkpoint")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--generate-only", action="store_true")
    parser.add_argument(
        "--tables", nargs="*", choices=list(TABLES), help="generate only these (run several in parallel)"
    )
    args = parser.parse_args()
    env = prod_env(db_name=DB_NAME, port=0, redis_url=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13"))
    say(f"migrating {DB_NAME} ...")
    database_prepare(env, DB_NAME)
    manage(env, "shell", "--no-imports", "-c", _SETUP_SNIPPET.replace('int(__import__("sys").argv[1])', str(COMPANIES)))
    say(f"generating {args.rows:,} rows per table (resumable) ...")
    data_generate(args.rows, args.tables)
    if args.generate_only:
        return 0
    return pages_measure(env, repeat=args.repeat)


def pages_measure(env: dict, *, repeat: int) -> int:
    """Time each admin page in a child process with the production settings (see _MEASURE)."""
    import subprocess

    from common import python

    out = subprocess.run(
        [python(), "-c", _MEASURE, str(repeat)], cwd=ROOT, env=env, check=True, capture_output=True, text=True
    ).stdout
    results = json.loads(out.strip().splitlines()[-1])
    worst = 0.0
    say(f"{'page':<58} {'best ms':>8} {'worst ms':>9} {'status':>6}")
    for name, timings, status in results:
        worst = max(worst, max(timings))
        say(f"{name:<58} {min(timings):>8.1f} {max(timings):>9.1f} {status:>6}")
    summary = {
        "rows_per_table": {t: table_rows(t) for t in TABLES},
        "pages": {
            name: {"best_ms": min(t), "median_ms": statistics.median(t), "worst_ms": max(t)} for name, t, _ in results
        },
        "worst_ms": worst,
        "bar_ms": BAR_MS,
    }
    say("ADMIN_BENCH_JSON " + json.dumps(summary))
    return 0 if worst < BAR_MS and all(status == 200 for _, _, status in results) else 1


# Runs in a child with the production settings: logs in and fetches each page `repeat` + 1 times
# (the first is a warm-up and is not counted).
_MEASURE = """
import json, sys, time, django
django.setup()
from django.test import Client
from django.test.utils import setup_test_environment
from ingest.models import Event, SdkEvent, IdentifyLink
from webhooks.models import WebhookMessage
setup_test_environment()
repeat = int(sys.argv[1])
client = Client(HTTP_HOST="127.0.0.1", secure=True)
assert client.login(username="bench-admin", password="bench-admin-password")
ev = Event.objects.order_by("-id").values("event_id", "customer_org_id").first()
sdk = SdkEvent.objects.order_by("-id").values("event_id").first()
link = IdentifyLink.objects.order_by("-id").values("user_id").first()
msg = WebhookMessage.objects.order_by("-id").values("id", "source").first()
pages = [
    ("events: list", "/admin/ingest/event/"),
    ("events: search event id", f"/admin/ingest/event/?q={ev['event_id']}"),
    ("events: search org id", f"/admin/ingest/event/?q={ev['customer_org_id']}"),
    ("events: filter dead letters", "/admin/ingest/event/?export_state__exact=2"),
    ("events: received in the last 24 h", "/admin/ingest/event/?received=24h"),
    ("events: sort by id ascending", "/admin/ingest/event/?o=1"),
    ("events: page 50", "/admin/ingest/event/?p=50"),
    ("sdk events: list", "/admin/ingest/sdkevent/"),
    ("sdk events: search event id", f"/admin/ingest/sdkevent/?q={sdk['event_id']}"),
    ("sdk events: filter platform ios", "/admin/ingest/sdkevent/?platform__exact=ios"),
    ("sdk events: received in the last 7 days", "/admin/ingest/sdkevent/?received=7d"),
    ("identify links: list", "/admin/ingest/identifylink/"),
    ("identify links: search user id", f"/admin/ingest/identifylink/?q={link['user_id']}"),
    ("identify links: received in the last hour", "/admin/ingest/identifylink/?received=1h"),
    ("webhook messages: list", "/admin/webhooks/webhookmessage/"),
    ("webhook messages: search message id", f"/admin/webhooks/webhookmessage/?q={msg['id']}"),
    ("webhook messages: search source", f"/admin/webhooks/webhookmessage/?q={msg['source']}"),
    ("webhook messages: filter failed", "/admin/webhooks/webhookmessage/?state__exact=failed"),
    ("webhook messages: created in the last 24 h", "/admin/webhooks/webhookmessage/?created=24h"),
    ("webhook message: one message with its attempts", f"/admin/webhooks/webhookmessage/{msg['id']}/change/"),
]
results = []
for name, url in pages:
    timings, status = [], None
    for i in range(repeat + 1):
        started = time.perf_counter()
        response = client.get(url)
        elapsed = (time.perf_counter() - started) * 1000
        status = response.status_code
        if i:
            timings.append(elapsed)
    results.append((name, timings, status))
print(json.dumps(results))
"""


if __name__ == "__main__":
    sys.exit(main())
