"""What is sent: stored events, identify links and the export ledger.

Each stored row is its own outbox entry, written once by the INSERT that stores it: `export_state`
says whether BigQuery is owed the row (PENDING) or not (SKIPPED, no analytics consent), and
`webhook_pending` whether webhook messages still have to be created for it. The export never
rewrites a row on its way to BigQuery: which owed rows are exported, being sent or owed again is
kept in the narrow ledger tables below (see ingest/services/export.py). Only a row BigQuery rejects
is written again, to DEAD with the reason, so the admin can filter, show and retry it.
"""

import uuid

from django.contrib.postgres.fields import ArrayField
from django.contrib.postgres.indexes import BrinIndex
from django.db import models
from django.utils import timezone

from apps_registry.models import Application, Company


class ExportState(models.IntegerChoices):
    """A row's export state. A row stores PENDING, SKIPPED or DEAD; EXPORTED and SENDING are read from the ledger.

    Rows stored before the ledger may still hold EXPORTED or SENDING (migration 0009 keeps their meaning).
    """

    PENDING = 0, "pending"
    EXPORTED = 1, "exported"
    DEAD = 2, "dead letter"
    SKIPPED = 3, "not exported (no analytics consent)"
    SENDING = 4, "sending"


class OutboxRow(models.Model):
    # The hot path pays for every index and constraint on these rows. No single-column FK indexes:
    # each table leads a composite index or unique constraint with these columns. No database FK
    # constraints: the ids come from authenticated credentials, every insert would otherwise
    # share-lock the same company and application rows (measured: ~15 % of single-event
    # throughput), and deletes still cascade through Django's `on_delete`.
    company = models.ForeignKey(
        Company, on_delete=models.CASCADE, related_name="+", db_index=False, db_constraint=False
    )
    application = models.ForeignKey(
        Application, on_delete=models.CASCADE, related_name="+", db_index=False, db_constraint=False
    )
    received_at = models.DateTimeField(default=timezone.now)
    export_state = models.SmallIntegerField(choices=ExportState.choices, default=ExportState.PENDING)
    export_attempts = models.PositiveSmallIntegerField(default=0)
    export_error = models.TextField(blank=True, default="")
    webhook_pending = models.BooleanField(default=False)

    class Meta:
        abstract = True


class Event(OutboxRow):
    """One `/v1/events` event: organization-scoped, from a customer's backend."""

    id = models.BigAutoField(primary_key=True)
    # Unique within each partition (a unique index per partition, see ingest/partitions.py); minted
    # here as a UUIDv7, so one time-ordered id cannot be minted twice.
    event_id = models.UUIDField(default=uuid.uuid4, editable=False)
    event = models.CharField(max_length=255)
    user_hash = models.CharField(max_length=64)
    customer_org_id = models.CharField(max_length=255)
    path = models.CharField(max_length=2048, null=True, blank=True)
    session_id = models.UUIDField()
    session_inferred = models.BooleanField(default=False)
    plan = models.CharField(max_length=255, null=True, blank=True)
    environment = models.CharField(max_length=32, null=True, blank=True)
    occurred_at = models.DateTimeField()
    properties = models.JSONField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["id"], condition=models.Q(webhook_pending=True), name="event_webhook_pending"),
            models.Index(fields=["company", "received_at"], name="event_company_received"),
            # Covering: the analytics Event explorer counts events and users per bucket and event
            # from this index alone (index-only scan), never the wide heap rows.
            models.Index(
                fields=["application", "occurred_at"], include=["event", "user_hash"], name="event_app_occurred_cover"
            ),
            # The analytics Event stream: a page is a range scan of this index, newest first.
            models.Index(fields=["application", "received_at", "id"], name="event_app_received"),
            # The admin's search by org id, newest first (see ingest/admin.py).
            models.Index(fields=["customer_org_id", "id"], name="event_org_id"),
            # Partial: dead rows are rare, so this costs the insert path nothing.
            models.Index(fields=["id"], condition=models.Q(export_state=2), name="event_export_dead"),
            # The admin's "received within" filter (see apps_registry/admin_lists.py): rows arrive in
            # time order, so a BRIN index (a few pages, nearly free on insert) bounds any window.
            BrinIndex(fields=["received_at"], autosummarize=True, name="event_received_brin"),
        ]

    def __str__(self) -> str:
        return f"{self.event} {self.event_id}"


