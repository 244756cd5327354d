//! JSON to the typed filter: every key, field, operator and relation name is resolved against
//! the resource model, every value is checked against its field's type (for both databases) and
//! normalised, and the caps (depth, conditions, bound values, list lengths) are enforced as it
//! goes. Whatever this accepts renders without error (`sql.rs`).

use serde_json::Value;

use super::ast::{Filter, FilterError, Include, Op, Operand, Order, Repr, Where, err};
use super::{
    LIKE_ESCAPE, MAX_CONDITIONS, MAX_DEPTH, MAX_INCLUDE_DEPTH, MAX_LIST_LEN, MAX_ORDER, MAX_SKIP,
    MAX_VALUES,
};
use crate::model::{Field, FieldType, Resource};
use crate::store::values::{self, Backend};

#[cfg(test)]
mod tests;

/// Parses a `filter` object for `resource`.
pub fn parse_filter(resource: &'static Resource, v: &Value) -> Result<Filter, FilterError> {
    parse_filter_at(resource, v, 0)
}

/// Parses a `where` object for `resource` (`{}` or `null` give an empty `And`, which matches
/// every row).
pub fn parse_where(resource: &'static Resource, v: &Value) -> Result<Where, FilterError> {
    if v.is_null() {
        return Ok(Where::And(Vec::new()));
    }
    let mut budget = Budget::default();
    parse_where_at(resource, v, 0, &mut budget)
}

fn parse_filter_at(
    resource: &'static Resource,
    v: &Value,
    include_depth: usize,
) -> Result<Filter, FilterError> {
    let obj = match v {
        Value::Object(obj) => obj,
        Value::Null => return Ok(Filter::default()),
        _ => return err("filter must be a JSON object"),
    };
    let mut filter = Filter::default();
    let mut skip = None;
    let mut offset = None;
    for (key, value) in obj {
        match key.as_str() {
            "where" => {
                if !value.is_null() {
                    let w = parse_where(resource, value)?;
                    filter.where_ = (!w.is_empty()).then_some(w);
                }
            }
            "fields" => filter.fields = parse_fields(resource, value)?,
            "order" => filter.order = parse_order(resource, value)?,
            "limit" => {
                filter.limit = parse_count("limit", value)?;
                // LoopBack's filter schema has `limit` ≥ 1: the original answers 400 for 0.
                if filter.limit == Some(0) {
                    return err("limit must be a positive integer");
                }
            }
            "skip" => skip = parse_count("skip", value)?,
            "offset" => offset = parse_count("offset", value)?,
            "include" => filter.include = parse_include(resource, value, include_depth + 1)?,
            other => {
                return err(format!(
                    "unknown filter key {other:?}; expected where, fields, order, limit, skip, \
                     offset or include"
                ));
            }
        }
    }
    filter.skip = match (skip, offset) {
        (Some(a), Some(b)) if a != b => return err("skip and offset are both given and differ"),
        (a, b) => a.or(b).filter(|&n| n > 0),
    };
    Ok(filter)
}

/// Counts of one `where`, checked against the caps as it is parsed.
#[derive(Default)]
struct Budget {
    conditions: usize,
    values: usize,
}

impl Budget {
    fn take(&mut self, operand: &Operand) -> Result<(), FilterError> {
        self.conditions += 1;
        self.values += operand.bound();
        if self.conditions > MAX_CONDITIONS {
            return err(format!("where has more than {MAX_CONDITIONS} conditions"));
        }
        if self.values > MAX_VALUES {
            return err(format!("where binds more than {MAX_VALUES} values"));
        }
        Ok(())
    }
}

