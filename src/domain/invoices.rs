//! Invoices (`docs/billing.md`): money checked against the currency, numbers from a counter
//! per seller, the lifecycle PENDING → PAID | CANCELLED enforced on every write, the
//! `INVOICE_ISSUED` and `INVOICE_PAID` events, and the PDF document.
//!
//! Every write is one transaction: the rows it changes are read locked, checked, written, and
//! their events queued, or nothing happens.

use rust_decimal::Decimal;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::events::{EventType, write_event};
use super::money::{Currency, MoneyError};
use super::tenant::tenant_with_relations;
use super::validation::{ValidationDetail, missing_property};
use crate::config::BillingConfig;
use crate::model::{INVOICE_STATUS, INVOICES};
use crate::pdf::{InvoiceDocument, InvoiceLine, PdfError};
use crate::store::crud::{self, Actor, Scope, Target, WriteError};
use crate::store::filter::{Op, Where};
use crate::store::invoices as store;
use crate::store::values::{parse_money, parse_timestamp};
use crate::store::{Conn, Db, Object, Tx};

/// An invoice's state; the number is its wire value (`status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvoiceStatus {
    Pending = 0,
    Paid = 1,
    Cancelled = 2,
}

impl InvoiceStatus {
    pub fn from_code(code: i64) -> Option<Self> {
        [Self::Pending, Self::Paid, Self::Cancelled]
            .into_iter()
            .find(|s| *s as i64 == code)
    }

    pub fn name(self) -> &'static str {
        INVOICE_STATUS[self as usize]
    }

    /// PAID and CANCELLED invoices never change again.
    pub fn is_final(self) -> bool {
        self != Self::Pending
    }
}

/// Why an invoice write was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum InvoiceError {
    #[error("the invoice is invalid")]
    Invalid(Vec<ValidationDetail>),
    /// A PAID or CANCELLED invoice asked to change (409).
    #[error("{0}")]
    Final(String),
    #[error("EntityNotFound")]
    NotFound,
    #[error(transparent)]
    Write(WriteError),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Pdf(#[from] PdfError),
}

impl From<WriteError> for InvoiceError {
    fn from(err: WriteError) -> Self {
        match err {
            WriteError::Db(err) => Self::Database(err),
            other => Self::Write(other),
        }
    }
}

fn money_problem(path: &str, err: &MoneyError) -> ValidationDetail {
    match err {
        MoneyError::Negative => {
            ValidationDetail::new(path, "minimum", "must not be negative", json!({"limit": 0}))
        }
        MoneyError::TooLarge => ValidationDetail::new(
            path,
            "maximum",
            "is too large once rounded to the currency's minor units",
            json!({"limit": "99999999999.9999"}),
        ),
        other => ValidationDetail::new(
            path,
            "enum",
            format!("{other}: use an ISO 4217 currency code such as USD, EUR or JPY"),
            Value::Null,
        ),
    }
}

/// `currencyCode` of validated `values`, if given.
fn given_currency(values: &Object) -> Result<Option<Currency>, ValidationDetail> {
    match values.get("currencyCode").and_then(Value::as_str) {
        Some(code) => Currency::parse(code)
            .map(Some)
            .map_err(|err| money_problem("/currencyCode", &err)),
        None => Ok(None),
    }
}

/// Rounds `values["amount"]` (if given) to `currency`, refusing a negative amount.
fn round_amount(values: &mut Object, currency: Currency) -> Result<(), ValidationDetail> {
    let Some(amount) = values.get("amount") else {
        return Ok(());
    };
    let amount = parse_money(amount).map_err(|message| {
        ValidationDetail::new("/amount", "type", message, json!({"type": "number"}))
    })?;
    let rounded = currency
        .amount(amount)
        .map_err(|err| money_problem("/amount", &err))?;
    values.insert(
        "amount".into(),
        crate::store::values::money_to_json(rounded),
    );
    Ok(())
}

/// Checks and normalises the money of a new invoice (validated `values`): the currency code is
/// ISO 4217 (stored in upper case) and the amount is rounded to it and not negative.
fn normalise_new(values: &mut Object) -> Result<(), InvoiceError> {
    let currency = given_currency(values)
        .map_err(|d| InvoiceError::Invalid(vec![d]))?
        .ok_or_else(|| InvoiceError::Invalid(vec![missing_property("", "currencyCode")]))?;
    values.insert("currencyCode".into(), json!(currency.code()));
    round_amount(values, currency).map_err(|d| InvoiceError::Invalid(vec![d]))
}

