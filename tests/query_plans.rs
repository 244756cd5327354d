//! The common queries use their indexes on both databases: the statements the store really runs
//! (built by the same functions) are explained on a migrated database (on PostgreSQL with 5,000
//! analysed tenants, otherwise empty). On PostgreSQL the plan is the *generic* one of a prepared
//! statement (what a pooled connection runs after a few executions) with sequential scans
//! disabled, so a condition that cannot be matched to a partial index shows as a scan of another
//! index or of the table. Ordered pages come in their index's order, without a sort. The
//! outbox's claim reads the heads' index on both.

mod common;

use common::*;
use sea_query::{PostgresQueryBuilder, SelectStatement, SqliteQueryBuilder};
use sea_query_sqlx::SqlxBinder;
use sqlx::{AssertSqlSafe, Executor, Row};
use tms::model::{self, Resource};
use tms::store::crud::{self, Scope};
use tms::store::filter::{self, Filter};
use tms::store::{self, Backend};
use uuid::Uuid;

const SOME_ID: &str = "0b4c1a4e-5f7c-4d8e-9a61-3b2f0c9d1e7a";

fn parsed(resource: &'static Resource, value: Value) -> Filter {
    filter::parse_filter(resource, &value).expect("a valid filter")
}

/// (what, statement, the index it must use) for every common query on `backend`.
fn common_queries(backend: Backend) -> Vec<(&'static str, SelectStatement, &'static str)> {
    let id = Uuid::parse_str(SOME_ID).unwrap();
    let key = Value::from(SOME_ID);
    let pk = |table: &'static str| match backend {
        Backend::Postgres => match table {
            "tenants" => "tenants_pkey",
            "leads" => "leads_pkey",
            _ => "addresses_pkey",
        },
        Backend::Sqlite => match table {
            "tenants" => "sqlite_autoindex_tenants_1",
            "leads" => "sqlite_autoindex_leads_1",
            _ => "sqlite_autoindex_addresses_1",
        },
    };
    // As lists run them: capped, so every include is paged per parent.
    let include = |resource: &'static Resource, relation: &str| {
        crud::include_statement(
            resource.relation(relation).unwrap(),
            &[&key],
            &Filter::default().capped(1000),
            backend,
        )
    };
    let by_tenant = |resource: &'static Resource| {
        crud::find_statement(
            resource,
            &parsed(
                resource,
                json!({"where": {"tenantId": SOME_ID}, "limit": 100}),
            ),
            Scope::All,
            backend,
        )
    };
    vec![
        (
            "tenant by id",
            crud::find_by_id_statement(
                &model::TENANTS,
                id,
                &Filter::default(),
                Scope::All,
                backend,
            ),
            pk("tenants"),
        ),
        (
            "lead by id",
            crud::find_by_id_statement(&model::LEADS, id, &Filter::default(), Scope::All, backend),
            pk("leads"),
        ),
        (
            "tenant's contacts (include)",
            include(&model::TENANTS, "contacts"),
            "contacts_tenant_id_idx",
        ),
        (
            "tenant's resources (include)",
            include(&model::TENANTS, "resources"),
            "resources_tenant_id_idx",
        ),
        (
            "tenant's address (include)",
            include(&model::TENANTS, "address"),
            pk("addresses"),
        ),
        (
            "lead's tenant (include)",
            include(&model::LEADS, "tenant"),
            "tenants_lead_id_unique",
        ),
        (
            "tenants onboarded from a lead (count)",
            crud::count_statement(
                &model::TENANTS,
                Some(&filter::parse_where(&model::TENANTS, &json!({"leadId": SOME_ID})).unwrap()),
                Scope::All,
                backend,
            ),
            "tenants_lead_id_unique",
        ),
        (
            "validated lead with an email (sign-up)",
            store::leads::validated_email_statement("ada@acme.com"),
            "leads_validated_email_unique",
        ),
        (
            "tenant by key",
            crud::find_statement(
                &model::TENANTS,
                &parsed(&model::TENANTS, json!({"where": {"key": "acme"}})),
                Scope::All,
                backend,
            ),
            "tenants_key_unique",
        ),
        (
            "a lead token's contacts",
            crud::find_statement(
                &model::CONTACTS,
                &Filter::default(),
                Scope::Lead(id),
                backend,
            ),
            "contacts_tenant_id_idx",
        ),
        (
            "contacts by tenant",
            by_tenant(&model::CONTACTS),
            "contacts_tenant_id_idx",
        ),
        (
            "invoices by tenant",
            by_tenant(&model::INVOICES),
            "invoices_tenant_id_idx",
        ),
        (
            "configs by tenant",
            by_tenant(&model::TENANT_CONFIGS),
            "tenant_mgmt_configs_tenant_id_idx",
        ),
        (
            "tenant by one of its domains",
            crud::find_statement(
                &model::TENANTS,
                &parsed(&model::TENANTS, json!({"where": {"domains": "acme.io"}})),
                Scope::All,
                backend,
            ),
            match backend {
                Backend::Postgres => "tenants_domains_idx",
                Backend::Sqlite => "tenant_domains USING PRIMARY KEY",
            },
        ),
        (
            "tenants of a status (count, from the counters)",
            crud::count_statement(
                &model::TENANTS,
                Some(&filter::parse_where(&model::TENANTS, &json!({"status": 1})).unwrap()),
                Scope::All,
                backend,
            ),
            match backend {
                Backend::Postgres => "tenant_status_counts_pkey",
                Backend::Sqlite => "tenant_status_counts USING PRIMARY KEY",
            },
        ),
        (
            "tenants of a status but one key (count, from the table)",
            crud::count_statement(
                &model::TENANTS,
                Some(
                    &filter::parse_where(
                        &model::TENANTS,
                        &json!({"status": 1, "key": {"neq": "acme"}}),
                    )
                    .unwrap(),
                ),
                Scope::All,
                backend,
            ),
            "tenants_status_created_on_idx",
        ),
    ]
}

