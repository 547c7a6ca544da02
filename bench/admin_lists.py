#!/usr/bin/env python3
"""The back office at scale: admin change lists over 10 million rows per event-like table.

    bench/admin_lists.py [--rows 10000000] [--generate-only] [--repeat 3] [--end now|ISO] [--root CHECKOUT]
    bench/admin_lists.py --windows-ab ROOT:DB,ROOT:DB [--runs 20] [--explain FILE]

1. creates/migrates the PostgreSQL database `ops_bench` (prod settings), 20 companies with one
   application and one webhook endpoint each;
2. fills `ingest_event`, `ingest_sdkevent`, `ingest_identifylink`, `webhooks_webhookmessage` and
   `webhooks_webhookattempt` with `--rows` rows each, in SQL (`INSERT ... SELECT generate_series`,
   one million rows per statement; skipped for a table that already holds them), then ANALYZE;
3. moves one row in 5,000 of each table to a small company (rows rare and spread over the whole
   time range: the hard case for a company-scoped list);
4. under the machine-wide bench lock, logs into the admin with Django's test client (in process,
   the production settings) as a superuser and as the account admins (owners) of a large and of
   the small company, and times every list page they use: the plain list, exact and prefix
   searches, each filter (rare values included), time windows and a sort, `--repeat` times (the
   best and worst are printed; the first run of each page warms the cache); `--explain FILE`
   writes EXPLAIN (ANALYZE, BUFFERS) of each page's slowest query;
5. prints one `ADMIN_BENCH_JSON {...}` line; exit status 1 when a page is at or over 300 ms.

With partitioned raw tables (`ingest/partitions.py` present), the three raw tables take their ids
from the sequence and are filled side by side, with a cut of every raw table (a new partition,
`partitions_cut_all`) after each `--cut-days` of data (7, weekly, as live; the rows are 259 ms apart,
so 2 M rows hold 6 days: `--cut-days 1` gives six partitions), and the SDK dedup key table
`ingest_sdkeventkey` is filled for the generated SDK rows after the small company's rows are moved.

`--end now` (or an ISO timestamp) puts the newest row at that time instead of 24 days ago (2 M rows
starting 30 days ago): live-like, the last hour and the last 24 hours hold rows; give the same `--end`
to resume a load. `--root` is the checkout whose migrations (schema) and code are used, e.g. 27d7eb1's
worktree, so this script builds and measures the plain-table schema too.

`--windows-ab` times the superuser's "received within" pages (1 h, 24 h, 7 d, 30 d of events, SDK
events and identify links) on two databases, each with its own checkout's code, alternating page by
page over `--runs` rounds (one warm-up), and prints p50 of the page and of its SQL (the sum of its
statements' times), then EXPLAIN (ANALYZE, BUFFERS) of each page's slowest statement with `--explain`.

Needs PostgreSQL on 127.0.0.1:5432 (trust, user postgres). Generating 5 x 10 million rows takes
roughly 20-40 minutes on a 2-core machine and about 12 GB of disk.
"""

import argparse
import fcntl
import itertools
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from common import PG, ROOT, database_prepare, manage, prod_env, psql, python

DB_NAME = os.environ.get("BENCH_DB", "ops_bench")  # a bench-only name
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
# A small company (its rows are moved in sparsely after the load, see small_company_rows) and an
# account admin (owner) for it and for one of the 20 large ones: lists are scoped per company.
small = company_get_or_create(name="bench-small", tier="enterprise")
if not Application.objects.filter(company=small).exists():
    app = application_create(company=small, name="bench").application
    services.endpoint_create(company=small, application=app, url="https://hooks-small.example.com/in",
                             event_types=["onboarding.started", "user.identified"])
from apps_registry.models import Company, Membership
User = get_user_model()
for name, superuser, company in (("bench-admin", True, None), ("bench-account", False, "bench-company-00"),
                                 ("bench-account-small", False, "bench-small")):
    user, _ = User.objects.get_or_create(username=name)
    user.is_staff, user.is_superuser = True, superuser
    user.set_password("bench-admin-password")
    user.save()
    if company:
        Membership.objects.update_or_create(user=user, defaults={"company": Company.objects.get(name=company),
                                                                 "role": "owner"})
