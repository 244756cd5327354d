//! Request bodies checked against the resource descriptors, LoopBack style: every problem is an
//! entry of the 422 `details` (path, JSON-schema keyword, message). A valid body comes back
//! normalised (enum names as numbers, instants in UTC milliseconds, hostnames lower-case), ready
//! to store.

use serde::Serialize;
use serde_json::{Value, json};

use crate::model::{Field, FieldType, Resource};
use crate::store::Object;
use crate::store::values;

/// One problem found while validating a request body (an entry of `details`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ValidationDetail {
    /// JSON pointer of the offending property (`/key`), empty for the object itself.
    pub path: String,
    /// The JSON-schema keyword that failed (`required`, `pattern`, `maxLength`, …).
    pub code: &'static str,
    pub message: String,
    /// Keyword-specific facts (`{"limit": 10}`); boxed to keep the detail small.
    pub info: Box<Value>,
}

impl ValidationDetail {
    pub fn new(
        path: impl Into<String>,
        code: &'static str,
        message: impl Into<String>,
        info: Value,
    ) -> Self {
        Self {
            path: path.into(),
            code,
            message: message.into(),
            info: Box::new(info),
        }
    }
}

/// What the body is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// POST: required fields must be present.
    Create,
    /// PUT: like create.
    Replace,
    /// PATCH: any subset of fields.
    Patch,
}