/// (what, statement, the index it must use) for pages of an ordered list, which must also come
/// in the index's order, without a sort: their cost is the page's, however many rows there are.
fn ordered_pages(backend: Backend) -> Vec<(&'static str, SelectStatement, &'static str)> {
    let page = |value: Value| {
        crud::find_statement(
            &model::TENANTS,
            &parsed(&model::TENANTS, value),
            Scope::All,
            backend,
        )
    };
    vec![
        (
            "tenants of a status, newest first",
            page(json!({"where": {"status": 0}, "order": "createdOn DESC", "limit": 20})),
            "tenants_status_created_on_idx",
        ),
        (
            "tenants of a status, oldest first",
            page(json!({"where": {"status": 0}, "order": "createdOn ASC", "limit": 20})),
            "tenants_status_created_on_idx",
        ),
        (
            "all tenants, newest first",
            page(json!({"order": "createdOn DESC", "limit": 20, "skip": 40})),
            "tenants_created_on_idx",
        ),
        (
            "tenants by name",
            page(json!({"order": "name ASC", "limit": 20, "skip": 400})),
            "tenants_name_idx",
        ),
        (
            "tenants by name, last first",
            page(json!({"order": "name DESC", "limit": 20})),
            "tenants_name_idx",
        ),
    ]
}

/// (what, hand-written statement with `$1`, `$2` (an instant, a limit), the index it must use):
/// the scans of the billing run.
const RAW_QUERIES: [(&str, &str, &str); 2] = [
    (
        "billing: accounts due",
        tms::store::invoices::DUE_ACCOUNTS,
        "tenant_billing_due_idx",
    ),
    (
        "billing: invoices newly overdue",
        tms::store::invoices::NEWLY_OVERDUE,
        "invoices_pending_due_idx",
    ),
];

/// 5,000 tenants of every status, created a minute apart, each with a domain; then analysed.
const TENANTS_SEED: &str = "INSERT INTO tenants (id, name, status, key, domains, created_on, \
     modified_on) SELECT md5(i::text)::uuid, 'Tenant ' || md5(i::text), i % 7, 'k' || i, \
     ARRAY['t' || i || '.example.com'], now() - i * interval '1 minute', now() \
     FROM generate_series(1, 5000) AS i; ANALYZE tenants";

/// The plan PostgreSQL would use for `sql` (parameters: an instant, a limit) as a prepared
/// statement run many times.
async fn postgres_raw_plan(conn: &mut sqlx::PgConnection, name: &str, sql: &str) -> String {
    let statement = format!(
        "plan_{}",
        name.replace(|c: char| !c.is_ascii_alphanumeric(), "_")
    );
    conn.execute(AssertSqlSafe(format!("PREPARE {statement} AS {sql}")))
        .await
        .unwrap_or_else(|e| panic!("cannot prepare {name}: {e}\n{sql}"));
    let lines: Vec<String> = sqlx::query_scalar(AssertSqlSafe(format!(
        "EXPLAIN EXECUTE {statement}(now(), 100)"
    )))
    .fetch_all(&mut *conn)
    .await
    .unwrap_or_else(|e| panic!("cannot explain {name}: {e}"));
    lines.join("\n")
}

/// The index the relay's claim reads: only the heads of the partitions (`tests/outbox_claim.rs`
/// checks it with a backlog).
const CLAIM_INDEX: &str = "outbox_head_idx";