class SdkEvent(OutboxRow):
    """One event of an SDK batch (envelope version 1). Idempotent per app by `event_id` (`SdkEventKey`)."""

    id = models.BigAutoField(primary_key=True)
    event_id = models.UUIDField()
    schema_version = models.PositiveSmallIntegerField(default=1)
    event_name = models.CharField(max_length=255)
    ts_ms = models.BigIntegerField()
    occurred_at = models.DateTimeField()
    anon_id = models.UUIDField()
    user_id = models.CharField(max_length=255, null=True, blank=True)
    platform = models.CharField(max_length=16)
    os = models.CharField(max_length=64)
    app_version = models.CharField(max_length=64)
    sdk_version = models.CharField(max_length=64)
    locale = models.CharField(max_length=35)
    bundle_version = models.FloatField()
    country = models.CharField(max_length=2)
    session_id = models.UUIDField()
    properties = models.JSONField(null=True, blank=True)
    consent_analytics = models.BooleanField()

    class Meta:
        verbose_name = "SDK event"
        indexes = [
            models.Index(fields=["id"], condition=models.Q(webhook_pending=True), name="sdkevent_webhook_pending"),
            models.Index(fields=["company", "received_at"], name="sdkevent_company_received"),
            # The analytics Event stream and explorer read consented events only: partial indexes.
            models.Index(
                fields=["application", "received_at", "id"],
                condition=models.Q(consent_analytics=True),
                name="sdkevent_app_received",
            ),
            models.Index(
                fields=["application", "occurred_at"],
                condition=models.Q(consent_analytics=True),
                name="sdkevent_app_occurred",
            ),
            # Partial: dead rows are rare, so this costs the insert path nothing.
            models.Index(fields=["id"], condition=models.Q(export_state=2), name="sdkevent_export_dead"),
            # The admin's filter on rows without analytics consent, which are rare or absent in most apps.
            models.Index(fields=["id"], condition=models.Q(export_state=3), name="sdkevent_export_skipped"),
            BrinIndex(fields=["received_at"], autosummarize=True, name="sdkevent_received_brin"),
        ]

    def __str__(self) -> str:
        return f"{self.event_name} {self.event_id}"


class IdentifyLink(OutboxRow):
    """An anonymous device linked to a known user. History is kept; a repeat adds nothing (`IdentifyKey`)."""

    id = models.BigAutoField(primary_key=True)
    link_id = models.UUIDField(default=uuid.uuid4, editable=False)  # unique within each partition
    anon_id = models.UUIDField()
    user_id = models.CharField(max_length=255)
    last_seen_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [
            models.Index(fields=["id"], condition=models.Q(webhook_pending=True), name="identify_webhook_pending"),
            # Partial: dead rows are rare, so this costs the insert path nothing.
            models.Index(fields=["id"], condition=models.Q(export_state=2), name="identify_export_dead"),
            models.Index(fields=["company", "received_at"], name="identify_company_received"),
            # The admin's search by user id, newest first (see ingest/admin.py).
            models.Index(fields=["user_id", "id"], name="identify_user_id"),
            BrinIndex(fields=["received_at"], autosummarize=True, name="identify_received_brin"),
        ]

    def __str__(self) -> str:
        return f"{self.anon_id} → {self.user_id}"


class SdkEventKey(models.Model):
    """An SDK event id already stored for an app: what makes a client's retry store nothing.

    The raw tables are partitioned by id (ingest/partitions.py), and PostgreSQL only enforces a
    unique index across partitions when it includes the partition key, which an SDK's retry does
    not share. So the ids live here, in one narrow table whose primary key is the unique
    constraint, written in the same statement as the events (ingest/services/sdk_events.py). Kept
    for at least `SDK_DEDUP_DAYS` and as long as the company keeps events (ingest/services/retention.py).
    """

    pk = models.CompositePrimaryKey("application_id", "event_id")
    application = models.ForeignKey(
        Application, on_delete=models.CASCADE, related_name="+", db_index=False, db_constraint=False
    )
    event_id = models.UUIDField()
    received_at = models.DateTimeField()
    row_id = models.BigIntegerField()  # the SdkEvent's id: the admin's search by event id reads it

    class Meta:
        verbose_name = "SDK event key"
        indexes = [BrinIndex(fields=["received_at"], autosummarize=True, name="sdkeventkey_received_brin")]

    def __str__(self) -> str:
        return str(self.event_id)


