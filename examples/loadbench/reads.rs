//! The read scenarios of the console and of clients (by id, key and domain, status and name
//! pages, counts, contacts with their tenant, a tenant's invoices): the requests, the statements
//! tms runs for each (the pgbench baseline runs the same), their plans; and the seeding of
//! tenants straight into the database — seeding a million through the API would take hours.

use std::sync::Arc;

use anyhow::Context;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use sea_query::{PostgresQueryBuilder, SelectStatement};
use serde_json::{Value, json};
use sqlx::postgres::PgPool;
use sqlx::{AssertSqlSafe, Executor};
use tms::model;
use tms::store::Backend;
use tms::store::crud::{self, Scope};
use tms::store::filter;
use uuid::Uuid;

use super::pgbench;

/// The size the figures at scale are compared with, and the size of the other scenarios.
pub(super) const SMALL: u64 = 1_000;
/// Tenants written per transaction while seeding.
const BATCH: u64 = 50_000;

/// One read of the console or of a client.
pub(super) struct Scenario {
    pub(super) name: &'static str,
    /// The path and query of a request about tenant number `n` (whose id is `id`), with another
    /// random number `r`, URL-encoded.
    path: fn(u64, Uuid, u64) -> String,
    /// The statements tms runs for it, about tenant number 700 (`id`) or with the sentinel
    /// values below.
    statements: fn(Uuid) -> anyhow::Result<Vec<SelectStatement>>,
    /// The pgbench lines choosing the values of a request, and the sentinel literals of
    /// `statements` they replace.
    baseline: fn(u64) -> Picks,
}

/// The pgbench lines choosing a request's values (`\\set …`), and the pairs (a sentinel literal
/// of the statements, the pgbench expression replacing it).
type Picks = (String, Vec<(String, String)>);

/// Values that stand for a request's own in the statements of [`Scenario::statements`], replaced
/// by pgbench variables in the baseline.
const SENTINEL_ID: Uuid = Uuid::from_u128(0x5e5e_0000_0000_4000_8000_0000_0000_0001);
const SENTINEL_KEY: &str = "sentinel-key";
const SENTINEL_DOMAIN: &str = "sentinel.example.com";
const SENTINEL_STATUS: i64 = 6;
const SENTINEL_SKIP: u64 = 987_640;

fn sentinel_tenant(i: usize) -> Uuid {
    Uuid::from_u128(0x5e5e_0000_0000_4000_8000_0000_0000_0100 + i as u128)
}

fn quoted(value: impl std::fmt::Display) -> String {
    format!("'{value}'")
}

/// pgbench picks tenant number `:n` (its id is `md5('t' || n)`, as seeded) and the `replace`
/// pairs put it into the statements.
fn by_tenant(size: u64, replace: &[(&str, &str)]) -> Picks {
    (
        format!("\\set n random(0, {})\n", size - 1),
        replace
            .iter()
            .map(|(literal, expression)| (literal.to_string(), expression.to_string()))
            .collect(),
    )
}

/// The id of tenant `:n`, in place of [`SENTINEL_ID`].
fn by_id(size: u64) -> Picks {
    by_tenant(size, &[(&quoted(SENTINEL_ID), "md5('t' || :n)::uuid")])
}

fn by_status(_: u64) -> Picks {
    (
        "\\set s random(0, 6)\n".to_string(),
        vec![(
            format!("\"status\" = {SENTINEL_STATUS}"),
            "\"status\" = :s".to_string(),
        )],
    )
}

fn encoded(value: &Value) -> String {
    utf8_percent_encode(&value.to_string(), NON_ALPHANUMERIC).to_string()
}

fn filtered(path: &str, value: Value) -> String {
    format!("{path}?filter={}", encoded(&value))
}

fn find(resource: &'static model::Resource, value: Value) -> anyhow::Result<SelectStatement> {
    let parsed = filter::parse_filter(resource, &value)
        .map_err(|e| anyhow::anyhow!("filter {value}: {e:?}"))?;
    Ok(crud::find_statement(
        resource,
        &parsed,
        Scope::All,
        Backend::Postgres,
    ))
}

