//! The original's Redis entries, on a real Redis (`TMS_TEST_REDIS_URL`): a verification link
//! the original mailed (`_kvModel:<key>` → MessagePack `{token}`) verifies on tms once, and not
//! after its expiry; a provisioning result signed with a secret the original stored
//! (`_kvModel:<tenant>` → `{secret, context}`) is accepted; with `REDIS_ENTRY_FORMAT=original`
//! tms writes its lead keys and webhook secrets that way, readable by a MessagePack decoder as
//! the original's own, and still single-use.

mod common;
mod lifecycle_support;
mod rest_support;

use std::time::Duration;

use common::*;
use lifecycle_support::*;
use redis::AsyncCommands;

/// The Redis of the tests, or `None` (the test records a skip; a failure under CI=true).
async fn redis(test: &str) -> Option<redis::aio::MultiplexedConnection> {
    let url = redis_url();
    let client = redis::Client::open(url.as_str()).ok();
    let conn = match client {
        Some(client) => client.get_multiplexed_async_connection().await.ok(),
        None => None,
    };
    let available = conn
        .as_ref()
        .map(|_| ())
        .ok_or_else(|| format!("Redis is not reachable at {url}"));
    if needs(test, "redis", available) {
        conn
    } else {
        None
    }
}

/// An app on SQLite with Redis as its key store under a prefix of its own, and `overrides`.
async fn app_with_redis(overrides: &[(&str, &str)]) -> TestApp {
    app_with_redis_on(Db::Sqlite, overrides).await
}

/// An app on `db` with Redis as its key store under a prefix of its own, and `overrides`.
async fn app_with_redis_on(db: Db, overrides: &[(&str, &str)]) -> TestApp {
    let url = redis_url();
    let prefix = format!("t{}:", uuid::Uuid::new_v4().simple());
    let mut vars = vec![
        ("REDIS_URL", url.as_str()),
        ("REDIS_KEY_PREFIX", prefix.as_str()),
        ("LEAD_KEY_IN_RESPONSE", "true"),
    ];
    vars.extend_from_slice(overrides);
    TestApp::spawn_with(db, &vars).await
}

fn msgpack<T: serde::Serialize>(value: &T) -> Vec<u8> {
    rmp_serde::to_vec_named(value).unwrap()
}

async fn sign_up(app: &TestApp, email: &str) -> (String, String) {
    let (status, lead) = app
        .post(
            "/leads",
            None,
            &json!({"firstName": "Ada", "lastName": "Lovelace", "email": email,
                    "companyName": "Engines"}),
        )
        .await;
    assert_eq!(status, 200, "{lead}");
    (
        lead["id"].as_str().unwrap().to_string(),
        lead["key"].as_str().unwrap().to_string(),
    )
}

async fn verify(app: &TestApp, lead: &str, key: &str) -> (StatusCode, Value) {
    app.post(&format!("/leads/{lead}/verify"), Some(key), &json!({}))
        .await
}

#[tokio::test]
async fn a_link_the_original_mailed_verifies_once() {
    let test = "a_link_the_original_mailed_verifies_once";
    let Some(mut redis) = redis(test).await else {
        return;
    };
    let app = app_with_redis(&[]).await;
    // A lead tms knows, with a key the original stored: tms's own key for it is dropped.
    let (lead, _) = sign_up(&app, "ada@engines.io").await;
    let key = format!("orig{}", uuid::Uuid::new_v4().simple());
    let token = app
        .jwt_keys()
        .mint_lead(
            uuid::Uuid::parse_str(&lead).unwrap(),
            "ada@engines.io",
            3600,
        )
        .unwrap();
    let entry = format!("_kvModel:{key}");
    let _: () = redis
        .set_ex(&entry, msgpack(&json!({"token": token})), 60)
        .await
        .unwrap();

    let (status, answer) = verify(&app, &lead, &key).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["id"], lead);
    assert!(answer["token"].is_string());
    let left: Option<Vec<u8>> = redis.get(&entry).await.unwrap();
    assert_eq!(left, None, "the entry is consumed");
    let (status, _) = verify(&app, &lead, &key).await;
    assert_eq!(status, 401, "single use");

    // Another lead's key does not verify this one, and leaves the entry alone.
    let (other, _) = sign_up(&app, "grace@engines.io").await;
    let _: () = redis
        .set_ex(&entry, msgpack(&json!({"token": token})), 60)
        .await
        .unwrap();
    assert_eq!(verify(&app, &other, &key).await.0, 401);
    let kept: Option<Vec<u8>> = redis.get(&entry).await.unwrap();
    assert!(kept.is_some());
    // Expired entries are gone: Redis's own expiry holds.
    let _: () = redis::cmd("PEXPIRE")
        .arg(&entry)
        .arg(1)
        .query_async(&mut redis)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(verify(&app, &lead, &key).await.0, 401);
}

