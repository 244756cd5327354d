//! Money (`docs/billing.md`): an amount in an ISO 4217 currency, decimal end to end, never
//! negative, rounded to the currency's minor units (half away from zero).

use std::fmt;

use rust_decimal::{Decimal, RoundingStrategy};

use crate::store::values::{MONEY_MAX, MONEY_SCALE};

/// An ISO 4217 currency with minor units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Currency {
    code: iso_currency::Currency,
    minor_units: u32,
}

/// Why a currency or amount was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("{0:?} is not an ISO 4217 currency code")]
    UnknownCurrency(String),
    #[error("{0} has no minor units (a fund or precious metal, not a currency to invoice in)")]
    NoMinorUnits(String),
    #[error("must not be negative")]
    Negative,
    /// Rounded up past the largest amount stored (99 999 999 999.9999).
    #[error("is too large")]
    TooLarge,
}

impl Currency {
    /// The currency of `code` (any case).
    pub fn parse(code: &str) -> Result<Self, MoneyError> {
        let upper = code.trim().to_ascii_uppercase();
        let iso = iso_currency::Currency::from_code(&upper)
            .ok_or_else(|| MoneyError::UnknownCurrency(code.to_string()))?;
        let minor_units = iso
            .exponent()
            .ok_or_else(|| MoneyError::NoMinorUnits(upper.clone()))?;
        Ok(Self {
            code: iso,
            minor_units: u32::from(minor_units),
        })
    }

    /// The three-letter code, upper case.
    pub fn code(self) -> &'static str {
        self.code.code()
    }

    /// Decimal places of an amount: 2 for USD, 0 for JPY, 3 for KWD.
    pub fn minor_units(self) -> u32 {
        self.minor_units
    }

    /// `amount` rounded to the minor units, half away from zero; refused when negative or
    /// when rounding takes it past the largest amount stored.
    pub fn amount(self, amount: Decimal) -> Result<Decimal, MoneyError> {
        if amount.is_sign_negative() && !amount.is_zero() {
            return Err(MoneyError::Negative);
        }
        let mut rounded =
            amount.round_dp_with_strategy(self.minor_units, RoundingStrategy::MidpointAwayFromZero);
        rounded.rescale(self.minor_units);
        if rounded > Decimal::new(MONEY_MAX, MONEY_SCALE) {
            return Err(MoneyError::TooLarge);
        }
        Ok(rounded)
    }

    /// `amount` as printed on an invoice: minor units always shown, thousands grouped with
    /// commas (`1,234.50`, `1,235` for JPY).
    pub fn format(self, amount: Decimal) -> String {
        let mut fixed = amount;
        fixed.rescale(self.minor_units);
        let text = fixed.abs().to_string();
        let (whole, fraction) = text.split_once('.').unwrap_or((&text, ""));
        let mut grouped = String::new();
        for (i, digit) in whole.chars().enumerate() {
            if i > 0 && (whole.len() - i) % 3 == 0 {
                grouped.push(',');
            }
            grouped.push(digit);
        }
        let sign = if fixed.is_sign_negative() && !fixed.is_zero() {
            "-"
        } else {
            ""
        };
        if fraction.is_empty() {
            format!("{sign}{grouped}")
        } else {
            format!("{sign}{grouped}.{fraction}")
        }
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    #[test]
    fn codes_are_iso_4217_with_minor_units() {
        assert_eq!(Currency::parse("usd").unwrap().code(), "USD");
        assert_eq!(Currency::parse(" EUR ").unwrap().minor_units(), 2);
        assert_eq!(Currency::parse("JPY").unwrap().minor_units(), 0);
        assert_eq!(Currency::parse("KWD").unwrap().minor_units(), 3);
        for bad in ["XYZ", "US", "USDX", "", "€"] {
            assert!(
                matches!(Currency::parse(bad), Err(MoneyError::UnknownCurrency(_))),
                "{bad}"
            );
        }
        assert_eq!(
            Currency::parse("XAU"),
            Err(MoneyError::NoMinorUnits("XAU".into()))
        );
    }

    #[test]
    fn amounts_round_half_away_from_zero_to_the_minor_units() {
        let usd = Currency::parse("USD").unwrap();
        let jpy = Currency::parse("JPY").unwrap();
        let kwd = Currency::parse("KWD").unwrap();
        for (currency, given, stored) in [
            (usd, "10.005", "10.01"),
            (usd, "10.004", "10.00"),
            (usd, "99.5", "99.50"),
            (usd, "0", "0.00"),
            (jpy, "1234.5", "1235"),
            (jpy, "1234.4999", "1234"),
            (kwd, "1.2345", "1.235"),
            (kwd, "7", "7.000"),
        ] {
            let rounded = currency.amount(d(given)).unwrap();
            assert_eq!(rounded.to_string(), stored, "{given} {currency}");
        }
        assert_eq!(usd.amount(d("-0.01")), Err(MoneyError::Negative));
        assert_eq!(usd.amount(d("-0")).unwrap().to_string(), "0.00");
        assert_eq!(
            usd.amount(d("99999999999.9999")),
            Err(MoneyError::TooLarge),
            "rounds up past the largest amount"
        );
        let clf = Currency::parse("CLF").unwrap();
        assert_eq!(
            clf.amount(d("99999999999.9999")).unwrap().to_string(),
            "99999999999.9999"
        );
    }

    #[test]
    fn amounts_print_with_their_minor_units_and_grouping() {
        let usd = Currency::parse("USD").unwrap();
        let jpy = Currency::parse("JPY").unwrap();
        let kwd = Currency::parse("KWD").unwrap();
        assert_eq!(usd.format(d("1234.5")), "1,234.50");
        assert_eq!(usd.format(d("1234567.891")), "1,234,567.89");
        assert_eq!(usd.format(d("0")), "0.00");
        assert_eq!(usd.format(d("999")), "999.00");
        assert_eq!(jpy.format(d("1235")), "1,235");
        assert_eq!(kwd.format(d("1.235")), "1.235");
    }
}
