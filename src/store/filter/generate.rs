//! Generators of valid filters, for property tests and cross-database comparisons: random
//! `where` and `filter` JSON for any resource, with values drawn from small sample pools that
//! mix case, non-ASCII text, quotes, LIKE metacharacters and an injection attempt. Compiled for
//! the unit tests and with the `test-support` feature (which the integration tests get through
//! the crate's dev-dependency on itself), never into the service.

use serde_json::{Map, Value};

use super::{MAX_LIMIT, Op};
use crate::model::{Field, FieldType, Resource};

/// Text samples: mixed case, non-ASCII, quotes, LIKE metacharacters and an injection attempt.
pub const SAMPLE_TEXTS: &[&str] = &[
    "",
    "a",
    "acme",
    "Acme",
    "ACME",
    "acme corp",
    "Ärger",
    "ärger",
    "_",
    "50%",
    "x' OR 1=1 --",
    "back\\slash",
    "zeta",
];
/// LIKE patterns over [`SAMPLE_TEXTS`].
pub const SAMPLE_PATTERNS: &[&str] = &[
    "%", "a%", "A%", "%c%", "ACM_", "%me", "_", "%\\%", "\\_", "%r%", "Ä%", "ä%", "%'%", "%\\\\%",
];
/// UUID samples.
pub const SAMPLE_UUIDS: &[&str] = &[
    "00000000-0000-4000-8000-000000000001",
    "00000000-0000-4000-8000-000000000002",
    "7f3c2a9e-1b4d-4c8e-9a6f-2d5e8b1c0f37",
    "ffffffff-ffff-4fff-bfff-ffffffffffff",
];
/// Instant samples (normalised on parsing).
pub const SAMPLE_TIMESTAMPS: &[&str] = &[
    "2025-12-31T23:59:59.999Z",
    "2026-01-01T00:00:00.000Z",
    "2026-01-01",
    "2026-01-01T01:00:00+01:00",
    "2026-06-15T12:30:00.5Z",
];
/// Money samples.
pub const SAMPLE_MONEY: &[&str] = &["0", "-5", "1.5", "99.9999", "100", "1000000"];
/// Domain samples (for the `domains` list).
pub const SAMPLE_DOMAINS: &[&str] = &["acme.com", "a.acme.com", "beta.io", "ACME.com"];

pub(super) fn pick<R: rand::Rng + ?Sized>(rng: &mut R, items: &[&str]) -> Value {
    Value::from(items[rng.random_range(0..items.len())])
}

pub(super) fn random_value<R: rand::Rng + ?Sized>(rng: &mut R, field: &Field) -> Value {
    match field.ty {
        FieldType::Uuid => pick(rng, SAMPLE_UUIDS),
        FieldType::Text | FieldType::Json => pick(rng, SAMPLE_TEXTS),
        FieldType::Bool => Value::Bool(rng.random_bool(0.5)),
        FieldType::Enum(names) => {
            let i = rng.random_range(0..names.len());
            match rng.random_range(0..3) {
                0 => Value::from(names[i]),
                1 => Value::from(i.to_string()),
                _ => Value::from(i),
            }
        }
        FieldType::Timestamp => pick(rng, SAMPLE_TIMESTAMPS),
        FieldType::Money => {
            let v = pick(rng, SAMPLE_MONEY);
            if rng.random_bool(0.5) {
                v
            } else {
                v.as_str()
                    .and_then(|s| s.parse::<f64>().ok())
                    .map_or(v.clone(), Value::from)
            }
        }
        FieldType::TextArray => pick(rng, SAMPLE_DOMAINS),
    }
}