#[tokio::test]
async fn a_result_signed_with_a_secret_the_original_stored_is_accepted() {
    let test = "a_result_signed_with_a_secret_the_original_stored_is_accepted";
    let Some(mut redis) = redis(test).await else {
        return;
    };
    let app = app_with_redis(&[]).await;
    let tenant = rest_support::a_tenant(&app, "acme").await;
    let (status, body) = provision(&app, &tenant, &subscription("BASIC")).await;
    assert_eq!(status, 204, "{body}");
    let event = wait_for_event_of(&app, &tenant, "TENANT_PROVISIONING").await;
    // The operation as the original would have left it: its secret in its own format only.
    let ours = format!("{}webhook-secret:{tenant}", app.config.redis_key_prefix);
    let _: () = redis.del(&ours).await.unwrap();
    let theirs = format!("_kvModel:{tenant}");
    let secret = json!({"secret": "0123456789abcdef0123456789abcdef",
                        "context": "5f0c1c3e-6b1e-4f3a-9d7e-2a6b8c9d0e1f"});
    let _: () = redis.set_ex(&theirs, msgpack(&secret), 60).await.unwrap();
    let original_event = json!({"tenant": {"id": tenant}, "secret": secret["secret"],
                                "context": secret["context"]});

    // tms's secret is gone: a report signed with it is refused.
    let refused = report(&event, json!({"status": 1}));
    assert_eq!(send(&app, &refused).await.status, 401);
    let accepted = report(&original_event, json!({"status": 1}));
    let response = send(&app, &accepted).await;
    assert_eq!(response.status, 204, "{}", response.text);
    assert_eq!(status_of(&app, &tenant).await, 0, "ACTIVE");
    let left: Option<Vec<u8>> = redis.get(&theirs).await.unwrap();
    assert_eq!(left, None, "the secret is spent with the result");
}

/// A tenant the original put into PROVISIONING before the switch, as it leaves one: the status
/// set, its secret and context in Redis in its own format, and nothing of tms's.
async fn provisioning_by_the_original(
    app: &TestApp,
    redis: &mut redis::aio::MultiplexedConnection,
    key: &str,
) -> (String, Value) {
    let tenant = rest_support::a_tenant(app, key).await;
    let (status, body) = app
        .patch(
            &format!("/tenants/{tenant}"),
            Some(&app.admin_token()),
            &json!({"status": 2}),
        )
        .await;
    assert_eq!(status, 204, "{body}");
    let secret = json!({"secret": hex::encode(uuid::Uuid::new_v4().as_bytes()),
                        "context": uuid::Uuid::new_v4().to_string()});
    let entry = format!("_kvModel:{tenant}");
    let _: () = redis.set_ex(&entry, msgpack(&secret), 3600).await.unwrap();
    let event = json!({"tenant": {"id": tenant}, "secret": secret["secret"],
                       "context": secret["context"]});
    (tenant, event)
}