pub(super) fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario {
            name: "GET /tenants/{id}",
            path: |_, id, _| format!("/tenants/{id}"),
            statements: |id| {
                Ok(vec![crud::find_by_id_statement(
                    &model::TENANTS,
                    id,
                    &filter::Filter::default(),
                    Scope::All,
                    Backend::Postgres,
                )])
            },
            baseline: by_id,
        },
        Scenario {
            name: "tenant by key",
            path: |n, _, _| filtered("/tenants", json!({"where": {"key": format!("s{n}")}})),
            statements: |_| {
                Ok(vec![find(
                    &model::TENANTS,
                    json!({"where": {"key": SENTINEL_KEY}}),
                )?])
            },
            baseline: |size| by_tenant(size, &[(&quoted(SENTINEL_KEY), "('s' || :n)")]),
        },
        Scenario {
            name: "tenant by one of its domains",
            path: |n, _, _| {
                filtered(
                    "/tenants",
                    json!({"where": {"domains": format!("s{n}.example.com")}}),
                )
            },
            statements: |_| {
                Ok(vec![find(
                    &model::TENANTS,
                    json!({"where": {"domains": SENTINEL_DOMAIN}}),
                )?])
            },
            baseline: |size| {
                by_tenant(
                    size,
                    &[(&quoted(SENTINEL_DOMAIN), "('s' || :n || '.example.com')")],
                )
            },
        },
        Scenario {
            name: "status page, newest first",
            path: |_, _, r| {
                filtered(
                    "/tenants",
                    json!({"where": {"status": r % 7}, "order": "createdOn DESC", "limit": 20}),
                )
            },
            statements: |_| {
                Ok(vec![find(
                    &model::TENANTS,
                    json!({"where": {"status": SENTINEL_STATUS}, "order": "createdOn DESC", "limit": 20}),
                )?])
            },
            baseline: by_status,
        },
        Scenario {
            name: "status page, default order",
            path: |_, _, r| filtered("/tenants", json!({"where": {"status": r % 7}, "limit": 20})),
            statements: |_| {
                Ok(vec![find(
                    &model::TENANTS,
                    json!({"where": {"status": SENTINEL_STATUS}, "limit": 20}),
                )?])
            },
            baseline: by_status,
        },
        Scenario {
            name: "by name, page 21",
            path: |_, _, _| {
                filtered(
                    "/tenants",
                    json!({"order": "name ASC", "limit": 20, "skip": 400}),
                )
            },
            statements: |_| {
                Ok(vec![find(
                    &model::TENANTS,
                    json!({"order": "name ASC", "limit": 20, "skip": 400}),
                )?])
            },
            baseline: |_| (String::new(), Vec::new()),
        },
        Scenario {
            name: "count by status",
            path: |_, _, r| {
                format!(
                    "/tenants/count?where={}",
                    encoded(&json!({"status": r % 7}))
                )
            },
            statements: |_| {
                let status =
                    filter::parse_where(&model::TENANTS, &json!({"status": SENTINEL_STATUS}))
                        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
                Ok(vec![crud::count_statement(
                    &model::TENANTS,
                    Some(&status),
                    Scope::All,
                    Backend::Postgres,
                )])
            },
            baseline: by_status,
        },
        Scenario {
            name: "contacts with their tenant",
            path: |_, _, r| {
                filtered(
                    "/contacts",
                    json!({"limit": 20, "skip": (r % 20) * 20, "include": [{"relation": "tenant"}]}),
                )
            },
            statements: |_| {
                let page = find(
                    &model::CONTACTS,
                    json!({"limit": 20, "skip": SENTINEL_SKIP}),
                )?;
                let relation = model::CONTACTS
                    .relation("tenant")
                    .context("contacts have a tenant")?;
                let keys: Vec<Value> = (0..20)
                    .map(|i| json!(sentinel_tenant(i).to_string()))
                    .collect();
                let keys: Vec<&Value> = keys.iter().collect();
                let tenants = crud::include_statement(
                    relation,
                    &keys,
                    &filter::Filter::default(),
                    Backend::Postgres,
                );
                Ok(vec![page, tenants])
            },
            baseline: |size| {
                // The page's tenants are twenty tenants at random: the contacts of a page are
                // in id order, which has nothing to do with their tenants' numbers.
                let mut set = "\\set k 20 * random(0, 19)\n".to_string();
                let mut replace = vec![(SENTINEL_SKIP.to_string(), ":k".to_string())];
                for i in 0..20 {
                    set.push_str(&format!("\\set t{i} random(0, {})\n", size - 1));
                    replace.push((
                        quoted(sentinel_tenant(i)),
                        format!("md5('t' || :t{i})::uuid"),
                    ));
                }
                (set, replace)
            },
        },
        Scenario {
            name: "a tenant's invoices, first page",
            path: |_, id, _| {
                filtered(
                    "/invoices",
                    json!({"where": {"tenantId": id.to_string()}, "limit": 20}),
                )
            },
            statements: |id| {
                Ok(vec![find(
                    &model::INVOICES,
                    json!({"where": {"tenantId": id.to_string()}, "limit": 20}),
                )?])
            },
            baseline: by_id,
        },
    ]
}

