//! Lead-specific queries of the funnel (everything generic lives in `crud`).

use sea_query::{Alias, Expr, ExprTrait, Func, Query};
use uuid::Uuid;

use super::Conn;
use crate::model::{LEADS, TENANTS};

/// Whether a live, validated lead with this email exists. Emails are compared ignoring ASCII
/// case, as `lower()` does on both databases for these columns (binary / "C" collation).
pub async fn validated_email_exists(conn: &mut Conn<'_>, email: &str) -> Result<bool, sqlx::Error> {
    let mut stmt = Query::select();
    stmt.expr(Expr::cust("COUNT(*)"))
        .from(Alias::new(LEADS.table))
        .and_where(Expr::col(Alias::new("deleted")).eq(false))
        .and_where(Expr::col(Alias::new("is_validated")).eq(true))
        .and_where(Func::lower(Expr::col(Alias::new("email"))).eq(email.to_ascii_lowercase()));
    Ok(conn.fetch_count(&stmt).await? > 0)
}

/// Whether a live tenant was onboarded from `lead`.
pub async fn has_tenant(conn: &mut Conn<'_>, lead: Uuid) -> Result<bool, sqlx::Error> {
    let lead = Expr::val(super::values::uuid_value(conn.backend(), lead));
    let mut stmt = Query::select();
    stmt.expr(Expr::cust("COUNT(*)"))
        .from(Alias::new(TENANTS.table))
        .and_where(Expr::col(Alias::new("deleted")).eq(false))
        .and_where(Expr::col(Alias::new("lead_id")).eq(lead));
    Ok(conn.fetch_count(&stmt).await? > 0)
}
