//! The lead funnel end to end over real HTTP (docs/funnel.md): sign-up, the verification mail (really
//! delivered to a local SMTP server, or written to the `.eml` outbox) and the link in it,
//! verification, onboarding and the tenant it creates; every refusal with its status and nothing
//! written; the lead token's scope; the public rate limit.
//!
//! Every test runs on SQLite (`::sqlite`) and PostgreSQL (`::postgres`, with
//! `TMS_TEST_DATABASE_URL`); those that depend on the key store (verification keys, rate-limit
//! counters) also run with Redis as the key store (`::redis`: the SQLite database and the keys in
//! Redis at `TMS_TEST_REDIS_URL`, default `redis://127.0.0.1:6379`, under a key prefix of their
//! own). A backend that is not available is skipped with a note, except under `CI=true`, where
//! that fails the test; the same holds for Python's `aiosmtpd`, the SMTP server of the mail tests.

mod common;
mod rest_support;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;
use mailparse::{MailHeaderMap, ParsedMail};
use rest_support::{expect_error, with_filter};
use secrecy::SecretString;
use uuid::Uuid;

use tms::auth::JwtKeys;

/// Where the verification link of the mails points.
const VALIDATE_URL: &str = "https://app.funnel.test/verify-email";
const APP_NAME: &str = "Funnel Cloud";
const FROM_EMAIL: &str = "signup@funnel.test";
/// How long a test waits for something the server does in the background (a mail).
const PATIENCE: Duration = Duration::from_secs(20);
/// A rate limit no test reaches, for the tests that are not about it.
const UNLIMITED: (&str, &str) = ("PUBLIC_API_MAX_ATTEMPTS", "1000000");
const KEY_IN_RESPONSE: (&str, &str) = ("LEAD_KEY_IN_RESPONSE", "true");

// ---------------------------------------------------------------------------------------------
// Variants: the database, and where the keys live
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    /// SQLite, keys in the database.
    Sqlite,
    /// PostgreSQL, keys in the database.
    Postgres,
    /// SQLite, keys in Redis.
    Redis,
}

impl Variant {
    fn named(name: &str) -> Self {
        match name {
            "sqlite" => Self::Sqlite,
            "postgres" => Self::Postgres,
            "redis" => Self::Redis,
            other => panic!("unknown variant {other}"),
        }
    }

    fn db(self) -> Db {
        match self {
            Self::Postgres => Db::Postgres,
            Self::Sqlite | Self::Redis => Db::Sqlite,
        }
    }
}

async fn redis_reachable(url: &str) -> bool {
    let Ok(parsed) = url::Url::parse(url) else {
        return false;
    };
    let host = parsed.host_str().unwrap_or("127.0.0.1").to_string();
    let port = parsed.port().unwrap_or(6379);
    matches!(
        tokio::time::timeout(
            Duration::from_secs(2),
            tokio::net::TcpStream::connect((host.as_str(), port)),
        )
        .await,
        Ok(Ok(_))
    )
}

/// What a test body gets: the variant, from which it starts its server.
struct Env {
    variant: Variant,
    name: &'static str,
    redis_url: Option<String>,
}

/// Runs `body` on `variant`, or skips it when the variant's backends are not available.
async fn run<F, Fut>(variant: Variant, name: &'static str, body: F)
where
    F: FnOnce(Env) -> Fut,
    Fut: Future<Output = ()>,
{
    if !db_available(variant.db(), name) {
        return;
    }
    let redis_url = match variant {
        Variant::Redis => {
            let url = redis_url();
            let available = if redis_reachable(&url).await {
                Ok(())
            } else {
                Err(format!("Redis is not reachable at {url}"))
            };
            if !needs(name, "redis", available) {
                return;
            }
            Some(url)
        }
        _ => None,
    };
    body(Env {
        variant,
        name,
        redis_url,
    })
    .await;
}

/// `funnel_test!(name, body)`: the tests `name::sqlite` and `name::postgres` running
/// `body(env)`; `funnel_test!(name, body, [sqlite, postgres, redis])` names the variants.
macro_rules! funnel_test {
    ($name:ident, $body:ident) => {
        funnel_test!($name, $body, [sqlite, postgres]);
    };
    ($name:ident, $body:ident, [$($variant:ident),+ $(,)?]) => {
        mod $name {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $variant() {
                    super::run(
                        super::Variant::named(stringify!($variant)),
                        concat!(module_path!(), "::", stringify!($variant)),
                        super::$body,
                    )
                    .await;
                }
            )+
        }
    };
}

impl Env {
    /// A server of this variant with the funnel's mail settings, a key prefix of its own, and
    /// `overrides`.
    async fn start(&self, overrides: &[(&str, &str)]) -> Funnel {
        let prefix = format!("t{}:", Uuid::new_v4().simple());
        let mut vars: Vec<(&str, &str)> = vec![
            ("APP_VALIDATE_URL", VALIDATE_URL),
            ("APP_NAME", APP_NAME),
            ("FROM_EMAIL", FROM_EMAIL),
            ("REDIS_KEY_PREFIX", &prefix),
        ];
        if let Some(url) = &self.redis_url {
            vars.push(("REDIS_URL", url));
        }
        vars.extend_from_slice(overrides);
        let app = TestApp::spawn_with(self.variant.db(), &vars).await;
        let store = tms::store::Db::connect(&app.config)
            .await
            .unwrap_or_else(|err| panic!("{}: cannot open the test database: {err:#}", self.name));
        let admin = app.admin_token();
        Funnel {
            store,
            redis: self.redis_url.clone().map(|url| RedisKeys {
                url,
                prefix: prefix.clone(),
            }),
            prefix,
            admin,
            app,
        }
    }
}

/// The Redis keys of one test, deleted when dropped (best effort; they expire anyway).
struct RedisKeys {
    url: String,
    prefix: String,
}

impl RedisKeys {
    async fn keys(&self, pattern: &str) -> Vec<String> {
        let client = redis::Client::open(self.url.as_str()).expect("a Redis URL");
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .expect("a Redis connection");
        redis::cmd("KEYS")
            .arg(format!("{}{pattern}", self.prefix))
            .query_async(&mut conn)
            .await
            .expect("KEYS")
    }
}

impl Drop for RedisKeys {
    fn drop(&mut self) {
        remove_redis_keys(&self.url, &self.prefix);
    }
}

// ---------------------------------------------------------------------------------------------
// The running funnel: a server, a pool on its database, an admin token
// ---------------------------------------------------------------------------------------------

struct Funnel {
    /// A pool of our own on the server's database, to count what the API does not show.
    store: tms::store::Db,
    redis: Option<RedisKeys>,
    /// `REDIS_KEY_PREFIX` of this server (used by both key stores).
    prefix: String,
    admin: String,
    app: TestApp,
}

impl Deref for Funnel {
    type Target = TestApp;
    fn deref(&self) -> &TestApp {
        &self.app
    }
}

/// What a refused request must leave untouched.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Snapshot {
    /// `GET /leads/count`, `/tenants/count`, `/contacts/count`, `/tenant-configs/count` (admin).
    leads: i64,
    tenants: i64,
    contacts: i64,
    tenant_configs: i64,
    /// Every row of the tables, live or not.
    lead_rows: i64,
    tenant_rows: i64,
    contact_rows: i64,
    address_rows: i64,
    /// Mails queued on the outbox.
    mails: i64,
    /// isValidated of every lead.
    validated: BTreeMap<String, bool>,
}

fn include(relations: &[&str]) -> Value {
    json!({ "include": relations })
}

/// A sign-up body for `email`.
fn sign_up_body(email: &str) -> Value {
    json!({
        "firstName": "Ada",
        "lastName": "Lovelace",
        "email": email,
        "companyName": "Analytical Engines",
    })
}

fn lead_address() -> Value {
    json!({
        "address": "12 Loom Street",
        "city": "Pune",
        "state": "MH",
        "zip": "411001",
        "country": "India",
    })
}

/// A sign-up body for `email` with the address of [`lead_address`].
fn sign_up_with_address(email: &str) -> Value {
    let mut body = sign_up_body(email);
    body["address"] = lead_address();
    body
}

/// A lead as `POST /leads` answered it.
#[derive(Debug, Clone)]
struct Lead {
    id: String,
    key: Option<String>,
}

impl Lead {
    fn key(&self) -> &str {
        self.key
            .as_deref()
            .expect("the key (start the server with LEAD_KEY_IN_RESPONSE=true)")
    }

    fn uuid(&self) -> Uuid {
        Uuid::parse_str(&self.id).expect("lead ids are UUIDs")
    }
}

impl Funnel {
    async fn sql_count(&self, sql: &str) -> i64 {
        let query = sqlx::AssertSqlSafe(sql.to_string());
        let count: Result<i64, sqlx::Error> = match self.store.pool() {
            tms::store::Pool::Sqlite(pool) => {
                sqlx::query_scalar::<_, i64>(query).fetch_one(pool).await
            }
            tms::store::Pool::Postgres(pool) => {
                sqlx::query_scalar::<_, i64>(query).fetch_one(pool).await
            }
        };
        count.unwrap_or_else(|err| panic!("{sql}: {err}"))
    }

