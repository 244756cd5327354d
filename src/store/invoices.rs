//! The statements of billing (`domain::invoices`, `domain::billing`): invoice number counters,
//! the billing period of an issued invoice, overdue invoices, and each billed tenant's terms
//! and position (`tenant_billing`).

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use uuid::Uuid;

use super::crud::WriteError;
use super::{Backend, Conn, Param, RawRow};

/// The next invoice number of `seller`: its counter moves by one in the transaction `conn` is in
/// (created at 1 for a new seller), so a rolled-back invoice gives its number back and two
/// transactions wait for each other instead of sharing a number.
pub async fn next_number(conn: &mut Conn<'_>, seller: &str) -> Result<i64, sqlx::Error> {
    let row = conn
        .raw_fetch_optional(
            "INSERT INTO invoice_counters (seller, last_number) VALUES ($1, 1) \
             ON CONFLICT (seller) DO UPDATE SET last_number = invoice_counters.last_number + 1 \
             RETURNING last_number",
            &[Param::Text(seller)],
            true,
        )
        .await?;
    match row {
        Some(row) => row.int("last_number"),
        None => Err(sqlx::Error::RowNotFound),
    }
}

/// Records that invoice `id` covers billing period `period` of its tenant. A second invoice for
/// the same tenant and period is refused by a unique index ([`WriteError::Conflict`]).
pub async fn set_billing_period(
    conn: &mut Conn<'_>,
    id: Uuid,
    period: i64,
) -> Result<(), WriteError> {
    conn.raw_execute(
        "UPDATE invoices SET billing_period = $2 WHERE id = $1",
        &[Param::Uuid(id), Param::Int(period)],
    )
    .await
    .map(drop)
    .map_err(|err| match &err {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            WriteError::Conflict("invoices_tenant_period_unique".into())
        }
        _ => WriteError::Db(err),
    })
}

/// A pending invoice past its due date that has not been announced yet.
#[derive(Debug, Clone, PartialEq)]
pub struct Overdue {
    pub id: Uuid,
    pub tenant_id: Uuid,
}

/// Pending invoices due before `$1`, not announced yet, oldest due first (at most `$2`).
pub const NEWLY_OVERDUE: &str = "SELECT id, tenant_id FROM invoices \
     WHERE status = 0 AND overdue_at IS NULL AND NOT deleted AND due_date < $1 \
     ORDER BY due_date LIMIT $2";

/// Up to `limit` pending invoices due before `now` and not yet announced, oldest due first.
pub async fn newly_overdue(
    conn: &mut Conn<'_>,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<Overdue>, sqlx::Error> {
    conn.raw_fetch(
        NEWLY_OVERDUE,
        &[Param::Instant(now), Param::Int(limit)],
        false,
    )
    .await?
    .iter()
    .map(|row| {
        Ok(Overdue {
            id: row.uuid("id")?,
            tenant_id: row.uuid("tenant_id")?,
        })
    })
    .collect()
}

/// Marks invoice `id` announced as overdue at `now`, if it still is pending and unannounced.
/// Returns whether this call marked it: of several replicas, exactly one does.
pub async fn mark_overdue(
    conn: &mut Conn<'_>,
    id: Uuid,
    now: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    let marked = conn
        .raw_execute(
            "UPDATE invoices SET overdue_at = $2 \
             WHERE id = $1 AND status = 0 AND overdue_at IS NULL AND NOT deleted",
            &[Param::Uuid(id), Param::Instant(now)],
        )
        .await?;
    Ok(marked == 1)
}

