"""Versioned schema migrations, applied in order at start.

Portable SQL only (SQLite and PostgreSQL both take it); the one backend-specific bit, the
auto-increment key, is spelled by the backend through ``{serial}``. Append, never edit: a
released migration is history.
"""

from __future__ import annotations

MIGRATIONS: tuple[str, ...] = (
    # 1: the first schema
    """
    CREATE TABLE tenants (
        id TEXT PRIMARY KEY,
        key_id TEXT NOT NULL,
        wrapped_key BLOB NOT NULL,
        status TEXT NOT NULL DEFAULT 'active',
        status_reason TEXT,
        created_at BIGINT NOT NULL
    );
    CREATE TABLE connections (
        id TEXT PRIMARY KEY,
        tenant TEXT NOT NULL REFERENCES tenants(id),
        plugin TEXT NOT NULL,
        settings BLOB NOT NULL,
        status TEXT NOT NULL DEFAULT 'active',
        status_reason TEXT,
        created_at BIGINT NOT NULL
    );
    CREATE INDEX connections_tenant ON connections (tenant);
    CREATE TABLE sinks (
        tenant TEXT NOT NULL REFERENCES tenants(id),
        plugin TEXT NOT NULL,
        settings BLOB NOT NULL,
        created_at BIGINT NOT NULL,
        PRIMARY KEY (tenant, plugin)
    );
    CREATE TABLE events (
        seq {serial},
        tenant TEXT NOT NULL,
        connection TEXT NOT NULL,
        dedup_key TEXT NOT NULL UNIQUE,
        call_key TEXT NOT NULL,
        payload BLOB NOT NULL,
        received_at BIGINT NOT NULL
    );
    CREATE INDEX events_received ON events (received_at);
    CREATE INDEX events_tenant ON events (tenant);
    CREATE TABLE deliveries (
        id {serial},
        event_seq BIGINT NOT NULL,
        tenant TEXT NOT NULL,
        sink TEXT NOT NULL,
        call_key TEXT NOT NULL,
        state TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_at BIGINT NOT NULL,
        last_error TEXT,
        received_at BIGINT NOT NULL,
        since BIGINT NOT NULL,
        updated_at BIGINT NOT NULL,
        UNIQUE (event_seq, sink)
    );
    CREATE INDEX deliveries_state ON deliveries (state, id);
    CREATE INDEX deliveries_tenant ON deliveries (tenant);
    CREATE TABLE telephony_users (
        connection TEXT NOT NULL,
        user_id_key TEXT NOT NULL,
        tenant TEXT NOT NULL,
        data BLOB NOT NULL,
        email_key TEXT,
        extension_key TEXT,
        status TEXT NOT NULL DEFAULT 'active',
        updated_at BIGINT NOT NULL,
        PRIMARY KEY (connection, user_id_key)
    );
    CREATE INDEX telephony_users_email ON telephony_users (tenant, email_key);
    CREATE INDEX telephony_users_extension ON telephony_users (tenant, extension_key);
    CREATE TABLE records (
        tenant TEXT NOT NULL,
        plugin TEXT NOT NULL,
        kind TEXT NOT NULL,
        record_key TEXT NOT NULL,
        data BLOB NOT NULL,
        index_key TEXT,
        call_record INTEGER NOT NULL DEFAULT 0,
        created_at BIGINT NOT NULL,
        PRIMARY KEY (tenant, plugin, kind, record_key)
    );
    CREATE INDEX records_index ON records (tenant, plugin, kind, index_key);
    CREATE INDEX records_created ON records (call_record, created_at);
    CREATE TABLE leases (
        name TEXT PRIMARY KEY,
        holder TEXT NOT NULL,
        expires_at BIGINT NOT NULL
    );
    """,
    # 2: privacy: blind indexes on events for data-subject requests, restrictions, audit log
    """
    ALTER TABLE tenants ADD COLUMN audit_ref TEXT;
    ALTER TABLE events ADD COLUMN remote_key TEXT;
    ALTER TABLE events ADD COLUMN local_key TEXT;
    ALTER TABLE events ADD COLUMN user_key TEXT;
    ALTER TABLE events ADD COLUMN restricted INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX events_remote ON events (tenant, remote_key);
    CREATE TABLE restrictions (
        tenant TEXT NOT NULL,
        subject_key TEXT NOT NULL,
        match_key TEXT NOT NULL,
        kind TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        PRIMARY KEY (tenant, subject_key, match_key)
    );
    CREATE INDEX restrictions_match ON restrictions (match_key);
    CREATE TABLE audit_log (
        seq BIGINT PRIMARY KEY,
        at BIGINT NOT NULL,
        action TEXT NOT NULL,
        tenant_ref TEXT,
        details TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL
    );
    """,
    # 3: the dispatcher pages each (tenant, sink)'s pending deliveries in from the store
    """
    CREATE INDEX deliveries_group ON deliveries (tenant, sink, state, id);
    """,
    # 4: plugin records found by phone number (data-subject rights), click-to-call correlation
    """
    CREATE TABLE record_phones (
        tenant TEXT NOT NULL,
        plugin TEXT NOT NULL,
        kind TEXT NOT NULL,
        record_key TEXT NOT NULL,
        phone_key TEXT NOT NULL,
        PRIMARY KEY (tenant, plugin, kind, record_key, phone_key)
    );
    CREATE INDEX record_phones_phone ON record_phones (tenant, phone_key);
    CREATE TABLE clicktocall (
        tenant TEXT NOT NULL,
        call_key TEXT NOT NULL,
        sink TEXT NOT NULL,
        data BLOB NOT NULL,
        provider_call BLOB,
        provider_key TEXT,
        match_key TEXT NOT NULL,
        phone_key TEXT,
        state TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL,
        PRIMARY KEY (tenant, call_key)
    );
    CREATE INDEX clicktocall_provider ON clicktocall (tenant, provider_key);
    CREATE INDEX clicktocall_match ON clicktocall (tenant, match_key, created_at);
    CREATE INDEX clicktocall_phone ON clicktocall (tenant, phone_key);
    CREATE INDEX clicktocall_created ON clicktocall (created_at);
    CREATE INDEX clicktocall_updated ON clicktocall (state, updated_at);
    """,
    # 5: when each connection last received a webhook (written in batches, the latest wins)
    """
    ALTER TABLE connections ADD COLUMN last_webhook_at BIGINT;
    """,
    # 6: the journal: webhooks acknowledged before they are interpreted (sealed payloads)
    """
    CREATE TABLE journal (
        id {serial},
        tenant TEXT NOT NULL,
        connection TEXT NOT NULL,
        row_key TEXT NOT NULL,
        payload BLOB NOT NULL,
        received_at BIGINT NOT NULL
    );
    CREATE INDEX journal_tenant ON journal (tenant);
    CREATE INDEX journal_received ON journal (received_at);
    """,
    # 7: the audit chain's head kept a second time, written with every append: entries cut off
    # the end of the chain are found by comparing (``gateway audit verify``)
    """
    CREATE TABLE audit_anchor (
        id INTEGER PRIMARY KEY,
        seq BIGINT NOT NULL,
        hash TEXT NOT NULL
    );
    INSERT INTO audit_anchor (id, seq, hash) SELECT 1, seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1;
    """,
)

SCHEMA_VERSION = len(MIGRATIONS)