"""

# Each statement inserts rows [lo, hi): ids, times and values derived from the row number, so a
# rerun is deterministic. Indexed uuids grow with the row number (sequential b-tree inserts; random
# ones made the load four times slower) and cost the same to look up. Times run over the last 30
# days, newest at the highest id, as ingest does.
_T0 = "now() - interval '30 days'"
# What `--end` and `--root` set (main): the first row's time as SQL, and the checkout used.
RUN: dict = {"t0_sql": _T0, "t0": None, "root": ROOT}
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
    values = {"@COMPANIES": str(COMPANIES), "@T0": RUN["t0_sql"], "@LO": str(int(lo)), "@HI": str(int(hi))}
    for token, value in values.items():
        template = template.replace(token, value)
    return template


def table_rows(table: str) -> int:
    return int(psql(f"{PG}/{DB_NAME}", f"select count(*) from {table}"))  # noqa: S608 (constant names)


def partitioned() -> bool:
    """The schema of the checkout in use has partitioned raw tables."""
    return (RUN["root"] / "ingest" / "partitions.py").exists()


RAW_TABLES = ("ingest_event", "ingest_sdkevent", "ingest_identifylink")
ROW_SECONDS = 0.259  # the time between two rows of a table (@T0 + i * 259 ms above)


def _unpinned(statement: str) -> str:
    """The statement without the explicit id: with partitioned raw tables each row takes the id
    sequence's next value, i.e. an id in the current block (partition). `i` still numbers the row and
    derives every other value, so the rows are the same as the unpartitioned schema's."""
    out = statement.replace(" (id, company_id,", " (company_id,", 1).replace("select i, a.cs[", "select a.cs[", 1)
    assert out != statement, "statement layout changed"
    return out


def partitions_cut(env: dict, row: int) -> None:
    """Every raw table into a new id block (a new partition), as the weekly beat task does live, at
    the time of row number `row` (@T0 + row * 259 ms)."""
    start = "timezone.now() - timedelta(days=30)" if RUN["t0"] is None else f"datetime.fromisoformat({RUN['t0']!r})"
    code = (
        "from datetime import datetime, timedelta; from django.utils import timezone;"
        " from ingest.partitions import partitions_cut_all;"
        f" partitions_cut_all(now={start} + timedelta(seconds={row * ROW_SECONDS}))"
    )
    manage(env, "shell", "-c", code, root=RUN["root"])


def data_generate(rows: int, tables: list[str] | None = None, *, env: dict | None = None, cut_days: float = 7) -> None:
    """Fill every table up to `rows` rows, a million at a time (resumable: it continues where it stopped).

    With partitioned raw tables, the three raw tables are filled side by side, block by block of
    `cut_days` of data (their rows share times), with a cut of every raw table between blocks."""
    if partitioned():
        _raw_generate(rows, [t for t in RAW_TABLES if not tables or t in tables], env=env, cut_days=cut_days)
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
    # VACUUM as autovacuum would on a live table: hint bits set and pages marked all-visible, so a
    # page's reads are not the load's aftermath (every first read of a fresh page writes it back).
    for table in TABLES:
        psql(f"{PG}/{DB_NAME}", f"vacuum (analyze) {table}")
    psql(f"{PG}/{DB_NAME}", "checkpoint")


def _raw_generate(rows: int, tables: list[str], *, env: dict | None, cut_days: float) -> None:
    """The raw tables of the partitioned schema: ids from the sequence, a cut every `cut_days` of data."""
    if not tables or all(table_rows(t) >= rows for t in tables):
        return
    block = max(1, round(cut_days * 86400 / ROW_SECONDS))
    starts = set(range(block, rows, block))
    bounds = sorted({*range(0, rows, CHUNK), *starts, rows})
    for lo, hi in itertools.pairwise(bounds):
        if lo in starts and any(table_rows(t) == lo for t in tables):
            partitions_cut(env, lo + 1)
            say(f"partitions cut before row {lo + 1:,}")
        for table in tables:
            if table_rows(table) >= hi:
                continue
            started = time.monotonic()
            psql(f"{PG}/{DB_NAME}", _sql(_unpinned(TABLES[table]), lo=lo + 1, hi=hi + 1))
            say(f"{table}: rows {lo + 1:,}..{hi:,} in {time.monotonic() - started:.0f} s")


