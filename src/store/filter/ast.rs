//! The typed filter: what parsing produces and rendering consumes. Every field and relation in
//! it is resolved against the resource model, and every value is checked and normalised, so a
//! value of these types always renders to valid SQL on both databases.

use std::fmt;

use serde_json::Value;

use super::MAX_VALUES;
use super::parse::parse_operand;
use crate::model::{Field, FieldType, Relation};

#[cfg(test)]
mod tests;

/// A filter that cannot be used; the message names the problem.
#[derive(Debug, Clone, PartialEq)]
pub struct FilterError(pub String);

impl FilterError {
    pub(super) fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }

    pub(super) fn context(self, prefix: &str) -> Self {
        Self(format!("{prefix}: {}", self.0))
    }
}

impl fmt::Display for FilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for FilterError {}

pub(super) fn err<T>(message: impl Into<String>) -> Result<T, FilterError> {
    Err(FilterError::new(message))
}

/// A comparison operator of the dialect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Neq,
    Gt,
    Gte,
    Lt,
    Lte,
    Inq,
    Nin,
    Between,
    Like,
    Nlike,
    Ilike,
    Nilike,
}

impl Op {
    /// Every operator, in the order of the documentation.
    pub const ALL: [Op; 13] = [
        Op::Eq,
        Op::Neq,
        Op::Gt,
        Op::Gte,
        Op::Lt,
        Op::Lte,
        Op::Inq,
        Op::Nin,
        Op::Between,
        Op::Like,
        Op::Nlike,
        Op::Ilike,
        Op::Nilike,
    ];

    /// The wire name (`"gte"`).
    pub fn name(self) -> &'static str {
        match self {
            Op::Eq => "eq",
            Op::Neq => "neq",
            Op::Gt => "gt",
            Op::Gte => "gte",
            Op::Lt => "lt",
            Op::Lte => "lte",
            Op::Inq => "inq",
            Op::Nin => "nin",
            Op::Between => "between",
            Op::Like => "like",
            Op::Nlike => "nlike",
            Op::Ilike => "ilike",
            Op::Nilike => "nilike",
        }
    }

    pub fn from_name(name: &str) -> Option<Op> {
        Op::ALL.into_iter().find(|op| op.name() == name)
    }

    pub(super) fn is_pattern(self) -> bool {
        matches!(self, Op::Like | Op::Nlike | Op::Ilike | Op::Nilike)
    }
}

/// The right-hand side of a comparison: JSON values already checked against the field's type
/// for both databases and normalised (enums as numbers, instants as UTC milliseconds, UUIDs
/// lowercase). Only the parser builds one, so rendering it cannot fail.
#[derive(Debug, Clone, PartialEq)]
pub struct Operand(pub(super) Repr);

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Repr {
    Null,
    One(Value),
    List(Vec<Value>),
    Range(Value, Value),
}

impl Operand {
    /// `IS NULL` / `IS NOT NULL` (only with `eq`/`neq`).
    pub fn is_null(&self) -> bool {
        matches!(self.0, Repr::Null)
    }

    /// The normalised values, in order.
    pub fn values(&self) -> Vec<&Value> {
        match &self.0 {
            Repr::Null => vec![],
            Repr::One(v) => vec![v],
            Repr::List(vs) => vs.iter().collect(),
            Repr::Range(a, b) => vec![a, b],
        }
    }

    /// How many parameters this operand binds.
    pub(super) fn bound(&self) -> usize {
        match &self.0 {
            Repr::Null => 0,
            Repr::One(_) => 1,
            Repr::List(vs) => vs.len(),
            Repr::Range(..) => 2,
        }
    }
}

/// A parsed `where`.
#[derive(Debug, Clone)]
pub enum Where {
    And(Vec<Where>),
    Or(Vec<Where>),
    Cmp {
        field: &'static Field,
        op: Op,
        value: Operand,
    },
}

impl PartialEq for Where {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Where::And(a), Where::And(b)) | (Where::Or(a), Where::Or(b)) => a == b,
            (
                Where::Cmp {
                    field: f1,
                    op: o1,
                    value: v1,
                },
                Where::Cmp {
                    field: f2,
                    op: o2,
                    value: v2,
                },
            ) => std::ptr::eq(*f1, *f2) && o1 == o2 && v1 == v2,
            _ => false,
        }
    }
}

impl Where {
    /// One comparison built in code (`tenantId inq [...]` for an include), with the same checks
    /// as a parsed one.
    pub fn cmp(field: &'static Field, op: Op, value: &Value) -> Result<Where, FilterError> {
        if field.ty == FieldType::Json {
            return err(format!("field \"{}\" cannot be used in where", field.name));
        }
        let value = parse_operand(field, op, value)?;
        if value.bound() > MAX_VALUES {
            return err(format!("where binds more than {MAX_VALUES} values"));
        }
        Ok(Where::Cmp { field, op, value })
    }

