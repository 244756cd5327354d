//! `--scale N`: are the reads flat as data grows? The same read scenarios at 1,000 tenants and
//! then at N, each tenant seeded straight into the database (an address, a primary contact and
//! twelve invoices each) — seeding a million through the API would take hours. One JSON line per
//! scenario compares the p99 at N with the p99 at 1,000 (the bar: within 2×); then the plan
//! PostgreSQL runs for each at N.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use sea_query::PostgresQueryBuilder;
use serde_json::{Value, json};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, Executor};
use tms::model;
use tms::store::Backend;
use tms::store::crud::{self, Scope};
use tms::store::filter;

use super::{Args, Bench, PhaseStats, admin_token, http_client, load, pause};

/// The size the figures at scale are compared with.
const SMALL: u64 = 1_000;
/// Tenants written per transaction while seeding.
const BATCH: u64 = 50_000;
/// The bar: p99 at scale within this many times the p99 at [`SMALL`].
const FLAT: f64 = 2.0;

/// One read of the console or of a client.
struct Scenario {
    name: &'static str,
    /// The path and query of a request about tenant number `n` (whose id is `id`), with another
    /// random number `r`, URL-encoded.
    path: fn(u64, uuid::Uuid, u64) -> String,
    /// The statement tms runs for it (tenant number 700), for the plan.
    statement: fn(uuid::Uuid) -> Option<sea_query::SelectStatement>,
}

fn encoded(value: &Value) -> String {
    utf8_percent_encode(&value.to_string(), NON_ALPHANUMERIC).to_string()
}

fn filtered(path: &str, value: Value) -> String {
    format!("{path}?filter={}", encoded(&value))
}

fn find(resource: &'static model::Resource, value: Value) -> Option<sea_query::SelectStatement> {
    let parsed = filter::parse_filter(resource, &value).ok()?;
    Some(crud::find_statement(
        resource,
        &parsed,
        Scope::All,
        Backend::Postgres,
    ))
}

fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario {
            name: "GET /tenants/{id}",
            path: |_, id, _| format!("/tenants/{id}"),
            statement: |id| {
                Some(crud::find_by_id_statement(
                    &model::TENANTS,
                    id,
                    &filter::Filter::default(),
                    Scope::All,
                    Backend::Postgres,
                ))
            },
        },
        Scenario {
            name: "tenant by key",
            path: |n, _, _| filtered("/tenants", json!({"where": {"key": format!("s{n}")}})),
            statement: |_| find(&model::TENANTS, json!({"where": {"key": "s700"}})),
        },
        Scenario {
            name: "tenant by one of its domains",
            path: |n, _, _| {
                filtered(
                    "/tenants",
                    json!({"where": {"domains": format!("s{n}.example.com")}}),
                )
            },
            statement: |_| {
                find(
                    &model::TENANTS,
                    json!({"where": {"domains": "s700.example.com"}}),
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
            statement: |_| {
                find(
                    &model::TENANTS,
                    json!({"where": {"status": 1}, "order": "createdOn DESC", "limit": 20}),
                )
            },
        },
        Scenario {
            name: "status page, default order",
            path: |_, _, r| filtered("/tenants", json!({"where": {"status": r % 7}, "limit": 20})),
            statement: |_| {
                find(
                    &model::TENANTS,
                    json!({"where": {"status": 1}, "limit": 20}),
                )
            },
        },
        Scenario {
            name: "by name, page 21",
            path: |_, _, _| {
                filtered(
                    "/tenants",
                    json!({"order": "name ASC", "limit": 20, "skip": 400}),
                )
            },
            statement: |_| {
                find(
                    &model::TENANTS,
                    json!({"order": "name ASC", "limit": 20, "skip": 400}),
                )
            },
        },
        Scenario {
            name: "count by status",
            path: |_, _, r| {
                format!(
                    "/tenants/count?where={}",
                    encoded(&json!({"status": r % 7}))
                )
            },
            statement: |_| {
                let status = filter::parse_where(&model::TENANTS, &json!({"status": 1})).ok()?;
                Some(crud::count_statement(
                    &model::TENANTS,
                    Some(&status),
                    Scope::All,
                    Backend::Postgres,
                ))
            },
        },
        Scenario {
            name: "contacts with their tenant",
            path: |_, _, r| {
                filtered(
                    "/contacts",
                    json!({"limit": 20, "skip": (r % 20) * 20, "include": [{"relation": "tenant"}]}),
                )
            },
            statement: |_| find(&model::CONTACTS, json!({"limit": 20, "skip": 200})),
        },
        Scenario {
            name: "a tenant's invoices, first page",
            path: |_, id, _| {
                filtered(
                    "/invoices",
                    json!({"where": {"tenantId": id.to_string()}, "limit": 20}),
                )
            },
            statement: |id| {
                find(
                    &model::INVOICES,
                    json!({"where": {"tenantId": id.to_string()}, "limit": 20}),
                )
            },
        },
    ]
}

/// Seeds tenants numbered `from..to` straight into the schema, `BATCH` per transaction: each
/// with an address, a primary contact and twelve invoices (eleven paid, the last pending).
/// Tenant n: id md5('t' || n), key `s<n>`, domain `s<n>.example.com`, status n mod 7, created
/// n seconds after a fixed instant, a name in no relation to its number.
async fn seed(pool: &PgPool, from: u64, to: u64) -> anyhow::Result<()> {
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
         tenant_id, created_on, modified_on, seller, invoice_number, billing_period) \
         SELECT md5('i' || n || '-' || k)::uuid, \
         timestamptz '2025-01-01' + k * interval '1 month', \
         timestamptz '2025-01-01' + (k + 1) * interval '1 month', 49.99, 'USD', \
         timestamptz '2025-01-15' + k * interval '1 month', CASE WHEN k < 11 THEN 1 ELSE 0 END, \
         md5('t' || n)::uuid, timestamptz '2025-01-01' + k * interval '1 month', now(), \
         'loadbench', 'S' || n || '-' || k, k \
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

