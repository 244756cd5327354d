//! What a PostgreSQL schema holds before tms migrates it, and taking over one that the original
//! service created (`docs/switch-over.md`): tms records the original's tables as its own first
//! migration, adds the indexes that migration would have given them, and lets its later
//! migrations run as on any tms schema. Nothing the original has is dropped, retyped or
//! rewritten, so the original could still run against the schema.

use anyhow::Context;
use sqlx::migrate::Migrator;
use sqlx::{Acquire, Executor, PgConnection};

/// The tables of the original's schema (`shared/reference/original-schema.md`).
const ORIGINAL_TABLES: [&str; 8] = [
    "addresses",
    "branding_metadata",
    "contacts",
    "invoices",
    "leads",
    "resources",
    "tenant_mgmt_configs",
    "tenants",
];

/// Tables an original deployment may also have: the history of its migration tool.
const ORIGINAL_EXTRAS: [&str; 1] = ["migrations"];

/// What tms's first migration would have given the original's tables.
const ADOPT: &str = include_str!("../../migrations/original/adopt.sql");

/// Serialises adoptions of one database by several replicas starting at once.
const ADOPT_LOCK: i64 = 0x746d_735f_6164_6f70; // "tms_adop"

/// What a schema holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    Empty,
    /// tms's own (its migration history is there).
    Tms,
    /// The original's tables, as its migrations created them.
    Original,
    /// Something else: these tables.
    Unknown(Vec<String>),
}

/// What the schema on `conn`'s search path holds.
pub async fn inspect(conn: &mut PgConnection) -> Result<Found, sqlx::Error> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables \
         WHERE table_schema = current_schema() ORDER BY 1",
    )
    .fetch_all(&mut *conn)
    .await?;
    if tables.is_empty() {
        return Ok(Found::Empty);
    }
    if tables.iter().any(|t| t == "_sqlx_migrations") {
        return Ok(Found::Tms);
    }
    let all_known = tables
        .iter()
        .all(|t| ORIGINAL_TABLES.contains(&t.as_str()) || ORIGINAL_EXTRAS.contains(&t.as_str()));
    let all_there = ORIGINAL_TABLES
        .iter()
        .all(|t| tables.iter().any(|have| have == t));
    // The original's audit columns are `uuid` (tms's own are text).
    if all_known && all_there && has_uuid_audit(conn).await? {
        Ok(Found::Original)
    } else {
        Ok(Found::Unknown(tables))
    }
}

/// Whether the schema on `conn` has the original's `uuid` audit columns (one it took over).
async fn has_uuid_audit(conn: &mut PgConnection) -> Result<bool, sqlx::Error> {
    let audit_type: Option<String> = sqlx::query_scalar(
        "SELECT data_type::text FROM information_schema.columns WHERE table_schema = \
         current_schema() AND table_name = 'tenants' AND column_name = 'created_by'",
    )
    .fetch_optional(&mut *conn)
    .await?;
    Ok(audit_type.as_deref() == Some("uuid"))
}

/// On a schema taken over from the original, `SYSTEM_USER_ID` must be a UUID: tms's own
/// writes go into the original's `uuid` audit columns.
pub async fn check_system_user(
    conn: &mut PgConnection,
    system_user_id: &str,
) -> anyhow::Result<()> {
    if has_uuid_audit(conn).await? && uuid::Uuid::parse_str(system_user_id).is_err() {
        anyhow::bail!(
            "SYSTEM_USER_ID must be a UUID on a schema taken over from the original (its audit \
             columns are uuid), got {system_user_id:?}"
        );
    }
    Ok(())
}

/// Takes over the original's schema on `conn` (see the module's documentation), in one
/// transaction under an advisory lock: a replica that finds the work done leaves it.
/// `system_user_id` stamps tms's own writes into the original's `uuid` audit columns.
pub async fn adopt(
    conn: &mut PgConnection,
    migrator: &Migrator,
    system_user_id: &str,
) -> anyhow::Result<()> {
    check_system_user(conn, system_user_id).await?;
    let first = migrator
        .iter()
        .find(|m| m.version == 1)
        .context("tms's first migration is missing")?;
    let mut tx = conn.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(ADOPT_LOCK)
        .execute(&mut *tx)
        .await?;
    if inspect(&mut tx).await? != Found::Original {
        return Ok(()); // adopted meanwhile by another replica
    }
    tx.execute(ADOPT)
        .await
        .context("cannot add tms's indexes to the original's tables")?;
    // The history table as sqlx keeps it, with the original's tables as migration 1.
    tx.execute(
        "CREATE TABLE IF NOT EXISTS _sqlx_migrations (version BIGINT PRIMARY KEY, \
         description TEXT NOT NULL, installed_on TIMESTAMPTZ NOT NULL DEFAULT now(), \
         success BOOLEAN NOT NULL, checksum BYTEA NOT NULL, execution_time BIGINT NOT NULL)",
    )
    .await?;
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (1, $1, TRUE, $2, 0)",
    )
    .bind(format!(
        "{} (adopted from the original's schema)",
        first.description
    ))
    .bind(first.checksum.as_ref())
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    tracing::warn!("the original's schema was taken over: tms's tables and indexes added");
    Ok(())
}
