//! Billing from the subscription (`docs/billing.md`): the plan's price, currency and billing
//! cycle are checked when provisioning starts and frozen when the tenant first becomes ACTIVE;
//! that issues the first invoice, and the billing run (`domain::billing_run`) issues one for
//! every later period. Suspension and offboarding pause billing; reactivation resumes it with
//! the next period.

use chrono::{DateTime, Duration, Months, Utc};
use rust_decimal::Decimal;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::invoices::{self, InvoiceError};
use super::money::{Currency, MoneyError};
use super::tenant::TenantStatus;
use super::validation::ValidationDetail;
use crate::config::{BillingConfig, Config};
use crate::store::invoices::{self as store, Account};
use crate::store::provisioning as record;
use crate::store::values::{format_timestamp, money_to_json, parse_money};
use crate::store::{Object, Tx};

/// The unit of a billing cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CycleUnit {
    Day,
    Week,
    Month,
    Year,
}

impl CycleUnit {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Day => "day",
            Self::Week => "week",
            Self::Month => "month",
            Self::Year => "year",
        }
    }

    /// `day`, `days`, `DAY`, … (the original's plans write `month`, `Months`, …).
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim().to_ascii_lowercase();
        match s.strip_suffix('s').unwrap_or(&s) {
            "day" => Some(Self::Day),
            "week" => Some(Self::Week),
            "month" => Some(Self::Month),
            "year" => Some(Self::Year),
            _ => None,
        }
    }
}

/// A billing cycle: `count` units (1 month, 3 months, 2 weeks, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cycle {
    pub count: u32,
    pub unit: CycleUnit,
}

/// The largest cycle count accepted (so that period arithmetic never overflows).
const MAX_CYCLE_COUNT: u32 = 1000;

impl Cycle {
    pub const MONTHLY: Cycle = Cycle {
        count: 1,
        unit: CycleUnit::Month,
    };

    /// The start of period `k` of a billing anchored at `anchor`: `anchor + k` cycles, counted
    /// from the anchor each time (so month ends do not drift: Jan 31, Feb 28, Mar 31, …).
    pub fn start(self, anchor: DateTime<Utc>, k: i64) -> Option<DateTime<Utc>> {
        let k = u32::try_from(k).ok()?;
        let n = self.count.checked_mul(k)?;
        match self.unit {
            CycleUnit::Day => anchor.checked_add_signed(Duration::days(i64::from(n))),
            CycleUnit::Week => anchor.checked_add_signed(Duration::weeks(i64::from(n))),
            CycleUnit::Month => anchor.checked_add_months(Months::new(n)),
            CycleUnit::Year => anchor.checked_add_months(Months::new(n.checked_mul(12)?)),
        }
    }

    /// The first period of a billing anchored at `anchor` that starts at or after `at`.
    pub fn first_starting_at_or_after(self, anchor: DateTime<Utc>, at: DateTime<Utc>) -> i64 {
        // No cycle is longer than `max_days`, so this k starts at or before `at`: step on.
        let mut k = (at - anchor).num_days().max(0) / self.max_days();
        while let Some(start) = self.start(anchor, k) {
            if start >= at {
                break;
            }
            k += 1;
        }
        k
    }

    /// The most days one cycle can have.
    fn max_days(self) -> i64 {
        let per_unit = match self.unit {
            CycleUnit::Day => 1,
            CycleUnit::Week => 7,
            CycleUnit::Month => 31,
            CycleUnit::Year => 366,
        };
        i64::from(self.count) * per_unit
    }
}

/// The billing terms of a plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Terms {
    /// The price per cycle, rounded to the currency.
    pub price: Decimal,
    /// `None`: the plan names no currency (`BILLING_CURRENCY` applies).
    pub currency: Option<Currency>,
    pub cycle: Cycle,
}

fn problem(path: &str, code: &'static str, message: &str) -> ValidationDetail {
    ValidationDetail::new(path, code, message, Value::Null)
}

