//! The LoopBack filter dialect (`?filter=` and `?where=`): parsing from the query string (JSON or
//! bracket form), resolution of every name against the resource model into a typed AST, and
//! translation into a parameterised sea-query condition and ordering that give the same rows on
//! SQLite and PostgreSQL. The dialect is described for clients in `docs/filters.md`.
//!
//! A request's filter goes through the submodules in this order:
//! - `query`: the `filter`/`where` parameter of the query string, as JSON or in bracket form;
//! - `parse`: that JSON resolved against the resource model and checked against the limits
//!   below, into the types of `ast` (`Filter`, `Where`, `Op`, … and `FilterError`);
//! - `sql`: those types rendered into sea-query (`condition`, `apply`, `order_window`).
//!
//! `generate` makes random valid filters for the tests (unit tests and the `test-support`
//! feature only). The tests of each submodule are in its `tests.rs` (`parse/tests.rs`, …);
//! `tests.rs` holds their shared helpers and the tests of the dialect as a whole.

mod ast;
#[cfg(any(test, feature = "test-support"))]
mod generate;
mod parse;
mod query;
mod sql;

pub use ast::{Filter, FilterError, Include, Op, Operand, Order, Where};
#[cfg(any(test, feature = "test-support"))]
pub use generate::{
    SAMPLE_DOMAINS, SAMPLE_MONEY, SAMPLE_PATTERNS, SAMPLE_TEXTS, SAMPLE_TIMESTAMPS, SAMPLE_UUIDS,
    random_filter, random_where,
};
pub use parse::{parse_filter, parse_where};
pub use query::query_param;
pub use sql::{apply, condition, order_window};

/// The default cap on the rows of a list and on the related rows per row of an include
/// (`MAX_LIST_LIMIT`).
pub const MAX_LIMIT: u64 = 1000;
/// Deepest nesting of `and`/`or` accepted in one `where`.
pub const MAX_DEPTH: usize = 8;
/// Deepest nesting of `include` (an include inside an include scope is depth 2).
pub const MAX_INCLUDE_DEPTH: usize = 2;
/// Most comparisons accepted in one `where`.
pub const MAX_CONDITIONS: usize = 100;
/// Most values accepted in one `inq`/`nin` list.
pub const MAX_LIST_LEN: usize = 1000;
/// Most values bound by one `where` (well below the parameter limits of both databases).
pub const MAX_VALUES: usize = 2000;
/// Most entries in `order`.
pub const MAX_ORDER: usize = 32;
/// Largest `skip`/`offset` accepted (what a signed 64-bit parameter holds).
pub const MAX_SKIP: u64 = i64::MAX as u64;

/// LIKE patterns use this escape character on both databases (PostgreSQL's default).
const LIKE_ESCAPE: char = '\\';

#[cfg(test)]
mod tests;