/// The invoice number `n` of a seller: the prefix and at least six digits.
pub fn format_number(prefix: &str, n: i64) -> String {
    format!("{prefix}{n:06}")
}

/// `POST /invoices` (validated `values`): money checked and normalised, then [`issue`]d in a
/// transaction of its own. Returns the stored row.
pub async fn create(
    db: &Db,
    config: &BillingConfig,
    mut values: Object,
    actor: &Actor,
) -> Result<Object, InvoiceError> {
    normalise_new(&mut values)?;
    let mut tx = db.begin().await?;
    let row = issue(&mut tx, config, values, None, actor).await?;
    tx.commit().await?;
    Ok(row)
}

/// Writes a new invoice from `values` (validated and normalised) in `tx`, with the seller's
/// next number, recording `period` as the billing period it covers (a billing run's invoice),
/// and queues `INVOICE_ISSUED`. Returns the stored row.
pub async fn issue(
    tx: &mut Tx,
    config: &BillingConfig,
    mut values: Object,
    period: Option<i64>,
    actor: &Actor,
) -> Result<Object, InvoiceError> {
    let n = store::next_number(&mut tx.conn(), &config.seller_name).await?;
    values.insert("seller".into(), json!(config.seller_name));
    values.insert(
        "invoiceNumber".into(),
        json!(format_number(&config.invoice_prefix, n)),
    );
    let id = Uuid::new_v4();
    let row = crud::create_with_id(&mut tx.conn(), &INVOICES, id, &values, actor).await?;
    if let Some(period) = period {
        store::set_billing_period(&mut tx.conn(), id, period).await?;
    }
    announce(tx, EventType::InvoiceIssued, &row).await?;
    Ok(row)
}

/// Queues event `kind` about invoice `row`, with its tenant, in the tenant's partition. An
/// invoice of a deleted tenant is not announced: there is no tenant to tell about it.
pub async fn announce(tx: &mut Tx, kind: EventType, row: &Object) -> Result<(), InvoiceError> {
    let tenant_id = row
        .get("tenantId")
        .and_then(Value::as_str)
        .and_then(|t| Uuid::parse_str(t).ok());
    let tenant = match tenant_id {
        Some(id) => tenant_with_relations(&mut tx.conn(), id, Scope::All).await?,
        None => None,
    };
    let Some(tenant) = tenant else {
        tracing::info!(invoice = ?row.get("id"), kind = kind.as_str(),
            "the invoice's tenant is deleted: no event");
        return Ok(());
    };
    let mut extra = Map::new();
    extra.insert("invoice".into(), Value::Object(row.clone()));
    write_event(tx, kind, &tenant, extra).await?;
    Ok(())
}

/// How a write changes the invoices it targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// PATCH: the given fields.
    Patch,
    /// PUT: every client field (absent optional ones become null).
    Replace,
}

fn status_of(row: &Object) -> InvoiceStatus {
    row.get("status")
        .and_then(Value::as_i64)
        .and_then(InvoiceStatus::from_code)
        .unwrap_or(InvoiceStatus::Pending)
}

fn id_of(row: &Object) -> Option<Uuid> {
    row.get("id")
        .and_then(Value::as_str)
        .and_then(|id| Uuid::parse_str(id).ok())
}

fn label(row: &Object) -> String {
    match row.get("invoiceNumber").and_then(Value::as_str) {
        Some(number) => number.to_string(),
        None => row
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
    }
}

/// The values a `change` writes: PATCH as given; PUT every client field.
fn effective(values: &Object, change: Change) -> Object {
    match change {
        Change::Patch => values.clone(),
        Change::Replace => crud::replacement(&INVOICES, values),
    }
}

/// Whether writing `values` to `row` would change nothing.
fn changes_nothing(row: &Object, values: &Object) -> bool {
    values
        .iter()
        .all(|(name, value)| row.get(name).unwrap_or(&Value::Null) == value)
}