/// Requests for `SAMPLE` tenants picked at random below `size`, per scenario.
async fn requests(pool: &PgPool, size: u64, token: &str) -> anyhow::Result<Vec<Arc<Vec<Vec<u8>>>>> {
    const SAMPLE: usize = 20_000;
    let mut rng = super::Rng(0x5EED ^ size);
    let numbers: Vec<i64> = (0..SAMPLE)
        .map(|_| rng.below(size as usize) as i64)
        .collect();
    let ids: Vec<(i64, uuid::Uuid)> =
        sqlx::query_as("SELECT n, md5('t' || n)::uuid FROM unnest($1::bigint[]) AS n")
            .bind(&numbers)
            .fetch_all(pool)
            .await?;
    Ok(scenarios()
        .iter()
        .map(|scenario| {
            Arc::new(
                ids.iter()
                    .map(|(n, id)| {
                        let path = (scenario.path)(*n as u64, *id, rng.below(1 << 20) as u64);
                        format!(
                            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\
                             Authorization: Bearer {token}\r\n\r\n"
                        )
                        .into_bytes()
                    })
                    .collect(),
            )
        })
        .collect())
}

/// Every scenario at `concurrency` against the server on `port`, with `requests` (per
/// scenario).
async fn measure_all(
    args: &Args,
    port: u16,
    requests: &[Arc<Vec<Vec<u8>>>],
) -> anyhow::Result<Vec<PhaseStats>> {
    let concurrency = args.concurrency[0];
    let warmup = Duration::from_secs_f64(args.warmup);
    let duration = Duration::from_secs_f64(args.duration);
    let mut all = Vec::new();
    for (scenario, requests) in scenarios().iter().zip(requests) {
        eprintln!("loadbench: {} at concurrency {concurrency}", scenario.name);
        let stats = load(concurrency, warmup, duration, |seed, window| {
            http_client(port, Arc::clone(requests), seed, window)
        })
        .await?;
        ensure!(
            stats.errors == 0,
            "{}: {} requests failed",
            scenario.name,
            stats.errors
        );
        all.push(stats);
        pause().await;
    }
    Ok(all)
}

/// The scale benchmark (`--scale N`) in `bench`'s schema.
pub(super) async fn run(args: &Args, bench: &Bench, base: &PgConnectOptions) -> anyhow::Result<()> {
    let large = args.scale;
    ensure!(large > SMALL, "--scale must be more than {SMALL} tenants");
    eprintln!("loadbench: schema {}, migrating", bench.schema);
    bench.migrate()?;
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect_with(
            base.clone()
                .options([("search_path", bench.schema.as_str())]),
        )
        .await?;
    let (server, _) = bench.start("serve")?;
    let token = admin_token(&bench.jwt_secret)?;

    let seeding = Instant::now();
    seed(&pool, 0, SMALL).await?;
    let small_requests = requests(&pool, SMALL, &token).await?;
    let small = measure_all(args, server.port, &small_requests).await?;
    drop(small_requests);

    seed(&pool, SMALL, large).await?;
    let seeded_in = seeding.elapsed();
    let size: (String,) = sqlx::query_as(
        "SELECT pg_size_pretty(sum(pg_total_relation_size(c.oid))::bigint) FROM pg_class c \
         JOIN pg_namespace s ON s.oid = c.relnamespace WHERE s.nspname = $1 AND c.relkind = 'r'",
    )
    .bind(&bench.schema)
    .fetch_one(&pool)
    .await?;
    let large_requests = requests(&pool, large, &token).await?;
    let at_scale = measure_all(args, server.port, &large_requests).await?;
    drop(large_requests);
    server.stop()?;

    println!(
        "flat as data grows: {SMALL} then {large} tenants (seeded in {:.0} s, {} on disk), \
         concurrency {}, {:.1} s measured after {:.1} s warm-up",
        seeded_in.as_secs_f64(),
        size.0,
        args.concurrency[0],
        args.duration,
        args.warmup
    );
    for ((scenario, small), large_stats) in scenarios().iter().zip(&small).zip(&at_scale) {
        let ratio = large_stats.p99 / small.p99;
        println!(
            "{}",
            json!({
                "scenario": scenario.name,
                "concurrency": args.concurrency[0],
                "small": {"tenants": SMALL, "rps": small.rate.round(), "p50_ms": small.p50,
                          "p99_ms": small.p99},
                "large": {"tenants": large, "rps": large_stats.rate.round(),
                          "p50_ms": large_stats.p50, "p99_ms": large_stats.p99},
                "p99_ratio": (ratio * 100.0).round() / 100.0,
                "flat": ratio <= FLAT,
            })
        );
    }
    println!();
    let example = sqlx::query_scalar::<_, uuid::Uuid>("SELECT md5('t700')::uuid")
        .fetch_one(&pool)
        .await?;
    for scenario in scenarios() {
        let Some(statement) = (scenario.statement)(example) else {
            continue;
        };
        let sql = statement.to_string(PostgresQueryBuilder);
        let plan: Vec<String> = sqlx::query_scalar(AssertSqlSafe(format!(
            "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) {sql}"
        )))
        .fetch_all(&pool)
        .await
        .with_context(|| format!("explaining {sql}"))?;
        println!("{}:\n  {}", scenario.name, plan.join("\n  "));
    }
    pool.close().await;
    Ok(())
}