/// The plan PostgreSQL would use for the relay's claim (topic, now, the lease's end) as a
/// prepared statement run many times.
async fn postgres_claim_plan(conn: &mut sqlx::PgConnection) -> String {
    conn.execute(AssertSqlSafe(format!(
        "PREPARE plan_outbox_claim AS {}",
        store::outbox::CLAIM_POSTGRES
    )))
    .await
    .expect("cannot prepare the outbox claim");
    let lines: Vec<String> = sqlx::query_scalar(
        "EXPLAIN EXECUTE plan_outbox_claim('event', now(), now() + interval '2 minutes')",
    )
    .fetch_all(&mut *conn)
    .await
    .expect("cannot explain the outbox claim");
    lines.join("\n")
}

/// The plans PostgreSQL would use for the row statements of a delivery (marked delivered,
/// failed, its lease renewed) as prepared statements run many times, on an outbox whose
/// statistics say it is empty: the primary key, never a partial index read whole.
async fn postgres_delivery_plans(conn: &mut sqlx::PgConnection) -> Vec<(&'static str, String)> {
    let statements = [
        (
            "outbox delivered",
            format!(
                "PREPARE plan_delivered(uuid, timestamptz) AS {}",
                store::outbox::MARK_DELIVERED
            ),
            "EXPLAIN EXECUTE plan_delivered(gen_random_uuid(), now())",
        ),
        (
            "outbox failed",
            format!(
                "PREPARE plan_failed(uuid, text, timestamptz, timestamptz) AS {}",
                store::outbox::MARK_FAILED
            ),
            "EXPLAIN EXECUTE plan_failed(gen_random_uuid(), 'down', now(), now())",
        ),
        (
            "outbox lease renewed",
            format!(
                "PREPARE plan_renewed(uuid, timestamptz, timestamptz) AS {}",
                store::outbox::RENEW_LEASE
            ),
            "EXPLAIN EXECUTE plan_renewed(gen_random_uuid(), now(), now())",
        ),
    ];
    conn.execute("ANALYZE outbox").await.unwrap();
    let mut plans = Vec::new();
    for (what, prepare, explain) in statements {
        conn.execute(AssertSqlSafe(prepare))
            .await
            .unwrap_or_else(|e| panic!("cannot prepare {what}: {e}"));
        let lines: Vec<String> = sqlx::query_scalar(AssertSqlSafe(explain))
            .fetch_all(&mut *conn)
            .await
            .unwrap_or_else(|e| panic!("cannot explain {what}: {e}"));
        plans.push((what, lines.join("\n")));
    }
    plans
}

/// The plan PostgreSQL would use for `stmt` as a prepared statement run many times.
async fn postgres_plan(
    conn: &mut sqlx::PgConnection,
    name: &str,
    stmt: &SelectStatement,
) -> String {
    let (sql, values) = stmt.build(PostgresQueryBuilder);
    let statement = format!(
        "plan_{}",
        name.replace(|c: char| !c.is_ascii_alphanumeric(), "_")
    );
    conn.execute(AssertSqlSafe(format!("PREPARE {statement} AS {sql}")))
        .await
        .unwrap_or_else(|e| panic!("cannot prepare {name}: {e}\n{sql}"));
    let nulls = vec!["NULL"; values.0.len()].join(", ");
    let args = if nulls.is_empty() {
        String::new()
    } else {
        format!("({nulls})")
    };
    let lines: Vec<String> =
        sqlx::query_scalar(AssertSqlSafe(format!("EXPLAIN EXECUTE {statement}{args}")))
            .fetch_all(&mut *conn)
            .await
            .unwrap_or_else(|e| panic!("cannot explain {name}: {e}"));
    lines.join("\n")
}