def sdk_keys_fill() -> None:
    """The partitioned schema's SDK dedup key table, for the generated SDK rows (the admin's exact SDK
    event id search reads it). After small_company_rows: the key holds each row's final application."""
    psql(
        f"{PG}/{DB_NAME}",
        "insert into ingest_sdkeventkey (application_id, event_id, received_at, row_id)"
        " select application_id, event_id, received_at, id from ingest_sdkevent on conflict do nothing",
    )
    psql(f"{PG}/{DB_NAME}", "vacuum (analyze) ingest_sdkeventkey")


SMALL_EVERY = 5000  # one row in 5,000 (0.02 %) of each table belongs to the small company


def small_company_rows() -> None:
    """Give the small company one row in SMALL_EVERY, spread over the whole time range (an account
    whose rows are rare and old is what makes a scoped list walk the table). Idempotent, by primary key."""
    db = f"{PG}/{DB_NAME}"
    app = psql(
        db,
        "select a.id || ',' || a.company_id from apps_registry_application a join apps_registry_company c"
        " on c.id = a.company_id where c.name = 'bench-small'",
    )
    app_id, company_id = (int(x) for x in app.split(","))
    endpoint_id = int(psql(db, f"select id from webhooks_webhookendpoint where application_id = {app_id}"))  # noqa: S608
    for table in RAW_TABLES:
        # Rows 123, 123 + SMALL_EVERY, ... in id order (ids are the row numbers, unless partitioned).
        rows = (
            f"select id from (select id, row_number() over (order by id) n from {table}) r"  # noqa: S608
            f" where n % {SMALL_EVERY} = 123"
            if partitioned()
            else f"select generate_series(123, (select max(id) from {table}), {SMALL_EVERY})"  # noqa: S608
        )
        psql(
            db,
            f"update {table} set company_id = {company_id}, application_id = {app_id}"  # noqa: S608
            f" where id in ({rows}) and company_id <> {company_id}",
        )
    psql(
        db,
        f"update webhooks_webhookmessage set endpoint_id = {endpoint_id} where id in ("  # noqa: S608
        f" select 'msg_' || lpad(to_hex(i), 11, '0') || substr(md5('m' || i), 1, 20)"
        f" from generate_series(123, {table_rows('webhooks_webhookmessage')}, {SMALL_EVERY}) i)"
        f" and endpoint_id <> {endpoint_id}",
    )
    for table in TABLES:
        psql(db, f"analyze {table}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--generate-only", action="store_true")
    parser.add_argument(
        "--cut-days", type=float, default=7, help="partitioned schema: days of data per partition (weekly live)"
    )
    parser.add_argument("--explain", help="write EXPLAIN (ANALYZE, BUFFERS) of each page's slowest query to this file")
    parser.add_argument(
        "--tables", nargs="*", choices=list(TABLES), help="generate only these (run several in parallel)"
    )
    parser.add_argument(
        "--end", help="the newest row's time, 'now' or an ISO timestamp (default: 24 days ago for 2 M rows)"
    )
    parser.add_argument("--root", type=Path, default=ROOT, help="the checkout whose schema and code are used")
    parser.add_argument(
        "--windows-ab", help="ROOT:DB,ROOT:DB: time the received-within pages on both, alternating (no load)"
    )
    parser.add_argument("--runs", type=int, default=20, help="--windows-ab: timed rounds after one warm-up")
    args = parser.parse_args()
    if args.windows_ab:
        pairs = (side.rsplit(":", 1) for side in args.windows_ab.split(","))
        sides = [(Path(root).resolve(), db) for root, db in pairs]
        return windows_ab(sides, runs=args.runs, explain=args.explain)
    RUN["root"] = args.root.resolve()
    if args.end:
        end = datetime.now(UTC) if args.end == "now" else datetime.fromisoformat(args.end)
        t0 = end - timedelta(seconds=args.rows * ROW_SECONDS)
        RUN["t0"], RUN["t0_sql"] = t0.isoformat(), f"timestamptz '{t0.isoformat()}'"
        say(f"rows from {t0.isoformat()} to {end.isoformat()} (resume with --end {end.isoformat()})")
    env = prod_env(db_name=DB_NAME, port=0, redis_url=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13"))
    say(f"migrating {DB_NAME} with {RUN['root']} ...")
    database_prepare(env, DB_NAME, root=RUN["root"])
    manage(
        env,
        "shell",
        "--no-imports",
        "-c",
        _SETUP_SNIPPET.replace('int(__import__("sys").argv[1])', str(COMPANIES)),
        root=RUN["root"],
    )
    say(f"generating {args.rows:,} rows per table (resumable) ...")
    data_generate(args.rows, args.tables, env=env, cut_days=args.cut_days)
    if args.generate_only:
        return 0
    small_company_rows()
    if partitioned():
        sdk_keys_fill()
    # Measured pages never overlap another benchmark (the machine-wide lock of bench/ingest.py).
    lock_path = os.environ.get("BENCH_LOCK") or Path(tempfile.gettempdir()) / "saastracker-bench-ingest.lock"
    with open(lock_path, "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say("another bench run is in progress; waiting for it")
            fcntl.flock(lock, fcntl.LOCK_EX)
        say(f"load average before: {os.getloadavg()}")
        status = pages_measure(env, repeat=args.repeat, explain=args.explain)
        say(f"load average after: {os.getloadavg()}")
    return status


def pages_measure(env: dict, *, repeat: int, explain: str | None = None) -> int:
    """Time each admin page in a child process with the production settings (see _MEASURE)."""
    import subprocess

    child = subprocess.run(
        [python(), "-c", _MEASURE, str(repeat), explain or ""], cwd=RUN["root"], env=env, capture_output=True, text=True
    )
    if child.returncode:
        sys.exit(f"measuring failed:\n{child.stderr[-4000:]}")
    out = child.stdout
    results = json.loads(out.strip().splitlines()[-1])
    worst = 0.0
    say(f"{'page':<80} {'best ms':>8} {'worst ms':>9} {'status':>6}")
    for name, timings, status in results:
        worst = max(worst, max(timings))
        say(f"{name:<80} {min(timings):>8.1f} {max(timings):>9.1f} {status:>6}")
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
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.contrib.auth import get_user_model
from ingest.models import Event, SdkEvent, IdentifyLink
from webhooks.models import WebhookMessage
# No setup_test_environment(): its instrumented template rendering copies every template context
# for the test client (a third of a list page's time), which a server never does.
repeat, explain_path = int(sys.argv[1]), sys.argv[2]
ev = Event.objects.order_by("-id").values("event_id", "customer_org_id").first()
sdk = SdkEvent.objects.order_by("-id").values("event_id").first()
link = IdentifyLink.objects.order_by("-id").values("user_id").first()
msg = WebhookMessage.objects.order_by("-id").values("id", "source").first()
E, S, L = "/admin/ingest/event/", "/admin/ingest/sdkevent/", "/admin/ingest/identifylink/"
M = "/admin/webhooks/webhookmessage/"
User = get_user_model()
superuser_pages = [
    ("events: list", E),
    ("events: search event id", f"{E}?q={ev['event_id']}"),
    ("events: search org id", f"{E}?q={ev['customer_org_id']}"),
    ("events: search org id prefix (org_123*)", f"{E}?q=org_123*"),
    ("events: export state dead", f"{E}?export_state__exact=2"),
    ("events: export state pending", f"{E}?export_state__exact=0"),
    ("events: export state sending", f"{E}?export_state__exact=4"),
    ("events: webhook pending", f"{E}?webhook_pending__exact=1"),
    ("events: received in the last hour", f"{E}?received=1h"),
    ("events: received in the last 24 h", f"{E}?received=24h"),
    ("events: ?o=2 (ignored: id order)", f"{E}?o=2"),
    ("events: page 50", f"{E}?p=50"),
    ("sdk events: list", S),
    ("sdk events: search event id", f"{S}?q={sdk['event_id']}"),
    ("sdk events: platform ios", f"{S}?platform__exact=ios"),
    ("sdk events: export state skipped (no consent)", f"{S}?export_state__exact=3"),
    ("sdk events: export state sending", f"{S}?export_state__exact=4"),
    ("sdk events: received in the last hour", f"{S}?received=1h"),
    ("sdk events: received in the last 7 days", f"{S}?received=7d"),
    ("identify links: list", L),
    ("identify links: search user id", f"{L}?q={link['user_id']}"),
    ("identify links: search user id prefix (user_1999*)", f"{L}?q=user_1999*"),
    ("identify links: export state dead", f"{L}?export_state__exact=2"),
    ("identify links: received in the last hour", f"{L}?received=1h"),
    ("identify links: received in the last 24 h", f"{L}?received=24h"),
    ("webhook messages: list", M),
    ("webhook messages: search message id", f"{M}?q={msg['id']}"),
    ("webhook messages: search source", f"{M}?q={msg['source']}"),
    ("webhook messages: search id prefix", f"{M}?q={msg['id'][:10]}*"),
    ("webhook messages: state failed", f"{M}?state__exact=failed"),
    ("webhook messages: state pending", f"{M}?state__exact=pending"),
    ("webhook messages: type experiment.exposure (none)", f"{M}?event_type__exact=experiment.exposure"),
    ("webhook messages: created in the last hour", f"{M}?created=1h"),
    ("webhook messages: created in the last 24 h", f"{M}?created=24h"),
    ("webhook message: one message with its attempts", f"{M}{msg['id']}/change/"),
]
account_pages = [
    ("events: list", E),
    ("events: search org id", f"{E}?q={ev['customer_org_id']}"),
    ("events: export state dead", f"{E}?export_state__exact=2"),
    ("events: received in the last hour", f"{E}?received=1h"),
    ("events: received in the last 24 h", f"{E}?received=24h"),
    ("sdk events: list", S),
    ("sdk events: platform ios", f"{S}?platform__exact=ios"),
    ("sdk events: export state skipped (no consent)", f"{S}?export_state__exact=3"),
    ("identify links: list", L),
    ("identify links: received in the last hour", f"{L}?received=1h"),
    ("webhook messages: list", M),
    ("webhook messages: state failed", f"{M}?state__exact=failed"),
    ("webhook messages: created in the last 24 h", f"{M}?created=24h"),
]
users = [
    ("superuser", "bench-admin", superuser_pages),
    ("account admin, large company", "bench-account", account_pages),
    ("account admin, small company", "bench-account-small", account_pages),
]
results, plans = [], []
for who, username, pages in users:
    client = Client(HTTP_HOST="127.0.0.1", secure=True)
    # A session as a login makes one; not client.login(): django-axes wants the request to authenticate.
    client.force_login(User.objects.get(username=username), backend="django.contrib.auth.backends.ModelBackend")
    for name, url in pages:
        timings, status = [], None
        for i in range(repeat + 1):
            with CaptureQueriesContext(connection) as queries:
                started = time.perf_counter()
                response = client.get(url)
                elapsed = (time.perf_counter() - started) * 1000
            status = response.status_code
            if i:
                timings.append(elapsed)
        results.append((f"{who} | {name}", timings, status))
        if explain_path:
            measured = [q for q in queries.captured_queries if not q["sql"].startswith("EXPLAIN")]
            slowest = max(measured, key=lambda q: float(q["time"]))
            with connection.cursor() as cursor:
                cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + slowest["sql"])
                plan = "\\n".join(row[0] for row in cursor.fetchall())
            plans.append(f"### {who} | {name}  ({url})\\n{slowest['sql']}\\n{plan}\\n")
if explain_path:
    with open(explain_path, "w") as f:
        f.write("\\n".join(plans))
print(json.dumps(results))
"""


WINDOW_PAGES = [
    (f"{name}: received in the last {label}", f"/admin/ingest/{model}/?received={window}")
    for name, model in (("events", "event"), ("sdk events", "sdkevent"), ("identify links", "identifylink"))
    for window, label in (("1h", "hour"), ("24h", "24 h"), ("7d", "7 days"), ("30d", "30 days"))
]


def windows_ab(sides: list[tuple[Path, str]], *, runs: int, explain: str | None) -> int:
    """The superuser's received-within pages on each (checkout, database), alternating page by page
    (the side that goes first alternates too): p50 of the page, of its SQL, and of its slowest statement."""
    import subprocess

    children = []
    for root, db in sides:
        env = prod_env(db_name=db, port=0, redis_url=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13"))
        venv = root / ".venv" / "bin" / "python"
        children.append(
            subprocess.Popen(
                [str(venv) if venv.exists() else python(), "-c", _WINDOWS_CHILD],
                cwd=root,
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
        )

    def ask(child: subprocess.Popen, command: dict) -> dict:
        child.stdin.write(json.dumps(command) + "\n")
        child.stdin.flush()
        while True:
            line = child.stdout.readline()
            if not line:
                sys.exit("a child stopped")
            if line.startswith("AB "):
                return json.loads(line[3:])

    lock_path = os.environ.get("BENCH_LOCK") or Path(tempfile.gettempdir()) / "saastracker-bench-ingest.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        say(f"load average before: {os.getloadavg()}")
        found: dict = {(page, i): [] for page, _ in WINDOW_PAGES for i in range(len(sides))}
        for run in range(runs + 1):
            for page, url in WINDOW_PAGES:
                order = list(range(len(sides)))
                if run % 2:
                    order.reverse()
                for i in order:
                    answer = ask(children[i], {"op": "get", "url": url})
                    if answer["status"] != 200:
                        sys.exit(f"{page} on {sides[i][1]}: status {answer['status']}")
                    if run:
                        found[page, i].append(answer)
        say(f"load average after: {os.getloadavg()}")
    header = " | ".join(f"{db}: page / SQL / slowest statement (rows shown)" for _, db in sides)
    say(f"p50 ms over {runs} runs: page | {header}")
    summary = {}
    for page, _ in WINDOW_PAGES:
        cells = []
        for i, (_, db) in enumerate(sides):
            answers = found[page, i]
            p50 = {key: statistics.median(a[key] for a in answers) for key in ("ms", "sql_ms", "slowest_ms")}
            alike = [a["each"] for a in answers if len(a["each"]) == len(answers[-1]["each"])]
            each = [statistics.median(times[k] for times in alike) for k in range(len(alike[-1]))]
            summary[f"{sides[i][0].name}:{db} | {page}"] = {
                **p50,
                "queries": answers[-1]["queries"],
                "count": answers[-1]["count"],
                "statements": [[round(ms, 3), head] for ms, head in zip(each, answers[-1]["heads"], strict=False)],
            }
            cells.append(f"{p50['ms']:.1f} / {p50['sql_ms']:.2f} / {p50['slowest_ms']:.2f} ({answers[-1]['count']})")
        say(f"{page} | " + " | ".join(cells))
    say("ADMIN_WINDOWS_JSON " + json.dumps(summary))
    if explain:
        plans = []
        for page, url in WINDOW_PAGES:
            for i, (_, db) in enumerate(sides):
                sql = found[page, i][-1]["slowest"]
                plan = ask(children[i], {"op": "explain", "sql": sql})["plan"]
                plans.append(f"### {db} | {page}  ({url})\n{sql}\n{plan}\n")
        Path(explain).write_text("\n".join(plans))
    for child in children:
        child.stdin.close()
        child.wait()
    return 0


# A child of --windows-ab, in one checkout with its database: logged in as the superuser, it answers
# each {"op": "get", "url"} with the page's time, its statements' times (measured around each
# execute: Django's captured times are rounded to the millisecond) and the slowest statement.
_WINDOWS_CHILD = """
import json, re, sys, time, django
django.setup()
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.contrib.auth import get_user_model
client = Client(HTTP_HOST="127.0.0.1", secure=True)
client.force_login(get_user_model().objects.get(username="bench-admin"),
                   backend="django.contrib.auth.backends.ModelBackend")
for line in sys.stdin:
    command = json.loads(line)
    if command["op"] == "explain":
        with connection.cursor() as cursor:
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + command["sql"])
            print("AB " + json.dumps({"plan": "\\n".join(row[0] for row in cursor.fetchall())}), flush=True)
        continue
    times = []
    def timed(execute, sql, params, many, context):
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            times.append((time.perf_counter() - started) * 1000)
    with CaptureQueriesContext(connection) as queries, connection.execute_wrapper(timed):
        started = time.perf_counter()
        response = client.get(command["url"])
        elapsed = (time.perf_counter() - started) * 1000
    statements = [q["sql"] for q in queries.captured_queries]
    # The slowest statement that reads rows (the count's planner estimate is an EXPLAIN: only planned).
    slowest = max((i for i in range(len(times)) if not statements[i].startswith("EXPLAIN")), key=times.__getitem__)
    paginator = re.search(r'class="paginator">(.*?)</p>', response.content.decode(), re.S)
    shown = " ".join(re.sub(r"<[^>]+>", " ", paginator.group(1)).split())[-40:] if paginator else "?"
    print("AB " + json.dumps({"status": response.status_code, "ms": elapsed, "sql_ms": sum(times),
                              "slowest_ms": times[slowest], "slowest": statements[slowest],
                              "queries": len(times), "count": shown,
                              "each": times, "heads": [sql[:150] for sql in statements]}), flush=True)
"""


if __name__ == "__main__":
    sys.exit(main())