    /// `field = id`, for a field holding UUIDs (an id, `tenantId`): a UUID always fits, so it
    /// needs none of the checks of [`Where::cmp`].
    pub fn uuid_is(field: &'static Field, id: uuid::Uuid) -> Where {
        debug_assert_eq!(field.ty, FieldType::Uuid, "{}", field.name);
        Self::equal(field, Value::String(id.hyphenated().to_string()))
    }

    /// `field = flag`, for a boolean field.
    pub fn bool_is(field: &'static Field, flag: bool) -> Where {
        debug_assert_eq!(field.ty, FieldType::Bool, "{}", field.name);
        Self::equal(field, Value::Bool(flag))
    }

    /// `field = code`, for an enum field (a status) and one of its codes.
    pub fn code_is(field: &'static Field, code: i64) -> Where {
        debug_assert!(
            matches!(field.ty, FieldType::Enum(names) if (0..names.len() as i64).contains(&code)),
            "{} = {code}",
            field.name
        );
        Self::equal(field, Value::from(code))
    }

    /// `field = value` with `value` already in the normalised form of its type.
    fn equal(field: &'static Field, value: Value) -> Where {
        Where::Cmp {
            field,
            op: Op::Eq,
            value: Operand(Repr::One(value)),
        }
    }

    /// Whether this matches every row (an empty `where`).
    pub fn is_empty(&self) -> bool {
        match self {
            Where::And(items) => items.iter().all(Where::is_empty),
            _ => false,
        }
    }

    /// The value `field` must equal when that is all this `where` says (`{"status": 1}`, also
    /// inside `and`s with nothing else); `None` when it says anything else or nothing.
    pub fn only_equality_on(&self, field: &'static Field) -> Option<&Value> {
        match self {
            Where::Cmp {
                field: f,
                op: Op::Eq,
                value: Operand(Repr::One(value)),
            } if std::ptr::eq(*f, field) => Some(value),
            Where::And(items) => {
                let mut said = items.iter().filter(|w| !w.is_empty());
                let only = said.next()?;
                match said.next() {
                    None => only.only_equality_on(field),
                    Some(_) => None,
                }
            }
            _ => None,
        }
    }
}

/// One `order` entry.
#[derive(Debug, Clone)]
pub struct Order {
    pub field: &'static Field,
    pub descending: bool,
}

impl PartialEq for Order {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self.field, other.field) && self.descending == other.descending
    }
}

/// One `include` entry: a relation and the filter for its rows.
#[derive(Debug, Clone)]
pub struct Include {
    pub relation: &'static Relation,
    pub scope: Filter,
}

impl PartialEq for Include {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self.relation, other.relation) && self.scope == other.scope
    }
}

/// A parsed filter.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// `None` when absent or empty (every row).
    pub where_: Option<Where>,
    /// The selected fields in the resource's declaration order; `None` means all.
    pub fields: Option<Vec<&'static Field>>,
    pub order: Vec<Order>,
    /// `None` when absent. Lists cap it (see [`Filter::capped`]).
    pub limit: Option<u64>,
    /// `None` when absent or `0`.
    pub skip: Option<u64>,
    pub include: Vec<Include>,
}

impl Filter {
    /// Every row and field, with `relations` included whole: how the rules read a row with the
    /// rows around it.
    pub fn including(relations: &[&'static Relation]) -> Self {
        Filter {
            include: relations
                .iter()
                .map(|relation| Include {
                    relation,
                    scope: Filter::default(),
                })
                .collect(),
            ..Filter::default()
        }
    }

    /// This filter with its `limit`, and the `limit` of every included relation's scope, at most
    /// `max`: a list answers at most `max` rows, and at most `max` related rows per row and
    /// relation, whatever the filter asks (`MAX_LIST_LIMIT`).
    pub fn capped(mut self, max: u64) -> Self {
        self.limit = Some(self.limit.map_or(max, |limit| Ord::min(limit, max)));
        self.include = self
            .include
            .into_iter()
            .map(|include| Include {
                relation: include.relation,
                scope: include.scope.capped(max),
            })
            .collect();
        self
    }
}

impl PartialEq for Filter {
    fn eq(&self, other: &Self) -> bool {
        let same_fields = match (&self.fields, &other.fields) {
            (None, None) => true,
            (Some(a), Some(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| std::ptr::eq(*x, *y))
            }
            _ => false,
        };
        self.where_ == other.where_
            && same_fields
            && self.order == other.order
            && self.limit == other.limit
            && self.skip == other.skip
            && self.include == other.include
    }
}