async fn sqlite_plan(pool: &sqlx::SqlitePool, stmt: &SelectStatement) -> String {
    let (sql, args) = stmt.build_sqlx(SqliteQueryBuilder);
    let rows = sqlx::query_with(AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")), args)
        .fetch_all(pool)
        .await
        .expect("EXPLAIN QUERY PLAN");
    rows.iter()
        .map(|r| r.get::<String, _>("detail"))
        .collect::<Vec<_>>()
        .join("\n")
}

async fn check_plans(kind: Db, test: &str) {
    let Some(test_db) = TestDb::connect(kind, test).await else {
        return;
    };
    test_db.db.migrate().await.expect("migrations");
    let backend = test_db.db.backend();
    let mut wrong = Vec::new();
    match test_db.db.pool() {
        store::Pool::Postgres(pool) => {
            let mut conn = pool.acquire().await.unwrap();
            conn.execute("SET plan_cache_mode = force_generic_plan; SET enable_seqscan = off")
                .await
                .unwrap();
            // Tenants enough for the costs to mean something (on an empty table every index
            // costs the same, and the first that fits is taken), analysed.
            conn.execute(TENANTS_SEED).await.unwrap();
            for (what, stmt, index) in common_queries(backend) {
                let plan = postgres_plan(&mut conn, what, &stmt).await;
                if !plan.contains(index) || plan.contains("Seq Scan") {
                    wrong.push(format!("{what}: expected {index}\n{plan}"));
                }
            }
            for (what, sql, index) in RAW_QUERIES {
                let plan = postgres_raw_plan(&mut conn, what, sql).await;
                if !plan.contains(index) || plan.contains("Seq Scan") {
                    wrong.push(format!("{what}: expected {index}\n{plan}"));
                }
            }
            for (what, stmt, index) in ordered_pages(backend) {
                let plan = postgres_plan(&mut conn, what, &stmt).await;
                if !plan.contains(index) || plan.contains("Seq Scan") || plan.contains("Sort") {
                    wrong.push(format!("{what}: expected {index}, no sort\n{plan}"));
                }
            }
            let plan = postgres_claim_plan(&mut conn).await;
            if !plan.contains(CLAIM_INDEX) || plan.contains("Seq Scan") || plan.contains("Sort") {
                wrong.push(format!("outbox claim: expected {CLAIM_INDEX}\n{plan}"));
            }
            for (what, plan) in postgres_delivery_plans(&mut conn).await {
                if !plan.contains("outbox_pkey") {
                    wrong.push(format!("{what}: expected outbox_pkey\n{plan}"));
                }
            }
        }
        store::Pool::Sqlite(pool) => {
            for (what, sql, index) in RAW_QUERIES {
                let rows = sqlx::query(AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")))
                    .bind("2026-11-30T00:00:00.000Z")
                    .bind(100i64)
                    .fetch_all(pool)
                    .await
                    .expect("EXPLAIN QUERY PLAN");
                let plan: Vec<String> = rows.iter().map(|r| r.get("detail")).collect();
                let plan = plan.join("\n");
                if !plan.contains(index) || plan.contains("TEMP B-TREE") {
                    wrong.push(format!("{what}: expected {index}\n{plan}"));
                }
            }
            let rows = sqlx::query(AssertSqlSafe(format!(
                "EXPLAIN QUERY PLAN {}",
                store::outbox::CLAIM_SQLITE
            )))
            .bind("event")
            .bind("2026-11-30T00:00:00.000Z")
            .bind("2026-11-30T00:02:00.000Z")
            .fetch_all(pool)
            .await
            .expect("EXPLAIN QUERY PLAN");
            let plan: Vec<String> = rows.iter().map(|r| r.get("detail")).collect();
            let plan = plan.join("\n");
            if !plan.contains(CLAIM_INDEX) || plan.contains("TEMP B-TREE") {
                wrong.push(format!("outbox claim: expected {CLAIM_INDEX}\n{plan}"));
            }
            for (what, stmt, index) in ordered_pages(backend) {
                let plan = sqlite_plan(pool, &stmt).await;
                if !plan.contains(index) || plan.contains("TEMP B-TREE") {
                    wrong.push(format!("{what}: expected {index}, no sort\n{plan}"));
                }
            }
            for (what, stmt, index) in common_queries(backend) {
                let plan = sqlite_plan(pool, &stmt).await;
                // `included` is the per-parent page of an include and `(subquery-n)` the window
                // that numbers its rows: subqueries, not tables.
                let scans_a_table = plan.lines().any(|l| {
                    l.starts_with("SCAN ")
                        && !l.contains("USING")
                        && !l.contains("CONSTANT ROW")
                        && !l.starts_with("SCAN included")
                        && !l.starts_with("SCAN (subquery")
                });
                if !plan.contains(index) || scans_a_table {
                    wrong.push(format!("{what}: expected {index}\n{plan}"));
                }
            }
        }
    }
    test_db.close().await;
    assert!(
        wrong.is_empty(),
        "queries that do not use their index on {}:\n\n{}",
        kind.name(),
        wrong.join("\n\n")
    );
}

#[tokio::test]
async fn common_queries_use_their_indexes_on_sqlite() {
    check_plans(Db::Sqlite, "common_queries_use_their_indexes_on_sqlite").await;
}

#[tokio::test]
async fn common_queries_use_their_indexes_on_postgres() {
    check_plans(Db::Postgres, "common_queries_use_their_indexes_on_postgres").await;
}
