//! Lead-specific queries of the funnel (everything generic lives in `crud`).

use sea_query::{Alias, Expr, ExprTrait, Func, Order, Query, SelectStatement};
use uuid::Uuid;

use super::crud::{self, Scope};
use super::filter::Where;
use super::{Conn, Object};
use crate::model::{LEADS, TENANTS};

/// Whether a live, validated lead with this email exists. Emails are compared ignoring ASCII
/// case, as `lower()` does on both databases for these columns (binary / "C" collation).
pub async fn validated_email_exists(conn: &mut Conn<'_>, email: &str) -> Result<bool, sqlx::Error> {
    Ok(conn.fetch_count(&validated_email_statement(email)).await? > 0)
}

/// The count behind [`validated_email_exists`]; its conditions are literal where they match the
/// partial index `leads_validated_email_unique`.
pub fn validated_email_statement(email: &str) -> SelectStatement {
    let mut stmt = Query::select();
    stmt.expr(Expr::cust("COUNT(*)"))
        .from(Alias::new(LEADS.table))
        .and_where(crud::live())
        .and_where(Expr::col(Alias::new("is_validated")))
        .and_where(Func::lower(Expr::col(Alias::new("email"))).eq(email.to_ascii_lowercase()));
    stmt
}

/// Whether a live tenant was onboarded from `lead`.
pub async fn has_tenant(conn: &mut Conn<'_>, lead: Uuid) -> Result<bool, sqlx::Error> {
    let lead_id = crate::model::fields::tenant_lead_id();
    let onboarded = Where::uuid_is(lead_id, lead);
    Ok(crud::count(conn, &TENANTS, Some(&onboarded), Scope::All).await? > 0)
}

/// The live leads signed up with `email` (ignoring ASCII case, through `leads_email_idx`),
/// newest first.
pub async fn by_email(conn: &mut Conn<'_>, email: &str) -> Result<Vec<Object>, sqlx::Error> {
    let mut stmt = Query::select();
    stmt.columns(LEADS.fields.iter().map(|f| Alias::new(f.column)))
        .from(Alias::new(LEADS.table))
        .and_where(crud::live())
        .and_where(Func::lower(Expr::col(Alias::new("email"))).eq(email.to_ascii_lowercase()))
        .order_by(Alias::new("created_on"), Order::Desc)
        .order_by(Alias::new("id"), Order::Asc)
        .limit(20);
    let fields: Vec<_> = LEADS.fields.iter().collect();
    conn.fetch_objects(&stmt, &fields).await
}
