//! `Idempotency-Key` on POST over real HTTP, on SQLite and PostgreSQL (`docs/idempotency.md`):
//! the same key with the same body gets the first answer again (status, body,
//! `Idempotency-Replayed: true`) and the work is done once — one tenant, one event, one invoice
//! number, one lead and one mail; another body is 422 and writes nothing; twenty racing
//! requests do the work once; callers (and public credentials) never share answers; 5xx, 401
//! and 403 are not kept, nor is a request cancelled by `REQUEST_TIMEOUT`; a key is free again
//! after `IDEMPOTENCY_TTL`, on any replica, and the janitor deletes it; malformed keys are 400;
//! without the header nothing changes; the OpenAPI document names the header on every POST.

mod common;
mod lifecycle_support;
mod rest_support;

use common::*;
use lifecycle_support::subscription;
use reqwest::header::HeaderValue;
use rest_support::{a_tenant, admin_as, onboarding, token_without};
use sqlx::AssertSqlSafe;
use tokio::sync::oneshot;

const KEY: &str = "0d6c3a9e-8a4b-4bb8-9a55-3a3b2b0e9f10";

/// `POST path` on `base` (the app's URL, or a replica's) with `body`, `token` and, when given,
/// the `Idempotency-Key` header with these raw bytes.
async fn post_to(
    app: &TestApp,
    base: &str,
    path: &str,
    token: Option<&str>,
    key: Option<&[u8]>,
    body: &Value,
) -> TestResponse {
    let mut request = app.client.post(format!("{base}{path}")).json(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(key) = key {
        let value = HeaderValue::from_bytes(key).expect("a header value");
        request = request.header("idempotency-key", value);
    }
    TestResponse::read(request.send().await.expect("request failed")).await
}

/// `POST path` on the app with `key`.
async fn post_keyed(
    app: &TestApp,
    path: &str,
    token: Option<&str>,
    key: &str,
    body: &Value,
) -> TestResponse {
    post_to(app, &app.base_url, path, token, Some(key.as_bytes()), body).await
}

fn replayed(response: &TestResponse) -> bool {
    response.header("idempotency-replayed") == Some("true")
}

/// The second answer is the first one sent again.
#[track_caller]
fn assert_replay_of(first: &TestResponse, again: &TestResponse) {
    assert!(
        !replayed(first),
        "a first answer is not a replay: {first:?}"
    );
    assert!(replayed(again), "not marked as a replay: {again:?}");
    assert_eq!(again.status, first.status);
    assert_eq!(again.text, first.text, "the body, byte for byte");
    assert_eq!(
        again.header("content-type"),
        first.header("content-type"),
        "{again:?}"
    );
}

/// The app's database, for counting what was written.
async fn database(app: &TestApp) -> tms::store::Db {
    tms::store::Db::connect(&app.config_with(&[]))
        .await
        .expect("the app's database")
}

async fn sql_count(db: &tms::store::Db, sql: &str) -> i64 {
    let query = AssertSqlSafe(sql.to_string());
    let count = match db.pool() {
        tms::store::Pool::Sqlite(pool) => sqlx::query_scalar::<_, i64>(query).fetch_one(pool).await,
        tms::store::Pool::Postgres(pool) => {
            sqlx::query_scalar::<_, i64>(query).fetch_one(pool).await
        }
    };
    count.unwrap_or_else(|err| panic!("{sql}: {err}"))
}

async fn sql_run(db: &tms::store::Db, sql: &str) {
    let done = match db.pool() {
        tms::store::Pool::Sqlite(pool) => sqlx::raw_sql(AssertSqlSafe(sql.to_string()))
            .execute(pool)
            .await
            .map(drop),
        tms::store::Pool::Postgres(pool) => sqlx::raw_sql(AssertSqlSafe(sql.to_string()))
            .execute(pool)
            .await
            .map(drop),
    };
    done.unwrap_or_else(|err| panic!("{sql}: {err}"));
}

/// What the work of a request writes: tenants, contacts, invoices, leads, and events and mails
/// in the outbox.
async fn written(db: &tms::store::Db) -> [i64; 6] {
    [
        sql_count(db, "SELECT COUNT(*) FROM tenants").await,
        sql_count(db, "SELECT COUNT(*) FROM contacts").await,
        sql_count(db, "SELECT COUNT(*) FROM invoices").await,
        sql_count(db, "SELECT COUNT(*) FROM leads").await,
        sql_count(db, "SELECT COUNT(*) FROM outbox WHERE topic = 'event'").await,
        sql_count(db, "SELECT COUNT(*) FROM outbox WHERE topic = 'mail'").await,
    ]
}

async fn records(db: &tms::store::Db) -> i64 {
    sql_count(db, "SELECT COUNT(*) FROM idempotency_keys").await
}

fn contact(tenant: &str, email: &str) -> Value {
    json!({"firstName": "Bob", "lastName": "B", "email": email, "isPrimary": false,
           "tenantId": tenant})
}

both_dbs!(
    the_same_request_again_gets_the_first_answer_and_onboards_once,
    |app| async move {
        let db = database(&app).await;
        let admin = app.admin_token();
        let body = onboarding("acme", "Acme", &["acme.io"], "ada");
        let first = post_keyed(&app, "/tenants", Some(&admin), KEY, &body).await;
        assert_eq!(first.status, 200, "{}", first.text);
        let after_first = written(&db).await;
        assert_eq!(after_first[..2], [1, 1], "one tenant, one contact");

        let again = post_keyed(&app, "/tenants", Some(&admin), KEY, &body).await;
        assert_replay_of(&first, &again);
        assert!(again.header("x-request-id").is_some());
        assert_eq!(written(&db).await, after_first, "nothing written again");
        assert_eq!(records(&db).await, 1);

        // Another token of the same caller is the same caller.
        let other_token = app.token(&[<tms::auth::CreateTenant as tms::auth::Permission>::CODE]);
        assert_ne!(other_token, admin);
        let third = post_keyed(&app, "/tenants", Some(&other_token), KEY, &body).await;
        assert_replay_of(&first, &third);
        db.close().await;
    }
);

both_dbs!(
    a_provisioning_sent_again_writes_one_event,
    |app| async move {
        let db = database(&app).await;
        let admin = app.admin_token();
        let tenant = a_tenant(&app, "acme").await;
        let path = format!("/tenants/{tenant}/provision");
        let before = written(&db).await;
        let first = post_keyed(&app, &path, Some(&admin), KEY, &subscription("premium")).await;
        assert_eq!(first.status, 204, "{}", first.text);
        let after_first = written(&db).await;
        assert_eq!(
            after_first[4],
            before[4] + 1,
            "one TENANT_PROVISIONING event"
        );

        let again = post_keyed(&app, &path, Some(&admin), KEY, &subscription("premium")).await;
        assert_replay_of(&first, &again);
        assert_eq!(again.text, "");
        assert_eq!(written(&db).await, after_first, "no second event");
        let (_, state) = app
            .get(&format!("/tenants/{tenant}/provisioning"), Some(&admin))
            .await;
        assert_eq!(state["attempts"], 1, "{state}");

        // Without the key the same request is another attempt, refused in PROVISIONING.
        let (status, _) = app
            .post(&path, Some(&admin), &subscription("premium"))
            .await;
        assert_eq!(status, 409);
        db.close().await;
    }
);

both_dbs!(an_invoice_sent_again_takes_one_number, |app| async move {
    let db = database(&app).await;
    let admin = app.admin_token();
    let tenant = a_tenant(&app, "acme").await;
    let body = json!({"startDate": "2026-01-01", "endDate": "2026-01-31", "amount": 10,
            "currencyCode": "USD", "dueDate": "2026-02-15", "status": 0, "tenantId": tenant});
    let first = post_keyed(&app, "/invoices", Some(&admin), KEY, &body).await;
    assert_eq!(first.status, 200, "{}", first.text);
    assert_eq!(first.json()["invoiceNumber"], "INV-000001");
    let again = post_keyed(&app, "/invoices", Some(&admin), KEY, &body).await;
    assert_replay_of(&first, &again);
    assert_eq!(written(&db).await[2], 1, "one invoice");

    // No number was taken by the replay: the next invoice is the second.
    let (status, next) = app.post("/invoices", Some(&admin), &body).await;
    assert_eq!(status, 200, "{next}");
    assert_eq!(next["invoiceNumber"], "INV-000002");
    db.close().await;
});

both_dbs!(
    the_same_key_for_another_request_is_422_and_writes_nothing,
    |app| async move {
        let db = database(&app).await;
        let admin = app.admin_token();
        let body = onboarding("acme", "Acme", &["acme.io"], "ada");
        let first = post_keyed(&app, "/tenants", Some(&admin), KEY, &body).await;
        assert_eq!(first.status, 200, "{}", first.text);
        let after_first = written(&db).await;

        let other = onboarding("globex", "Globex", &["globex.io"], "hank");
        let refused = post_keyed(&app, "/tenants", Some(&admin), KEY, &other).await;
        refused.assert_error(422, "UnprocessableEntityError");
        assert!(
            refused.json()["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("Idempotency-Key")),
            "{}",
            refused.text
        );
        assert!(!replayed(&refused));
        // The same JSON written differently is another body, and a query string counts too.
        let respaced = app
            .client
            .post(app.url("/tenants"))
            .bearer_auth(&admin)
            .header("idempotency-key", KEY)
            .header("content-type", "application/json")
            .body(serde_json::to_string_pretty(&body).unwrap())
            .send()
            .await
            .unwrap();
        TestResponse::read(respaced)
            .await
            .assert_error(422, "UnprocessableEntityError");
        let queried = post_to(
            &app,
            &app.base_url,
            "/tenants?again=1",
            Some(&admin),
            Some(KEY.as_bytes()),
            &body,
        )
        .await;
        queried.assert_error(422, "UnprocessableEntityError");
        assert_eq!(written(&db).await, after_first, "nothing written");
        assert_eq!(
            sql_count(&db, "SELECT COUNT(*) FROM tenants WHERE key = 'globex'").await,
            0
        );

        // The first answer is still there for its own request.
        let again = post_keyed(&app, "/tenants", Some(&admin), KEY, &body).await;
        assert_replay_of(&first, &again);
        db.close().await;
    }
);

both_dbs!(
    twenty_racing_requests_with_one_key_do_the_work_once,
    |app| async move {
        let db = database(&app).await;
        let admin = app.admin_token();
        let body = onboarding("acme", "Acme", &["acme.io"], "ada");
        let answers = futures_util::future::join_all(
            (0..20).map(|_| post_keyed(&app, "/tenants", Some(&admin), KEY, &body)),
        )
        .await;
        let done: Vec<&TestResponse> = answers.iter().filter(|a| a.status == 200).collect();
        assert!(!done.is_empty(), "one request did the work: {answers:?}");
        assert_eq!(
            done.iter().filter(|a| !replayed(a)).count(),
            1,
            "exactly one answer is not a replay"
        );
        for answer in &answers {
            match answer.status.as_u16() {
                200 => assert_eq!(answer.text, done[0].text, "every 200 is the same answer"),
                409 => {
                    answer.assert_error(409, "ConflictError");
                    assert!(
                        answer.json()["error"]["message"]
                            .as_str()
                            .is_some_and(|m| m.contains("in progress"))
                    );
                    assert_eq!(answer.header("retry-after"), Some("1"), "{answer:?}");
                }
                _ => panic!("neither the answer nor in progress: {answer:?}"),
            }
        }
        assert_eq!(written(&db).await[..2], [1, 1], "one tenant, one contact");
        assert_eq!(records(&db).await, 1);
        let later = post_keyed(&app, "/tenants", Some(&admin), KEY, &body).await;
        assert!(replayed(&later));
        assert_eq!(later.text, done[0].text);
        db.close().await;
    }
);

both_dbs!(
    callers_with_the_same_key_are_independent,
    |app| async move {
        let db = database(&app).await;
        let alice = admin_as(&app, "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa");
        let bob = admin_as(&app, "bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb");
        let acme = onboarding("acme", "Acme", &["acme.io"], "ada");
        let globex = onboarding("globex", "Globex", &["globex.io"], "hank");
        let first = post_keyed(&app, "/tenants", Some(&alice), KEY, &acme).await;
        assert_eq!(first.status, 200, "{}", first.text);
        // Carol sending Alice's very request with Alice's key gets no copy of her answer: her
        // own request runs, and finds the tenant key taken.
        let carol = admin_as(&app, "cccccccc-cccc-4ccc-8ccc-cccccccccccc");
        let copy = post_keyed(&app, "/tenants", Some(&carol), KEY, &acme).await;
        copy.assert_error(409, "ConflictError");
        assert!(!replayed(&copy));
        assert!(!copy.text.contains("acme.io"), "{}", copy.text);
        // Bob's key is his own: another body is not a mismatch, but his own request.
        let bobs = post_keyed(&app, "/tenants", Some(&bob), KEY, &globex).await;
        assert_eq!(bobs.status, 200, "{}", bobs.text);
        assert!(!replayed(&bobs));
        assert_eq!(bobs.json()["key"], "globex");
        // The same key on another route is another record.
        let tenant = first.json()["id"].as_str().unwrap().to_string();
        let contact = post_keyed(
            &app,
            "/contacts",
            Some(&alice),
            KEY,
            &contact(&tenant, "bob@acme.io"),
        )
        .await;
        assert_eq!(contact.status, 200, "{}", contact.text);
        assert!(!replayed(&contact));
        assert_eq!(written(&db).await[..2], [2, 3]);
        db.close().await;
    }
);

both_dbs!(
    a_public_answer_goes_only_to_its_own_request_and_credentials,
    [("LEAD_KEY_IN_RESPONSE", "true")],
    |app| async move {
        let db = database(&app).await;
        let sign_up = json!({"firstName": "Ada", "lastName": "Lovelace",
            "email": "ada@acme.com", "companyName": "Acme"});
        let first = post_keyed(&app, "/leads", None, KEY, &sign_up).await;
        assert_eq!(first.status, 200, "{}", first.text);
        let after_first = written(&db).await;
        assert_eq!(after_first[3], 1, "one lead");
        assert_eq!(after_first[5], 1, "one verification mail");
        let again = post_keyed(&app, "/leads", None, KEY, &sign_up).await;
        assert_replay_of(&first, &again);
        assert_eq!(
            written(&db).await,
            after_first,
            "no second lead, no second mail"
        );

        // On a public route another body with the key is simply another request: a key
        // someone else guessed never reaches an answer to a body it does not know.
        let grace = json!({"firstName": "Grace", "lastName": "Hopper",
            "email": "grace@acme.com", "companyName": "Acme"});
        let other = post_keyed(&app, "/leads", None, KEY, &grace).await;
        assert_eq!(other.status, 200, "{}", other.text);
        assert!(!replayed(&other));
        assert_ne!(other.json()["id"], first.json()["id"]);

        // The lead's verification answers a token: it is replayed only with the same lead key.
        let lead = first.json()["id"].as_str().unwrap().to_string();
        let lead_key = first.json()["key"].as_str().unwrap().to_string();
        let path = format!("/leads/{lead}/verify");
        let verified = post_keyed(&app, &path, Some(&lead_key), KEY, &json!({})).await;
        assert_eq!(verified.status, 200, "{}", verified.text);
        assert!(verified.json()["token"].is_string());
        let again = post_keyed(&app, &path, Some(&lead_key), KEY, &json!({})).await;
        assert_replay_of(&verified, &again);
        let stranger = post_keyed(&app, &path, Some("a-guessed-key"), KEY, &json!({})).await;
        stranger.assert_error(401, "UnauthorizedError");
        assert!(!stranger.text.contains("token"), "{}", stranger.text);
        let bare = post_keyed(&app, &path, None, KEY, &json!({})).await;
        bare.assert_error(401, "UnauthorizedError");
        db.close().await;
    }
);

both_dbs!(
    answers_worth_retrying_are_not_kept_and_final_refusals_are,
    |app| async move {
        let db = database(&app).await;
        let admin = app.admin_token();
        let body = onboarding("acme", "Acme", &["acme.io"], "ada");

        // 5xx: the database refuses the tenant; the same key afterwards does the work.
        let refuse = match app.db {
            Db::Sqlite => {
                "CREATE TRIGGER refuse_tenants BEFORE INSERT ON tenants \
                 BEGIN SELECT RAISE(ABORT, 'refused by the test'); END;"
            }
            Db::Postgres => {
                "CREATE FUNCTION refuse_tenants() RETURNS trigger LANGUAGE plpgsql AS \
                 $$ BEGIN RAISE EXCEPTION 'refused by the test' USING ERRCODE = '53300'; END $$; \
                 CREATE TRIGGER refuse_tenants BEFORE INSERT ON tenants \
                 FOR EACH ROW EXECUTE FUNCTION refuse_tenants();"
            }
        };
        sql_run(&db, refuse).await;
        let failed = post_keyed(&app, "/tenants", Some(&admin), KEY, &body).await;
        assert!(failed.status.is_server_error(), "{failed:?}");
        assert_eq!(records(&db).await, 0, "a 5xx leaves no record");
        sql_run(
            &db,
            match app.db {
                Db::Sqlite => "DROP TRIGGER refuse_tenants",
                Db::Postgres => "DROP TRIGGER refuse_tenants ON tenants",
            },
        )
        .await;
        let done = post_keyed(&app, "/tenants", Some(&admin), KEY, &body).await;
        assert_eq!(done.status, 200, "{}", done.text);
        assert!(!replayed(&done));
        assert_eq!(written(&db).await[0], 1);

        // 401 and 403: the credentials were refused, not the request.
        let other_key = "second";
        let globex = onboarding("globex", "Globex", &["globex.io"], "hank");
        let anonymous = post_keyed(&app, "/tenants", None, other_key, &globex).await;
        anonymous.assert_error(401, "UnauthorizedError");
        let id = "cccccccc-cccc-4ccc-8ccc-cccccccccccc";
        let without = token_without(
            &app,
            id,
            <tms::auth::CreateTenant as tms::auth::Permission>::CODE,
        );
        let forbidden = post_keyed(&app, "/tenants", Some(&without), other_key, &globex).await;
        forbidden.assert_error(403, "ForbiddenError");
        assert_eq!(records(&db).await, 1);
        let allowed = post_keyed(
            &app,
            "/tenants",
            Some(&admin_as(&app, id)),
            other_key,
            &globex,
        )
        .await;
        assert_eq!(allowed.status, 200, "{}", allowed.text);
        assert!(!replayed(&allowed));

        // A final refusal is kept: the same request gets the same 422.
        let invalid = json!({"name": "Bad", "key": "NOT VALID", "domains": ["bad.io"]});
        let first = post_keyed(&app, "/tenants", Some(&admin), "third", &invalid).await;
        first.assert_error(422, "UnprocessableEntityError");
        let again = post_keyed(&app, "/tenants", Some(&admin), "third", &invalid).await;
        assert_replay_of(&first, &again);
        db.close().await;
    }
);

/// A request cancelled by `REQUEST_TIMEOUT` frees its key at once, so that it can be sent again
/// (PostgreSQL only: a lock on `tenants` holds the handler while the records stay reachable; on
/// SQLite every writer waits on the one database lock).
#[tokio::test]
async fn a_request_cancelled_by_the_timeout_frees_its_key() {
    let test = concat!(
        module_path!(),
        "::a_request_cancelled_by_the_timeout_frees_its_key::postgres"
    );
    run_on(
        Db::Postgres,
        test,
        &[("REQUEST_TIMEOUT", "1500")],
        |app| async move {
            let db = database(&app).await;
            let tms::store::Pool::Postgres(pool) = db.pool() else {
                panic!("a PostgreSQL test");
            };
            let admin = app.admin_token();
            let body = onboarding("acme", "Acme", &["acme.io"], "ada");
            let mut blocker = pool.begin().await.unwrap();
            sqlx::query("LOCK TABLE tenants IN EXCLUSIVE MODE")
                .execute(&mut *blocker)
                .await
                .unwrap();
            let cancelled = post_keyed(&app, "/tenants", Some(&admin), KEY, &body).await;
            cancelled.assert_error(503, "ServiceUnavailableError");
            let freed = async {
                while records(&db).await > 0 {
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
            };
            tokio::time::timeout(std::time::Duration::from_secs(3), freed)
                .await
                .expect("the cancelled request's key is freed");
            blocker.rollback().await.unwrap();

            let done = post_keyed(&app, "/tenants", Some(&admin), KEY, &body).await;
            assert_eq!(done.status, 200, "{}", done.text);
            assert!(!replayed(&done));
            assert_eq!(written(&db).await[..2], [1, 1]);
            db.close().await;
        },
    )
    .await;
}

/// A request whose claim is taken over while it runs (its replica's clock an hour behind, so
/// its lease has run out by the time another request with the key arrives) has its work rolled
/// back and answers 409 "in progress" — never 500; the request that took the key over does the
/// work once, and the key answers with that request's answer afterwards. PostgreSQL only: a lock
/// on `leads` holds both requests while the key changes hands.
#[tokio::test]
async fn a_request_whose_key_was_taken_over_answers_409_and_saves_nothing() {
    let test = concat!(
        module_path!(),
        "::a_request_whose_key_was_taken_over_answers_409_and_saves_nothing::postgres"
    );
    run_on(Db::Postgres, test, &[], |app| async move {
        let db = database(&app).await;
        let tms::store::Pool::Postgres(pool) = db.pool() else {
            panic!("a PostgreSQL test");
        };
        let body = json!({"firstName": "Ada", "lastName": "Lovelace", "email": "ada@acme.io",
                          "companyName": "Acme"});
        let then = chrono::Utc::now() - chrono::Duration::hours(1);
        let behind = Replica::start(&app, &[], tms::clock::Clock::manual(then)).await;
        let mut blocker = pool.begin().await.unwrap();
        sqlx::query("LOCK TABLE leads IN EXCLUSIVE MODE")
            .execute(&mut *blocker)
            .await
            .unwrap();
        let key = Some(KEY.as_bytes());
        let first = post_to(&app, &behind.base_url, "/leads", None, key, &body);
        let second = async {
            // Once the first request holds the key (and waits on the lock), the second one
            // takes it over, then waits on the lock too; then the lock goes.
            while records(&db).await == 0 {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            let second = post_keyed(&app, "/leads", None, KEY, &body);
            let release = async {
                let taken = "SELECT COUNT(*) FROM idempotency_keys WHERE locked_until > now()";
                while sql_count(&db, taken).await == 0 {
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                blocker.rollback().await.unwrap();
            };
            tokio::join!(second, release).0
        };
        let (first, second) = tokio::join!(first, second);
        first.assert_error(409, "ConflictError");
        assert!(first.text.contains("in progress"), "{}", first.text);
        assert!(first.header("retry-after").is_some(), "{first:?}");
        assert_eq!(second.status, 200, "{}", second.text);
        assert_eq!(written(&db).await[3..], [1, 0, 1], "one lead, one mail");
        let again = post_keyed(&app, "/leads", None, KEY, &body).await;
        assert_replay_of(&second, &again);
        behind.stop().await;
        db.close().await;
    })
    .await;
}

/// A second server on the app's database, on `clock`: another replica.
struct Replica {
    base_url: String,
    services: tms::domain::Services,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Replica {
    async fn start(app: &TestApp, overrides: &[(&str, &str)], clock: tms::clock::Clock) -> Self {
        let built = tms::App::build_with_clock(app.config_with(overrides), clock)
            .await
            .expect("the replica starts");
        let base_url = format!("http://{}", built.local_addr());
        let services = built.state().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(built.run_until_stopped(async move {
            let _ = stopped.await;
        }));
        Self {
            base_url,
            services,
            stop: Some(stop),
            task,
        }
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
        self.services.db.close().await;
    }
}

both_dbs!(
    a_key_is_shared_by_replicas_and_free_again_after_its_ttl,
    [("IDEMPOTENCY_TTL", "60000")],
    |app| async move {
        let db = database(&app).await;
        let admin = app.admin_token();
        let tenant = a_tenant(&app, "acme").await;
        let body = contact(&tenant, "bob@acme.io");
        let first = post_keyed(&app, "/contacts", Some(&admin), KEY, &body).await;
        assert_eq!(first.status, 200, "{}", first.text);

        let ttl = [("IDEMPOTENCY_TTL", "60000")];
        let now = chrono::Utc::now();
        let soon = Replica::start(
            &app,
            &ttl,
            tms::clock::Clock::manual(now + chrono::Duration::seconds(50)),
        )
        .await;
        let key = Some(KEY.as_bytes());
        let again = post_to(&app, &soon.base_url, "/contacts", Some(&admin), key, &body).await;
        assert_replay_of(&first, &again);
        assert_eq!(
            written(&db).await[1],
            2,
            "the primary contact and Bob, once"
        );
        assert_eq!(
            soon.services.idempotency().purge_expired().await.unwrap(),
            0
        );
        soon.stop().await;

        let later = Replica::start(
            &app,
            &ttl,
            tms::clock::Clock::manual(now + chrono::Duration::seconds(61)),
        )
        .await;
        let anew = post_to(&app, &later.base_url, "/contacts", Some(&admin), key, &body).await;
        assert_eq!(anew.status, 200, "{}", anew.text);
        assert!(!replayed(&anew), "the key expired: the request ran again");
        assert_ne!(anew.json()["id"], first.json()["id"]);
        assert_eq!(written(&db).await[1], 3);
        later.stop().await;

        // The janitor's step deletes what expired at its clock (an instance that is not
        // serving, so that its own janitor does not run first).
        let janitor = tms::App::build_with_clock(
            app.config_with(&ttl),
            tms::clock::Clock::manual(now + chrono::Duration::seconds(200)),
        )
        .await
        .expect("the instance starts");
        assert_eq!(records(&db).await, 1);
        let idempotency = janitor.state().idempotency();
        assert_eq!(idempotency.purge_expired().await.unwrap(), 1);
        assert_eq!(records(&db).await, 0);
        janitor.state().db.close().await;
        db.close().await;
    }
);

/// The outcome of work run within a claim that stayed its request's.
fn kept<T>((outcome, taken_over): (T, bool)) -> T {
    assert!(!taken_over, "the claim stayed the request's");
    outcome
}

// A replica that dies after its work committed and before it kept the answer: once its lease
// has run out the key answers 409 "answer lost", and the work is never done again — one lead,
// one mail. (Before the work's transaction marked the key, the key was taken over and the
// lead signed up a second time.)
both_dbs!(
    work_committed_by_a_replica_that_died_is_never_done_again,
    |app| async move {
        use tms::domain::idempotency::{Begun, Caller, IdempotencyKey, Request};
        let db = database(&app).await;
        let body = json!({"firstName": "Ada", "lastName": "Lovelace", "email": "ada@acme.io",
                          "companyName": "Acme"});
        let raw = serde_json::to_vec(&body).unwrap();
        let key = IdempotencyKey::parse(KEY.as_bytes()).unwrap();
        // The request as the middleware describes it for this client (no credentials, from
        // the loopback address the test client connects from).
        let request = Request {
            caller: Caller::Public {
                credentials: Vec::new(),
                client: Some("127.0.0.1".parse().unwrap()),
            },
            method: "POST",
            path: "/leads",
            query: "",
            body: &raw,
            key: &key,
        };
        // The replica that dies: an hour behind, so that its lease has run out by now.
        let then = chrono::Utc::now() - chrono::Duration::hours(1);
        let dying = Replica::start(&app, &[], tms::clock::Clock::manual(then)).await;
        let idempotency = dying.services.idempotency();
        let Begun::Started(claim) = idempotency.begin(&request).await.unwrap() else {
            panic!("a new key is claimed");
        };
        let signed_up = kept(
            idempotency
                .within(&claim, dying.services.funnel().sign_up(&body))
                .await,
        )
        .expect("the lead signs up");
        dying.stop().await;
        assert_eq!(written(&db).await[3..], [1, 0, 1], "one lead, its mail");

        for _ in 0..2 {
            let again = post_keyed(&app, "/leads", None, KEY, &body).await;
            again.assert_error(409, "ConflictError");
            assert!(again.text.contains("answer was lost"), "{}", again.text);
            assert!(!replayed(&again));
        }
        assert_eq!(written(&db).await[3..], [1, 0, 1], "nothing done again");
        let id = signed_up.id.to_string();
        assert_eq!(
            sql_count(
                &db,
                &format!("SELECT COUNT(*) FROM leads WHERE id = '{id}'")
            )
            .await,
            1
        );

        // A request whose work committed and whose answer is then not kept (a 5xx after the
        // commit, a cancellation) ends its lease at once instead of freeing its key.
        let other = json!({"firstName": "Grace", "lastName": "Hopper", "email": "grace@acme.io",
                           "companyName": "Acme"});
        let raw = serde_json::to_vec(&other).unwrap();
        let request = Request {
            body: &raw,
            ..request
        };
        let live = Replica::start(&app, &[], tms::clock::Clock::system()).await;
        let idempotency = live.services.idempotency();
        let Begun::Started(claim) = idempotency.begin(&request).await.unwrap() else {
            panic!("a new key is claimed");
        };
        kept(
            idempotency
                .within(&claim, live.services.funnel().sign_up(&other))
                .await,
        )
        .expect("the lead signs up");
        assert_eq!(
            idempotency.begin(&request).await.unwrap(),
            Begun::InProgress
        );
        idempotency.abandon(&claim).await.unwrap();
        live.stop().await;
        let again = post_keyed(&app, "/leads", None, KEY, &other).await;
        again.assert_error(409, "ConflictError");
        assert!(again.text.contains("answer was lost"), "{}", again.text);
        assert_eq!(written(&db).await[3..], [2, 0, 2], "Grace once");

        // A single write on the pool (POST /contacts: its own transaction, with its audit
        // record) marks the key too.
        let tenant = a_tenant(&app, "acme").await;
        let contact = contact(&tenant, "bob@acme.io");
        let raw = serde_json::to_vec(&contact).unwrap();
        let request = Request {
            caller: Caller::Principal("admin-of-the-test"),
            method: "POST",
            path: "/contacts",
            body: &raw,
            ..request
        };
        let live = Replica::start(&app, &[], tms::clock::Clock::system()).await;
        let idempotency = live.services.idempotency();
        let Begun::Started(claim) = idempotency.begin(&request).await.unwrap() else {
            panic!("a new key is claimed");
        };
        let values = contact.as_object().unwrap().clone();
        let actor = tms::domain::system_actor(&live.services.config);
        let create = async {
            let mut conn = live.services.db.conn();
            tms::store::crud::create(&mut conn, &tms::model::CONTACTS, &values, &actor).await
        };
        kept(idempotency.within(&claim, create).await).expect("created");
        idempotency.abandon(&claim).await.unwrap();
        assert_eq!(
            idempotency.begin(&request).await.unwrap(),
            Begun::AnswerLost
        );
        live.stop().await;
        db.close().await;
    }
);

both_dbs!(malformed_keys_are_400_and_write_nothing, |app| async move {
    let db = database(&app).await;
    let admin = app.admin_token();
    let body = onboarding("acme", "Acme", &["acme.io"], "ada");
    let too_long = "k".repeat(256);
    for bad in [
        &b""[..],
        too_long.as_bytes(),
        "clé".as_bytes(),
        b"tab\there",
    ] {
        let response = post_to(
            &app,
            &app.base_url,
            "/tenants",
            Some(&admin),
            Some(bad),
            &body,
        )
        .await;
        response.assert_error(400, "BadRequestError");
        assert!(
            response.text.contains("Idempotency-Key"),
            "{}",
            response.text
        );
    }
    let longest = "k".repeat(255);
    let two = app
        .client
        .post(app.url("/tenants"))
        .bearer_auth(&admin)
        .header("idempotency-key", "one")
        .header("idempotency-key", "two")
        .json(&body)
        .send()
        .await
        .unwrap();
    TestResponse::read(two)
        .await
        .assert_error(400, "BadRequestError");
    assert_eq!(written(&db).await, [0; 6]);
    assert_eq!(records(&db).await, 0);

    // Without a valid token the answer is 401 first, whatever the key.
    let anonymous = post_to(&app, &app.base_url, "/tenants", None, Some(b""), &body).await;
    anonymous.assert_error(401, "UnauthorizedError");

    let fine = post_keyed(&app, "/tenants", Some(&admin), &longest, &body).await;
    assert_eq!(fine.status, 200, "{}", fine.text);
    db.close().await;
});

both_dbs!(without_a_key_nothing_changes, |app| async move {
    let db = database(&app).await;
    let admin = app.admin_token();
    let tenant = a_tenant(&app, "acme").await;
    let body = contact(&tenant, "bob@acme.io");
    for _ in 0..2 {
        let response = post_to(&app, &app.base_url, "/contacts", Some(&admin), None, &body).await;
        assert_eq!(response.status, 200, "{}", response.text);
        assert!(response.header("idempotency-replayed").is_none());
    }
    assert_eq!(
        written(&db).await[1],
        3,
        "the primary contact and Bob twice"
    );
    assert_eq!(records(&db).await, 0, "no record without a key");
    // A key on a GET is ignored.
    let listed = app
        .client
        .get(app.url("/contacts"))
        .bearer_auth(&admin)
        .header("idempotency-key", "")
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), 200);
    assert_eq!(records(&db).await, 0);
    db.close().await;
});

#[test]
fn every_post_operation_documents_the_header() {
    let document = tms::http::openapi::document();
    assert_eq!(
        document["components"]["parameters"]["IdempotencyKey"]["name"],
        "Idempotency-Key"
    );
    let mut posts = 0;
    for (path, item) in document["paths"].as_object().unwrap() {
        let Some(post) = item.get("post") else {
            continue;
        };
        posts += 1;
        let parameters = post["parameters"]
            .as_array()
            .unwrap_or_else(|| panic!("{path}"));
        assert!(
            parameters
                .iter()
                .any(|p| p["$ref"] == "#/components/parameters/IdempotencyKey"),
            "POST {path}"
        );
        for status in ["409", "422"] {
            assert!(
                post["responses"][status].is_object(),
                "POST {path} {status}"
            );
        }
    }
    assert!(posts >= 15, "{posts} POST operations");
}
