//! The original's rows: [`seed_as_the_original`] and [`Seeded`], with the row structs and
//! insert helpers that write each table the way the original does.

use serde_json::{Value, json};
use sqlx::postgres::{PgArguments, Postgres};
use sqlx::query::Query;
use sqlx::{AssertSqlSafe, Connection, PgConnection};
use uuid::Uuid;

use super::*;

/// The ids of the rows [`seed_as_the_original`] wrote (the constants of `mod.rs`, as `Uuid`s).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seeded {
    /// Every optional column filled; the address of the validated lead and the active tenant.
    pub address_full: Uuid,
    /// Only `country` (the one property the original requires); the pending tenant's address.
    pub address_minimal: Uuid,
    /// Validated lead with an address, from which the active tenant was onboarded.
    pub lead_validated: Uuid,
    /// Signed up, never validated, no address.
    pub lead_unvalidated: Uuid,
    /// Validated, onboarded (the deleted tenant), then soft-deleted.
    pub lead_deleted: Uuid,
    /// ACTIVE, two domains, lead and address, a SPOC user; owns the contacts, resources,
    /// invoices, the Keycloak config and the branding.
    pub tenant_active: Uuid,
    /// PENDINGPROVISION, `domains = '{}'`, no lead; created by the administrator.
    pub tenant_pending: Uuid,
    /// INACTIVE and soft-deleted; from the deleted lead, no address.
    pub tenant_deleted: Uuid,
    /// The active tenant's primary contact (`contact_type` `admin`).
    pub contact_primary: Uuid,
    /// The active tenant's second contact: not primary, `contact_type` and `modified_on` NULL.
    pub contact_billing: Uuid,
    /// The pending tenant's primary contact.
    pub contact_pending_primary: Uuid,
    /// A soft-deleted contact of the active tenant.
    pub contact_deleted: Uuid,
    /// An S3 bucket of the active tenant, nested `metadata`.
    pub resource_bucket: Uuid,
    /// A database of the active tenant.
    pub resource_database: Uuid,
    /// PAID, amount `1499.99` USD, every date set.
    pub invoice_paid: Uuid,
    /// PENDING, amount `12.3456` EUR, start/end/due dates, file and `modified_on` NULL.
    pub invoice_undated: Uuid,
    /// CANCELLED and soft-deleted, amount `99.5` INR.
    pub invoice_deleted: Uuid,
    /// The active tenant's `keycloak` config; `modified_on` written by the trigger.
    pub config_keycloak: Uuid,
    /// The pending tenant's `auth0` config.
    pub config_auth0: Uuid,
    /// The active tenant's branding.
    pub branding: Uuid,
}

impl Seeded {
    fn from_constants() -> Self {
        let id = |s: &str| Uuid::parse_str(s).expect("a fixture id is a uuid");
        Seeded {
            address_full: id(ADDRESS_FULL),
            address_minimal: id(ADDRESS_MINIMAL),
            lead_validated: id(LEAD_VALIDATED),
            lead_unvalidated: id(LEAD_UNVALIDATED),
            lead_deleted: id(LEAD_DELETED),
            tenant_active: id(TENANT_ACTIVE),
            tenant_pending: id(TENANT_PENDING),
            tenant_deleted: id(TENANT_DELETED),
            contact_primary: id(CONTACT_PRIMARY),
            contact_billing: id(CONTACT_BILLING),
            contact_pending_primary: id(CONTACT_PENDING_PRIMARY),
            contact_deleted: id(CONTACT_DELETED),
            resource_bucket: id(RESOURCE_BUCKET),
            resource_database: id(RESOURCE_DATABASE),
            invoice_paid: id(INVOICE_PAID),
            invoice_undated: id(INVOICE_UNDATED),
            invoice_deleted: id(INVOICE_DELETED),
            config_keycloak: id(CONFIG_KEYCLOAK),
            config_auth0: id(CONFIG_AUTH0),
            branding: id(BRANDING),
        }
    }
}