    /// `GET path` with `token`, which must answer 200.
    async fn get_ok(&self, path: &str, token: &str) -> Value {
        let (status, body) = self.get(path, Some(token)).await;
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    async fn api_count(&self, collection: &str) -> i64 {
        let body = self
            .get_ok(&format!("/{collection}/count"), &self.admin)
            .await;
        body["count"]
            .as_i64()
            .unwrap_or_else(|| panic!("count of {collection}: {body}"))
    }

    async fn snapshot(&self) -> Snapshot {
        let leads = self
            .get_ok(
                &with_filter("/leads", &json!({"fields": ["id", "isValidated"]})),
                &self.admin,
            )
            .await;
        let validated = leads
            .as_array()
            .expect("a list of leads")
            .iter()
            .map(|l| {
                (
                    l["id"].as_str().unwrap().to_string(),
                    l["isValidated"].as_bool().unwrap(),
                )
            })
            .collect();
        Snapshot {
            leads: self.api_count("leads").await,
            tenants: self.api_count("tenants").await,
            contacts: self.api_count("contacts").await,
            tenant_configs: self.api_count("tenant-configs").await,
            lead_rows: self.sql_count("SELECT COUNT(*) FROM leads").await,
            tenant_rows: self.sql_count("SELECT COUNT(*) FROM tenants").await,
            contact_rows: self.sql_count("SELECT COUNT(*) FROM contacts").await,
            address_rows: self.sql_count("SELECT COUNT(*) FROM addresses").await,
            mails: self
                .sql_count("SELECT COUNT(*) FROM outbox WHERE topic = 'mail'")
                .await,
            validated,
        }
    }

    /// `POST /leads`.
    async fn sign_up(&self, body: &Value) -> (StatusCode, Value) {
        self.post("/leads", None, body).await
    }

    /// Signs up `body`, which must succeed.
    async fn new_lead(&self, body: &Value) -> Lead {
        let (status, answer) = self.sign_up(body).await;
        assert_eq!(status, 200, "POST /leads {body}: {answer}");
        Lead {
            id: answer["id"].as_str().expect("an id").to_string(),
            key: answer["key"].as_str().map(str::to_string),
        }
    }

    /// `POST /leads/{id}/verify` with `Authorization: Bearer <key>`.
    async fn verify(&self, id: &str, key: &str) -> (StatusCode, Value) {
        self.request(
            Method::POST,
            &format!("/leads/{id}/verify"),
            Some(key),
            None,
        )
        .await
    }

    /// `POST /leads/{id}/verify` with exactly `authorization` (or none).
    async fn verify_with_header(&self, id: &str, authorization: Option<&str>) -> TestResponse {
        let mut request = self.client.post(self.url(&format!("/leads/{id}/verify")));
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        TestResponse::read(request.send().await.expect("request failed")).await
    }

    /// Signs up `body` and verifies the lead (needs LEAD_KEY_IN_RESPONSE=true): the lead and
    /// its token.
    async fn verified_lead(&self, body: &Value) -> (Lead, String) {
        let lead = self.new_lead(body).await;
        let (status, answer) = self.verify(&lead.id, lead.key()).await;
        assert_eq!(status, 200, "verify {}: {answer}", lead.id);
        let token = answer["token"].as_str().expect("a token").to_string();
        (lead, token)
    }

    /// `POST /leads/{id}/tenants`.
    async fn onboard(&self, id: &str, token: Option<&str>, body: &Value) -> (StatusCode, Value) {
        self.post(&format!("/leads/{id}/tenants"), token, body)
            .await
    }

    /// `POST /leads/{id}/tenants` with `token`, which must answer 200; the tenant.
    async fn onboard_ok(&self, id: &str, token: &str, body: &Value) -> Value {
        let (status, tenant) = self.onboard(id, Some(token), body).await;
        assert_eq!(status, 200, "onboarding {id} with {body}: {tenant}");
        tenant
    }

    /// The lead as an administrator reads it, with its address.
    async fn lead(&self, id: &str) -> Value {
        self.get_ok(
            &with_filter(&format!("/leads/{id}"), &include(&["address"])),
            &self.admin,
        )
        .await
    }

    /// Whether verification key `key` is held by the key store of this server, checked in the
    /// store itself (Redis, or the database's `kv_entries`), and never in the other one.
    async fn key_stored(&self, key: &str) -> bool {
        let stored_key = format!("{}lead-key:{key}", self.prefix);
        let in_db = self
            .sql_count(&format!(
                "SELECT COUNT(*) FROM kv_entries WHERE key = '{stored_key}'"
            ))
            .await;
        match &self.redis {
            Some(redis) => {
                assert_eq!(in_db, 0, "with Redis, lead keys are not in the database");
                !redis.keys(&format!("lead-key:{key}")).await.is_empty()
            }
            None => in_db == 1,
        }
    }
}

/// A 422 whose `details` name (path, code).
#[track_caller]
fn assert_invalid(status: StatusCode, body: &Value, path: &str, code: &str, what: &str) {
    expect_error(status, body, 422, "UnprocessableEntityError", what);
    assert_eq!(body["error"]["code"], "VALIDATION_FAILED", "{what}: {body}");
    let details = body["error"]["details"]
        .as_array()
        .unwrap_or_else(|| panic!("{what}: no details in {body}"));
    assert!(
        details
            .iter()
            .any(|d| d["path"] == path && d["code"] == code && d["message"].is_string()),
        "{what}: no detail ({path:?}, {code:?}) in {body}"
    );
}

// ---------------------------------------------------------------------------------------------
// Mail: a local SMTP server, the `.eml` outbox, the verification link
// ---------------------------------------------------------------------------------------------

/// Waits (bounded) until `dir` holds `n` files whose names satisfy `wanted`; their contents.
async fn wait_for_files(dir: &Path, n: usize, wanted: impl Fn(&str) -> bool) -> Vec<Vec<u8>> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(&wanted))
                    .collect()
            })
            .unwrap_or_default();
        if paths.len() >= n {
            paths.sort();
            return paths.iter().map(|p| std::fs::read(p).unwrap()).collect();
        }
        assert!(
            Instant::now() < deadline,
            "{} has {} of {n} expected files after {PATIENCE:?}",
            dir.display(),
            paths.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What a verification mail says.
#[derive(Debug)]
struct VerificationMail {
    to: String,
    subject: String,
    link: String,
    code: String,
    lead_id: String,
}

fn text_part(mail: &ParsedMail<'_>) -> String {
    if mail.ctype.mimetype == "text/plain" {
        return mail.get_body().expect("a decodable text part");
    }
    mail.subparts
        .iter()
        .find_map(|p| {
            let text = text_part(p);
            (!text.is_empty()).then_some(text)
        })
        .unwrap_or_default()
}

/// Parses a received message and follows it to the verification link.
fn read_verification_mail(raw: &[u8]) -> VerificationMail {
    let mail = mailparse::parse_mail(raw).expect("a parseable message");
    let header = |name: &str| {
        mail.headers
            .get_first_value(name)
            .unwrap_or_else(|| panic!("{name} header missing"))
    };
    let text = text_part(&mail);
    assert!(!text.is_empty(), "no text/plain part in the mail");
    let links: Vec<&str> = text
        .split_whitespace()
        .filter(|w| w.starts_with(VALIDATE_URL))
        .collect();
    assert_eq!(links.len(), 1, "one verification link in {text}");
    let link = links[0].to_string();
    let parsed = url::Url::parse(&link).expect("the link is a URL");
    let query: BTreeMap<String, String> = parsed.query_pairs().into_owned().collect();
    assert_eq!(
        query.keys().map(String::as_str).collect::<Vec<_>>(),
        ["code", "leadId"],
        "{link}"
    );
    VerificationMail {
        to: header("To"),
        subject: header("Subject"),
        code: query["code"].clone(),
        lead_id: query["leadId"].clone(),
        link,
    }
}

// ---------------------------------------------------------------------------------------------
// 1. The whole funnel
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Delivery {
    Smtp,
    Eml,
}

/// Sign-up → mail → link → verify → onboard → read the tenant, with the mail from `delivery`.
async fn walk_the_funnel(f: &Funnel, delivery: Delivery, smtp: Option<&SmtpSink>) {
    let email = "ada@engines.example";
    let before = f.snapshot().await;
    assert_eq!(before.leads, 0);

    // Sign-up: the answer is the id only.
    let (status, answer) = f.sign_up(&sign_up_with_address(email)).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["id"],
        "no key without LEAD_KEY_IN_RESPONSE: {answer}"
    );
    let lead_id = answer["id"].as_str().unwrap().to_string();
    let lead = f.lead(&lead_id).await;
    assert_eq!(lead["isValidated"], false);
    assert_eq!(lead["email"], email);
    assert_eq!(lead["companyName"], "Analytical Engines");
    let lead_address = lead["address"].clone();
    assert_eq!(lead_address["city"], "Pune", "{lead}");
    assert_eq!(lead["addressId"], lead_address["id"]);

    // The mail, as it was really delivered.
    let raw = match delivery {
        Delivery::Smtp => {
            let smtp = smtp.expect("the SMTP server");
            let received = wait_for_files(&smtp.inbox(), 1, |_| true).await;
            assert_eq!(received.len(), 1, "one mail");
            assert!(
                !f.data_dir.join("outbox").exists(),
                "no .eml files when SMTP is configured"
            );
            received.into_iter().next().unwrap()
        }
        Delivery::Eml => {
            let files =
                wait_for_files(&f.data_dir.join("outbox"), 1, |n| n.ends_with(".eml")).await;
            assert_eq!(files.len(), 1, "one .eml file");
            files.into_iter().next().unwrap()
        }
    };
    let mail = read_verification_mail(&raw);
    assert_eq!(mail.to, email);
    assert!(mail.subject.contains(APP_NAME), "{mail:?}");
    assert_eq!(mail.lead_id, lead_id, "{mail:?}");
    assert!(
        mail.link
            .starts_with(&format!("{VALIDATE_URL}?code={}&leadId=", mail.code)),
        "{mail:?}"
    );
    assert_eq!(
        mail.code.len(),
        36,
        "LEAD_KEY_LENGTH defaults to 36: {mail:?}"
    );
    assert!(mail.code.bytes().all(|b| b.is_ascii_hexdigit()), "{mail:?}");
    assert!(f.key_stored(&mail.code).await, "the key is in the store");

    // Verification with the code of the link.
    let (status, verified) = f.verify(&mail.lead_id, &mail.code).await;
    assert_eq!(status, 200, "{verified}");
    assert_eq!(
        verified.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["id", "token"],
        "{verified}"
    );
    assert_eq!(verified["id"], lead_id);
    let token = verified["token"].as_str().unwrap().to_string();
    let principal = f.jwt_keys().verify(&token).expect("a valid lead token");
    assert_eq!(principal.id, lead_id);
    assert_eq!(principal.lead, Some(Uuid::parse_str(&lead_id).unwrap()));
    assert_eq!(f.lead(&lead_id).await["isValidated"], true);
    assert!(!f.key_stored(&mail.code).await, "the key is consumed");
    // Single use.
    let (status, body) = f.verify(&mail.lead_id, &mail.code).await;
    expect_error(status, &body, 401, "UnauthorizedError", "second verify");

    // The lead token reads its own lead.
    let own = f.get_ok(&format!("/leads/{lead_id}"), &token).await;
    assert_eq!(own["id"], lead_id);
    assert_eq!(own["isValidated"], true);

    // Onboarding: no name (the company name), address parts equal to the lead's.
    let tenant = f
        .onboard_ok(
            &lead_id,
            &token,
            &json!({
                "key": "engines",
                "domains": ["engines.example", "www.engines.example"],
                "city": "Pune",
                "country": "India",
            }),
        )
        .await;
    let tenant_id = tenant["id"].as_str().unwrap().to_string();
    let check_tenant = |t: &Value, what: &str| {
        assert_eq!(t["id"], tenant_id, "{what}: {t}");
        assert_eq!(t["name"], "Analytical Engines", "{what}: {t}");
        assert_eq!(t["key"], "engines", "{what}: {t}");
        assert_eq!(t["status"], 1, "{what}: PENDINGPROVISION: {t}");
        assert_eq!(
            t["domains"],
            json!(["engines.example", "www.engines.example"]),
            "{what}: {t}"
        );
        assert_eq!(t["leadId"], lead_id, "{what}: {t}");
        assert_eq!(
            t["addressId"], lead_address["id"],
            "{what}: the lead's address: {t}"
        );
        let contacts = t["contacts"].as_array().expect("contacts included");
        assert_eq!(contacts.len(), 1, "{what}: {t}");
        let contact = &contacts[0];
        assert_eq!(contact["firstName"], "Ada", "{what}: {t}");
        assert_eq!(contact["lastName"], "Lovelace", "{what}: {t}");
        assert_eq!(contact["email"], email, "{what}: {t}");
        assert_eq!(contact["type"], "admin", "{what}: {t}");
        assert_eq!(contact["isPrimary"], true, "{what}: {t}");
        assert_eq!(contact["tenantId"], tenant_id, "{what}: {t}");
        assert_eq!(t["lead"]["id"], lead_id, "{what}: {t}");
        assert_eq!(t["lead"]["email"], email, "{what}: {t}");
        assert_eq!(t["lead"]["isValidated"], true, "{what}: {t}");
        for part in ["id", "address", "city", "state", "zip", "country"] {
            assert_eq!(
                t["address"][part], lead_address[part],
                "{what}: {part}: {t}"
            );
        }
    };
    check_tenant(&tenant, "onboarding answer");
    assert_eq!(tenant["resources"], json!([]), "{tenant}");
    assert_eq!(
        tenant["createdBy"], lead_id,
        "created by the lead: {tenant}"
    );

    // Read back by an administrator.
    let read = f
        .get_ok(
            &with_filter(
                &format!("/tenants/{tenant_id}"),
                &include(&["contacts", "address", "lead"]),
            ),
            &f.admin,
        )
        .await;
    check_tenant(&read, "admin GET /tenants/{id}");

    // The lead token reaches the tenant through its lead, but not through /tenants.
    let own = f
        .get_ok(
            &with_filter(
                &format!("/leads/{lead_id}"),
                &include(&["tenant", "address"]),
            ),
            &token,
        )
        .await;
    assert_eq!(own["tenant"]["id"], tenant_id, "{own}");
    assert_eq!(own["address"]["id"], lead_address["id"], "{own}");
    let (status, body) = f.get(&format!("/tenants/{tenant_id}"), Some(&token)).await;
    expect_error(
        status,
        &body,
        403,
        "ForbiddenError",
        "GET /tenants/{id} as the lead",
    );

    // One of each: the address was reused, not copied; one mail.
    let after = f.snapshot().await;
    assert_eq!(
        (
            after.leads,
            after.tenants,
            after.contacts,
            after.address_rows,
            after.mails
        ),
        (1, 1, 1, 1, 1),
        "{after:?}"
    );

    // A second onboarding is refused.
    let (status, body) = f
        .onboard(
            &lead_id,
            Some(&token),
            &json!({"key": "engines2", "domains": ["engines.example"]}),
        )
        .await;
    expect_error(status, &body, 401, "UnauthorizedError", "second onboarding");
    assert_eq!(f.snapshot().await, after);
}