impl Scenario {
    /// The statements about tenant number 700 (status 1, the page at skip 200, the tenants
    /// numbered 0, 37, 74, …), as pgbench would run them.
    fn example_statements(&self) -> anyhow::Result<Vec<String>> {
        let (_, replace) = (self.baseline)(SMALL);
        let mut values: Vec<(String, String)> = (0..20)
            .rev()
            .map(|i| (format!(":t{i}"), (i * 37).to_string()))
            .collect();
        values.extend(
            [(":n", "700"), (":s", "1"), (":k", "200")]
                .map(|(v, x)| (v.to_string(), x.to_string())),
        );
        (self.statements)(SENTINEL_ID)?
            .iter()
            .map(|statement| {
                let mut sql = statement.to_string(PostgresQueryBuilder);
                for (literal, expression) in &replace {
                    sql = sql.replace(literal.as_str(), expression);
                }
                for (variable, value) in &values {
                    sql = sql.replace(variable.as_str(), value);
                }
                Ok(sql)
            })
            .collect()
    }

    /// The pgbench script of this read with `size` tenants seeded: the statements of
    /// `statements`, the request's own values chosen at random as the load does.
    pub(super) fn pgbench_script(&self, size: u64) -> anyhow::Result<String> {
        let (mut script, replace) = (self.baseline)(size);
        let mut unused: Vec<&String> = replace.iter().map(|(literal, _)| literal).collect();
        for statement in (self.statements)(SENTINEL_ID)? {
            let sql = statement.to_string(PostgresQueryBuilder);
            let relevant: Vec<_> = replace
                .iter()
                .filter(|(literal, _)| sql.contains(literal.as_str()))
                .cloned()
                .collect();
            unused.retain(|literal| !sql.contains(literal.as_str()));
            script.push_str(&pgbench::statement(&sql, &relevant)?);
        }
        // A request's own value left as a constant would measure one row over and over.
        anyhow::ensure!(
            unused.is_empty(),
            "{}: {unused:?} not in its statements: {script}",
            self.name
        );
        Ok(script)
    }
}

/// Seeds tenants numbered `from..to` straight into the schema, `BATCH` per transaction: each
/// with an address, a primary contact and twelve invoices (eleven paid, the last pending and
/// already announced overdue).
/// Tenant n: id md5('t' || n), key `s<n>`, domain `s<n>.example.com`, status n mod 7, created
/// n seconds after a fixed instant, a name in no relation to its number.
pub(super) async fn seed(pool: &PgPool, from: u64, to: u64) -> anyhow::Result<()> {
    let statements = [
        "INSERT INTO addresses (id, address, city, state, zip, country, created_on, modified_on) \
         SELECT md5('a' || n)::uuid, n || ' Main Street', 'Springfield', 'IL', '62701', 'US', \
         timestamptz '2025-01-01' + n * interval '1 second', now() \
         FROM generate_series($1::bigint, $2::bigint - 1) AS n",
        "INSERT INTO tenants (id, name, status, key, domains, address_id, created_on, \
         modified_on) \
         SELECT md5('t' || n)::uuid, 'Tenant ' || substr(md5('n' || n), 1, 12), n % 7, 's' || n, \
         ARRAY['s' || n || '.example.com'], md5('a' || n)::uuid, \
         timestamptz '2025-01-01' + n * interval '1 second', now() \
         FROM generate_series($1::bigint, $2::bigint - 1) AS n",
        "INSERT INTO contacts (id, first_name, last_name, email, is_primary, contact_type, \
         tenant_id, created_on, modified_on) \
         SELECT md5('c' || n)::uuid, 'Ada', 'Lovelace', 'ada@s' || n || '.example.com', true, \
         'admin', md5('t' || n)::uuid, timestamptz '2025-01-01' + n * interval '1 second', now() \
         FROM generate_series($1::bigint, $2::bigint - 1) AS n",
        "INSERT INTO invoices (id, start_date, end_date, amount, currency_code, due_date, status, \
         tenant_id, created_on, modified_on, seller, invoice_number, billing_period, \
         overdue_at) \
         SELECT md5('i' || n || '-' || k)::uuid, \
         timestamptz '2025-01-01' + k * interval '1 month', \
         timestamptz '2025-01-01' + (k + 1) * interval '1 month', 49.99, 'USD', \
         timestamptz '2025-01-15' + k * interval '1 month', CASE WHEN k < 11 THEN 1 ELSE 0 END, \
         md5('t' || n)::uuid, timestamptz '2025-01-01' + k * interval '1 month', now(), \
         'loadbench', 'S' || n || '-' || k, k, \
         CASE WHEN k < 11 THEN NULL ELSE timestamptz '2025-01-16' + k * interval '1 month' END \
         FROM generate_series($1::bigint, $2::bigint - 1) AS n, generate_series(0, 11) AS k",
    ];
    let mut at = from;
    while at < to {
        let end = (at + BATCH).min(to);
        let mut tx = pool.begin().await?;
        for sql in statements {
            sqlx::query(sql)
                .bind(at as i64)
                .bind(end as i64)
                .execute(&mut *tx)
                .await
                .with_context(|| format!("seeding tenants {at}..{end}"))?;
        }
        tx.commit().await?;
        at = end;
        eprint!("\rloadbench: {at} tenants seeded");
    }
    eprintln!();
    // What autovacuum does in time (this PostgreSQL may run without it): hint bits set, the
    // visibility map written, statistics taken.
    pool.execute("VACUUM (ANALYZE)").await?;
    Ok(())
}