/// The audit columns every original table but `branding_metadata` has.
struct Audit {
    created_on: Ts,
    /// `None`: NULL (only `contacts` and `invoices` allow it).
    modified_on: Option<Ts>,
    created_by: Option<&'static str>,
    modified_by: Option<&'static str>,
    /// `Some`: a soft delete (`deleted = true`, `deleted_on`, `deleted_by`).
    deleted: Option<(Ts, &'static str)>,
}

impl Audit {
    /// Created and last modified by `by` at `on`; not deleted.
    fn by(by: &'static str, on: Ts) -> Self {
        Audit {
            created_on: on,
            modified_on: Some(on),
            created_by: Some(by),
            modified_by: Some(by),
            deleted: None,
        }
    }

    /// Soft-deleted at `on` by the administrator (modified then, too).
    fn deleted_at(mut self, on: Ts) -> Self {
        self.modified_on = Some(on);
        self.modified_by = Some(ADMIN_USER_TENANT_ID);
        self.deleted = Some((on, ADMIN_USER_ID));
        self
    }
}

/// The audit columns, in the order their placeholders follow a table's own columns.
const AUDIT_COLUMNS: &str =
    "created_on, modified_on, created_by, modified_by, deleted, deleted_on, deleted_by";

/// `INSERT INTO table (columns…, audit columns) VALUES (casts…, audit placeholders)`.
fn insert_sql(table: &str, columns: &str, casts: &[&str]) -> String {
    let mut values: Vec<String> = casts
        .iter()
        .enumerate()
        .map(|(i, cast)| format!("${}::{cast}", i + 1))
        .collect();
    let n = casts.len();
    values.extend([
        format!("${}::timestamptz", n + 1),
        format!("${}::timestamptz", n + 2),
        format!("${}::uuid", n + 3),
        format!("${}::uuid", n + 4),
        format!("${}::boolean", n + 5),
        format!("${}::timestamptz", n + 6),
        format!("${}::uuid", n + 7),
    ]);
    format!(
        "INSERT INTO {table} ({columns}, {AUDIT_COLUMNS}) VALUES ({})",
        values.join(", ")
    )
}

fn bind_audit<'q>(
    query: Query<'q, Postgres, PgArguments>,
    audit: &Audit,
) -> Query<'q, Postgres, PgArguments> {
    query
        .bind(audit.created_on.db)
        .bind(audit.modified_on.map(|t| t.db))
        .bind(audit.created_by)
        .bind(audit.modified_by)
        .bind(audit.deleted.is_some())
        .bind(audit.deleted.map(|(on, _)| on.db))
        .bind(audit.deleted.map(|(_, by)| by))
}

async fn run(conn: &mut PgConnection, what: &str, query: Query<'_, Postgres, PgArguments>) {
    query
        .execute(conn)
        .await
        .unwrap_or_else(|err| panic!("cannot seed {what}: {err}"));
}

struct AddressRow {
    id: &'static str,
    address: Option<&'static str>,
    city: Option<&'static str>,
    state: Option<&'static str>,
    zip: Option<&'static str>,
    country: Option<&'static str>,
    audit: Audit,
}

async fn insert_address(conn: &mut PgConnection, row: AddressRow) {
    let sql = insert_sql(
        "addresses",
        "id, address, city, state, zip, country",
        &[
            "uuid", "varchar", "varchar", "varchar", "varchar", "varchar",
        ],
    );
    let query = sqlx::query(AssertSqlSafe(sql))
        .bind(row.id)
        .bind(row.address)
        .bind(row.city)
        .bind(row.state)
        .bind(row.zip)
        .bind(row.country);
    run(conn, row.id, bind_audit(query, &row.audit)).await;
}

struct LeadRow {
    id: &'static str,
    first_name: &'static str,
    last_name: &'static str,
    email: &'static str,
    is_validated: bool,
    company_name: Option<&'static str>,
    address_id: Option<&'static str>,
    audit: Audit,
}

async fn insert_lead(conn: &mut PgConnection, row: LeadRow) {
    let sql = insert_sql(
        "leads",
        "id, first_name, last_name, email, is_validated, company_name, address_id",
        &[
            "uuid", "varchar", "varchar", "varchar", "boolean", "varchar", "uuid",
        ],
    );
    let query = sqlx::query(AssertSqlSafe(sql))
        .bind(row.id)
        .bind(row.first_name)
        .bind(row.last_name)
        .bind(row.email)
        .bind(row.is_validated)
        .bind(row.company_name)
        .bind(row.address_id);
    run(conn, row.id, bind_audit(query, &row.audit)).await;
}