async fn funnel_with_mail_over_smtp_body(env: Env) {
    if !SmtpSink::available(env.name) {
        return;
    }
    let smtp = SmtpSink::start().await;
    let f = env.start(&[("SMTP_URL", &smtp.url())]).await;
    walk_the_funnel(&f, Delivery::Smtp, Some(&smtp)).await;
}
funnel_test!(
    funnel_with_mail_over_smtp,
    funnel_with_mail_over_smtp_body,
    [sqlite, postgres, redis]
);

async fn funnel_with_mail_in_the_eml_outbox_body(env: Env) {
    let f = env.start(&[("SMTP_URL", "")]).await;
    walk_the_funnel(&f, Delivery::Eml, None).await;
}
funnel_test!(
    funnel_with_mail_in_the_eml_outbox,
    funnel_with_mail_in_the_eml_outbox_body,
    [sqlite, postgres, redis]
);

// ---------------------------------------------------------------------------------------------
// 2. The key in the sign-up answer
// ---------------------------------------------------------------------------------------------

async fn sign_up_answers_the_key_only_when_configured_body(env: Env) {
    let f = env.start(&[]).await;
    let (status, answer) = f.sign_up(&sign_up_body("ada@engines.example")).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["id"],
        "{answer}"
    );
    assert!(Uuid::parse_str(answer["id"].as_str().unwrap()).is_ok());
    assert_eq!(f.snapshot().await.mails, 1, "the link is mailed");
    drop(f);

    let f = env
        .start(&[KEY_IN_RESPONSE, ("LEAD_KEY_LENGTH", "40")])
        .await;
    let (status, answer) = f.sign_up(&sign_up_body("ada@engines.example")).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect::<BTreeSet<_>>(),
        BTreeSet::from(["id", "key"]),
        "{answer}"
    );
    let key = answer["key"].as_str().unwrap();
    assert_eq!(key.len(), 40, "LEAD_KEY_LENGTH: {key}");
    assert!(key.bytes().all(|b| b.is_ascii_hexdigit()), "{key}");
    let (status, verified) = f.verify(answer["id"].as_str().unwrap(), key).await;
    assert_eq!(status, 200, "the answered key verifies: {verified}");
}
funnel_test!(
    sign_up_answers_the_key_only_when_configured,
    sign_up_answers_the_key_only_when_configured_body
);

// ---------------------------------------------------------------------------------------------
// 3. Verification refused
// ---------------------------------------------------------------------------------------------