class IdentifyKey(models.Model):
    """A link (app, anonymous id, user id) already stored: a repeat moves its row's `last_seen_at` only.

    The same reason as `SdkEventKey`; kept exactly as long as its link row (`row_id`).
    """

    pk = models.CompositePrimaryKey("application_id", "anon_id", "user_id")
    application = models.ForeignKey(
        Application, on_delete=models.CASCADE, related_name="+", db_index=False, db_constraint=False
    )
    anon_id = models.UUIDField()
    user_id = models.CharField(max_length=255)
    row_id = models.BigIntegerField(db_index=True)  # the IdentifyLink's id: retention deletes both

    def __str__(self) -> str:
        return f"{self.anon_id} → {self.user_id}"


class RawPartition(models.Model):
    """One partition of a raw table (a block of ids, see ingest/partitions.py) and the time it took rows.

    `opened_at` is unknown (null) for the partition that holds the rows stored before partitioning.
    """

    table = models.CharField(max_length=63)
    number = models.PositiveIntegerField()
    opened_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["table", "number"], name="rawpartition_table_number_uniq")]

    def __str__(self) -> str:
        return f"{self.table}_p{self.number}"


class IdempotencyKey(models.Model):
    """An `Idempotency-Key` seen on /v1/events, with the event it produced (kept 24 h)."""

    application = models.ForeignKey(Application, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    event_id = models.UUIDField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["application", "key"], name="idempotency_app_key_uniq")]
        indexes = [models.Index(fields=["created_at"], name="idempotency_created")]

    def __str__(self) -> str:
        return self.key


class ExportTable(models.TextChoices):
    EVENTS = "events"
    SDK_EVENTS = "sdk_events"
    IDENTIFY = "identify_links"


class ExportCursor(models.Model):
    """How far one table's rows have been claimed, and the horizon that says how far they may be.

    Every owed row with `id <= claimed_upto` is in a batch, owed again (`ExportRetry`), dead, or
    exported; rows above it are pending. `horizon_id` is the table's id sequence read at the last
    claim and `horizon_holders` the transactions then able to write the table: once none of them is
    running, no row with an id up to `horizon_id` can still appear, so the claim may pass it
    (`safe_upto`; see ingest/services/export.py).
    """

    table = models.CharField(max_length=32, choices=ExportTable.choices, primary_key=True)
    claimed_upto = models.BigIntegerField(default=0)
    safe_upto = models.BigIntegerField(default=0)  # no row with an id up to this can still commit
    horizon_id = models.BigIntegerField(default=0)
    horizon_holders = ArrayField(models.TextField(), default=list, blank=True)

    def __str__(self) -> str:
        return f"{self.table} claimed up to {self.claimed_upto}"


class ExportRetry(models.Model):
    """Rows below the cursor that BigQuery is owed again: put back after a failed call, or retried dead letters."""

    table = models.CharField(max_length=32, choices=ExportTable.choices)
    ids = ArrayField(models.BigIntegerField())
    attempts = models.PositiveSmallIntegerField(default=0)  # claims of these rows so far
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name_plural = "export retries"

    def __str__(self) -> str:
        return f"{self.table}: {len(self.ids)} rows owed again"


class ExportBatch(models.Model):
    """A chunk of rows claimed for one BigQuery insert call.

    The claim is committed before the call, so a worker that dies mid-call leaves a batch
    whose lease runs out; recovery asks BigQuery which of its rows landed instead of guessing.
    """

    Table = ExportTable

    id = models.UUIDField(primary_key=True, default=uuid.uuid4)
    table = models.CharField(max_length=32, choices=Table.choices)
    ids = ArrayField(models.BigIntegerField(), default=list, blank=True)  # the rows in it not settled yet
    attempts = models.PositiveSmallIntegerField(default=1)  # claims of its rows so far (the most of any)
    row_count = models.PositiveIntegerField(default=0)
    claimed_at = models.DateTimeField(default=timezone.now)
    lease_until = models.DateTimeField()

    class Meta:
        verbose_name_plural = "export batches"

    def __str__(self) -> str:
        return f"{self.table} batch {self.id}"


class WriteProbe(models.Model):
    """The row the health and readiness checks rewrite: proof that PostgreSQL accepts and commits a write.

    `SELECT 1` answers on a read-only database or a full disk too; a committed update does not.
    One row per web process host would be needless: every check rewrites the same row (`id` 1).
    """

    id = models.PositiveSmallIntegerField(primary_key=True)
    checked_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"write probe {self.id} at {self.checked_at:%Y-%m-%d %H:%M:%S}"