struct TenantRow {
    id: &'static str,
    name: &'static str,
    status: i16,
    key: &'static str,
    spoc_user_id: Option<&'static str>,
    lead_id: Option<&'static str>,
    domains: &'static [&'static str],
    address_id: Option<&'static str>,
    audit: Audit,
}

async fn insert_tenant(conn: &mut PgConnection, row: TenantRow) {
    let sql = insert_sql(
        "tenants",
        "id, name, status, key, spoc_user_id, lead_id, domains, address_id",
        &[
            "uuid",
            "varchar",
            "smallint",
            "varchar",
            "uuid",
            "uuid",
            "varchar[]",
            "uuid",
        ],
    );
    let query = sqlx::query(AssertSqlSafe(sql))
        .bind(row.id)
        .bind(row.name)
        .bind(row.status)
        .bind(row.key)
        .bind(row.spoc_user_id)
        .bind(row.lead_id)
        .bind(row.domains.to_vec())
        .bind(row.address_id);
    run(conn, row.id, bind_audit(query, &row.audit)).await;
}

struct ContactRow {
    id: &'static str,
    first_name: &'static str,
    last_name: &'static str,
    email: &'static str,
    contact_type: Option<&'static str>,
    is_primary: bool,
    tenant_id: &'static str,
    audit: Audit,
}

async fn insert_contact(conn: &mut PgConnection, row: ContactRow) {
    let sql = insert_sql(
        "contacts",
        "id, first_name, last_name, email, contact_type, is_primary, tenant_id",
        &[
            "uuid", "varchar", "varchar", "varchar", "varchar", "boolean", "uuid",
        ],
    );
    let query = sqlx::query(AssertSqlSafe(sql))
        .bind(row.id)
        .bind(row.first_name)
        .bind(row.last_name)
        .bind(row.email)
        .bind(row.contact_type)
        .bind(row.is_primary)
        .bind(row.tenant_id);
    run(conn, row.id, bind_audit(query, &row.audit)).await;
}

struct ResourceRow {
    id: &'static str,
    kind: &'static str,
    metadata: Value,
    external_identifier: &'static str,
    tenant_id: &'static str,
    audit: Audit,
}

async fn insert_resource(conn: &mut PgConnection, row: ResourceRow) {
    let sql = insert_sql(
        "resources",
        "id, type, metadata, external_identifier, tenant_id",
        &["uuid", "varchar", "jsonb", "varchar", "uuid"],
    );
    let query = sqlx::query(AssertSqlSafe(sql))
        .bind(row.id)
        .bind(row.kind)
        .bind(row.metadata)
        .bind(row.external_identifier)
        .bind(row.tenant_id);
    run(conn, row.id, bind_audit(query, &row.audit)).await;
}

struct InvoiceRow {
    id: &'static str,
    start_date: Option<Ts>,
    end_date: Option<Ts>,
    /// Text, cast to `numeric`: the scale is kept as written.
    amount: &'static str,
    currency_code: Option<&'static str>,
    invoice_file: Option<&'static str>,
    due_date: Option<Ts>,
    status: i16,
    tenant_id: &'static str,
    audit: Audit,
}

async fn insert_invoice(conn: &mut PgConnection, row: InvoiceRow) {
    let sql = insert_sql(
        "invoices",
        "id, start_date, end_date, amount, currency_code, invoice_file, due_date, status, \
         tenant_id",
        &[
            "uuid",
            "timestamptz",
            "timestamptz",
            "numeric",
            "bpchar",
            "varchar",
            "timestamptz",
            "smallint",
            "uuid",
        ],
    );
    let query = sqlx::query(AssertSqlSafe(sql))
        .bind(row.id)
        .bind(row.start_date.map(|t| t.db))
        .bind(row.end_date.map(|t| t.db))
        .bind(row.amount)
        .bind(row.currency_code)
        .bind(row.invoice_file)
        .bind(row.due_date.map(|t| t.db))
        .bind(row.status)
        .bind(row.tenant_id);
    run(conn, row.id, bind_audit(query, &row.audit)).await;
}

