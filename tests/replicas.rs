//! Several replicas on one PostgreSQL database act as one: started together on a fresh schema,
//! every one of them migrates it (or finds it migrated) without an error, so a first rollout of
//! several pods does not crash-loop.

mod common;

use common::*;

/// How many replicas start together, and how many times.
const REPLICAS: usize = 5;
const TRIALS: usize = 8;

/// Several `Db::migrate` at once on a schema that does not exist yet, each on its own pool and
/// connection, as replicas starting together run it. Before the schema was created under a lock,
/// `CREATE SCHEMA IF NOT EXISTS` raced in PostgreSQL ("duplicate key value violates unique
/// constraint pg_namespace_nspname_index") in most trials.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_migrate_a_fresh_schema_together() {
    let test = "replicas_migrate_a_fresh_schema_together";
    if !db_available(Db::Postgres, test) {
        return;
    }
    let mut failures = Vec::new();
    for trial in 0..TRIALS {
        let storage = Storage::new(Db::Postgres);
        let config = storage.config(&[]);
        let mut replicas = Vec::new();
        for _ in 0..REPLICAS {
            replicas.push(
                tms::store::Db::connect(&config)
                    .await
                    .expect("a pool on the test database"),
            );
        }
        let outcomes = futures_util::future::join_all(replicas.iter().map(|db| db.migrate())).await;
        for (replica, outcome) in outcomes.into_iter().enumerate() {
            if let Err(err) = outcome {
                failures.push(format!("trial {trial}, replica {replica}: {err:#}"));
            }
        }
        // Every replica sees the whole schema: migrating again changes nothing.
        replicas[0].migrate().await.expect("a second migration");
        let applied: i64 = match replicas[0].pool() {
            tms::store::Pool::Postgres(pool) => {
                sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
                    .fetch_one(pool)
                    .await
                    .expect("the migration history")
            }
            tms::store::Pool::Sqlite(_) => unreachable!("a PostgreSQL test"),
        };
        assert_eq!(
            applied as usize,
            std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres"))
                .unwrap()
                .count(),
            "every migration applied once"
        );
        for db in &replicas {
            db.close().await;
        }
        drop(storage);
    }
    assert!(
        failures.is_empty(),
        "replicas that failed to migrate a fresh schema together:\n{}",
        failures.join("\n")
    );
}