fn parse_where_at(
    resource: &'static Resource,
    v: &Value,
    depth: usize,
    budget: &mut Budget,
) -> Result<Where, FilterError> {
    let Value::Object(obj) = v else {
        return err("where must be an object");
    };
    let mut parts = Vec::new();
    for (key, value) in obj {
        match key.as_str() {
            "and" | "or" => {
                if depth >= MAX_DEPTH {
                    return err(format!(
                        "where is nested deeper than {MAX_DEPTH} levels of and/or"
                    ));
                }
                let items = match value {
                    Value::Array(items) if !items.is_empty() => items,
                    _ => {
                        return err(format!(
                            "\"{key}\" must be a non-empty array of where objects"
                        ));
                    }
                };
                let items = items
                    .iter()
                    .map(|item| parse_where_at(resource, item, depth + 1, budget))
                    .collect::<Result<Vec<_>, _>>()?;
                parts.push(if key == "and" {
                    Where::And(items)
                } else {
                    Where::Or(items)
                });
            }
            name => {
                let field = resource
                    .field(name)
                    .ok_or_else(|| FilterError::new(format!("unknown field {name:?} in where")))?;
                if field.ty == FieldType::Json {
                    return err(format!("field {name:?} cannot be used in where"));
                }
                match value {
                    Value::Object(ops) => {
                        if ops.is_empty() {
                            return err(format!("no operator given for {name:?}"));
                        }
                        for (op_name, arg) in ops {
                            let op = Op::from_name(op_name).ok_or_else(|| {
                                FilterError::new(format!(
                                    "unknown operator {op_name:?} on {name:?}"
                                ))
                            })?;
                            let operand = parse_operand(field, op, arg)?;
                            budget.take(&operand)?;
                            parts.push(Where::Cmp {
                                field,
                                op,
                                value: operand,
                            });
                        }
                    }
                    _ => {
                        let operand = parse_operand(field, Op::Eq, value)?;
                        budget.take(&operand)?;
                        parts.push(Where::Cmp {
                            field,
                            op: Op::Eq,
                            value: operand,
                        });
                    }
                }
            }
        }
    }
    Ok(if parts.len() == 1 {
        parts.pop().unwrap_or(Where::And(Vec::new()))
    } else {
        Where::And(parts)
    })
}

/// Checks the argument of `op` on `field` and normalises its values.
pub(super) fn parse_operand(
    field: &'static Field,
    op: Op,
    arg: &Value,
) -> Result<Operand, FilterError> {
    let name = field.name;
    let op_name = op.name();
    if field.ty == FieldType::Json {
        return err(format!("field {name:?} cannot be used in where"));
    }
    if field.ty == FieldType::TextArray && op != Op::Eq {
        return err(format!(
            "operator {op_name:?} cannot be used on {name:?}; only equality (contains) is supported"
        ));
    }
    if op.is_pattern() && field.ty != FieldType::Text {
        return err(format!(
            "operator {op_name:?} can only be used on text fields, not on {name:?}"
        ));
    }
    let repr = match op {
        Op::Eq | Op::Neq if arg.is_null() => Repr::Null,
        Op::Eq | Op::Neq | Op::Gt | Op::Gte | Op::Lt | Op::Lte => {
            if arg.is_null() {
                return err(format!("operator {op_name:?} on {name:?} cannot take null"));
            }
            Repr::One(normalise(field, arg)?)
        }
        Op::Inq | Op::Nin => {
            let items: Vec<&Value> = match arg {
                Value::Array(items) => items.iter().collect(),
                Value::Null | Value::Object(_) => {
                    return err(format!(
                        "operator {op_name:?} on {name:?} takes an array of values"
                    ));
                }
                // The bracket form gives a lone value for a one-element list.
                scalar => vec![scalar],
            };
            if items.len() > MAX_LIST_LEN {
                return err(format!(
                    "operator {op_name:?} on {name:?} takes at most {MAX_LIST_LEN} values"
                ));
            }
            let values = items
                .into_iter()
                .map(|item| {
                    if item.is_null() {
                        err(format!(
                            "operator {op_name:?} on {name:?} cannot take null in its list"
                        ))
                    } else {
                        normalise(field, item)
                    }
                })
                .collect::<Result<Vec<_>, _>>()?;
            Repr::List(values)
        }
        Op::Between => match arg {
            Value::Array(items) if items.len() == 2 && items.iter().all(|i| !i.is_null()) => {
                Repr::Range(normalise(field, &items[0])?, normalise(field, &items[1])?)
            }
            _ => {
                return err(format!(
                    "operator \"between\" on {name:?} takes an array of exactly two non-null values"
                ));
            }
        },
        Op::Like | Op::Nlike | Op::Ilike | Op::Nilike => {
            let Value::String(pattern) = arg else {
                return err(format!(
                    "operator {op_name:?} on {name:?} takes a string pattern"
                ));
            };
            check_text(name, pattern)?;
            if ends_with_lone_escape(pattern) {
                return err(format!(
                    "pattern for {name:?} ends with an unescaped backslash"
                ));
            }
            Repr::One(Value::String(pattern.clone()))
        }
    };
    Ok(Operand(repr))
}

