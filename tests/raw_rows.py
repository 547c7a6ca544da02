"""Rows written in SQL, as an older schema holds them: the upgrade tests insert them before migrating."""

# Five `/v1/events` rows of (company, application), pending export, named "old".
OLD_EVENTS_SQL = (
    "INSERT INTO ingest_event (company_id, application_id, received_at, export_state, export_attempts,"
    " export_error, webhook_pending, event_id, event, user_hash, customer_org_id, session_id,"
    " session_inferred, occurred_at) SELECT %s, %s, now(), 0, 0, '', false, gen_random_uuid(), 'old',"
    " 'u' || n, 'o', gen_random_uuid(), false, now() FROM generate_series(1, 5) n"
)