/// The billing terms of `plan` (a subscription's plan object): `price` (a decimal number or
/// string; absent or null: a free plan, never billed), `currency` (a code, or an object with
/// `currencyCode`), `billingCycle` (`{duration, durationUnit}`; absent: monthly).
pub fn parse_terms(plan: &Map<String, Value>) -> Result<Option<Terms>, Vec<ValidationDetail>> {
    let mut problems = Vec::new();
    let currency = match plan.get("currency") {
        None | Some(Value::Null) => None,
        Some(Value::String(code)) => Some(code.as_str()),
        Some(Value::Object(c)) => match c.get("currencyCode") {
            Some(Value::String(code)) => Some(code.as_str()),
            _ => {
                problems.push(problem(
                    "/plan/currency/currencyCode",
                    "type",
                    "must be an ISO 4217 currency code",
                ));
                None
            }
        },
        Some(_) => {
            problems.push(problem(
                "/plan/currency",
                "type",
                "must be a currency code or an object with currencyCode",
            ));
            None
        }
    };
    let currency = match currency.map(Currency::parse) {
        Some(Ok(c)) => Some(c),
        Some(Err(err)) => {
            problems.push(problem("/plan/currency", "enum", &err.to_string()));
            None
        }
        None => None,
    };
    let cycle = match plan.get("billingCycle") {
        None | Some(Value::Null) => Some(Cycle::MONTHLY),
        Some(Value::Object(c)) => {
            let count = c
                .get("duration")
                .and_then(Value::as_u64)
                .and_then(|n| u32::try_from(n).ok())
                .filter(|n| (1..=MAX_CYCLE_COUNT).contains(n));
            let unit = c
                .get("durationUnit")
                .and_then(Value::as_str)
                .and_then(CycleUnit::parse);
            if count.is_none() {
                problems.push(problem(
                    "/plan/billingCycle/duration",
                    "type",
                    &format!("must be a whole number from 1 to {MAX_CYCLE_COUNT}"),
                ));
            }
            if unit.is_none() {
                problems.push(problem(
                    "/plan/billingCycle/durationUnit",
                    "enum",
                    "must be day, week, month or year",
                ));
            }
            count.zip(unit).map(|(count, unit)| Cycle { count, unit })
        }
        Some(_) => {
            problems.push(problem(
                "/plan/billingCycle",
                "type",
                "must be an object with duration and durationUnit",
            ));
            None
        }
    };
    let price = match plan.get("price") {
        None | Some(Value::Null) => None,
        Some(price) => match parse_money(price) {
            Ok(p) if p.is_sign_negative() && !p.is_zero() => {
                problems.push(problem(
                    "/plan/price",
                    "minimum",
                    &MoneyError::Negative.to_string(),
                ));
                None
            }
            Ok(p) => Some(p),
            Err(message) => {
                problems.push(problem("/plan/price", "type", &message));
                None
            }
        },
    };
    if !problems.is_empty() {
        return Err(problems);
    }
    let (Some(price), Some(cycle)) = (price, cycle) else {
        return Ok(None);
    };
    let price = match currency.map(|c| c.amount(price)) {
        Some(Ok(rounded)) => rounded,
        Some(Err(err)) => return Err(vec![problem("/plan/price", "maximum", &err.to_string())]),
        None => price,
    };
    Ok(Some(Terms {
        price,
        currency,
        cycle,
    }))
}