/// Tenants picked at random below `size`: their numbers and ids, as seeded.
pub(super) async fn sample(pool: &PgPool, size: u64) -> anyhow::Result<Vec<(u64, Uuid)>> {
    const SAMPLE: usize = 20_000;
    let mut rng = super::Rng(0x5EED ^ size);
    let numbers: Vec<i64> = (0..SAMPLE)
        .map(|_| rng.below(size as usize) as i64)
        .collect();
    let ids: Vec<(i64, Uuid)> =
        sqlx::query_as("SELECT n, md5('t' || n)::uuid FROM unnest($1::bigint[]) AS n")
            .bind(&numbers)
            .fetch_all(pool)
            .await?;
    Ok(ids.into_iter().map(|(n, id)| (n as u64, id)).collect())
}

/// The requests of `scenario` about the tenants `tenants` (numbers and ids), in random order.
pub(super) fn requests(
    scenario: &Scenario,
    tenants: &[(u64, Uuid)],
    token: &str,
) -> Arc<Vec<Vec<u8>>> {
    let mut rng = super::Rng(0xC0FFEE ^ tenants.len() as u64);
    Arc::new(
        tenants
            .iter()
            .map(|(n, id)| {
                let path = (scenario.path)(*n, *id, rng.below(1 << 20) as u64);
                format!(
                    "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\
                     Authorization: Bearer {token}\r\n\r\n"
                )
                .into_bytes()
            })
            .collect(),
    )
}

/// The id of seeded tenant number `n`.
pub(super) async fn tenant_id(pool: &PgPool, n: u64) -> anyhow::Result<Uuid> {
    Ok(sqlx::query_scalar("SELECT md5('t' || $1::bigint)::uuid")
        .bind(n as i64)
        .fetch_one(pool)
        .await?)
}

/// The plan PostgreSQL runs for each statement of each scenario, about tenant 700.
pub(super) async fn plans(pool: &PgPool) -> anyhow::Result<Vec<(&'static str, Vec<String>)>> {
    let mut all = Vec::new();
    for scenario in scenarios() {
        for sql in scenario.example_statements()? {
            let plan: Vec<String> = sqlx::query_scalar(AssertSqlSafe(format!(
                "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) {sql}"
            )))
            .fetch_all(pool)
            .await
            .with_context(|| format!("explaining {sql}"))?;
            all.push((scenario.name, plan));
        }
    }
    Ok(all)
}

/// The size of `schema`'s tables on disk, as PostgreSQL prints it.
pub(super) async fn size_on_disk(pool: &PgPool, schema: &str) -> anyhow::Result<String> {
    Ok(sqlx::query_scalar(
        "SELECT pg_size_pretty(sum(pg_total_relation_size(c.oid))::bigint) FROM pg_class c \
         JOIN pg_namespace s ON s.oid = c.relnamespace WHERE s.nspname = $1 AND c.relkind = 'r'",
    )
    .bind(schema)
    .fetch_one(pool)
    .await?)
}