/// Checks `body` for `resource` and returns the normalised properties.
pub fn validate(
    resource: &'static Resource,
    body: &Value,
    mode: Mode,
) -> Result<Object, Vec<ValidationDetail>> {
    let Value::Object(props) = body else {
        return Err(vec![not_an_object("")]);
    };
    let writable: Vec<(&str, bool)> = resource
        .fields
        .iter()
        .filter(|f| !f.server_only)
        .map(|f| (f.name, f.required && mode != Mode::Patch))
        .collect();
    let mut problems = Vec::new();
    let out = check_fields(resource, props, &writable, "", &mut problems);
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

/// A `PUT`/`PATCH` body of the row `id` without the fields the service manages (`id`, the audit
/// fields): clients of the original read a row, change a field and send the whole object back,
/// so these are accepted and ignored — the stored values stay as the service set them. An `id`
/// other than the row's is refused. Anything but an object is returned as it is, for
/// [`validate`] to refuse.
pub fn without_managed_fields(
    resource: &'static Resource,
    body: &Value,
    id: uuid::Uuid,
) -> Result<Value, Vec<ValidationDetail>> {
    let Value::Object(props) = body else {
        return Ok(body.clone());
    };
    if let Some(given) = props.get("id") {
        let same = given
            .as_str()
            .and_then(|s| uuid::Uuid::parse_str(s).ok())
            .is_some_and(|given| given == id);
        if !same {
            return Err(vec![ValidationDetail::new(
                "/id",
                "const",
                "id must be the id of the row in the path",
                json!({"allowedValue": id.to_string()}),
            )]);
        }
    }
    Ok(Value::Object(
        props
            .iter()
            .filter(|(name, _)| !resource.field(name).is_some_and(|f| f.server_only))
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect(),
    ))
}

/// A body that is exactly `{"email": "<address>"}` (checked as a lead's email is); returns the
/// address.
pub fn email_only(body: &Value) -> Result<String, Vec<ValidationDetail>> {
    let Value::Object(props) = body else {
        return Err(vec![not_an_object("")]);
    };
    let mut problems = Vec::new();
    let checked = check_fields(
        &crate::model::LEADS,
        props,
        &[("email", true)],
        "",
        &mut problems,
    );
    match checked.get("email").and_then(Value::as_str) {
        Some(email) if problems.is_empty() => Ok(email.to_string()),
        _ => Err(problems),
    }
}

/// A body that is not a JSON object.
pub fn not_an_object(path: &str) -> ValidationDetail {
    ValidationDetail::new(path, "type", "must be object", json!({"type": "object"}))
}

/// Checks the properties of `props` that belong to `resource`, allowing only `allowed`
/// (`(wire name, required)`); problems are reported under `prefix` (`/contact`, or `` for the
/// body itself) and appended to `problems`. Returns the normalised values of the valid ones.
pub fn check_fields(
    resource: &'static Resource,
    props: &serde_json::Map<String, Value>,
    allowed: &[(&str, bool)],
    prefix: &str,
    problems: &mut Vec<ValidationDetail>,
) -> Object {
    let mut out = Object::new();
    for (name, value) in props {
        let field = resource.field(name);
        match field {
            Some(field) if allowed.iter().any(|(n, _)| *n == name) => {
                match normalise(field, value) {
                    Ok(v) => {
                        out.insert(name.clone(), v);
                    }
                    Err(mut detail) => {
                        detail.path = format!("{prefix}{}", detail.path);
                        problems.push(detail);
                    }
                }
            }
            Some(field) if field.server_only => problems.push(ValidationDetail::new(
                format!("{prefix}/{name}"),
                "readOnly",
                format!("{name} is set by the service and cannot be written"),
                json!({"readOnly": name}),
            )),
            _ => problems.push(unknown_property(prefix, name)),
        }
    }
    for (name, required) in allowed {
        if *required && !props.contains_key(*name) {
            problems.push(missing_property(prefix, name));
        }
    }
    out
}

pub fn unknown_property(prefix: &str, name: &str) -> ValidationDetail {
    ValidationDetail::new(
        prefix,
        "additionalProperties",
        format!("must NOT have additional properties ({name:?})"),
        json!({"additionalProperty": name}),
    )
}

pub fn missing_property(prefix: &str, name: &str) -> ValidationDetail {
    ValidationDetail::new(
        prefix,
        "required",
        format!("must have required property '{name}'"),
        json!({"missingProperty": name}),
    )
}

/// One field's value checked and normalised.
pub fn normalise(field: &Field, value: &Value) -> Result<Value, ValidationDetail> {
    let path = format!("/{}", field.name);
    let fail = |code: &'static str, message: String, info: Value| {
        Err(ValidationDetail::new(path.clone(), code, message, info))
    };
    if value.is_null() {
        if field.required {
            return fail(
                "type",
                format!("{} must not be null", field.name),
                json!({"nullable": false}),
            );
        }
        return Ok(Value::Null);
    }
    // Type: the store's own rule, so a value accepted here binds on either database.
    if let Err(problem) = values::fits(field, value) {
        return fail(
            "type",
            format!("{} {problem}", field.name),
            json!({"type": type_name(field.ty)}),
        );
    }
    if contains_nul(value) {
        return fail(
            "pattern",
            format!("{} must not contain NUL characters", field.name),
            json!({"pattern": "no U+0000"}),
        );
    }
    let normalised = match field.ty {
        FieldType::Enum(names) => Value::from(values::enum_value(names, value).unwrap_or(0)),
        FieldType::Timestamp => value
            .as_str()
            .and_then(values::parse_timestamp)
            .map(|t| Value::from(values::format_timestamp(&t)))
            .unwrap_or(Value::Null),
        FieldType::Money => values::money_to_json(values::parse_money(value).unwrap_or_default()),
        FieldType::Uuid => Value::from(value.as_str().unwrap_or_default().to_ascii_lowercase()),
        FieldType::Json if !value.is_object() => {
            return fail(
                "type",
                format!("{} must be an object", field.name),
                json!({"type": "object"}),
            );
        }
        _ => value.clone(),
    };
    if let (Some(max), Some(s)) = (field.max_len, normalised.as_str())
        && s.chars().count() > max
    {
        return fail(
            "maxLength",
            format!("{} must NOT have more than {max} characters", field.name),
            json!({"limit": max}),
        );
    }
    if field.required
        && field.ty == FieldType::Text
        && normalised.as_str().is_some_and(|s| s.trim().is_empty())
    {
        return fail(
            "minLength",
            format!("{} must not be empty", field.name),
            json!({"limit": 1}),
        );
    }
    match (field.name, field.ty) {
        ("key", FieldType::Text) => {
            let key = normalised.as_str().unwrap_or_default();
            if !key
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            {
                return fail(
                    "pattern",
                    "key must match pattern \"^[a-z0-9]+$\"".into(),
                    json!({"pattern": "^[a-z0-9]+$"}),
                );
            }
        }
        ("email", FieldType::Text) if !is_email(normalised.as_str().unwrap_or_default()) => {
            return fail(
                "format",
                "email must be a valid email address".into(),
                json!({"format": "email"}),
            );
        }
        ("currencyCode", _) => {
            let code = normalised.as_str().unwrap_or_default();
            if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_uppercase()) {
                return fail(
                    "pattern",
                    "currencyCode must be a three-letter ISO 4217 code such as \"USD\"".into(),
                    json!({"pattern": "^[A-Z]{3}$"}),
                );
            }
        }
        (_, FieldType::TextArray) => return domains(field, &normalised),
        _ => {}
    }
    Ok(normalised)
}

