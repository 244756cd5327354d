//! Request bodies whose money is read from the text the client wrote. A JSON number becomes a
//! binary float when parsed, which would decide the money rule (`store::values::parse_money`) on
//! a value the client did not write: `12.3450000000000000000000001` reads as 12.345 and
//! `1e-400` as 0, both allowed, while their values have 25 and 400 decimal places. So, at the
//! places of a body that hold money, a number whose parsed value the rule would judge otherwise
//! than its text (and one too large to parse at all, `1e400`) is handed on as its text, a decimal
//! string, and the rule decides on the value written. Numbers it judges alike (every amount it
//! accepts) stay numbers, so an accepted body is kept exactly as it was parsed.

use std::collections::HashMap;
use std::ops::Range;

use serde_json::Value;
use serde_json::value::RawValue;

use crate::http::error::AppResult;
use crate::model::{FieldType, Resource};
use crate::store::values::parse_money;

/// The body `raw`, parsed, with the money at `paths` (each a list of object keys from the root)
/// given as written where its parsed number would be judged otherwise; a malformed body is
/// refused as [`super::Json`] refuses it.
pub fn body(raw: &RawValue, paths: &[&[&str]]) -> AppResult<Value> {
    let text = raw.get();
    let mut literals: Vec<Range<usize>> = paths
        .iter()
        .filter_map(|path| number_at(text, path))
        .filter(|range| !judged_alike(&text[range.clone()]))
        .collect();
    literals.sort_by_key(|range| range.start);
    literals.dedup();
    let mut quoted = String::with_capacity(text.len() + 2 * literals.len());
    let mut from = 0;
    for range in literals {
        quoted.push_str(&text[from..range.start]);
        quoted.push('"');
        quoted.push_str(&text[range.clone()]);
        quoted.push('"');
        from = range.end;
    }
    quoted.push_str(&text[from..]);
    axum::Json::<Value>::from_bytes(quoted.as_bytes())
        .map(|axum::Json(value)| value)
        .map_err(super::json_rejection)
}

/// [`body`] with the money fields of `resource` (at the top level of its body).
pub fn resource_body(resource: &Resource, raw: &RawValue) -> AppResult<Value> {
    let fields: Vec<[&str; 1]> = resource
        .fields
        .iter()
        .filter(|field| field.ty == FieldType::Money)
        .map(|field| [field.name])
        .collect();
    let paths: Vec<&[&str]> = fields.iter().map(|path| path.as_slice()).collect();
    body(raw, &paths)
}

/// Whether the money rule judges the number `literal` the same as the value it parses to.
fn judged_alike(literal: &str) -> bool {
    match serde_json::from_str::<Value>(literal) {
        Ok(parsed) => parse_money(&parsed) == parse_money(&Value::String(literal.to_string())),
        Err(_) => false,
    }
}

/// Where in `text` (a JSON document) the number at `path` is written, if there is one. A key
/// given twice counts once, with its last value, as when the body is parsed.
fn number_at(text: &str, path: &[&str]) -> Option<Range<usize>> {
    let mut raw: &RawValue = serde_json::from_str(text).ok()?;
    for key in path {
        let object: HashMap<String, &RawValue> = serde_json::from_str(raw.get()).ok()?;
        raw = object.get(*key)?;
    }
    let literal = raw.get();
    if !literal.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
        return None;
    }
    let start = (literal.as_ptr() as usize).checked_sub(text.as_ptr() as usize)?;
    let range = start..start + literal.len();
    (text.get(range.clone()) == Some(literal)).then_some(range)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::error::AppError;
    use serde_json::json;

    fn read(text: &str, paths: &[&[&str]]) -> AppResult<Value> {
        let raw: Box<RawValue> = serde_json::from_str(text).unwrap();
        body(&raw, paths)
    }

    #[test]
    fn money_the_float_would_misjudge_is_given_as_written() {
        let amount: &[&[&str]] = &[&["amount"]];
        for (text, expected) in [
            (
                r#"{"amount": 12.3450000000000000000000001}"#,
                json!({"amount": "12.3450000000000000000000001"}),
            ),
            (r#"{"amount": 1e-400}"#, json!({"amount": "1e-400"})),
            (r#"{"amount":1e400}"#, json!({"amount": "1e400"})),
            (
                r#"{"amount": -1E+400, "x": 1}"#,
                json!({"amount": "-1E+400", "x": 1}),
            ),
            (
                r#"{"amount": 1, "amount": 1.00000000000000000001}"#,
                json!({"amount": "1.00000000000000000001"}),
            ),
            // Judged alike: numbers stay numbers.
            (r#"{"amount": 12.3400}"#, json!({"amount": 12.34})),
            (r#"{"amount": 1.5e2}"#, json!({"amount": 150.0})),
            (r#"{"amount": 1.23456}"#, json!({"amount": 1.23456})),
            (r#"{"amount": 1e20}"#, json!({"amount": 1e20})),
            (r#"{"amount": "1e-400"}"#, json!({"amount": "1e-400"})),
            (r#"{"amount": null}"#, json!({"amount": null})),
            // Only at the places of money.
            (
                r#"{"metadata": {"amount": 1e-400}, "n": 12.3450000000000000000000001}"#,
                json!({"metadata": {"amount": 0.0}, "n": 12.345}),
            ),
            (r#"[1e-400]"#, json!([0.0])),
        ] {
            assert_eq!(read(text, amount).unwrap(), expected, "{text}");
        }
        let price: &[&[&str]] = &[&["plan", "price"]];
        assert_eq!(
            read(
                r#"{"id": "s", "plan": {"tier": "T", "price": 1e-400}}"#,
                price
            )
            .unwrap(),
            json!({"id": "s", "plan": {"tier": "T", "price": "1e-400"}})
        );
        assert_eq!(
            read(r#"{"plan": {"price": 49}, "price": 1e-400}"#, price).unwrap(),
            json!({"plan": {"price": 49}, "price": 0.0})
        );
    }

    #[test]
    fn a_number_too_large_elsewhere_is_still_malformed() {
        let amount: &[&[&str]] = &[&["amount"]];
        for text in [
            r#"{"amount": 1, "n": 1e400}"#,
            r#"{"amount": 1e400, "n": 1e400}"#,
        ] {
            assert!(
                matches!(read(text, amount), Err(AppError::MalformedJson(_))),
                "{text}"
            );
        }
    }
}