fn random_comparison<R: rand::Rng + ?Sized>(rng: &mut R, field: &Field) -> Value {
    if field.ty == FieldType::TextArray {
        return if rng.random_bool(0.5) {
            random_value(rng, field)
        } else {
            serde_json::json!({ "eq": random_value(rng, field) })
        };
    }
    let ops: &[Op] = if field.ty == FieldType::Text {
        &Op::ALL
    } else {
        &Op::ALL[..9]
    };
    let op = ops[rng.random_range(0..ops.len())];
    let arg = match op {
        Op::Eq | Op::Neq if rng.random_bool(0.15) => Value::Null,
        Op::Inq | Op::Nin => Value::Array(
            (0..rng.random_range(0..4))
                .map(|_| random_value(rng, field))
                .collect(),
        ),
        Op::Between => Value::Array(vec![random_value(rng, field), random_value(rng, field)]),
        op if op.is_pattern() => pick(rng, SAMPLE_PATTERNS),
        _ => random_value(rng, field),
    };
    if op == Op::Eq && rng.random_bool(0.5) {
        return arg; // the implicit form
    }
    let mut obj = Map::new();
    obj.insert(op.name().into(), arg);
    Value::Object(obj)
}

/// A random valid `where` for `resource`, with values from the `SAMPLE_*` pools and `and`/`or`
/// nesting up to `max_depth` levels.
pub fn random_where<R: rand::Rng + ?Sized>(
    resource: &'static Resource,
    rng: &mut R,
    max_depth: usize,
) -> Value {
    let mut obj = Map::new();
    if max_depth > 0 && rng.random_bool(0.35) {
        let key = if rng.random_bool(0.5) { "and" } else { "or" };
        let items = (0..rng.random_range(1..=3))
            .map(|_| random_where(resource, rng, max_depth - 1))
            .collect();
        obj.insert(key.into(), Value::Array(items));
    }
    let filterable: Vec<&Field> = resource
        .fields
        .iter()
        .filter(|f| f.ty != FieldType::Json)
        .collect();
    for _ in 0..rng.random_range(0..=2) {
        let field = filterable[rng.random_range(0..filterable.len())];
        obj.insert(field.name.into(), random_comparison(rng, field));
    }
    Value::Object(obj)
}

/// A random valid `filter` for `resource` (where, fields, order, limit, skip and includes up to
/// `include_depth` levels).
pub fn random_filter<R: rand::Rng + ?Sized>(
    resource: &'static Resource,
    rng: &mut R,
    include_depth: usize,
) -> Value {
    let mut obj = Map::new();
    if rng.random_bool(0.8) {
        obj.insert("where".into(), random_where(resource, rng, 3));
    }
    if rng.random_bool(0.3) {
        let names: Vec<Value> = resource
            .fields
            .iter()
            .filter(|_| rng.random_bool(0.4))
            .map(|f| Value::from(f.name))
            .collect();
        if !names.is_empty() {
            obj.insert("fields".into(), Value::Array(names));
        }
    }
    if rng.random_bool(0.6) {
        let orderable: Vec<&Field> = resource
            .fields
            .iter()
            .filter(|f| !matches!(f.ty, FieldType::Json | FieldType::TextArray))
            .collect();
        let order: Vec<Value> = (0..rng.random_range(1..=3))
            .map(|_| {
                let f = orderable[rng.random_range(0..orderable.len())];
                let dir = ["", " ASC", " DESC", " desc"][rng.random_range(0..4)];
                Value::from(format!("{}{dir}", f.name))
            })
            .collect();
        obj.insert("order".into(), Value::Array(order));
    }
    if rng.random_bool(0.5) {
        obj.insert("limit".into(), Value::from(rng.random_range(1..=MAX_LIMIT)));
    }
    if rng.random_bool(0.3) {
        let key = if rng.random_bool(0.5) {
            "skip"
        } else {
            "offset"
        };
        obj.insert(key.into(), Value::from(rng.random_range(0..50u64)));
    }
    if include_depth > 0 && !resource.relations.is_empty() && rng.random_bool(0.3) {
        let rel = &resource.relations[rng.random_range(0..resource.relations.len())];
        let scope = random_filter((rel.target)(), rng, include_depth - 1);
        obj.insert(
            "include".into(),
            serde_json::json!([{ "relation": rel.name, "scope": scope }]),
        );
    }
    Value::Object(obj)
}