/// Up to `limit` ACTIVE tenants with a pending invoice due before `before`, each with the number
/// of its invoice that fell due first.
pub async fn tenants_overdue_since(
    conn: &mut Conn<'_>,
    before: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<(Uuid, Option<String>)>, sqlx::Error> {
    conn.raw_fetch(
        "SELECT tenant_id, invoice_number FROM ( \
           SELECT i.tenant_id, i.invoice_number, ROW_NUMBER() OVER ( \
             PARTITION BY i.tenant_id ORDER BY i.due_date, i.id) AS nth \
           FROM invoices i JOIN tenants t ON t.id = i.tenant_id \
           WHERE i.status = 0 AND NOT i.deleted AND i.due_date < $1 \
             AND t.status = 0 AND NOT t.deleted) oldest \
         WHERE nth = 1 ORDER BY tenant_id LIMIT $2",
        &[Param::Instant(before), Param::Int(limit)],
        false,
    )
    .await?
    .iter()
    .map(|row| Ok((row.uuid("tenant_id")?, row.text("invoice_number")?)))
    .collect()
}

/// A billed tenant: its frozen terms and where its billing stands.
#[derive(Debug, Clone, PartialEq)]
pub struct Account {
    pub tenant_id: Uuid,
    pub price: Decimal,
    pub currency_code: String,
    pub cycle_count: i64,
    pub cycle_unit: String,
    pub anchor_at: DateTime<Utc>,
    pub next_period: i64,
    pub next_period_start: DateTime<Utc>,
    pub paused_at: Option<DateTime<Utc>>,
}

impl Account {
    fn from_row(row: &RawRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            tenant_id: row.uuid("tenant_id")?,
            price: row.money("price")?,
            currency_code: row.text("currency_code")?.unwrap_or_default(),
            cycle_count: row.int("cycle_count")?,
            cycle_unit: row.text("cycle_unit")?.unwrap_or_default(),
            anchor_at: row.required_instant("anchor_at")?,
            next_period: row.int("next_period")?,
            next_period_start: row.required_instant("next_period_start")?,
            paused_at: row.instant("paused_at")?,
        })
    }
}

/// Opens the account of a tenant unless it has one (its terms stay those of its first
/// activation). Returns whether it was opened now.
pub async fn open_account(conn: &mut Conn<'_>, account: &Account) -> Result<bool, sqlx::Error> {
    let now = conn.now();
    let opened = conn
        .raw_execute(
            "INSERT INTO tenant_billing (tenant_id, price, currency_code, cycle_count, \
             cycle_unit, anchor_at, next_period, next_period_start, paused_at, modified_on) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (tenant_id) DO NOTHING",
            &[
                Param::Uuid(account.tenant_id),
                Param::Money(account.price),
                Param::Text(&account.currency_code),
                Param::Int(account.cycle_count),
                Param::Text(&account.cycle_unit),
                Param::Instant(account.anchor_at),
                Param::Int(account.next_period),
                Param::Instant(account.next_period_start),
                Param::OptInstant(account.paused_at),
                Param::Instant(now),
            ],
        )
        .await?;
    Ok(opened == 1)
}

/// The account of `tenant`, locked until the transaction `conn` is in ends (PostgreSQL
/// `FOR UPDATE`; an SQLite write transaction holds the database already).
pub async fn lock_account(
    conn: &mut Conn<'_>,
    tenant: Uuid,
) -> Result<Option<Account>, sqlx::Error> {
    let sql = match conn.backend() {
        Backend::Postgres => "SELECT * FROM tenant_billing WHERE tenant_id = $1 FOR UPDATE",
        Backend::Sqlite => "SELECT * FROM tenant_billing WHERE tenant_id = $1",
    };
    conn.raw_fetch_optional(sql, &[Param::Uuid(tenant)], false)
        .await?
        .as_ref()
        .map(Account::from_row)
        .transpose()
}

/// Moves the account of `tenant` to period `next` starting at `start`, pausing it at `paused_at`
/// (or resuming it with `None`).
pub async fn set_position(
    conn: &mut Conn<'_>,
    tenant: Uuid,
    next: i64,
    start: DateTime<Utc>,
    paused_at: Option<DateTime<Utc>>,
) -> Result<(), sqlx::Error> {
    let now = conn.now();
    conn.raw_execute(
        "UPDATE tenant_billing SET next_period = $2, next_period_start = $3, paused_at = $4, \
         modified_on = $5 WHERE tenant_id = $1",
        &[
            Param::Uuid(tenant),
            Param::Int(next),
            Param::Instant(start),
            Param::OptInstant(paused_at),
            Param::Instant(now),
        ],
    )
    .await
    .map(drop)
}

/// Accounts not paused whose next period starts at or before `$1`, earliest first (at most `$2`).
pub const DUE_ACCOUNTS: &str = "SELECT tenant_id FROM tenant_billing \
     WHERE paused_at IS NULL AND next_period_start <= $1 \
     ORDER BY next_period_start LIMIT $2";

/// Up to `limit` tenants whose next period starts at or before `now` and whose billing is not
/// paused, earliest first.
pub async fn due_accounts(
    conn: &mut Conn<'_>,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<Uuid>, sqlx::Error> {
    conn.raw_fetch(
        DUE_ACCOUNTS,
        &[Param::Instant(now), Param::Int(limit)],
        false,
    )
    .await?
    .iter()
    .map(|row| row.uuid("tenant_id"))
    .collect()
}
