"""The system of record's tables (SQLAlchemy Core), shared by PostgreSQL and embedded SQLite.

Alembic migrations (workers/store/migrations) create them; this module is what the code reads
and writes through, and what `alembic check` compares the migrations against."""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

metadata = MetaData()

# Zoho id -> Xero id per connection and kind. A row with a value is a link; a row with only a
# pending key is a create that has been let out (workers/batching/fence.py `Flush.sending`) and
# has no answer yet. The unique constraints are what make a second create impossible: a second
# claim of (connection, kind, zoho_id) is refused by the database, and so is a second Zoho
# record owning the same Xero document (a converted quote shares its invoice: `shares_with`).
links = Table(
    "links",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("connection", String(200), nullable=False),
    Column("kind", String(64), nullable=False),
    Column("zoho_id", String(200), nullable=False),
    Column("xero_id", String(64), nullable=True),
    Column("shares_with", String(200), nullable=True),
    Column("value", Text, nullable=True),
    Column("pending_key", String(200), nullable=True),
    Column("pending_at", Float, nullable=True),
    Column("updated_at", Float, nullable=False),
    UniqueConstraint("connection", "kind", "zoho_id", name="uq_links_zoho"),
)
Index(
    "uq_links_xero",
    links.c.connection,
    links.c.kind,
    links.c.xero_id,
    unique=True,
    sqlite_where=text("xero_id IS NOT NULL"),
    postgresql_where=text("xero_id IS NOT NULL"),
)

# every stage a record went through (append-only; only retention deletes)
history = Table(
    "history",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("connection", String(200), nullable=False),
    Column("record_key", String(400), nullable=False, index=True),
    Column("at", String(40), nullable=False, index=True),
    Column("stage", String(200), nullable=False),
    Column("event", String(200), nullable=False),
    Column("detail", Text, nullable=False),
)

# the latest outcome of every record (what the accountant's export reads)
outcomes = Table(
    "outcomes",
    metadata,
    Column("connection", String(200), primary_key=True),
    Column("record_key", String(400), primary_key=True),
    Column("outcome", String(32), nullable=False),
    Column("detail", Text, nullable=False),
    Column("at", String(40), nullable=False, index=True),
)

dead_letters = Table(
    "dead_letters",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("status", String(16), nullable=False, index=True),  # open, replayed, discarded
    Column("status_by", String(200), nullable=False, server_default=""),
    Column("status_at", String(40), nullable=False, server_default=""),
    Column("stage", String(200), nullable=False),
    Column("connection", String(200), nullable=False, index=True),
    Column("module", String(64), nullable=False),
    Column("record_id", String(200), nullable=False),
    Column("error_kind", String(64), nullable=False),
    Column("error", Text, nullable=False),
    Column("hint", Text, nullable=False),
    Column("field", String(200), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("payload", Text, nullable=False),
    Column("traceback", Text, nullable=False),
    Column("failed_at", String(40), nullable=False),
    Column("legacy_id", String(64), nullable=True, unique=True),  # its Redis stream id, migrated
)

# each exception-report channel's last delivery attempt of a letter (Saleor's webhook
# deliveries as data): a retry re-sends only the channels that failed
alert_deliveries = Table(
    "alert_deliveries",
    metadata,
    Column("letter_id", Integer, primary_key=True),
    Column("channel", String(32), primary_key=True),
    Column("ok", Boolean, nullable=False),
    Column("at", String(40), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("error", Text, nullable=False),
)

audit = Table(
    "audit",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", String(40), nullable=False, index=True),
    Column("user", String(200), nullable=False),
    Column("action", String(200), nullable=False),
    Column("target", String(400), nullable=False, index=True),
    Column("detail", Text, nullable=False),
)

# connections as data: settings validated against schemas.connection.Connection; the secret
# fields (refresh tokens) are Fernet-encrypted with ZXS_TOKEN_KEY
connections = Table(
    "connections",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("settings", Text, nullable=False),
    Column("secrets", Text, nullable=False),
    Column("updated_at", Float, nullable=False),
)
