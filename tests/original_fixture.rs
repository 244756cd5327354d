//! The fixture of the original service's PostgreSQL schema (`tests/original_support`): it
//! builds in a fresh schema, takes the original's rows, and its dump says what the facts say.

mod common;
mod original_support;

use common::{Db, Storage, db_available};
use original_support::*;
use serde_json::Value;
use sqlx::{Connection, PgConnection, Row};

/// Connects to the database of `storage` (tagged with its schema, so teardown ends the session).
async fn connect(storage: &Storage) -> PgConnection {
    PgConnection::connect(storage.postgres_app_url().expect("a PostgreSQL storage"))
        .await
        .expect("cannot connect to PostgreSQL")
}

#[tokio::test]
async fn the_original_schema_builds_and_fills() {
    let test = "the_original_schema_builds_and_fills";
    if !db_available(Db::Postgres, test) {
        return;
    }
    let storage = Storage::new(Db::Postgres);
    let schema = storage.postgres_schema().unwrap().to_string();
    let mut conn = connect(&storage).await;

    create_original_schema(&mut conn, &schema).await;
    let seeded = seed_as_the_original(&mut conn, &schema).await;
    let dump = schema_dump(&mut conn, &schema).await;
    let text = dump.text();

    // Constraints: exactly the original's, by name and definition.
    assert_eq!(dump.constraints, ORIGINAL_CONSTRAINTS, "dump:\n{text}");

    // Columns: as many as the facts list per table, and the notable ones verbatim.
    for (table, count) in [
        ("addresses", 13),
        ("branding_metadata", 6),
        ("contacts", 14),
        ("invoices", 16),
        ("leads", 14),
        ("resources", 12),
        ("tenant_mgmt_configs", 11),
        ("tenants", 15),
    ] {
        let prefix = format!("{table}.");
        let found = dump
            .columns
            .iter()
            .filter(|c| c.starts_with(&prefix))
            .count();
        assert_eq!(found, count, "columns of {table}; dump:\n{text}");
    }
    for column in [
        "tenants.14 domains character varying[] NOT NULL DEFAULT '{}'::character varying[]",
        "tenants.01 id uuid NOT NULL DEFAULT \
         (md5(((random())::text || (clock_timestamp())::text)))::uuid",
        "tenants.03 status smallint NOT NULL DEFAULT 0",
        "tenants.09 key character varying(20) NOT NULL",
        "invoices.04 amount numeric NOT NULL",
        "invoices.05 currency_code character(3)",
        "invoices.10 created_on timestamp with time zone DEFAULT CURRENT_TIMESTAMP",
        "invoices.11 modified_on timestamp with time zone",
        "contacts.08 modified_on timestamp with time zone",
        "leads.12 is_validated boolean NOT NULL DEFAULT false",
        "resources.03 metadata jsonb NOT NULL",
        "tenant_mgmt_configs.05 modified_on timestamp with time zone NOT NULL \
         DEFAULT CURRENT_TIMESTAMP",
        "branding_metadata.02 theme_metadata jsonb",
    ] {
        assert!(
            dump.columns.iter().any(|c| c == column),
            "missing column line {column:?}; dump:\n{text}"
        );
    }

    // Indexes: those of the primary keys and unique constraints, nothing else.
    let index_names: Vec<&str> = dump
        .indexes
        .iter()
        .map(|i| i.split(' ').next().unwrap())
        .collect();
    assert_eq!(
        index_names,
        [
            "addresses.pk_address_id",
            "branding_metadata.pk_branding_metadata",
            "contacts.pk_tenant_contacts",
            "invoices.pk_invoices",
            "leads.pk_leads_id",
            "resources.idx_resource_ext_id",
            "resources.pk_resources_id_1",
            "tenant_mgmt_configs.pk_tenant_configs_id",
            "tenants.idx_tenant_key",
            "tenants.pk_tenants_id",
        ],
        "dump:\n{text}"
    );
    assert!(
        dump.indexes.contains(
            &"tenants.idx_tenant_key CREATE UNIQUE INDEX idx_tenant_key ON tenants USING btree (key)"
                .to_string()
        ),
        "dump:\n{text}"
    );

    // The trigger, calling `moddatetime` of the schema itself.
    assert_eq!(dump.triggers, [ORIGINAL_TRIGGER], "dump:\n{text}");
    assert_eq!(dump.functions.len(), 1, "dump:\n{text}");
    assert!(
        dump.functions[0].starts_with("moddatetime() RETURNS trigger LANGUAGE plpgsql SOURCE md5:"),
        "dump:\n{text}"
    );

    // A dump is the same for every schema and does not change when read again.
    assert_eq!(schema_dump(&mut conn, &schema).await, dump);
    let other = Storage::new(Db::Postgres);
    let other_schema = other.postgres_schema().unwrap().to_string();
    let mut other_conn = connect(&other).await;
    create_original_schema(&mut other_conn, &other_schema).await;
    assert_eq!(schema_dump(&mut other_conn, &other_schema).await, dump);
    other_conn.close().await.unwrap();
    dump.assert_kept_in(&dump);

    // Row counts.
    let counts = row_counts(&mut conn, &schema).await;
    let expected: Vec<(String, i64)> = SEEDED_ROW_COUNTS
        .iter()
        .map(|(t, n)| (t.to_string(), *n))
        .collect();
    assert_eq!(counts, expected);

    // The rows hold what the constants say.
    let mut tx = conn.begin().await.unwrap();
    sqlx::query("SELECT set_config('search_path', quote_ident($1), true)")
        .bind(&schema)
        .execute(&mut *tx)
        .await
        .unwrap();
    let row = sqlx::query(
        "SELECT domains::text[] AS domains, status, lead_id::text, address_id::text, deleted \
         FROM tenants WHERE id = $1",
    )
    .bind(seeded.tenant_active)
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    assert_eq!(row.get::<Vec<String>, _>("domains"), TENANT_ACTIVE_DOMAINS);
    assert_eq!(row.get::<i16, _>("status"), STATUS_ACTIVE);
    assert_eq!(
        row.get::<Option<String>, _>("lead_id").as_deref(),
        Some(LEAD_VALIDATED)
    );
    assert_eq!(
        row.get::<Option<String>, _>("address_id").as_deref(),
        Some(ADDRESS_FULL)
    );
    assert!(!row.get::<bool, _>("deleted"));
    let pending_domains: String =
        sqlx::query_scalar("SELECT domains::text FROM tenants WHERE id = $1")
            .bind(seeded.tenant_pending)
            .fetch_one(&mut *tx)
            .await
            .unwrap();
    assert_eq!(pending_domains, "{}");
    // Amounts keep their scale; the undated invoice has no dates at all.
    let amounts: Vec<(String, Option<String>, bool)> = sqlx::query_as(
        "SELECT amount::text, currency_code::text, \
                start_date IS NULL AND end_date IS NULL AND due_date IS NULL \
         FROM invoices ORDER BY invoices.amount",
    )
    .fetch_all(&mut *tx)
    .await
    .unwrap();
    assert_eq!(
        amounts,
        [
            (INVOICE_UNDATED_AMOUNT.into(), Some("EUR".into()), true),
            (INVOICE_DELETED_AMOUNT.into(), Some("INR".into()), false),
            (INVOICE_PAID_AMOUNT.into(), Some("USD".into()), false),
        ]
    );
    let config: Value =
        sqlx::query_scalar("SELECT config_value FROM tenant_mgmt_configs WHERE id = $1")
            .bind(seeded.config_keycloak)
            .fetch_one(&mut *tx)
            .await
            .unwrap();
    assert_eq!(config, keycloak_config_value());
    let null_modified: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM contacts WHERE modified_on IS NULL) \
              + (SELECT count(*) FROM invoices WHERE modified_on IS NULL)",
    )
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    assert_eq!(null_modified, 2, "contact_billing and invoice_undated");
    let deleted: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM leads WHERE deleted AND deleted_on IS NOT NULL \
                                               AND deleted_by IS NOT NULL) \
              + (SELECT count(*) FROM tenants WHERE deleted) \
              + (SELECT count(*) FROM contacts WHERE deleted) \
              + (SELECT count(*) FROM invoices WHERE deleted)",
    )
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    assert_eq!(deleted, 4);

    // Every timestamp's wire form is its stored value truncated to milliseconds, and the
    // stored values keep their microseconds.
    for ts in ALL_TIMESTAMPS {
        let wire: String = sqlx::query_scalar(
            "SELECT to_char(date_trunc('milliseconds', $1::timestamptz) AT TIME ZONE 'UTC', \
                            'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')",
        )
        .bind(ts.db)
        .fetch_one(&mut *tx)
        .await
        .unwrap();
        assert_eq!(wire, ts.wire, "{ts:?}");
    }
    let micros: String = sqlx::query_scalar(
        "SELECT to_char(end_date AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') \
         FROM invoices WHERE id = $1",
    )
    .bind(seeded.invoice_paid)
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    assert_eq!(micros, "2026-01-31 23:59:59.999999");

    // The column default makes ids of the original's shape.
    let id: String = sqlx::query_scalar("INSERT INTO addresses DEFAULT VALUES RETURNING id::text")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(id.len(), 36, "{id}");

    // The trigger stamps `modified_on` of an updated config with the transaction time, even
    // over an explicit value; other tables have no such trigger.
    let (stamped, now): (chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>) =
        sqlx::query_as(
            "UPDATE tenant_mgmt_configs \
                SET config_value = config_value || '{\"realm\": \"acme2\"}', \
                    modified_on = '2000-01-01 00:00:00+00' \
              WHERE id = $1 RETURNING modified_on, now()",
        )
        .bind(seeded.config_keycloak)
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(stamped, now);
    let kept: String = sqlx::query_scalar(
        "UPDATE tenants SET name = 'Globex Limited' WHERE id = $1 \
         RETURNING to_char(modified_on AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')",
    )
    .bind(seeded.tenant_pending)
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    assert_eq!(kept, "2026-01-10 09:30:00.512000");
    tx.rollback().await.unwrap();

    // The rolled-back changes left the seed as it was.
    assert_eq!(row_counts(&mut conn, &schema).await, expected);
    conn.close().await.unwrap();
}