async fn expired_keys_verify_nothing_body(env: Env) {
    let f = env
        .start(&[
            UNLIMITED,
            KEY_IN_RESPONSE,
            ("VALIDATION_TOKEN_EXPIRY", "1000"),
        ])
        .await;
    let lead = f.new_lead(&sign_up_body("late@engines.example")).await;
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let before = f.snapshot().await;
    let (status, body) = f.verify(&lead.id, lead.key()).await;
    expect_error(status, &body, 401, "UnauthorizedError", "expired key");
    assert_eq!(f.snapshot().await, before);
    assert!(!before.validated[&lead.id]);

    // A key used in time works with the same expiry.
    let prompt = f.new_lead(&sign_up_body("prompt@engines.example")).await;
    let (status, body) = f.verify(&prompt.id, prompt.key()).await;
    assert_eq!(status, 200, "{body}");
}
funnel_test!(
    expired_keys_verify_nothing,
    expired_keys_verify_nothing_body,
    [sqlite, postgres, redis]
);

async fn keys_are_single_use_and_bound_to_their_lead_body(env: Env) {
    let f = env.start(&[UNLIMITED, KEY_IN_RESPONSE]).await;
    let a = f.new_lead(&sign_up_body("a@alpha.test")).await;
    let b = f.new_lead(&sign_up_body("b@beta.test")).await;
    let before = f.snapshot().await;

    // A's key does not verify B, and is not spent by trying.
    let (status, body) = f.verify(&b.id, a.key()).await;
    expect_error(
        status,
        &body,
        401,
        "UnauthorizedError",
        "key of another lead",
    );
    assert_eq!(f.snapshot().await, before);
    assert!(f.key_stored(a.key()).await);
    let (status, body) = f.verify(&a.id, a.key()).await;
    assert_eq!(status, 200, "the key still works for its own lead: {body}");

    // Replayed: refused, nothing changes.
    let after = f.snapshot().await;
    assert!(after.validated[&a.id]);
    assert!(!after.validated[&b.id]);
    let (status, body) = f.verify(&a.id, a.key()).await;
    expect_error(status, &body, 401, "UnauthorizedError", "reused key");
    assert_eq!(f.snapshot().await, after);

    // Two verifications at once with one key: exactly one wins.
    let (first, second) = tokio::join!(f.verify(&b.id, b.key()), f.verify(&b.id, b.key()));
    let mut statuses = [first.0.as_u16(), second.0.as_u16()];
    statuses.sort();
    assert_eq!(statuses, [200, 401], "{first:?} {second:?}");
    assert!(f.snapshot().await.validated[&b.id]);
}
funnel_test!(
    keys_are_single_use_and_bound_to_their_lead,
    keys_are_single_use_and_bound_to_their_lead_body,
    [sqlite, postgres, redis]
);

/// Makes every update of a lead fail inside the database (a trigger), as a database that fails
/// between consuming the key and validating the lead would; `false` removes the trigger.
async fn break_lead_updates(f: &Funnel, broken: bool) {
    let statements: &[&str] = match (f.store.pool(), broken) {
        (tms::store::Pool::Sqlite(_), true) => {
            &["CREATE TRIGGER break_leads BEFORE UPDATE ON leads \
             BEGIN SELECT RAISE(ABORT, 'injected failure'); END"]
        }
        (tms::store::Pool::Sqlite(_), false) => &["DROP TRIGGER break_leads"],
        (tms::store::Pool::Postgres(_), true) => &[
            "CREATE FUNCTION break_leads() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN RAISE EXCEPTION 'injected failure'; END $$",
            "CREATE TRIGGER break_leads BEFORE UPDATE ON leads \
             FOR EACH ROW EXECUTE FUNCTION break_leads()",
        ],
        (tms::store::Pool::Postgres(_), false) => &[
            "DROP TRIGGER break_leads ON leads",
            "DROP FUNCTION break_leads()",
        ],
    };
    for sql in statements {
        let sql = sqlx::AssertSqlSafe(sql.to_string());
        match f.store.pool() {
            tms::store::Pool::Sqlite(pool) => sqlx::query(sql).execute(pool).await.map(drop),
            tms::store::Pool::Postgres(pool) => sqlx::query(sql).execute(pool).await.map(drop),
        }
        .unwrap_or_else(|e| panic!("cannot change the trigger: {e}"));
    }
}

/// Consuming the key and validating the lead happen together: when the validation fails the
/// key is not spent, and the mailed link works once the database is healthy again (once).
async fn a_failed_verification_keeps_the_key_body(env: Env) {
    let f = env.start(&[UNLIMITED, KEY_IN_RESPONSE]).await;
    let lead = f.new_lead(&sign_up_body("a@alpha.test")).await;
    let before = f.snapshot().await;

    break_lead_updates(&f, true).await;
    let (status, body) = f.verify(&lead.id, lead.key()).await;
    assert_eq!(
        status, 500,
        "the injected failure is a server error: {body}"
    );
    assert_eq!(f.snapshot().await, before, "the lead is not validated");
    assert!(f.key_stored(lead.key()).await, "the key is not spent");

    break_lead_updates(&f, false).await;
    let (status, body) = f.verify(&lead.id, lead.key()).await;
    assert_eq!(status, 200, "the link works again: {body}");
    assert!(f.snapshot().await.validated[&lead.id]);
    assert!(!f.key_stored(lead.key()).await, "now the key is spent");
    let (status, body) = f.verify(&lead.id, lead.key()).await;
    expect_error(status, &body, 401, "UnauthorizedError", "reused key");
}
funnel_test!(
    a_failed_verification_keeps_the_key,
    a_failed_verification_keeps_the_key_body,
    [sqlite, postgres, redis]
);