/// Whether the pattern ends with an escape character that escapes nothing.
fn ends_with_lone_escape(pattern: &str) -> bool {
    let trailing = pattern
        .chars()
        .rev()
        .take_while(|&c| c == LIKE_ESCAPE)
        .count();
    trailing % 2 == 1
}

fn check_text(name: &str, s: &str) -> Result<(), FilterError> {
    if s.contains('\0') {
        return err(format!(
            "invalid value for {name:?}: must not contain NUL characters"
        ));
    }
    Ok(())
}

/// Coerces a value to the field's wire type (the bracket form gives only strings) and checks
/// that it binds on both databases. Returns the normalised value.
pub(super) fn normalise(field: &'static Field, v: &Value) -> Result<Value, FilterError> {
    let name = field.name;
    let bad = |problem: &str| FilterError::new(format!("invalid value for {name:?}: {problem}"));
    let normalised = match (field.ty, v) {
        (FieldType::Bool, Value::String(s)) => match s.to_ascii_lowercase().as_str() {
            "true" | "1" => Value::Bool(true),
            "false" | "0" => Value::Bool(false),
            _ => return Err(bad("must be a boolean")),
        },
        (FieldType::Enum(names), _) => {
            Value::from(values::enum_value(names, v).map_err(|e| bad(&e))?)
        }
        (FieldType::Uuid, Value::String(s)) => match uuid::Uuid::parse_str(s) {
            Ok(id) => Value::String(id.hyphenated().to_string()),
            Err(_) => return Err(bad(&format!("{s:?} is not a UUID"))),
        },
        (FieldType::Timestamp, Value::String(s)) => match values::check_timestamp(s) {
            Ok(t) => Value::String(values::format_timestamp(&t)),
            Err(problem) => return Err(bad(&format!("{s:?} {problem}"))),
        },
        (FieldType::Money, _) => {
            Value::String(values::parse_money(v).map_err(|e| bad(&e))?.to_string())
        }
        (FieldType::Text | FieldType::TextArray, Value::String(s)) => {
            check_text(name, s)?;
            v.clone()
        }
        (FieldType::TextArray, _) => return Err(bad("must be a string (a domain to look for)")),
        _ => v.clone(),
    };
    // Every value must bind on both databases, so that a bad one is a 400 here and never a
    // failure when the statement runs. A list field is compared with one of its items.
    if field.ty != FieldType::TextArray {
        for backend in [Backend::Postgres, Backend::Sqlite] {
            values::to_db(backend, field, &normalised).map_err(|e| bad(&e))?;
        }
    }
    Ok(normalised)
}

fn parse_count(key: &str, v: &Value) -> Result<Option<u64>, FilterError> {
    let bad = || FilterError::new(format!("{key} must be a non-negative integer"));
    let n = match v {
        Value::Null => return Ok(None),
        Value::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
            (Some(n), _, _) => n,
            (None, Some(_), _) => return Err(bad()),
            (None, None, Some(f)) if f >= 0.0 && f.fract() == 0.0 && f <= MAX_SKIP as f64 => {
                f as u64
            }
            _ => return Err(bad()),
        },
        Value::String(s) => s.parse::<u64>().map_err(|_| bad())?,
        _ => return Err(bad()),
    };
    if n > MAX_SKIP {
        return err(format!("{key} is too large"));
    }
    Ok(Some(n))
}

fn parse_fields(
    resource: &'static Resource,
    v: &Value,
) -> Result<Option<Vec<&'static Field>>, FilterError> {
    let lookup = |name: &str| {
        resource
            .field(name)
            .ok_or_else(|| FilterError::new(format!("unknown field {name:?} in fields")))
    };
    let (included, excluded): (Vec<&'static Field>, Vec<&'static Field>) = match v {
        Value::Null => return Ok(None),
        Value::String(name) => (vec![lookup(name)?], vec![]),
        Value::Array(items) => {
            let mut included = Vec::new();
            for item in items {
                let Value::String(name) = item else {
                    return err("fields must be an object or an array of field names");
                };
                included.push(lookup(name)?);
            }
            (included, vec![])
        }
        Value::Object(map) => {
            let mut included = Vec::new();
            let mut excluded = Vec::new();
            for (name, flag) in map {
                let field = lookup(name)?;
                let flag = match flag {
                    Value::Bool(b) => *b,
                    Value::Number(n) if n.as_u64() == Some(1) => true,
                    Value::Number(n) if n.as_u64() == Some(0) => false,
                    Value::String(s) if s.eq_ignore_ascii_case("true") || s == "1" => true,
                    Value::String(s) if s.eq_ignore_ascii_case("false") || s == "0" => false,
                    _ => return err(format!("fields.{name} must be true or false")),
                };
                if flag {
                    included.push(field);
                } else {
                    excluded.push(field);
                }
            }
            (included, excluded)
        }
        _ => return err("fields must be an object or an array of field names"),
    };
    let selected: Vec<&'static Field> = if !included.is_empty() {
        // As LoopBack: when any field is set to true, exactly those are returned.
        resource
            .fields
            .iter()
            .filter(|f| included.iter().any(|i| std::ptr::eq(*i, *f)))
            .collect()
    } else if !excluded.is_empty() {
        resource
            .fields
            .iter()
            .filter(|f| !excluded.iter().any(|e| std::ptr::eq(*e, *f)))
            .collect()
    } else {
        return Ok(None);
    };
    if selected.is_empty() {
        return err("fields excludes every field");
    }
    Ok(Some(selected))
}