/// Rounds the amount of an update: to the currency it gives, else to the currency of the
/// invoices it changes (which must then agree on their minor units).
fn normalise_update(
    values: &mut Object,
    change: Change,
    rows: &[Object],
) -> Result<(), InvoiceError> {
    let invalid = |d| InvoiceError::Invalid(vec![d]);
    if let Some(currency) = given_currency(values).map_err(invalid)? {
        if change == Change::Patch && !values.contains_key("amount") {
            return Err(invalid(ValidationDetail::new(
                "",
                "required",
                "amount must be given with currencyCode: an amount means nothing in another \
                 currency",
                json!({"missingProperty": "amount"}),
            )));
        }
        values.insert("currencyCode".into(), json!(currency.code()));
        return round_amount(values, currency).map_err(invalid);
    }
    if !values.contains_key("amount") {
        return Ok(());
    }
    let mut minor_units: Vec<(u32, Currency)> = rows
        .iter()
        .filter_map(|row| row.get("currencyCode").and_then(Value::as_str))
        .filter_map(|code| Currency::parse(code).ok())
        .map(|c| (c.minor_units(), c))
        .collect();
    minor_units.sort_by_key(|(units, _)| *units);
    minor_units.dedup_by_key(|(units, _)| *units);
    match minor_units.as_slice() {
        [(_, currency)] => round_amount(values, *currency).map_err(invalid),
        // Invoices written before currencies were checked: the amount must not be negative.
        [] => match values.get("amount").map(parse_money) {
            Some(Ok(amount)) if amount.is_sign_negative() && !amount.is_zero() => {
                Err(invalid(money_problem("/amount", &MoneyError::Negative)))
            }
            _ => Ok(()),
        },
        _ => Err(invalid(ValidationDetail::new(
            "/amount",
            "currency",
            "the invoices matched are in currencies with different minor units; change the \
             amount of each invoice on its own",
            Value::Null,
        ))),
    }
}

/// Applies `values` (validated) to the invoices of `target` that `actor` reaches, in one
/// transaction with the rows locked. A PENDING invoice may change in any way, its status to
/// PAID or CANCELLED included; a PAID or CANCELLED one only accepts a write that changes
/// nothing (a retry), else the whole write is refused ([`InvoiceError::Final`]). Moves to PAID
/// queue `INVOICE_PAID`. Returns how many invoices the target matched.
pub async fn update(
    db: &Db,
    target: Target<'_>,
    values: Object,
    change: Change,
    actor: &Actor,
) -> Result<u64, InvoiceError> {
    let mut tx = db.begin().await?;
    let matched = update_in(&mut tx, target, values, change, actor).await?;
    tx.commit().await?;
    Ok(matched)
}

/// [`update`] in `tx`.
async fn update_in(
    tx: &mut Tx,
    target: Target<'_>,
    mut values: Object,
    change: Change,
    actor: &Actor,
) -> Result<u64, InvoiceError> {
    let rows = crud::find_for_update(&mut tx.conn(), &INVOICES, target, actor.scope).await?;
    if rows.is_empty() {
        return Ok(0);
    }
    normalise_update(&mut values, change, &rows)?;
    let values = effective(&values, change);
    let wanted = values
        .get("status")
        .and_then(Value::as_i64)
        .and_then(InvoiceStatus::from_code);
    let mut changing = Vec::new();
    for row in &rows {
        let from = status_of(row);
        if from.is_final() {
            if changes_nothing(row, &values) {
                continue;
            }
            let what = match wanted {
                Some(to) if to != from => format!("cannot become {}", to.name()),
                _ => "cannot change".to_string(),
            };
            return Err(InvoiceError::Final(format!(
                "Invoice {} is {} ({}): it {what}; PAID and CANCELLED invoices are final",
                label(row),
                from.name(),
                from as i64
            )));
        }
        changing.push(row);
    }
    for chunk in changing.chunks(500) {
        let ids: Vec<Value> = chunk
            .iter()
            .filter_map(|row| id_of(row))
            .map(|id| json!(id.to_string()))
            .collect();
        let these = Where::cmp(INVOICES.id_field(), Op::Inq, &Value::Array(ids)).map_err(|e| {
            InvoiceError::Invalid(vec![ValidationDetail::new("", "id", e.0, Value::Null)])
        })?;
        let action = match wanted {
            Some(InvoiceStatus::Paid) => "pay",
            Some(InvoiceStatus::Cancelled) => "cancel",
            _ => crate::audit::UPDATE,
        };
        crud::update_as(
            &mut tx.conn(),
            &INVOICES,
            Target::Matching(Some(&these)),
            &values,
            actor,
            action,
        )
        .await?;
    }
    if wanted == Some(InvoiceStatus::Paid) {
        for row in changing {
            let Some(id) = id_of(row) else { continue };
            if let Some(paid) = crud::find_by_id(
                &mut tx.conn(),
                &INVOICES,
                id,
                &Default::default(),
                Scope::All,
            )
            .await?
            {
                announce(tx, EventType::InvoicePaid, &paid).await?;
            }
        }
    }
    Ok(rows.len() as u64)
}