/// Whether a string anywhere in `value` holds U+0000, which PostgreSQL cannot store in text or
/// jsonb (refused on both databases so they agree).
fn contains_nul(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(contains_nul),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || contains_nul(v)),
        _ => false,
    }
}

/// `domains`: unique, valid hostnames, lower-cased.
fn domains(field: &Field, value: &Value) -> Result<Value, ValidationDetail> {
    let path = format!("/{}", field.name);
    let items: Vec<String> = value
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str())
                .map(|s| s.trim().to_ascii_lowercase())
                .collect()
        })
        .unwrap_or_default();
    if items.len() > 100 {
        return Err(ValidationDetail::new(
            path,
            "maxItems",
            format!("{} must NOT have more than 100 items", field.name),
            json!({"limit": 100}),
        ));
    }
    for (i, item) in items.iter().enumerate() {
        if !is_hostname(item) {
            return Err(ValidationDetail::new(
                format!("{path}/{i}"),
                "format",
                format!("{item:?} is not a valid hostname"),
                json!({"format": "hostname"}),
            ));
        }
        if items[..i].contains(item) {
            return Err(ValidationDetail::new(
                path,
                "uniqueItems",
                format!("{} must NOT have duplicate items ({item:?})", field.name),
                json!({"duplicate": item}),
            ));
        }
    }
    Ok(Value::from(items))
}

/// RFC 1123 hostname: dot-separated labels of letters, digits and inner hyphens, each at most
/// 63 characters, 253 in all.
pub fn is_hostname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// An address tms can mail: `local@domain` with a hostname domain of at least two labels, a
/// local part of at most 64 characters that is a dot-atom (RFC 5322: no leading, trailing or
/// doubled dots, no specials such as `,;:<>()[]\"`), and accepted by the mail library.
pub fn is_email(s: &str) -> bool {
    let Some((local, domain)) = s.rsplit_once('@') else {
        return false;
    };
    const ATEXT_SPECIALS: &str = "!#$%&'*+-/=?^_`{|}~";
    let dot_atom = !local.is_empty()
        && local.len() <= 64
        && local.split('.').all(|atom| {
            !atom.is_empty()
                && atom.chars().all(|c| {
                    c.is_ascii_alphanumeric() || ATEXT_SPECIALS.contains(c) || !c.is_ascii()
                })
        });
    dot_atom && domain.contains('.') && is_hostname(domain) && s.parse::<lettre::Address>().is_ok()
}