/// Why billing could not go on.
#[derive(Debug, thiserror::Error)]
pub enum BillingError {
    #[error(transparent)]
    Invoice(#[from] InvoiceError),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

impl Account {
    fn cycle(&self) -> Cycle {
        Cycle {
            count: u32::try_from(self.cycle_count).unwrap_or(1),
            unit: CycleUnit::parse(&self.cycle_unit).unwrap_or(CycleUnit::Month),
        }
    }
}

/// What billing does when a tenant moves, in the transaction `tx` of the move: the first
/// activation opens its account with the terms of the subscription it was provisioned with
/// and issues the first invoice; a suspension or offboarding pauses it; a return to ACTIVE
/// resumes it with the first period that starts from now on.
pub async fn on_move(
    tx: &mut Tx,
    config: &Config,
    tenant: Uuid,
    from: TenantStatus,
    to: TenantStatus,
) -> Result<(), BillingError> {
    let now = tx.conn().now();
    match (from, to) {
        // The first activation opens the account; a later one (provisioned again after an
        // operator took the tenant out of ACTIVE) resumes it.
        (TenantStatus::Provisioning, TenantStatus::Active) => {
            if !open(tx, config, tenant, now).await? {
                resume(tx, tenant, now).await?;
            }
            Ok(())
        }
        (_, TenantStatus::Suspended | TenantStatus::Deprovisioning) => {
            // A period that began before the move but has not been billed yet (the run comes
            // only every BILLING_INTERVAL) is billed now: it began while the tenant was ACTIVE.
            bill_due_periods(tx, config, tenant, now).await?;
            pause(tx, tenant, now).await
        }
        (_, TenantStatus::Active) => resume(tx, tenant, now).await,
        _ => Ok(()),
    }
}

/// Resumes the paused billing of `tenant` with the first period that starts at or after `now`.
async fn resume(tx: &mut Tx, tenant: Uuid, now: DateTime<Utc>) -> Result<(), BillingError> {
    if let Some(account) = store::lock_account(&mut tx.conn(), tenant).await?
        && account.paused_at.is_some()
    {
        let cycle = account.cycle();
        let next = cycle
            .first_starting_at_or_after(account.anchor_at, now)
            .max(account.next_period);
        let start = cycle.start(account.anchor_at, next).unwrap_or(now);
        store::set_position(&mut tx.conn(), tenant, next, start, None).await?;
    }
    Ok(())
}

/// Pauses the billing of `tenant` at `now` (no period starting later is billed), if it has an
/// account that is not paused.
pub(super) async fn pause(
    tx: &mut Tx,
    tenant: Uuid,
    now: DateTime<Utc>,
) -> Result<(), BillingError> {
    if let Some(account) = store::lock_account(&mut tx.conn(), tenant).await?
        && account.paused_at.is_none()
    {
        store::set_position(
            &mut tx.conn(),
            tenant,
            account.next_period,
            account.next_period_start,
            Some(now),
        )
        .await?;
    }
    Ok(())
}

/// Opens the account of `tenant` from its recorded subscription, if its plan has a price, and
/// issues the invoice of its first period. Returns whether an account was opened now (`false`
/// also when it had one already).
async fn open(
    tx: &mut Tx,
    config: &Config,
    tenant: Uuid,
    now: DateTime<Utc>,
) -> Result<bool, BillingError> {
    let plan = record::get(&mut tx.conn(), tenant)
        .await?
        .and_then(|r| r.subscription)
        .and_then(|s| s.get("plan").and_then(Value::as_object).cloned());
    let terms = match plan.as_ref().map(parse_terms) {
        Some(Ok(Some(terms))) => terms,
        Some(Ok(None)) | None => return Ok(false),
        Some(Err(problems)) => {
            // Checked when provisioning started; a record from before that is not billed.
            tracing::warn!(%tenant, ?problems, "the plan's billing terms are invalid: not billed");
            return Ok(false);
        }
    };
    let currency = terms.currency.unwrap_or(config.billing.default_currency);
    let Ok(price) = currency.amount(terms.price) else {
        tracing::warn!(%tenant, "the plan's price does not fit its currency: not billed");
        return Ok(false);
    };
    let account = Account {
        tenant_id: tenant,
        price,
        currency_code: currency.code().to_string(),
        cycle_count: i64::from(terms.cycle.count),
        cycle_unit: terms.cycle.unit.as_str().to_string(),
        anchor_at: now,
        next_period: 0,
        next_period_start: now,
        paused_at: None,
    };
    if !store::open_account(&mut tx.conn(), &account).await? {
        return Ok(false);
    }
    tracing::info!(%tenant, price = %account.price, currency = %account.currency_code,
        cycle = ?terms.cycle, "billing started");
    bill_due_periods(tx, config, tenant, now).await?;
    Ok(true)
}

/// Checks that the price of `plan` fits the currency it will be billed in (the plan's, else
/// `BILLING_CURRENCY`) once rounded: the check of the terms that needs the configuration.
pub fn check_price(
    plan: &Map<String, Value>,
    config: &BillingConfig,
) -> Result<(), Vec<ValidationDetail>> {
    let Some(terms) = parse_terms(plan)? else {
        return Ok(());
    };
    let currency = terms.currency.unwrap_or(config.default_currency);
    currency
        .amount(terms.price)
        .map(drop)
        .map_err(|err| vec![problem("/plan/price", "maximum", &err.to_string())])
}

/// Issues, in `tx`, an invoice for every period of `tenant` that has started by `now` and is
/// not invoiced yet; the account is locked meanwhile. Returns how many were issued.
pub(super) async fn bill_due_periods(
    tx: &mut Tx,
    config: &Config,
    tenant: Uuid,
    now: DateTime<Utc>,
) -> Result<usize, BillingError> {
    let Some(account) = store::lock_account(&mut tx.conn(), tenant).await? else {
        return Ok(0);
    };
    if account.paused_at.is_some() {
        return Ok(0);
    }
    let cycle = account.cycle();
    let mut k = account.next_period;
    let mut issued = 0;
    while let (Some(start), Some(end)) = (
        cycle.start(account.anchor_at, k),
        cycle.start(account.anchor_at, k + 1),
    ) {
        if start > now {
            store::set_position(&mut tx.conn(), tenant, k, start, None).await?;
            break;
        }
        let due = now + Duration::days(i64::from(config.billing.net_days));
        let mut values = Object::new();
        values.insert("startDate".into(), json!(format_timestamp(&start)));
        values.insert("endDate".into(), json!(format_timestamp(&end)));
        values.insert("amount".into(), money_to_json(account.price));
        values.insert("currencyCode".into(), json!(account.currency_code));
        values.insert("dueDate".into(), json!(format_timestamp(&due)));
        values.insert("status".into(), json!(0));
        values.insert("tenantId".into(), json!(tenant.to_string()));
        invoices::issue(
            tx,
            &config.billing,
            values,
            Some(k),
            &super::system_actor(config),
        )
        .await?;
        issued += 1;
        k += 1;
    }
    Ok(issued)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn months_count_from_the_anchor_without_drift() {
        let anchor = at("2026-01-31T10:00:00Z");
        let monthly = Cycle::MONTHLY;
        let starts: Vec<String> = (0..4)
            .map(|k| {
                monthly
                    .start(anchor, k)
                    .unwrap()
                    .format("%Y-%m-%d")
                    .to_string()
            })
            .collect();
        assert_eq!(
            starts,
            ["2026-01-31", "2026-02-28", "2026-03-31", "2026-04-30"]
        );
        let quarterly = Cycle {
            count: 3,
            unit: CycleUnit::Month,
        };
        assert_eq!(
            quarterly.start(anchor, 4).unwrap(),
            at("2027-01-31T10:00:00Z")
        );
        let fortnight = Cycle {
            count: 2,
            unit: CycleUnit::Week,
        };
        assert_eq!(
            fortnight.start(anchor, 3).unwrap(),
            at("2026-03-14T10:00:00Z")
        );
    }

    #[test]
    fn the_first_period_from_a_moment_on_is_found() {
        let anchor = at("2026-01-15T00:00:00Z");
        let monthly = Cycle::MONTHLY;
        assert_eq!(monthly.first_starting_at_or_after(anchor, anchor), 0);
        assert_eq!(
            monthly.first_starting_at_or_after(anchor, at("2026-01-15T00:00:01Z")),
            1
        );
        assert_eq!(
            monthly.first_starting_at_or_after(anchor, at("2031-07-20T00:00:00Z")),
            67
        );
        let daily = Cycle {
            count: 1,
            unit: CycleUnit::Day,
        };
        assert_eq!(
            daily.first_starting_at_or_after(anchor, at("2026-02-14T12:00:00Z")),
            31
        );
    }

    fn plan(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn plans_give_terms_or_precise_problems() {
        let terms = parse_terms(&plan(
            json!({"price": "19.999", "currency": {"currencyCode": "eur"},
            "billingCycle": {"duration": 3, "durationUnit": "Months"}}),
        ))
        .unwrap()
        .unwrap();
        assert_eq!(terms.price.to_string(), "20.00");
        assert_eq!(terms.currency.map(|c| c.code()), Some("EUR"));
        assert_eq!(
            terms.cycle,
            Cycle {
                count: 3,
                unit: CycleUnit::Month
            }
        );
        let monthly = parse_terms(&plan(json!({"price": 5}))).unwrap().unwrap();
        assert_eq!((monthly.currency, monthly.cycle), (None, Cycle::MONTHLY));
        assert_eq!(parse_terms(&plan(json!({"tier": "BASIC"}))).unwrap(), None);
        let paths = |v: Value| -> Vec<String> {
            parse_terms(&plan(v))
                .unwrap_err()
                .into_iter()
                .map(|d| d.path)
                .collect()
        };
        assert_eq!(paths(json!({"price": -1})), ["/plan/price"]);
        assert_eq!(paths(json!({"price": "abc"})), ["/plan/price"]);
        assert_eq!(
            paths(json!({"price": 1, "currency": "XYZ"})),
            ["/plan/currency"]
        );
        assert_eq!(
            paths(
                json!({"price": 1, "billingCycle": {"duration": 0, "durationUnit": "fortnight"}})
            ),
            [
                "/plan/billingCycle/duration",
                "/plan/billingCycle/durationUnit"
            ]
        );
    }
}