/// `POST /invoices/{id}/pay` and `/cancel`: moves a PENDING invoice to `to`; an invoice already
/// there stays (a retry); the other final state is [`InvoiceError::Final`].
pub async fn settle(
    db: &Db,
    id: Uuid,
    to: InvoiceStatus,
    actor: &Actor,
) -> Result<(), InvoiceError> {
    let mut values = Object::new();
    values.insert("status".into(), json!(to as i64));
    match update(db, Target::Id(id), values, Change::Patch, actor).await? {
        0 => Err(InvoiceError::NotFound),
        _ => Ok(()),
    }
}

/// A calendar date of a wire instant (`2026-11-30`).
fn day_of(value: Option<&Value>) -> Option<String> {
    value
        .and_then(Value::as_str)
        .and_then(parse_timestamp)
        .map(|t| t.format("%Y-%m-%d").to_string())
}

/// An invoice as people read it, on its PDF and in its mails.
#[derive(Debug, Clone, PartialEq)]
pub struct Readable {
    pub currency: String,
    /// The amount with its minor units and grouping (`1,234.50`).
    pub amount: String,
    pub first_day: Option<String>,
    /// Periods are half-open: the last day is the one before the end instant.
    pub last_day: Option<String>,
    pub due: String,
    pub issued: String,
}

impl Readable {
    pub fn of(invoice: &Object) -> Self {
        let currency = invoice
            .get("currencyCode")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let amount = invoice
            .get("amount")
            .and_then(|a| parse_money(a).ok())
            .unwrap_or(Decimal::ZERO);
        let last_day = invoice
            .get("endDate")
            .and_then(Value::as_str)
            .and_then(parse_timestamp)
            .map(|end| {
                (end - chrono::Duration::milliseconds(1))
                    .format("%Y-%m-%d")
                    .to_string()
            });
        Self {
            amount: match Currency::parse(&currency) {
                Ok(c) => c.format(amount),
                Err(_) => amount.to_string(),
            },
            currency,
            first_day: day_of(invoice.get("startDate")),
            last_day,
            due: day_of(invoice.get("dueDate")).unwrap_or_default(),
            issued: day_of(invoice.get("createdOn")).unwrap_or_default(),
        }
    }
}

