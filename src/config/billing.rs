//! The billing settings (`docs/billing.md`): who issues invoices, how they are numbered, their
//! payment terms, how often the billing run goes, and what overdue invoices lead to.

use std::time::Duration;

use super::{ConfigError, MAX_MS, Vars, problem};
use crate::domain::money::Currency;

/// How invoices are issued and followed up.
#[derive(Debug, Clone)]
pub struct BillingConfig {
    /// The seller on every invoice and the counter its numbers come from
    /// (`BILLING_SELLER_NAME`, default `APP_NAME`).
    pub seller_name: String,
    /// The seller's address lines on the PDF (`BILLING_SELLER_ADDRESS`, lines separated by `|`).
    pub seller_address: Vec<String>,
    /// Invoice numbers are this prefix and six or more digits (`BILLING_INVOICE_PREFIX`).
    pub invoice_prefix: String,
    /// Payment terms: an invoice is due this many days after it is issued (`BILLING_NET_DAYS`).
    pub net_days: u32,
    /// The currency of a plan that names none (`BILLING_CURRENCY`).
    pub default_currency: Currency,
    /// How often the in-process billing run goes (`BILLING_INTERVAL`, ms; 0: never, leave it
    /// to `tms billing run`).
    pub interval: Option<Duration>,
    /// Days an invoice may be overdue before its tenant is suspended
    /// (`BILLING_SUSPEND_AFTER_DAYS`; unset or 0: never).
    pub suspend_after_days: Option<u32>,
}

impl BillingConfig {
    pub(super) fn from_vars(v: &Vars<'_>, app_name: &str) -> Result<Self, ConfigError> {
        let invoice_prefix = v.string("BILLING_INVOICE_PREFIX", "INV-");
        if invoice_prefix.chars().count() > 20
            || !invoice_prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_/.#".contains(c))
        {
            return Err(problem(
                "BILLING_INVOICE_PREFIX",
                "at most 20 letters, digits or - _ / . #",
            ));
        }
        let seller_name = v.string("BILLING_SELLER_NAME", app_name);
        if seller_name.chars().count() > 200 {
            return Err(problem("BILLING_SELLER_NAME", "at most 200 characters"));
        }
        let currency = v.string("BILLING_CURRENCY", "USD");
        let default_currency = Currency::parse(&currency)
            .map_err(|err| problem("BILLING_CURRENCY", err.to_string()))?;
        let interval = v.number("BILLING_INTERVAL", 3_600_000u64, 0, MAX_MS)?;
        if interval != 0 && interval < 1_000 {
            return Err(problem(
                "BILLING_INTERVAL",
                format!("must be 0 (off) or at least 1000 ms, got {interval}"),
            ));
        }
        let suspend_after_days = v.number("BILLING_SUSPEND_AFTER_DAYS", 0u32, 0, 3650)?;
        Ok(Self {
            seller_name,
            seller_address: v
                .get("BILLING_SELLER_ADDRESS")
                .unwrap_or_default()
                .split('|')
                .map(|line| line.trim().to_string())
                .filter(|line| !line.is_empty())
                .collect(),
            invoice_prefix,
            net_days: v.number("BILLING_NET_DAYS", 30u32, 0, 365)?,
            default_currency,
            interval: (interval > 0).then(|| Duration::from_millis(interval)),
            suspend_after_days: (suspend_after_days > 0).then_some(suspend_after_days),
        })
    }

    /// The settings as `tms config` prints them.
    pub(super) fn lines(&self) -> Vec<(&'static str, String)> {
        let interval = self.interval.map_or(0, |i| i.as_millis());
        vec![
            ("BILLING_SELLER_NAME", self.seller_name.clone()),
            ("BILLING_SELLER_ADDRESS", self.seller_address.join("|")),
            ("BILLING_INVOICE_PREFIX", self.invoice_prefix.clone()),
            ("BILLING_NET_DAYS", self.net_days.to_string()),
            ("BILLING_CURRENCY", self.default_currency.code().to_string()),
            ("BILLING_INTERVAL", interval.to_string()),
            (
                "BILLING_SUSPEND_AFTER_DAYS",
                self.suspend_after_days.unwrap_or(0).to_string(),
            ),
        ]
    }
}