fn parse_order(resource: &'static Resource, v: &Value) -> Result<Vec<Order>, FilterError> {
    let entries: Vec<&str> = match v {
        Value::Null => return Ok(Vec::new()),
        Value::String(s) => s.split(',').collect(),
        Value::Array(items) => {
            let mut entries = Vec::new();
            for item in items {
                let Value::String(s) = item else {
                    return err("order must be a string or an array of strings");
                };
                entries.push(s.as_str());
            }
            entries
        }
        _ => return err("order must be a string or an array of strings"),
    };
    if entries.len() > MAX_ORDER {
        return err(format!("order has more than {MAX_ORDER} entries"));
    }
    let mut order = Vec::with_capacity(entries.len());
    for entry in entries {
        let mut words = entry.split_whitespace();
        let (Some(name), direction, None) = (words.next(), words.next(), words.next()) else {
            return err(format!(
                "invalid order {entry:?}; expected \"field\", \"field ASC\" or \"field DESC\""
            ));
        };
        let field = resource
            .field(name)
            .ok_or_else(|| FilterError::new(format!("unknown field {name:?} in order")))?;
        if matches!(field.ty, FieldType::Json | FieldType::TextArray) {
            return err(format!("field {name:?} cannot be used in order"));
        }
        let descending = match direction {
            None => false,
            Some(d) if d.eq_ignore_ascii_case("asc") => false,
            Some(d) if d.eq_ignore_ascii_case("desc") => true,
            Some(d) => {
                return err(format!(
                    "invalid order direction {d:?} for {name:?}; expected ASC or DESC"
                ));
            }
        };
        order.push(Order { field, descending });
    }
    Ok(order)
}

fn parse_include(
    resource: &'static Resource,
    v: &Value,
    depth: usize,
) -> Result<Vec<Include>, FilterError> {
    let items: Vec<&Value> = match v {
        Value::Null => return Ok(Vec::new()),
        Value::Array(items) => items.iter().collect(),
        single => vec![single],
    };
    if items.is_empty() {
        return Ok(Vec::new());
    }
    if depth > MAX_INCLUDE_DEPTH {
        return err(format!(
            "include is nested deeper than {MAX_INCLUDE_DEPTH} levels"
        ));
    }
    let mut includes: Vec<Include> = Vec::with_capacity(items.len());
    for item in items {
        let (name, scope) = match item {
            Value::String(name) => (name.as_str(), None),
            Value::Object(obj) => {
                if let Some(key) = obj.keys().find(|k| *k != "relation" && *k != "scope") {
                    return err(format!(
                        "unknown include key {key:?}; expected relation and scope"
                    ));
                }
                let Some(Value::String(name)) = obj.get("relation") else {
                    return err("include entries need a \"relation\" name");
                };
                (name.as_str(), obj.get("scope"))
            }
            _ => return err("include must be a relation name, an object or an array of them"),
        };
        let relation = resource
            .relation(name)
            .ok_or_else(|| FilterError::new(format!("unknown relation {name:?} in include")))?;
        if includes.iter().any(|i| std::ptr::eq(i.relation, relation)) {
            return err(format!("relation {name:?} is included twice"));
        }
        let scope = match scope {
            None => Filter::default(),
            Some(scope) => parse_filter_at((relation.target)(), scope, depth)
                .map_err(|e| e.context(&format!("in the scope of include {name:?}")))?,
        };
        includes.push(Include { relation, scope });
    }
    Ok(includes)
}