fn type_name(ty: FieldType) -> &'static str {
    match ty {
        FieldType::Uuid => "string (uuid)",
        FieldType::Text => "string",
        FieldType::Bool => "boolean",
        FieldType::Enum(_) => "number (enum)",
        FieldType::Timestamp => "string (date-time)",
        FieldType::Money => "number (decimal)",
        FieldType::Json => "object",
        FieldType::TextArray => "array of strings",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{CONTACTS, INVOICES, TENANTS};

    fn tenant(extra: Value) -> Value {
        let mut base = json!({"name": "Acme", "status": 1, "key": "acme", "domains": ["acme.com"]});
        base.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        base
    }

    fn codes(result: Result<Object, Vec<ValidationDetail>>) -> Vec<(String, String)> {
        result
            .err()
            .unwrap_or_default()
            .into_iter()
            .map(|d| (d.path, d.code.to_string()))
            .collect()
    }

    #[test]
    fn a_valid_tenant_is_normalised() {
        let out = validate(
            &TENANTS,
            &tenant(json!({"domains": ["Acme.COM", "www.acme.com"]})),
            Mode::Create,
        )
        .unwrap();
        assert_eq!(out["domains"], json!(["acme.com", "www.acme.com"]));
    }

    #[test]
    fn each_rule_reports_its_keyword() {
        let cases = [
            (tenant(json!({"key": "Acme"})), "/key", "pattern"),
            (tenant(json!({"key": "abcdefghijk"})), "/key", "maxLength"),
            (tenant(json!({"status": 9})), "/status", "type"),
            (tenant(json!({"status": "1x"})), "/status", "type"),
            (
                tenant(json!({"domains": ["a.com", "A.com"]})),
                "/domains",
                "uniqueItems",
            ),
            (
                tenant(json!({"domains": ["bad domain"]})),
                "/domains/0",
                "format",
            ),
            (tenant(json!({"domains": "acme.com"})), "/domains", "type"),
            (tenant(json!({"nope": 1})), "", "additionalProperties"),
            (tenant(json!({"id": "x"})), "/id", "readOnly"),
            (tenant(json!({"createdBy": "me"})), "/createdBy", "readOnly"),
            (
                tenant(json!({"name": "x".repeat(101)})),
                "/name",
                "maxLength",
            ),
            (tenant(json!({"name": ""})), "/name", "minLength"),
            (tenant(json!({"name": null})), "/name", "type"),
            (tenant(json!({"leadId": "not-a-uuid"})), "/leadId", "type"),
            (tenant(json!({"name": "a\u{0}b"})), "/name", "pattern"),
            (
                tenant(json!({"domains": ["a.com\u{0}"]})),
                "/domains",
                "pattern",
            ),
        ];
        for (body, path, code) in cases {
            assert_eq!(
                codes(validate(&TENANTS, &body, Mode::Create)),
                vec![(path.to_string(), code.to_string())],
                "{body}"
            );
        }
    }

    #[test]
    fn required_fields_depend_on_mode() {
        let missing = codes(validate(&TENANTS, &json!({"name": "x"}), Mode::Create));
        assert_eq!(missing.len(), 3);
        assert!(missing.iter().all(|(_, code)| code == "required"));
        assert!(validate(&TENANTS, &json!({"name": "x"}), Mode::Patch).is_ok());
        assert_eq!(
            codes(validate(&TENANTS, &json!({"name": "x"}), Mode::Replace)).len(),
            3
        );
        assert_eq!(
            codes(validate(&TENANTS, &json!([1]), Mode::Patch)),
            vec![("".into(), "type".into())]
        );
    }

    #[test]
    fn invoices_take_status_names_money_and_dates() {
        let out = validate(
            &INVOICES,
            &json!({"startDate": "2026-01-01", "endDate": "2026-01-31T23:59:59+01:00",
                "amount": "99.50", "currencyCode": "USD", "dueDate": "2026-02-15",
                "status": "paid", "tenantId": "3EF767D9-850C-5871-9A3B-CAC38E100243"}),
            Mode::Create,
        )
        .unwrap();
        assert_eq!(out["status"], json!(1));
        assert_eq!(out["amount"], json!(99.5));
        assert_eq!(out["endDate"], json!("2026-01-31T22:59:59.000Z"));
        assert_eq!(
            out["tenantId"],
            json!("3ef767d9-850c-5871-9a3b-cac38e100243")
        );
        let bad = json!({"amount": 1.23456, "currencyCode": "usd", "dueDate": "soon"});
        let mut found = codes(validate(&INVOICES, &bad, Mode::Patch));
        found.sort();
        assert_eq!(
            found,
            vec![
                ("/amount".into(), "type".into()),
                ("/currencyCode".into(), "pattern".into()),
                ("/dueDate".into(), "type".into()),
            ]
        );
    }

    #[test]
    fn emails_and_hostnames() {
        for good in ["a@b.co", "first.last+tag@sub.example.org"] {
            assert!(is_email(good), "{good}");
        }
        for bad in [
            "",
            "a",
            "a@b",
            "@b.co",
            "a b@c.co",
            "a@-b.co",
            "a@b..co",
            "a..b@c.co",
            ".a@c.co",
            "a.@c.co",
            "a,b@c.co",
            "a;b@c.co",
            "a:b@c.co",
            "a<b>@c.co",
            "a(b)@c.co",
            "a[b]@c.co",
            "a\\b@c.co",
            "a\"b@c.co",
        ] {
            assert!(!is_email(bad), "{bad}");
        }
        assert_eq!(
            codes(validate(&CONTACTS, &json!({"email": "nope"}), Mode::Patch)),
            vec![("/email".into(), "format".into())]
        );
    }
}