struct ConfigRow {
    id: &'static str,
    config_key: &'static str,
    config_value: Value,
    tenant_id: &'static str,
    audit: Audit,
}

async fn insert_config(conn: &mut PgConnection, row: ConfigRow) {
    let sql = insert_sql(
        "tenant_mgmt_configs",
        "id, config_key, config_value, tenant_id",
        &["uuid", "varchar", "jsonb", "uuid"],
    );
    let query = sqlx::query(AssertSqlSafe(sql))
        .bind(row.id)
        .bind(row.config_key)
        .bind(row.config_value)
        .bind(row.tenant_id);
    run(conn, row.id, bind_audit(query, &row.audit)).await;
}

/// Fills the original's tables in `schema` (built by [`create_original_schema`]) with the rows
/// described on [`Seeded`], in one transaction. Panics on failure.
pub async fn seed_as_the_original(conn: &mut PgConnection, schema: &str) -> Seeded {
    let mut tx = conn.begin().await.expect("cannot begin a transaction");
    // Unqualified names below resolve in `schema` only, for this transaction.
    sqlx::query("SELECT pg_catalog.set_config('search_path', pg_catalog.quote_ident($1), true)")
        .bind(schema)
        .execute(&mut *tx)
        .await
        .expect("cannot set the search path");
    let conn = &mut *tx;

    // Addresses. The full one came with the lead's signup; the minimal one with the
    // administrator's onboarding of the pending tenant.
    insert_address(
        conn,
        AddressRow {
            id: ADDRESS_FULL,
            address: Some("221B Baker Street"),
            city: Some("London"),
            state: Some("Greater London"),
            zip: Some("NW1 6XE"),
            country: Some("United Kingdom"),
            audit: Audit::by(SIGNUP_USER_ID, TS_ADDRESS_FULL),
        },
    )
    .await;
    insert_address(
        conn,
        AddressRow {
            id: ADDRESS_MINIMAL,
            address: None,
            city: None,
            state: None,
            zip: None,
            country: Some("India"),
            audit: Audit::by(ADMIN_USER_TENANT_ID, TS_ADDRESS_MINIMAL),
        },
    )
    .await;

    // Leads: signed up through the public endpoint; validation (and deletion) modified them.
    insert_lead(
        conn,
        LeadRow {
            id: LEAD_VALIDATED,
            first_name: "Jane",
            last_name: "Doe",
            email: "jane.doe@acme.example.com",
            is_validated: true,
            company_name: Some("Acme Corp"),
            address_id: Some(ADDRESS_FULL),
            audit: Audit {
                modified_on: Some(TS_LEAD_VALIDATED_MODIFIED),
                ..Audit::by(SIGNUP_USER_ID, TS_LEAD_VALIDATED_CREATED)
            },
        },
    )
    .await;
    insert_lead(
        conn,
        LeadRow {
            id: LEAD_UNVALIDATED,
            first_name: "John",
            last_name: "Smith",
            email: "john.smith@globex.example.com",
            is_validated: false,
            company_name: Some("Globex"),
            address_id: None,
            audit: Audit::by(SIGNUP_USER_ID, TS_LEAD_UNVALIDATED),
        },
    )
    .await;
    insert_lead(
        conn,
        LeadRow {
            id: LEAD_DELETED,
            first_name: "Peter",
            last_name: "Gibbons",
            email: "peter.gibbons@initech.example.net",
            is_validated: true,
            company_name: Some("Initech"),
            address_id: None,
            audit: Audit::by(SIGNUP_USER_ID, TS_LEAD_DELETED_CREATED)
                .deleted_at(TS_LEAD_DELETED_DELETED),
        },
    )
    .await;

    // Tenants. One onboarded from its lead (`created_by` is the lead's id: the lead token's
    // `userTenantId`), then made ACTIVE by the provisioning webhook; one onboarded by the
    // administrator and never provisioned; one INACTIVE and deleted.
    insert_tenant(
        conn,
        TenantRow {
            id: TENANT_ACTIVE,
            name: "Acme Corp",
            status: STATUS_ACTIVE,
            key: TENANT_ACTIVE_KEY,
            spoc_user_id: Some(SPOC_USER_ID),
            lead_id: Some(LEAD_VALIDATED),
            domains: &TENANT_ACTIVE_DOMAINS,
            address_id: Some(ADDRESS_FULL),
            audit: Audit {
                modified_on: Some(TS_TENANT_ACTIVE_PROVISIONED),
                ..Audit::by(LEAD_VALIDATED, TS_TENANT_ACTIVE_CREATED)
            },
        },
    )
    .await;
    insert_tenant(
        conn,
        TenantRow {
            id: TENANT_PENDING,
            name: "Globex Ltd",
            status: STATUS_PENDINGPROVISION,
            key: TENANT_PENDING_KEY,
            spoc_user_id: None,
            lead_id: None,
            domains: &[],
            address_id: Some(ADDRESS_MINIMAL),
            audit: Audit::by(ADMIN_USER_TENANT_ID, TS_TENANT_PENDING),
        },
    )
    .await;
    insert_tenant(
        conn,
        TenantRow {
            id: TENANT_DELETED,
            name: "Initech",
            status: STATUS_INACTIVE,
            key: TENANT_DELETED_KEY,
            spoc_user_id: None,
            lead_id: Some(LEAD_DELETED),
            domains: &TENANT_DELETED_DOMAINS,
            address_id: None,
            audit: Audit::by(LEAD_DELETED, TS_TENANT_DELETED_CREATED)
                .deleted_at(TS_TENANT_DELETED_DELETED),
        },
    )
    .await;

    // Contacts.
    insert_contact(
        conn,
        ContactRow {
            id: CONTACT_PRIMARY,
            first_name: "Jane",
            last_name: "Doe",
            email: "jane.doe@acme.example.com",
            contact_type: Some("admin"),
            is_primary: true,
            tenant_id: TENANT_ACTIVE,
            audit: Audit::by(LEAD_VALIDATED, TS_TENANT_ACTIVE_CREATED),
        },
    )
    .await;
    insert_contact(
        conn,
        ContactRow {
            id: CONTACT_BILLING,
            first_name: "Bob",
            last_name: "Billing",
            email: "bob.billing@acme.example.org",
            contact_type: None,
            is_primary: false,
            tenant_id: TENANT_ACTIVE,
            audit: Audit {
                created_on: TS_CONTACT_BILLING,
                modified_on: None,
                created_by: Some(ADMIN_USER_TENANT_ID),
                modified_by: None,
                deleted: None,
            },
        },
    )
    .await;
    insert_contact(
        conn,
        ContactRow {
            id: CONTACT_PENDING_PRIMARY,
            first_name: "Priya",
            last_name: "Patel",
            email: "priya.patel@globex.example.com",
            contact_type: Some("admin"),
            is_primary: true,
            tenant_id: TENANT_PENDING,
            audit: Audit::by(ADMIN_USER_TENANT_ID, TS_TENANT_PENDING),
        },
    )
    .await;
    insert_contact(
        conn,
        ContactRow {
            id: CONTACT_DELETED,
            first_name: "Former",
            last_name: "Admin",
            email: "former.admin@acme.example.com",
            contact_type: Some("technical"),
            is_primary: false,
            tenant_id: TENANT_ACTIVE,
            audit: Audit::by(LEAD_VALIDATED, TS_TENANT_ACTIVE_CREATED)
                .deleted_at(TS_CONTACT_DELETED_DELETED),
        },
    )
    .await;

    // Resources, stored by the provisioning webhook.
    insert_resource(
        conn,
        ResourceRow {
            id: RESOURCE_BUCKET,
            kind: "bucket",
            metadata: bucket_metadata(),
            external_identifier: RESOURCE_BUCKET_EXTERNAL_ID,
            tenant_id: TENANT_ACTIVE,
            audit: Audit::by(ADMIN_USER_TENANT_ID, TS_TENANT_ACTIVE_PROVISIONED),
        },
    )
    .await;
    insert_resource(
        conn,
        ResourceRow {
            id: RESOURCE_DATABASE,
            kind: "database",
            metadata: json!({
                "engine": "postgres",
                "version": 15,
                "endpoint": {"host": "acme-db-1.internal", "port": 5432}
            }),
            external_identifier: RESOURCE_DATABASE_EXTERNAL_ID,
            tenant_id: TENANT_ACTIVE,
            audit: Audit::by(ADMIN_USER_TENANT_ID, TS_TENANT_ACTIVE_PROVISIONED),
        },
    )
    .await;

    // Invoices of the active tenant.
    insert_invoice(
        conn,
        InvoiceRow {
            id: INVOICE_PAID,
            start_date: Some(TS_INVOICE_PAID_START),
            end_date: Some(TS_INVOICE_PAID_END),
            amount: INVOICE_PAID_AMOUNT,
            currency_code: Some("USD"),
            invoice_file: Some("invoices/acme-2026-01.pdf"),
            due_date: Some(TS_INVOICE_PAID_DUE),
            status: INVOICE_PAID_STATUS,
            tenant_id: TENANT_ACTIVE,
            audit: Audit {
                modified_on: Some(TS_INVOICE_PAID_MODIFIED),
                ..Audit::by(ADMIN_USER_TENANT_ID, TS_INVOICE_PAID_CREATED)
            },
        },
    )
    .await;
    insert_invoice(
        conn,
        InvoiceRow {
            id: INVOICE_UNDATED,
            start_date: None,
            end_date: None,
            amount: INVOICE_UNDATED_AMOUNT,
            currency_code: Some("EUR"),
            invoice_file: None,
            due_date: None,
            status: INVOICE_PENDING,
            tenant_id: TENANT_ACTIVE,
            audit: Audit {
                created_on: TS_INVOICE_UNDATED_CREATED,
                modified_on: None,
                created_by: Some(ADMIN_USER_TENANT_ID),
                modified_by: None,
                deleted: None,
            },
        },
    )
    .await;
    insert_invoice(
        conn,
        InvoiceRow {
            id: INVOICE_DELETED,
            start_date: Some(TS_INVOICE_DELETED_START),
            end_date: Some(TS_INVOICE_DELETED_END),
            amount: INVOICE_DELETED_AMOUNT,
            currency_code: Some("INR"),
            invoice_file: Some("invoices/acme-2025-12.pdf"),
            due_date: Some(TS_INVOICE_DELETED_DUE),
            status: INVOICE_CANCELLED,
            tenant_id: TENANT_ACTIVE,
            audit: Audit::by(ADMIN_USER_TENANT_ID, TS_INVOICE_DELETED_CREATED)
                .deleted_at(TS_INVOICE_DELETED_DELETED),
        },
    )
    .await;

    // Identity-provider configs. The Keycloak one was updated since (the trigger stamped
    // `modified_on`); the Auth0 one has both timestamps from the column defaults.
    insert_config(
        conn,
        ConfigRow {
            id: CONFIG_KEYCLOAK,
            config_key: "keycloak",
            config_value: keycloak_config_value(),
            tenant_id: TENANT_ACTIVE,
            audit: Audit {
                modified_on: Some(TS_CONFIG_KEYCLOAK_MODIFIED),
                ..Audit::by(ADMIN_USER_TENANT_ID, TS_CONFIG_KEYCLOAK_CREATED)
            },
        },
    )
    .await;
    insert_config(
        conn,
        ConfigRow {
            id: CONFIG_AUTH0,
            config_key: "auth0",
            config_value: json!({
                "organizationId": "org_globex",
                "connections": ["Username-Password-Authentication"],
                "metadata": null,
                "flags": {}
            }),
            tenant_id: TENANT_PENDING,
            audit: Audit::by(ADMIN_USER_TENANT_ID, TS_CONFIG_AUTH0),
        },
    )
    .await;

    // Branding: no audit columns in this table.
    run(
        conn,
        BRANDING,
        sqlx::query(
            "INSERT INTO branding_metadata \
             (id, theme_metadata, description, logo, website, tenant_id) \
             VALUES ($1::uuid, $2::jsonb, $3, $4, $5, $6::uuid)",
        )
        .bind(BRANDING)
        .bind(json!({
            "primaryColor": "#0052cc",
            "secondaryColor": null,
            "fonts": ["Inter", "system-ui"]
        }))
        .bind("Acme Corp tenant portal")
        .bind("https://cdn.acme.example.com/logo.svg")
        .bind("https://acme.example.com")
        .bind(TENANT_ACTIVE),
    )
    .await;

    tx.commit().await.expect("cannot commit the seed");
    Seeded::from_constants()
}