/// The key in the link of every verification mail queued so far, oldest first.
async fn keys_in_queued_mails(f: &Funnel) -> Vec<String> {
    let ids: Vec<String> = match f.store.pool() {
        tms::store::Pool::Sqlite(pool) => {
            sqlx::query_scalar("SELECT id FROM outbox WHERE topic = 'mail' ORDER BY created_on, id")
                .fetch_all(pool)
                .await
                .unwrap()
        }
        tms::store::Pool::Postgres(pool) => sqlx::query_scalar(
            "SELECT id::text FROM outbox WHERE topic = 'mail' ORDER BY created_on, id",
        )
        .fetch_all(pool)
        .await
        .unwrap(),
    };
    let mut keys = Vec::new();
    for id in ids {
        let entry = tms::events::get(&mut f.store.conn(), Uuid::parse_str(&id).unwrap())
            .await
            .unwrap()
            .expect("the queued mail");
        let text = entry.payload["text"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let key = text
            .split("code=")
            .nth(1)
            .and_then(|rest| rest.split('&').next())
            .expect("a link with a code")
            .to_string();
        keys.push(key);
    }
    keys
}

/// `POST /leads/resend-verification` mails a fresh link to a lead that still needs one (not
/// verified, or verified without a tenant), and answers every request the same way.
async fn a_new_link_for_a_lead_that_needs_one_body(env: Env) {
    let f = env.start(&[UNLIMITED, KEY_IN_RESPONSE]).await;
    let f = &f;
    let ask = |email: &str| {
        let body = json!({ "email": email });
        async move { f.post("/leads/resend-verification", None, &body).await }
    };
    let expected = json!({"message": "If this address belongs to a lead that has not finished \
        signing up, a new verification link is on its way."});

    // Unknown address: the same answer, nothing sent.
    let before = f.snapshot().await;
    let (status, body) = ask("nobody@nowhere.test").await;
    assert_eq!((status.as_u16(), &body), (202, &expected));
    assert_eq!(f.snapshot().await, before);

    // Not verified yet: a new mail with a new key, which verifies (case of the address ignored).
    let lead = f.new_lead(&sign_up_body("a@alpha.test")).await;
    let (status, body) = ask("A@Alpha.TEST").await;
    assert_eq!((status.as_u16(), &body), (202, &expected));
    let keys = keys_in_queued_mails(f).await;
    assert_eq!(keys.len(), 2, "the sign-up mail and the new one");
    assert_eq!(keys[0], lead.key());
    assert_ne!(keys[1], keys[0]);
    let (status, verified) = f.verify(&lead.id, &keys[1]).await;
    assert_eq!(status, 200, "{verified}");

    // Verified but the token lost before onboarding: another link, which gives a new token.
    let (status, _) = ask("a@alpha.test").await;
    assert_eq!(status, 202);
    let keys = keys_in_queued_mails(f).await;
    assert_eq!(keys.len(), 3);
    let (status, again) = f.verify(&lead.id, &keys[2]).await;
    assert_eq!(status, 200, "{again}");
    let token = again["token"].as_str().unwrap();
    f.onboard_ok(
        &lead.id,
        token,
        &json!({"key": "alpha", "domains": ["alpha.test"]}),
    )
    .await;

    // Done (it has its tenant): the same answer, nothing sent.
    let before = f.snapshot().await;
    let (status, body) = ask("a@alpha.test").await;
    assert_eq!((status.as_u16(), &body), (202, &expected));
    assert_eq!(f.snapshot().await, before);

    // Two sign-ups with one address, one of them verified: the link goes to the verified one
    // (the other could never be verified: 409).
    let first = f.new_lead(&sign_up_body("b@beta.test")).await;
    let second = f.new_lead(&sign_up_body("b@beta.test")).await;
    let (status, _) = f.verify(&first.id, first.key()).await;
    assert_eq!(status, 200);
    let before = keys_in_queued_mails(f).await.len();
    let (status, _) = ask("b@beta.test").await;
    assert_eq!(status, 202);
    let keys = keys_in_queued_mails(f).await;
    assert_eq!(keys.len(), before + 1);
    let newest = keys.last().unwrap();
    let (status, body) = f.verify(&second.id, newest).await;
    expect_error(
        status,
        &body,
        401,
        "UnauthorizedError",
        "the new key is not the unverified one's",
    );
    let (status, body) = f.verify(&first.id, newest).await;
    assert_eq!(status, 200, "{body}");

    // One address gets at most three new links an hour, whoever asks; the answer stays the same.
    f.new_lead(&sign_up_body("c@gamma.test")).await;
    let before = keys_in_queued_mails(f).await.len();
    for _ in 0..4 {
        let (status, body) = ask("c@gamma.test").await;
        assert_eq!((status.as_u16(), &body), (202, &expected));
    }
    assert_eq!(keys_in_queued_mails(f).await.len(), before + 3);

    // A body that is not {email}: 422, nothing sent.
    let before = f.snapshot().await;
    for bad in [
        json!({}),
        json!({"email": "nope"}),
        json!({"email": "a@b.co", "x": 1}),
    ] {
        let (status, body) = f.post("/leads/resend-verification", None, &bad).await;
        expect_error(
            status,
            &body,
            422,
            "UnprocessableEntityError",
            &bad.to_string(),
        );
    }
    assert_eq!(f.snapshot().await, before);
}
funnel_test!(
    a_new_link_for_a_lead_that_needs_one,
    a_new_link_for_a_lead_that_needs_one_body,
    [sqlite, postgres, redis]
);

async fn verify_needs_the_key_as_bearer_body(env: Env) {
    let f = env.start(&[UNLIMITED, KEY_IN_RESPONSE]).await;
    let lead = f.new_lead(&sign_up_body("a@alpha.test")).await;
    let key = lead.key().to_string();
    let before = f.snapshot().await;
    let admin_bearer = format!("Bearer {}", f.admin);
    let key_upper = format!("Bearer {}", key.to_uppercase());
    let lead_id_bearer = format!("Bearer {}", lead.id);
    let key_prefix = format!("Bearer {}", &key[..key.len() - 1]);
    let basic = format!("Basic {key}");
    let bare = key.clone();
    let cases: Vec<(&str, Option<&str>)> = vec![
        ("no Authorization", None),
        ("empty", Some("")),
        ("scheme only", Some("Bearer")),
        ("empty bearer", Some("Bearer ")),
        ("garbage", Some("Bearer garbage")),
        ("an admin JWT", Some(&admin_bearer)),
        ("the key upper-cased", Some(&key_upper)),
        ("the lead's id", Some(&lead_id_bearer)),
        ("a prefix of the key", Some(&key_prefix)),
        ("another scheme", Some(&basic)),
        ("no scheme", Some(&bare)),
    ];
    for (what, authorization) in cases {
        let answer = f.verify_with_header(&lead.id, authorization).await;
        answer.assert_error(401, "UnauthorizedError");
        assert_eq!(f.snapshot().await, before, "{what}");
    }
    // The right key on the wrong path.
    for path_id in ["not-a-uuid".to_string(), Uuid::new_v4().to_string()] {
        let (status, body) = f.verify(&path_id, &key).await;
        expect_error(status, &body, 401, "UnauthorizedError", &path_id);
    }
    assert_eq!(f.snapshot().await, before);
    // None of that spent the key.
    let (status, body) = f.verify(&lead.id, &key).await;
    assert_eq!(status, 200, "{body}");
}
funnel_test!(
    verify_needs_the_key_as_bearer,
    verify_needs_the_key_as_bearer_body,
    [sqlite, postgres, redis]
);

// ---------------------------------------------------------------------------------------------
// 3. Onboarding refused: whose token
// ---------------------------------------------------------------------------------------------

async fn onboarding_needs_the_token_of_a_validated_lead_body(env: Env) {
    let f = env.start(&[UNLIMITED, KEY_IN_RESPONSE]).await;
    let (a, token_a) = f.verified_lead(&sign_up_body("a@alpha.test")).await;
    let (b, token_b) = f.verified_lead(&sign_up_body("b@beta.test")).await;
    // C signed up but never verified; a token for it is minted with the server's keys.
    let c = f.new_lead(&sign_up_body("c@gamma.test")).await;
    let token_c = f
        .jwt_keys()
        .mint_lead(c.uuid(), "c@gamma.test", 3600)
        .unwrap();
    let foreign_keys = JwtKeys::new(
        &SecretString::from("another-secret".to_string()),
        JWT_ISSUER,
    );
    let forged_a = foreign_keys
        .mint_lead(a.uuid(), "a@alpha.test", 3600)
        .unwrap();
    let plain_a = f.token_for(&a.id, tms::auth::LEAD_PERMISSIONS);
    let before = f.snapshot().await;
    let body_a = json!({"key": "alpha", "domains": ["alpha.test"]});
    let body_c = json!({"key": "gamma", "domains": ["gamma.test"]});

    let cases: Vec<(&str, &str, Option<&str>, &Value)> = vec![
        ("no token", &a.id, None, &body_a),
        ("garbage token", &a.id, Some("not.a.jwt"), &body_a),
        ("another lead's token", &a.id, Some(&token_b), &body_a),
        ("an admin token", &a.id, Some(&f.admin), &body_a),
        (
            "a token signed with another secret",
            &a.id,
            Some(&forged_a),
            &body_a,
        ),
        (
            "a token with the lead's id but no leadId claim",
            &a.id,
            Some(&plain_a),
            &body_a,
        ),
        ("an unvalidated lead", &c.id, Some(&token_c), &body_c),
        ("A's token on C", &c.id, Some(&token_a), &body_c),
        (
            "a path that is no UUID",
            "not-a-uuid",
            Some(&token_a),
            &body_a,
        ),
    ];
    for (what, id, token, body) in cases {
        let (status, answer) = f.onboard(id, token, body).await;
        expect_error(status, &answer, 401, "UnauthorizedError", what);
        assert_eq!(f.snapshot().await, before, "{what}");
    }

    // The right tokens work.
    f.onboard_ok(&a.id, &token_a, &body_a).await;
    f.onboard_ok(
        &b.id,
        &token_b,
        &json!({"key": "beta", "domains": ["beta.test"]}),
    )
    .await;
}
funnel_test!(
    onboarding_needs_the_token_of_a_validated_lead,
    onboarding_needs_the_token_of_a_validated_lead_body
);

async fn a_lead_onboards_once_body(env: Env) {
    let f = env.start(&[UNLIMITED, KEY_IN_RESPONSE]).await;
    let (a, token) = f.verified_lead(&sign_up_body("a@alpha.test")).await;
    let tenant = f
        .onboard_ok(
            &a.id,
            &token,
            &json!({"key": "alpha", "domains": ["alpha.test"], "name": "Alpha Ltd"}),
        )
        .await;
    assert_eq!(tenant["name"], "Alpha Ltd", "a given name wins: {tenant}");
    assert_eq!(
        tenant["address"],
        Value::Null,
        "a lead without address: {tenant}"
    );
    let after = f.snapshot().await;
    for body in [
        json!({"key": "alpha", "domains": ["alpha.test"]}),
        json!({"key": "alpha2", "domains": ["alpha.test"], "name": "Alpha Two"}),
        json!({"key": "alpha3", "domains": ["alpha.test"], "country": "India"}),
    ] {
        let (status, answer) = f.onboard(&a.id, Some(&token), &body).await;
        expect_error(status, &answer, 401, "UnauthorizedError", &body.to_string());
        assert_eq!(f.snapshot().await, after, "{body}");
    }
}
funnel_test!(a_lead_onboards_once, a_lead_onboards_once_body);

async fn concurrent_onboardings_of_one_lead_body(env: Env) {
    let f = env.start(&[UNLIMITED, KEY_IN_RESPONSE]).await;
    // Two at once, different tenant keys: the lead decides.
    let (a, token_a) = f.verified_lead(&sign_up_body("a@alpha.test")).await;
    // Two at once, the same tenant key.
    let (b, token_b) = f.verified_lead(&sign_up_body("b@beta.test")).await;
    let body_a1 = json!({"key": "alpha1", "domains": ["alpha.test"]});
    let body_a2 = json!({"key": "alpha2", "domains": ["alpha.test"]});
    let body_b = json!({"key": "beta", "domains": ["beta.test"]});
    let (a1, a2, b1, b2) = tokio::join!(
        f.onboard(&a.id, Some(&token_a), &body_a1),
        f.onboard(&a.id, Some(&token_a), &body_a2),
        f.onboard(&b.id, Some(&token_b), &body_b),
        f.onboard(&b.id, Some(&token_b), &body_b),
    );
    for (lead, first, second) in [(&a, &a1, &a2), (&b, &b1, &b2)] {
        let mut statuses = [first.0.as_u16(), second.0.as_u16()];
        statuses.sort();
        assert!(
            statuses == [200, 401] || statuses == [200, 409],
            "lead {}: {first:?} {second:?}",
            lead.id
        );
        let loser = if first.0 == 200 { second } else { first };
        assert!(
            loser.1["error"]["statusCode"] == loser.0.as_u16(),
            "{loser:?}"
        );
    }
    let snapshot = f.snapshot().await;
    assert_eq!(
        (
            snapshot.tenants,
            snapshot.tenant_rows,
            snapshot.contacts,
            snapshot.contact_rows
        ),
        (2, 2, 2, 2),
        "{snapshot:?}"
    );
    for lead in [&a, &b] {
        let tenants = f
            .get_ok(
                &with_filter("/tenants", &json!({"where": {"leadId": lead.id}})),
                &f.admin,
            )
            .await;
        assert_eq!(tenants.as_array().unwrap().len(), 1, "{tenants}");
    }

    // Ten leads onboarding at the same moment all succeed (the original deadlocks here).
    let mut leads = Vec::new();
    for n in 0..10 {
        leads.push(
            f.verified_lead(&sign_up_body(&format!("p{n}@parallel{n}.test")))
                .await,
        );
    }
    let mut tasks = tokio::task::JoinSet::new();
    for (n, (lead, token)) in leads.into_iter().enumerate() {
        let request = f
            .client
            .post(f.url(&format!("/leads/{}/tenants", lead.id)))
            .bearer_auth(token)
            .json(&json!({"key": format!("par{n}"), "domains": [format!("parallel{n}.test")]}));
        tasks.spawn(async move {
            let response = request.send().await.expect("request failed");
            (response.status(), response.text().await.unwrap_or_default())
        });
    }
    let outcomes = tokio::time::timeout(Duration::from_secs(30), tasks.join_all())
        .await
        .expect("ten concurrent onboardings finish");
    for (status, text) in outcomes {
        assert_eq!(status, 200, "{text}");
    }
    assert_eq!(f.snapshot().await.tenants, 12);
}
funnel_test!(
    concurrent_onboardings_of_one_lead,
    concurrent_onboardings_of_one_lead_body
);

// ---------------------------------------------------------------------------------------------
// 3. Sign-up refused
// ---------------------------------------------------------------------------------------------

async fn a_validated_email_signs_up_once_body(env: Env) {
    let f = env.start(&[UNLIMITED, KEY_IN_RESPONSE]).await;
    let first = f.new_lead(&sign_up_body("grace@hopper.test")).await;
    // Not validated yet: the same address may sign up again.
    let again = f.new_lead(&sign_up_body("grace@hopper.test")).await;
    assert_ne!(first.id, again.id);
    let (status, body) = f.verify(&first.id, first.key()).await;
    assert_eq!(status, 200, "{body}");

    let before = f.snapshot().await;
    assert_eq!(before.leads, 2);
    for body in [
        sign_up_body("grace@hopper.test"),
        sign_up_body("GRACE@Hopper.Test"),
        sign_up_with_address("Grace@hopper.test"),
    ] {
        let (status, answer) = f.sign_up(&body).await;
        expect_error(status, &answer, 409, "ConflictError", &body.to_string());
        assert_eq!(f.snapshot().await, before, "nothing written for {body}");
    }
    // Another address is welcome.
    f.new_lead(&sign_up_body("grace@navy.test")).await;
}
funnel_test!(
    a_validated_email_signs_up_once,
    a_validated_email_signs_up_once_body
);

/// The same, for an address with a non-ASCII capital letter: the identical address, or one that
/// differs only in the case of its ASCII letters, is a duplicate too.
async fn a_validated_email_with_non_ascii_letters_signs_up_once_body(env: Env) {
    let f = env.start(&[UNLIMITED, KEY_IN_RESPONSE]).await;
    let (lead, _) = f.verified_lead(&sign_up_body("Ädä@umlaut.test")).await;
    assert_eq!(f.lead(&lead.id).await["email"], "Ädä@umlaut.test");
    let before = f.snapshot().await;
    for email in ["Ädä@umlaut.test", "Ädä@UMLAUT.TEST"] {
        let (status, answer) = f.sign_up(&sign_up_body(email)).await;
        expect_error(status, &answer, 409, "ConflictError", email);
        assert_eq!(f.snapshot().await, before, "nothing written for {email}");
    }
}
funnel_test!(
    a_validated_email_with_non_ascii_letters_signs_up_once,
    a_validated_email_with_non_ascii_letters_signs_up_once_body
);

async fn sign_up_bodies_are_checked_body(env: Env) {
    let f = env.start(&[UNLIMITED, KEY_IN_RESPONSE]).await;
    let before = f.snapshot().await;
    let with = |field: &str, value: Value| {
        let mut body = sign_up_with_address("ada@engines.example");
        body[field] = value;
        body
    };
    let without = |field: &str| {
        let mut body = sign_up_with_address("ada@engines.example");
        body.as_object_mut().unwrap().remove(field);
        body
    };
    let long = "x".repeat(101);
    // A syntactically valid address of 101 characters.
    let long_email = format!("{}@{}.com", "a".repeat(60), "b".repeat(36));
    assert_eq!(long_email.len(), 101);
    let cases: Vec<(Value, &str, &str)> = vec![
        (json!([]), "", "type"),
        (json!("ada"), "", "type"),
        (without("email"), "", "required"),
        (without("firstName"), "", "required"),
        (without("lastName"), "", "required"),
        (without("companyName"), "", "required"),
        (with("plan", json!("gold")), "", "additionalProperties"),
        (with("isValidated", json!(true)), "", "additionalProperties"),
        (with("firstName", json!(long)), "/firstName", "maxLength"),
        (with("lastName", json!(long)), "/lastName", "maxLength"),
        (
            with("companyName", json!(long)),
            "/companyName",
            "maxLength",
        ),
        (with("email", json!(long_email)), "/email", "maxLength"),
        (with("email", json!("not-an-email")), "/email", "format"),
        (
            with("email", json!("ada lovelace@engines.example")),
            "/email",
            "format",
        ),
        (with("email", json!("ada@localhost")), "/email", "format"),
        (with("email", json!(42)), "/email", "type"),
        (with("firstName", json!("")), "/firstName", "minLength"),
        (with("firstName", Value::Null), "/firstName", "type"),
        (with("address", json!("Pune")), "/address", "type"),
        (
            with("address", json!({"city": "Pune"})),
            "/address",
            "required",
        ),
        (
            with("address", json!({"country": "India", "planet": "Earth"})),
            "/address",
            "additionalProperties",
        ),
        (
            with("address", json!({"country": "x".repeat(101)})),
            "/address/country",
            "maxLength",
        ),
    ];
    for (body, path, code) in cases {
        let (status, answer) = f.sign_up(&body).await;
        assert_invalid(status, &answer, path, code, &body.to_string());
        assert_eq!(f.snapshot().await, before, "nothing written for {body}");
    }
    // Not JSON at all.
    for (text, content_type, status, name) in [
        ("{bad", Some("application/json"), 400, "SyntaxError"),
        ("", Some("application/json"), 400, "SyntaxError"),
        (
            r#"{"firstName": "Ada",}"#,
            Some("application/json"),
            400,
            "SyntaxError",
        ),
        (
            r#"{"firstName":"Ada"}"#,
            Some("text/plain"),
            415,
            "UnsupportedMediaTypeError",
        ),
        (
            r#"{"firstName":"Ada"}"#,
            None,
            415,
            "UnsupportedMediaTypeError",
        ),
    ] {
        let answer = f
            .raw(Method::POST, "/leads", None, text, content_type)
            .await;
        answer.assert_error(status, name);
        assert_eq!(f.snapshot().await, before, "nothing written for {text:?}");
    }
    assert_eq!(
        f.sql_count("SELECT COUNT(*) FROM kv_entries WHERE key LIKE '%lead-key:%'")
            .await,
        0,
        "no key stored for a refused sign-up"
    );
    // And the valid body passes.
    f.new_lead(&sign_up_with_address("ada@engines.example"))
        .await;
}
funnel_test!(sign_up_bodies_are_checked, sign_up_bodies_are_checked_body);

/// Addresses the mail cannot be sent to are refused at sign-up (422 at `/email`), not answered
/// with a 500 when the verification mail is queued.
async fn sign_up_refuses_emails_that_cannot_be_mailed_body(env: Env) {
    let f = env.start(&[UNLIMITED, KEY_IN_RESPONSE]).await;
    let before = f.snapshot().await;
    let mut problems = Vec::new();
    for email in [
        "ada..lovelace@engines.example",
        ".ada@engines.example",
        "ada.@engines.example",
        "ada,lovelace@engines.example",
        "ada;lovelace@engines.example",
        "ada:lovelace@engines.example",
        "a<da>@engines.example",
        "ada(x)@engines.example",
        "ada[x]@engines.example",
        "ada\\x@engines.example",
        "ada\"x@engines.example",
    ] {
        let (status, answer) = f.sign_up(&sign_up_body(email)).await;
        let invalid_email = status == 422
            && answer["error"]["details"]
                .as_array()
                .is_some_and(|d| d.iter().any(|d| d["path"] == "/email"));
        if !invalid_email {
            problems.push(format!("{email}: {status} {answer}"));
        }
        assert_eq!(f.snapshot().await, before, "nothing written for {email}");
    }
    assert!(
        problems.is_empty(),
        "expected 422 at /email for:\n{}",
        problems.join("\n")
    );
}
funnel_test!(
    sign_up_refuses_emails_that_cannot_be_mailed,
    sign_up_refuses_emails_that_cannot_be_mailed_body
);

/// A NUL character is valid JSON in any string; whatever the service makes of it (refuse it, or
/// store it), it must not be a 500, and a refusal writes nothing.
async fn nul_characters_never_cause_a_server_error_body(env: Env) {
    let f = env.start(&[UNLIMITED, KEY_IN_RESPONSE]).await;
    let (lead, token) = f.verified_lead(&sign_up_body("ada@engines.example")).await;
    let mut problems = Vec::new();
    for (n, (field, value)) in [
        ("firstName", "Ada\u{0}Lovelace"),
        ("lastName", "\u{0}"),
        ("companyName", "Engines\u{0}"),
        ("email", "a\u{0}da@nul.example"),
    ]
    .into_iter()
    .enumerate()
    {
        let mut body = sign_up_body(&format!("nul{n}@nul.example"));
        body[field] = json!(value);
        let before = f.snapshot().await;
        let (status, answer) = f.sign_up(&body).await;
        match status.as_u16() {
            200 => assert_eq!(f.snapshot().await.leads, before.leads + 1),
            422 => assert_eq!(f.snapshot().await, before, "nothing written for {field}"),
            other => problems.push(format!("POST /leads, NUL in {field}: {other} {answer}")),
        }
    }
    let before = f.snapshot().await;
    let (status, answer) = f
        .onboard(
            &lead.id,
            Some(&token),
            &json!({"key": "engines", "domains": ["engines.example"], "name": "Engines\u{0}"}),
        )
        .await;
    match status.as_u16() {
        200 => assert_eq!(f.snapshot().await.tenants, before.tenants + 1),
        422 => assert_eq!(f.snapshot().await, before, "nothing written"),
        other => problems.push(format!(
            "POST /leads/{{id}}/tenants, NUL in name: {other} {answer}"
        )),
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
funnel_test!(
    nul_characters_never_cause_a_server_error,
    nul_characters_never_cause_a_server_error_body
);

// ---------------------------------------------------------------------------------------------
// 3. Onboarding refused: the body
// ---------------------------------------------------------------------------------------------

async fn onboarding_bodies_are_checked_body(env: Env) {
    let f = env.start(&[UNLIMITED, KEY_IN_RESPONSE]).await;
    let (lead, token) = f
        .verified_lead(&sign_up_with_address("ada@engines.example"))
        .await;
    // A tenant of an administrator holds the key "taken".
    let (status, taken) = f
        .post(
            "/tenants",
            Some(&f.admin),
            &json!({
                "name": "Taken", "key": "taken", "domains": ["taken.test"],
                "contact": {"firstName": "T", "lastName": "T", "email": "t@taken.test", "isPrimary": true},
            }),
        )
        .await;
    assert_eq!(status, 200, "{taken}");
    let before = f.snapshot().await;
    let valid = json!({"key": "engines", "domains": ["engines.example"]});
    let with = |field: &str, value: Value| {
        let mut body = valid.clone();
        body[field] = value;
        body
    };
    let without = |field: &str| {
        let mut body = valid.clone();
        body.as_object_mut().unwrap().remove(field);
        body
    };
    // One address part differing from the lead's, with the lead's country.
    let with_country = |field: &str, value: Value| {
        let mut body = with(field, value);
        body["country"] = json!("India");
        body
    };

    let invalid: Vec<(Value, &str, &str)> = vec![
        (
            with("domains", json!(["not a domain"])),
            "/domains/0",
            "format",
        ),
        (
            with("domains", json!(["engines.example", "-bad-.example"])),
            "/domains/1",
            "format",
        ),
        (
            with("domains", json!(["engines.example", "Engines.Example"])),
            "/domains",
            "uniqueItems",
        ),
        (
            with("domains", json!("engines.example")),
            "/domains",
            "type",
        ),
        (with("domains", json!([42])), "/domains", "type"),
        (without("domains"), "", "required"),
        (without("key"), "", "required"),
        (with("key", json!("Engines")), "/key", "pattern"),
        (with("key", json!("abcdefghijk")), "/key", "maxLength"),
        (with("name", json!("x".repeat(101))), "/name", "maxLength"),
        (
            with("contact", json!({"email": "x@engines.example"})),
            "",
            "additionalProperties",
        ),
        (with("status", json!(0)), "", "additionalProperties"),
        (
            with("leadId", json!(Uuid::new_v4().to_string())),
            "",
            "additionalProperties",
        ),
    ];
    for (body, path, code) in invalid {
        let (status, answer) = f.onboard(&lead.id, Some(&token), &body).await;
        assert_invalid(status, &answer, path, code, &body.to_string());
        assert_eq!(f.snapshot().await, before, "nothing written for {body}");
    }

    let refused: Vec<(Value, u16, &str, &str)> = vec![
        (
            with("domains", json!(["other.example"])),
            400,
            "BadRequestError",
            "Contact email domain does not match tenant domains",
        ),
        (
            with("domains", json!(["sub.engines.example"])),
            400,
            "BadRequestError",
            "Contact email domain does not match tenant domains",
        ),
        (
            with("country", json!("Nepal")),
            400,
            "BadRequestError",
            "Address mismatch with Lead",
        ),
        (
            with_country("city", json!("Mumbai")),
            400,
            "BadRequestError",
            "Address mismatch with Lead",
        ),
        (
            with_country("zip", json!("000000")),
            400,
            "BadRequestError",
            "Address mismatch with Lead",
        ),
        (
            with_country("address", json!("1 Other Road")),
            400,
            "BadRequestError",
            "Address mismatch with Lead",
        ),
        (with("key", json!("taken")), 409, "ConflictError", ""),
    ];
    for (body, status, name, message) in refused {
        let (got, answer) = f.onboard(&lead.id, Some(&token), &body).await;
        expect_error(got, &answer, status, name, &body.to_string());
        if !message.is_empty() {
            assert_eq!(answer["error"]["message"], message, "{body}");
        }
        assert_eq!(f.snapshot().await, before, "nothing written for {body}");
    }

    for (text, status, name) in [
        ("{bad", 400, "SyntaxError"),
        (
            r#"{"key": "engines", "domains": ["engines.example"]"#,
            400,
            "SyntaxError",
        ),
    ] {
        let answer = f
            .raw(
                Method::POST,
                &format!("/leads/{}/tenants", lead.id),
                Some(&token),
                text,
                Some("application/json"),
            )
            .await;
        answer.assert_error(status, name);
        assert_eq!(f.snapshot().await, before, "nothing written for {text:?}");
    }

    // After all that, the lead still onboards.
    f.onboard_ok(&lead.id, &token, &valid).await;
    let after = f.snapshot().await;
    assert_eq!(after.tenants, before.tenants + 1);
    assert_eq!(
        after.address_rows, before.address_rows,
        "the lead's address is reused"
    );
}
funnel_test!(
    onboarding_bodies_are_checked,
    onboarding_bodies_are_checked_body
);

/// `TenantOnboardDto` requires only `key` and `domains`: every address part is optional, and for
/// a lead with an address the parts given are compared with it (a difference is 400, "Address
/// mismatch with Lead"), whether or not `country` is among them.
async fn partial_address_parts_are_compared_with_the_leads_body(env: Env) {
    let f = env.start(&[UNLIMITED, KEY_IN_RESPONSE]).await;
    let (lead, token) = f
        .verified_lead(&sign_up_with_address("ada@engines.example"))
        .await;
    let before = f.snapshot().await;
    let (status, answer) = f
        .onboard(
            &lead.id,
            Some(&token),
            &json!({"key": "engines", "domains": ["engines.example"], "city": "Mumbai"}),
        )
        .await;
    expect_error(status, &answer, 400, "BadRequestError", "city differs");
    assert_eq!(answer["error"]["message"], "Address mismatch with Lead");
    assert_eq!(f.snapshot().await, before);

    // Parts equal to the lead's.
    let tenant = f
        .onboard_ok(
            &lead.id,
            &token,
            &json!({"key": "engines", "domains": ["engines.example"], "city": "Pune", "zip": "411001"}),
        )
        .await;
    assert_eq!(tenant["address"]["city"], "Pune", "{tenant}");
    assert_eq!(tenant["address"]["country"], "India", "{tenant}");
    assert_eq!(f.snapshot().await.address_rows, before.address_rows);
}
funnel_test!(
    partial_address_parts_are_compared_with_the_leads,
    partial_address_parts_are_compared_with_the_leads_body
);

// ---------------------------------------------------------------------------------------------
// 4. The public rate limit
// ---------------------------------------------------------------------------------------------

fn header(answer: &TestResponse, name: &str) -> Option<u64> {
    answer.header(name).map(|v| {
        v.parse()
            .unwrap_or_else(|_| panic!("{name}: {v:?} is not a number"))
    })
}

/// `POST /leads/{id}/tenants` with an empty body and no token, the whole response.
async fn raw_onboard_without_token(f: &Funnel, id: &str) -> TestResponse {
    f.raw(
        Method::POST,
        &format!("/leads/{id}/tenants"),
        None,
        "{}",
        Some("application/json"),
    )
    .await
}

/// `POST /leads`, the whole response.
async fn raw_sign_up(f: &Funnel, email: &str) -> TestResponse {
    let body = sign_up_body(email).to_string();
    f.raw(
        Method::POST,
        "/leads",
        None,
        &body,
        Some("application/json"),
    )
    .await
}

async fn public_routes_share_a_rate_limit_body(env: Env) {
    let f = env
        .start(&[("PUBLIC_API_MAX_ATTEMPTS", "3"), KEY_IN_RESPONSE])
        .await;
    // Windows are whole minutes of the clock: start well inside one.
    let into_minute = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis()
        % 60_000;
    if into_minute > 52_000 {
        tokio::time::sleep(Duration::from_millis(60_000 - into_minute as u64 + 200)).await;
    }
    // Three requests over the three public routes.
    let first = raw_sign_up(&f, "a@alpha.test").await;
    assert_eq!(first.status, 200, "{}", first.text);
    assert_eq!(header(&first, "x-ratelimit-limit"), Some(3));
    assert_eq!(header(&first, "x-ratelimit-remaining"), Some(2));
    let lead = first.json();
    let id = lead["id"].as_str().unwrap();
    let key = lead["key"].as_str().unwrap();
    let second = f.verify_with_header(id, Some("Bearer wrong")).await;
    second.assert_error(401, "UnauthorizedError");
    assert_eq!(header(&second, "x-ratelimit-remaining"), Some(1));
    let third = raw_onboard_without_token(&f, id).await;
    third.assert_error(401, "UnauthorizedError");
    assert_eq!(header(&third, "x-ratelimit-remaining"), Some(0));

    // The fourth, on any of them, is refused and does nothing.
    let before = f.snapshot().await;
    let fourth = raw_sign_up(&f, "b@beta.test").await;
    fourth.assert_error(429, "TooManyRequestsError");
    assert_eq!(
        fourth.json(),
        json!({"error": {
            "statusCode": 429,
            "name": "TooManyRequestsError",
            "message": "Too many requests, please try again later.",
        }})
    );
    let retry_after = header(&fourth, "retry-after").expect("Retry-After");
    assert!((1..=60).contains(&retry_after), "Retry-After {retry_after}");
    assert_eq!(header(&fourth, "x-ratelimit-limit"), Some(3));
    assert_eq!(header(&fourth, "x-ratelimit-remaining"), Some(0));
    let reset = header(&fourth, "x-ratelimit-reset").expect("X-RateLimit-Reset");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        reset >= now && reset <= now + 61,
        "X-RateLimit-Reset {reset} at {now}"
    );
    let verify = f
        .verify_with_header(id, Some(&format!("Bearer {key}")))
        .await;
    verify.assert_error(429, "TooManyRequestsError");
    assert!(header(&verify, "retry-after").is_some());
    let onboard = raw_onboard_without_token(&f, id).await;
    onboard.assert_error(429, "TooManyRequestsError");
    assert_eq!(
        f.snapshot().await,
        before,
        "a limited request writes nothing"
    );
    assert!(
        f.key_stored(key).await,
        "the limited verify did not spend the key"
    );

    // Other routes are not limited.
    assert_eq!(f.get("/ping", None).await.0, 200);
    assert_eq!(f.get("/leads/count", Some(&f.admin)).await.0, 200);

    // The counter lives in the configured store.
    let db_counters = f
        .sql_count(&format!(
            "SELECT COUNT(*) FROM kv_entries WHERE key LIKE '{}rl:public:%'",
            f.prefix
        ))
        .await;
    match &f.redis {
        Some(redis) => {
            assert_eq!(db_counters, 0);
            assert!(
                !redis.keys("rl:public:*").await.is_empty(),
                "a counter in Redis"
            );
        }
        None => assert!(db_counters >= 1, "a counter in kv_entries"),
    }
}
funnel_test!(
    public_routes_share_a_rate_limit,
    public_routes_share_a_rate_limit_body,
    [sqlite, postgres, redis]
);

// ---------------------------------------------------------------------------------------------
// 5. The lead token's scope
// ---------------------------------------------------------------------------------------------

async fn lead_tokens_reach_only_their_lead_body(env: Env) {
    let f = env.start(&[UNLIMITED, KEY_IN_RESPONSE]).await;
    let (a, token_a) = f.verified_lead(&sign_up_with_address("a@alpha.test")).await;
    let (b, token_b) = f.verified_lead(&sign_up_body("b@beta.test")).await;
    let c = f.new_lead(&sign_up_body("c@gamma.test")).await;
    let tenant_a = f
        .onboard_ok(
            &a.id,
            &token_a,
            &json!({"key": "alpha", "domains": ["alpha.test"]}),
        )
        .await;
    let tenant_b = f
        .onboard_ok(
            &b.id,
            &token_b,
            &json!({"key": "beta", "domains": ["beta.test"]}),
        )
        .await;
    let tenant_a = tenant_a["id"].as_str().unwrap().to_string();
    let tenant_b = tenant_b["id"].as_str().unwrap().to_string();

    // Leads: its own only.
    let listed = f.get_ok("/leads", &token_a).await;
    let ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [a.id.as_str()], "{listed}");
    assert_eq!(
        f.get_ok("/leads/count", &token_a).await,
        json!({"count": 1})
    );
    assert_eq!(
        f.get_ok(
            &with_filter("/leads", &json!({"where": {"id": b.id}})),
            &token_a
        )
        .await,
        json!([])
    );
    assert_eq!(
        f.get_ok(&format!("/leads/{}", a.id), &token_a).await["id"],
        a.id
    );
    for other in [&b.id, &c.id] {
        let (status, body) = f.get(&format!("/leads/{other}"), Some(&token_a)).await;
        assert!(
            status == 404 || status == 403,
            "GET /leads/{other} with another lead's token: {status} {body}"
        );
        assert_loopback_error(
            &body,
            status.as_u16(),
            if status == 404 {
                "NotFoundError"
            } else {
                "ForbiddenError"
            },
        );
    }
    assert_eq!(
        f.get_ok("/leads/count", &f.admin).await,
        json!({"count": 3})
    );

    // Tenants: no ViewTenant.
    for path in [
        "/tenants".to_string(),
        "/tenants/count".to_string(),
        format!("/tenants/{tenant_a}"),
        format!("/tenants/{tenant_b}"),
    ] {
        let (status, body) = f.get(&path, Some(&token_a)).await;
        expect_error(status, &body, 403, "ForbiddenError", &path);
    }

    // Tenant configs: for its own tenant only.
    let before = f.snapshot().await;
    let config = |tenant: &str| json!({"configKey": "keycloak", "configValue": {"logo_url": "alpha.png"}, "tenantId": tenant});
    let (status, created) = f
        .post("/tenant-configs", Some(&token_a), &config(&tenant_a))
        .await;
    assert_eq!(status, 200, "{created}");
    assert_eq!(created["tenantId"], tenant_a);
    assert_eq!(created["createdBy"], a.id);
    let after = f.snapshot().await;
    assert_eq!(after.tenant_configs, before.tenant_configs + 1);
    for tenant in [tenant_b.clone(), Uuid::new_v4().to_string()] {
        let (status, body) = f
            .post("/tenant-configs", Some(&token_a), &config(&tenant))
            .await;
        expect_error(status, &body, 404, "NotFoundError", &tenant);
        assert_eq!(
            f.snapshot().await,
            after,
            "nothing written for tenant {tenant}"
        );
    }
    // The lead reads its own config, not B's.
    let (status, b_config) = f
        .post("/tenant-configs", Some(&token_b), &config(&tenant_b))
        .await;
    assert_eq!(status, 200, "{b_config}");
    let (status, body) = f
        .get(
            &format!("/tenant-configs/{}", created["id"].as_str().unwrap()),
            Some(&token_b),
        )
        .await;
    assert!(
        status == 403 || status == 404,
        "B reads A's config: {status} {body}"
    );

    // The administrator's onboarding is not for lead tokens.
    let after = f.snapshot().await;
    let (status, body) = f
        .post(
            "/tenants",
            Some(&token_a),
            &json!({
                "name": "Second", "key": "second", "domains": ["alpha.test"],
                "contact": {"firstName": "A", "lastName": "A", "email": "a@alpha.test", "isPrimary": true},
            }),
        )
        .await;
    expect_error(
        status,
        &body,
        403,
        "ForbiddenError",
        "POST /tenants with a lead token",
    );
    assert_eq!(f.snapshot().await, after);
}
funnel_test!(
    lead_tokens_reach_only_their_lead,
    lead_tokens_reach_only_their_lead_body
);