/// The PDF of invoice `id` as `scope` sees it, and its file name.
pub async fn document(
    conn: &mut Conn<'_>,
    config: &BillingConfig,
    id: Uuid,
    scope: Scope,
) -> Result<(String, Vec<u8>), InvoiceError> {
    let invoice = crud::find_by_id(conn, &INVOICES, id, &Default::default(), scope)
        .await?
        .ok_or(InvoiceError::NotFound)?;
    let tenant_id = invoice
        .get("tenantId")
        .and_then(Value::as_str)
        .and_then(|t| Uuid::parse_str(t).ok())
        .ok_or(InvoiceError::NotFound)?;
    let tenant = tenant_with_relations(conn, tenant_id, Scope::All)
        .await?
        .unwrap_or_default();
    let text = |row: &Object, key: &str| {
        row.get(key)
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_default()
    };
    let shown = Readable::of(&invoice);
    let number = match invoice.get("invoiceNumber").and_then(Value::as_str) {
        Some(n) => n.to_string(),
        None => id.to_string(),
    };
    let mut bill_to_lines = Vec::new();
    if let Some(Value::Object(address)) = tenant.get("address") {
        let part = |k: &str| text(address, k);
        bill_to_lines.push(part("address"));
        bill_to_lines.push(
            [part("zip"), part("city"), part("state")]
                .into_iter()
                .filter(|p| !p.is_empty())
                .collect::<Vec<_>>()
                .join(" "),
        );
        bill_to_lines.push(part("country"));
        bill_to_lines.retain(|l| !l.trim().is_empty());
    }
    let status = status_of(&invoice);
    let period = match (&shown.first_day, &shown.last_day) {
        (Some(first), Some(last)) => format!("{first} – {last}"),
        _ => String::new(),
    };
    let doc = InvoiceDocument {
        // The seller that issued it, also after a rename; the original's invoices name none.
        seller_name: invoice
            .get("seller")
            .and_then(Value::as_str)
            .unwrap_or(&config.seller_name)
            .to_string(),
        seller_address: config.seller_address.clone(),
        number: number.clone(),
        issued_on: shown.issued.clone(),
        period_start: shown.first_day.clone(),
        period_end: shown.last_day.clone(),
        due_date: shown.due.clone(),
        status: status.name().to_string(),
        bill_to_name: text(&tenant, "name"),
        bill_to_lines,
        lines: vec![InvoiceLine {
            description: format!("Subscription {}, {period}", text(&tenant, "name")),
            amount: shown.amount.clone(),
        }],
        total: shown.amount.clone(),
        currency: shown.currency.clone(),
        notes: (status == InvoiceStatus::Pending).then(|| {
            format!(
                "Please pay {} {} by {}.",
                shown.amount, shown.currency, shown.due
            )
        }),
    };
    let bytes = crate::pdf::render_invoice(&doc)?;
    Ok((format!("{number}.pdf"), bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> Object {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn numbers_have_at_least_six_digits() {
        assert_eq!(format_number("INV-", 42), "INV-000042");
        assert_eq!(format_number("", 1_234_567), "1234567");
    }

    #[test]
    fn new_invoices_get_an_upper_case_currency_and_a_rounded_amount() {
        let mut values = obj(json!({"currencyCode": "jpy", "amount": 1234.5}));
        normalise_new(&mut values).unwrap();
        assert_eq!(values["currencyCode"], "JPY");
        assert_eq!(values["amount"], json!(1235));
        for (bad, path) in [
            (json!({"currencyCode": "XYZ", "amount": 1}), "/currencyCode"),
            (json!({"currencyCode": "XAU", "amount": 1}), "/currencyCode"),
            (json!({"currencyCode": "USD", "amount": -0.01}), "/amount"),
        ] {
            match normalise_new(&mut obj(bad.clone())) {
                Err(InvoiceError::Invalid(d)) => assert_eq!(d[0].path, path, "{bad}"),
                other => panic!("{bad}: {other:?}"),
            }
        }
    }

    #[test]
    fn an_amount_alone_is_rounded_by_the_currency_of_the_invoices_it_changes() {
        let usd = obj(json!({"currencyCode": "USD"}));
        let eur = obj(json!({"currencyCode": "EUR"}));
        let jpy = obj(json!({"currencyCode": "JPY"}));
        let mut values = obj(json!({"amount": 10.005}));
        normalise_update(&mut values, Change::Patch, &[usd.clone(), eur]).unwrap();
        assert_eq!(values["amount"], json!(10.01));
        let mut values = obj(json!({"amount": 10.005}));
        assert!(matches!(
            normalise_update(&mut values, Change::Patch, &[usd.clone(), jpy]),
            Err(InvoiceError::Invalid(_))
        ));
        let mut values = obj(json!({"currencyCode": "KWD"}));
        assert!(matches!(
            normalise_update(&mut values, Change::Patch, &[usd]),
            Err(InvoiceError::Invalid(_))
        ));
    }

    #[test]
    fn a_write_that_changes_nothing_is_recognised() {
        let row = obj(json!({"status": 1, "amount": 5, "invoiceFile": null}));
        assert!(changes_nothing(&row, &obj(json!({"status": 1}))));
        assert!(changes_nothing(
            &row,
            &obj(json!({"status": 1, "invoiceFile": null}))
        ));
        assert!(!changes_nothing(&row, &obj(json!({"status": 2}))));
        assert!(!changes_nothing(&row, &obj(json!({"amount": 6}))));
    }
}