/// Work in flight at the switch: a tenant the original was provisioning gets its pipeline's
/// result (signed with the secret the original stored) accepted by tms, resources and all; one
/// whose pipeline never answers gets tms's deadline, counted from the switch, then fails as
/// timed out and can be provisioned again. On SQLite and PostgreSQL.
#[tokio::test]
async fn provisionings_the_original_started_finish_on_tms() {
    let test = "provisionings_the_original_started_finish_on_tms";
    let Some(mut redis) = redis(test).await else {
        return;
    };
    for db in [Db::Sqlite, Db::Postgres] {
        if !db_available(db, test) {
            continue;
        }
        let app = app_with_redis_on(db, &[("REDIS_ENTRY_FORMAT", "original")]).await;
        let (answered, event) = provisioning_by_the_original(&app, &mut redis, "answered").await;
        let (silent, _) = provisioning_by_the_original(&app, &mut redis, "silent").await;

        let result = report(
            &event,
            json!({"status": 1, "appPlaneUrl": "https://answered.app",
                   "resources": [{"type": "db", "externalIdentifier": "db-answered",
                                  "metadata": {"host": "h"}}]}),
        );
        let response = send(&app, &result).await;
        assert_eq!(response.status, 204, "{db:?}: {}", response.text);
        assert_eq!(status_of(&app, &answered).await, 0, "ACTIVE");
        let (_, tenant) = app
            .get(
                &format!("/tenants/{answered}?filter[include][0]=resources"),
                Some(&app.admin_token()),
            )
            .await;
        assert_eq!(tenant["resources"][0]["externalIdentifier"], "db-answered");
        assert_eq!(send(&app, &result).await.status, 401, "accepted once");

        // The pipeline of the other never answers: the sweeper adopts it now, and fails it once
        // tms's own deadline has passed since.
        let timeout = app.config.provisioning_timeout.as_secs() as i64;
        let sweeper = Sweeper::at(&app, &[], 0).await;
        assert_eq!(
            sweeper.fail_overdue().await,
            0,
            "{db:?}: not before its deadline"
        );
        assert_eq!(status_of(&app, &silent).await, 2);
        sweeper
            .clock
            .advance(std::time::Duration::from_secs(timeout as u64 + 1));
        assert_eq!(sweeper.fail_overdue().await, 1, "{db:?}");
        let state = state_of(&app, &silent).await;
        assert_eq!(state["status"], 3, "{db:?}: PROVISIONFAILED {state}");
        let (status, body) = provision(&app, &silent, &subscription("BASIC")).await;
        assert_eq!(status, 204, "{db:?}: provisioned again: {body}");
        sweeper.close().await;
    }
}

#[tokio::test]
async fn in_the_original_format_tms_writes_what_the_original_reads() {
    let test = "in_the_original_format_tms_writes_what_the_original_reads";
    let Some(mut redis) = redis(test).await else {
        return;
    };
    let app = app_with_redis(&[("REDIS_ENTRY_FORMAT", "original")]).await;
    let (lead, key) = sign_up(&app, "ada@engines.io").await;
    let entry = format!("_kvModel:{key}");
    let bytes: Vec<u8> = redis.get(&entry).await.unwrap();
    let decoded: Value = rmp_serde::from_slice(&bytes).expect("a MessagePack map");
    let token = decoded["token"].as_str().expect("{token}");
    let claims = app
        .jwt_keys()
        .verify(token)
        .expect("a lead token of this issuer");
    assert_eq!(claims.user_id, lead);
    assert_eq!(claims.lead.map(|l| l.to_string()), Some(lead.clone()));
    let ttl: i64 = redis.pttl(&entry).await.unwrap();
    assert!(
        ttl > 0 && ttl <= app.config.validation_token_expiry.as_millis() as i64,
        "{ttl}"
    );
    let ours = format!("{}lead-key:{key}", app.config.redis_key_prefix);
    let exists: bool = redis.exists(&ours).await.unwrap();
    assert!(!exists, "nothing in tms's own format");

    let (status, answer) = verify(&app, &lead, &key).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(verify(&app, &lead, &key).await.0, 401, "single use");

    // The webhook secret of a provisioning, likewise.
    let tenant = rest_support::a_tenant(&app, "acme").await;
    assert_eq!(
        provision(&app, &tenant, &subscription("BASIC")).await.0,
        204
    );
    let event = wait_for_event_of(&app, &tenant, "TENANT_PROVISIONING").await;
    let theirs = format!("_kvModel:{tenant}");
    let bytes: Vec<u8> = redis.get(&theirs).await.unwrap();
    let stored: Value = rmp_serde::from_slice(&bytes).unwrap();
    assert_eq!(
        stored,
        json!({"secret": event["secret"], "context": event["context"]})
    );
    let response = send(&app, &report(&event, json!({"status": 1}))).await;
    assert_eq!(response.status, 204, "{}", response.text);
    let left: Option<Vec<u8>> = redis.get(&theirs).await.unwrap();
    assert_eq!(left, None);
}

#[test]
fn the_original_format_needs_redis() {
    let vars = [
        ("TMS_ENV", "test"),
        ("JWT_SECRET", JWT_SECRET),
        ("REDIS_ENTRY_FORMAT", "original"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let err = tms::config::Config::from_map(&vars).unwrap_err();
    assert_eq!(err.var, "REDIS_ENTRY_FORMAT");
}
