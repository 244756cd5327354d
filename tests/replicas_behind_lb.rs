//! Three `tms` processes on one PostgreSQL schema, one Redis key prefix and one NATS stream,
//! behind HAProxy (Debian's `haproxy`, round robin, health checks on `/health/ready`): the funnel,
//! the shared rate limits, single-use keys, `Idempotency-Key`, the billing run and the event
//! relay act as one instance; one replica killed (SIGKILL) in the middle of the load loses no
//! sign-up, no event and no invoice, and duplicates no lead, no invoice and no stored event. A
//! step whose replica died between its commit and keeping its answer is answered "answer lost"
//! when sent again, never done twice (see `walk`); the closing line counts those. The recipe is
//! in docs/operations.md ("Behind a load balancer").

mod common;
mod lb_support;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use futures_util::StreamExt;
use lb_support::*;
use sqlx::Row;

const TEST: &str = "replicas_behind_lb::three_replicas_act_as_one_behind_haproxy";
/// Leads that walk the funnel (sign-up, verify, onboard, provision) during the load.
const LEADS: usize = 60;
/// How many of them at once.
const CONCURRENCY: usize = 12;
/// Billed tenants in each of two batches; each is `PERIODS` daily periods behind.
const BILLED: usize = 12;
const PERIODS: usize = 31;
/// `PUBLIC_API_MAX_ATTEMPTS` of every replica: per client and minute, for all replicas together.
const PUBLIC_LIMIT: usize = 20;

/// One lead through the funnel and its tenant's provisioning; every step must end in its 2xx,
/// whatever happened to the replica that first took it.
///
/// A try that dies after its transaction committed and before its answer was kept leaves no
/// answer to replay: the next try with its key is answered 409 "answer lost" and nothing is
/// done again (docs/idempotency.md). Such a step is accepted only after the database shows the
/// first try's work, and the lead then carries on as a person would: its lead found by email
/// and a new link by mail after a lost sign-up, a new link after a lost verification, its
/// tenant looked up after a lost onboarding. A verification key taken from Redis by a try that
/// died before committing is spent: a new link by mail too.
async fn walk(
    i: usize,
    base: &str,
    admin: &str,
    db: &sqlx::PgPool,
    tally: &Tally,
) -> Result<(), String> {
    let client = client_from(&format!("127.10.{}.{}", i / 200, i % 200 + 1));
    let domain = format!("load{i}.example");
    let email = format!("ada@{domain}");
    let sign_up = json!({"firstName": "Ada", "lastName": format!("Lead {i}"),
        "email": email, "companyName": format!("Company {i}")});
    let key = |step: &str| format!("{step}-{i}-{}", uuid::Uuid::new_v4());
    let post = |path: String, bearer: Option<String>, body: Value, key: String| {
        let client = client.clone();
        async move {
            let url = format!("{base}{path}");
            post_until_answered(&client, tally, &url, bearer.as_deref(), &body, &key).await
        }
    };
    let unanswered = |step: &'static str| {
        *tally
            .done_unanswered
            .lock()
            .unwrap()
            .entry(step)
            .or_default() += 1;
    };
    let lead = post("/leads".into(), None, sign_up, key("lead")).await;
    let (id, mut code) = if answer_lost(&lead) {
        let found: Option<uuid::Uuid> = sqlx::query_scalar("SELECT id FROM leads WHERE email = $1")
            .bind(&email)
            .fetch_optional(db)
            .await
            .unwrap();
        let Some(found) = found else {
            return Err(format!(
                "lead {i}: sign-up answer lost, no lead {}",
                lead.body
            ));
        };
        unanswered("sign-up");
        (found.to_string(), None)
    } else if lead.status == 200 {
        let id = lead.body["id"].as_str().unwrap_or_default().to_string();
        (id, lead.body["key"].as_str().map(str::to_string))
    } else {
        return Err(format!("lead {i}: sign-up {} {}", lead.status, lead.body));
    };
    let verify = format!("/leads/{id}/verify");
    let mut verified = None;
    if let Some(code) = code.take() {
        let answer = post(verify.clone(), Some(code), json!({}), key("verify")).await;
        if answer_lost(&answer) {
            unanswered("verify");
        } else if answer.status == 401 && answer.interrupted {
            // Its key was taken by a try that died before committing.
            unanswered("verify (key spent)");
        } else {
            verified = Some(answer);
        }
    }
    let verified = match verified {
        Some(verified) => verified,
        None => {
            let resend = json!({"email": email});
            let sent = post(
                "/leads/resend-verification".into(),
                None,
                resend,
                key("resend"),
            )
            .await;
            assert_eq!(sent.status, 202, "lead {i}: a new link: {}", sent.body);
            let mail: String = sqlx::query_scalar(
            "SELECT payload->>'text' FROM outbox WHERE topic = 'mail' AND payload->>'text' LIKE $1
             ORDER BY seq DESC LIMIT 1",
        )
        .bind(format!("%leadId={id}%"))
        .fetch_one(db)
        .await
        .unwrap();
            let code = mail.split("code=").nth(1).and_then(|r| r.split('&').next());
            let code = code.unwrap_or_default().to_string();
            post(verify, Some(code), json!({}), key("verify")).await
        }
    };
    if verified.status != 200 {
        return Err(format!(
            "lead {i}: verify {} {}",
            verified.status, verified.body
        ));
    }
    let token = verified.body["token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let onboarding = json!({"key": format!("load{i}"), "domains": [domain]});
    let tenant = post(
        format!("/leads/{id}/tenants"),
        Some(token),
        onboarding,
        key("onboard"),
    )
    .await;
    let tenant_id = if answer_lost(&tenant) {
        let found: Option<uuid::Uuid> =
            sqlx::query_scalar("SELECT id FROM tenants WHERE lead_id = $1 AND NOT deleted")
                .bind(id.parse::<uuid::Uuid>().unwrap())
                .fetch_optional(db)
                .await
                .unwrap();
        let Some(found) = found else {
            return Err(format!("lead {i}: onboarding 401 {}", tenant.body));
        };
        unanswered("onboard");
        found.to_string()
    } else if tenant.status == 200 {
        tenant.body["id"].as_str().unwrap_or_default().to_string()
    } else {
        return Err(format!(
            "lead {i}: onboarding {} {}",
            tenant.status, tenant.body
        ));
    };
    let subscription = json!({"id": format!("sub-{i}"), "subscriberId": format!("load{i}"),
        "planId": "plan-gold", "status": 1, "startDate": "2026-12-01", "endDate": "2027-12-01",
        "plan": {"tier": "PREMIUM", "name": "Gold"}});
    let path = format!("/tenants/{tenant_id}/provision");
    let provisioned = post(
        path,
        Some(admin.to_string()),
        subscription,
        key("provision"),
    )
    .await;
    if answer_lost(&provisioned) {
        unanswered("provision");
    } else if !(200..300).contains(&provisioned.status) {
        return Err(format!(
            "lead {i}: provisioning {} {}",
            provisioned.status, provisioned.body
        ));
    }
    Ok(())
}

/// The 409 of a key whose work committed and whose answer was lost (docs/idempotency.md).
fn answer_lost(answer: &Answer) -> bool {
    let message = answer.body["error"]["message"].as_str().unwrap_or_default();
    answer.status == 409 && answer.interrupted && message.contains("answer was lost")
}

// ---------------------------------------------------------------------------------------------
// The test
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_act_as_one_behind_haproxy() {
    let started = Instant::now();
    let reachable = |ok: bool, what: &str| if ok { Ok(()) } else { Err(what.to_string()) };
    if !needs(TEST, "haproxy", haproxy_installed())
        || !db_available(Db::Postgres, TEST)
        || !needs(
            TEST,
            "redis",
            reachable(
                redis::Client::open(redis_url().as_str())
                    .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(2)))
                    .is_ok(),
                "Redis is not reachable (TMS_TEST_REDIS_URL)",
            ),
        )
        || !needs(
            TEST,
            "nats",
            reachable(
                async_nats::connect(nats_url().as_str()).await.is_ok(),
                "NATS is not reachable (TMS_TEST_NATS_URL)",
            ),
        )
    {
        return;
    }
    let tag = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
    let storage = Storage::new(Db::Postgres);
    let schema = storage.postgres_schema().unwrap().to_string();
    let stream = Stream {
        url: nats_url(),
        name: format!("tms_lb_{tag}"),
    };
    let redis_keys = RedisKeys(format!("lb{tag}:"));
    let logs = tempfile::tempdir().unwrap();
    let sink = format!("nats:{}", stream.url);
    let subjects = format!("lb{tag}.events");
    let limit = PUBLIC_LIMIT.to_string();
    let env = storage.variables(&[
        ("REDIS_URL", &redis_url()),
        ("REDIS_KEY_PREFIX", &redis_keys.0),
        ("EVENT_SINK", &sink),
        ("NATS_STREAM", &stream.name),
        ("NATS_SUBJECT_PREFIX", &subjects),
        ("TRUSTED_PROXIES", BALANCER_SOURCE),
        ("PUBLIC_API_MAX_ATTEMPTS", &limit),
        ("LEAD_KEY_IN_RESPONSE", "true"),
        ("BILLING_INTERVAL", "1000"),
        ("REQUEST_TIMEOUT", "3000"),
        ("LOG_LEVEL", "warn"),
    ]);

    // Three replicas started together on a schema that does not exist yet.
    let direct = reqwest::Client::new();
    let mut replicas: Vec<Replica> = (1..=3)
        .map(|n| Replica::start(&format!("tms{n}"), &env, logs.path()))
        .collect();
    for replica in &mut replicas {
        replica.wait_ready(&direct).await;
    }
    let lb_port = SmtpSink::free_port();
    let config_path = logs.path().join("haproxy.cfg");
    std::fs::write(&config_path, haproxy_config(lb_port, &replicas)).unwrap();
    let mut haproxy = Process::spawn(
        Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&config_path),
        logs.path().join("haproxy.log"),
    );
    let base = format!("http://127.0.0.1:{lb_port}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while direct
        .get(format!("{base}/health/ready"))
        .send()
        .await
        .is_err()
    {
        haproxy.assert_running("haproxy");
        assert!(Instant::now() < deadline, "haproxy did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let admin = harness_admin_token();
    let options: sqlx::postgres::PgConnectOptions = postgres_url().unwrap().parse().unwrap();
    let db = sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .connect_with(options.options([("search_path", schema.as_str())]))
        .await
        .unwrap();
    let setup = started.elapsed();

    let limited = rate_limits_count_clients_across_replicas(&base).await;
    single_use_keys_and_idempotency_keys_hold_across_replicas(&base, &admin, &db).await;

    // Billed tenants: two batches of BILLED, each PERIODS daily periods behind, the second
    // billed from just before the kill so that billing runs are under way when it lands.
    let billed_a = billed_tenants(&base, &admin, 0).await;
    let billed_b = billed_tenants(&base, &admin, BILLED).await;
    start_billing(&db, &billed_a).await;
    let tally = Arc::new(Tally::default());
    let done = Arc::new(AtomicUsize::new(0));
    let load_started = Instant::now();
    let load = {
        let (tally, done, base, admin, db) = (
            tally.clone(),
            done.clone(),
            base.clone(),
            admin.clone(),
            db.clone(),
        );
        tokio::spawn(async move {
            futures_util::stream::iter(0..LEADS)
                .map(|i| {
                    let (tally, done, base, admin, db) = (
                        tally.clone(),
                        done.clone(),
                        base.clone(),
                        admin.clone(),
                        db.clone(),
                    );
                    async move {
                        let outcome = walk(i, &base, &admin, &db, &tally).await;
                        done.fetch_add(1, Ordering::Relaxed);
                        outcome
                    }
                })
                .buffer_unordered(CONCURRENCY)
                .collect::<Vec<_>>()
                .await
        })
    };
    while done.load(Ordering::Relaxed) < LEADS / 3 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    start_billing(&db, &billed_b).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    replicas[1].process.kill();
    let killed_after = load_started.elapsed();
    let done_at_kill = done.load(Ordering::Relaxed);
    assert!(done_at_kill < LEADS, "the kill came after the load");
    let outcomes = load.await.unwrap();
    let load_took = load_started.elapsed();
    let failures: Vec<&String> = outcomes.iter().filter_map(|o| o.as_ref().err()).collect();
    assert!(
        failures.is_empty(),
        "operations that did not succeed: {failures:#?}"
    );

    // Every lead signed up, verified and onboarded once: a sign-up whose first try died after
    // committing was answered "answer lost" when sent again, not done a second time.
    let row = sqlx::query(
        "SELECT count(*) AS leads, count(DISTINCT lower(email)) AS emails,
                count(*) FILTER (WHERE is_validated) AS validated,
                count(DISTINCT lower(email)) FILTER (WHERE is_validated) AS validated_emails,
                count(*) FILTER (WHERE NOT is_validated AND NOT EXISTS
                    (SELECT 1 FROM tenants t WHERE t.lead_id = leads.id)) AS orphans
         FROM leads WHERE email LIKE 'ada@load%'",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    let counts: [i64; 5] = [
        "leads",
        "emails",
        "validated",
        "validated_emails",
        "orphans",
    ]
    .map(|column| row.get(column));
    let leads = LEADS as i64;
    assert_eq!(
        counts,
        [leads, leads, leads, leads, 0],
        "[leads, emails, validated, validated emails, unverified leads without a tenant]"
    );
    let row = sqlx::query(
        "SELECT count(*) AS tenants, count(DISTINCT lead_id) AS leads,
                count(*) FILTER (WHERE status = 2) AS provisioning
         FROM tenants WHERE key LIKE 'load%'",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    let (tenants, tenant_leads, provisioning): (i64, i64, i64) = (
        row.get("tenants"),
        row.get("leads"),
        row.get("provisioning"),
    );
    assert_eq!(
        (tenants, tenant_leads, provisioning),
        (LEADS as i64, LEADS as i64, LEADS as i64)
    );

    // Every period of every billed tenant invoiced once, numbered without a gap.
    let invoices_wanted = 2 * BILLED * PERIODS;
    let billed: Vec<uuid::Uuid> = billed_a.into_iter().chain(billed_b).collect();
    let deadline = Instant::now() + PATIENCE;
    let numbers: Vec<String> = loop {
        let numbers: Vec<String> = sqlx::query_scalar(
            "SELECT invoice_number FROM invoices WHERE tenant_id = ANY($1) ORDER BY invoice_number",
        )
        .bind(&billed)
        .fetch_all(&db)
        .await
        .unwrap();
        if numbers.len() >= invoices_wanted || Instant::now() > deadline {
            break numbers;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let expected: Vec<String> = (1..=invoices_wanted)
        .map(|n| format!("INV-{n:06}"))
        .collect();
    assert_eq!(
        numbers, expected,
        "invoice numbers 1..={invoices_wanted}, each once"
    );
    let periods: i64 = sqlx::query_scalar(
        "SELECT count(DISTINCT (tenant_id, billing_period)) FROM invoices WHERE tenant_id = ANY($1)",
    )
    .bind(&billed)
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(
        periods as usize, invoices_wanted,
        "one invoice per tenant and period"
    );

    // Every event delivered to NATS, each stored once (Nats-Msg-Id = the event id).
    let events_wanted = invoices_wanted + LEADS;
    let deadline = Instant::now() + PATIENCE;
    let (events, pending, redelivered) = loop {
        let row = sqlx::query(
            "SELECT count(*) AS events, count(*) FILTER (WHERE delivered_at IS NULL) AS pending,
                    count(*) FILTER (WHERE attempts > 1) AS redelivered
             FROM outbox WHERE topic = 'event'",
        )
        .fetch_one(&db)
        .await
        .unwrap();
        let counts: (i64, i64, i64) = (
            row.get("events"),
            row.get("pending"),
            row.get("redelivered"),
        );
        if (counts.0 as usize >= events_wanted && counts.1 == 0) || Instant::now() > deadline {
            break counts;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let drained_after = load_started.elapsed();
    assert_eq!(
        (events as usize, pending),
        (events_wanted, 0),
        "events written and delivered"
    );
    let written: BTreeSet<String> =
        sqlx::query_scalar("SELECT payload->>'id' FROM outbox WHERE topic = 'event'")
            .fetch_all(&db)
            .await
            .unwrap()
            .into_iter()
            .collect();
    let published = stream.messages().await;
    let ids: BTreeSet<String> = published.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(
        ids, written,
        "every event written reached NATS, and nothing else"
    );
    assert_eq!(
        published.len(),
        ids.len(),
        "JetStream stored each event once"
    );
    let by_subject = published
        .iter()
        .fold(BTreeMap::<String, usize>::new(), |mut m, (_, s)| {
            *m.entry(s.rsplit('.').next().unwrap_or_default().to_string())
                .or_default() += 1;
            m
        });
    assert_eq!(
        by_subject,
        BTreeMap::from([
            ("INVOICE_ISSUED".to_string(), invoices_wanted),
            ("TENANT_PROVISIONING".to_string(), LEADS)
        ])
    );

    // The survivors kept serving; the killed one stopped being sent requests.
    for n in [0, 2] {
        let replica = &mut replicas[n];
        replica.process.assert_running(&replica.name);
    }
    haproxy.assert_running("haproxy");
    let by_replica = tally.by_replica.lock().unwrap().clone();
    let count = |field: &AtomicUsize| field.load(Ordering::Relaxed);
    let unanswered = tally.done_unanswered.lock().unwrap().clone();
    eprintln!(
        "replicas behind haproxy: set-up {setup:.1?}; {limited}\n\
         {LEADS} funnels in {load_took:.1?}: {} requests, answers by replica {by_replica:?}\n\
         tms2 killed {killed_after:.1?} into the load, {done_at_kill} funnels done: {} steps sent \
         again ({} lost answers, {} waits for a key in progress, {} replays); steps whose try died \
         after committing, answered \"answer lost\" when sent again (none done twice): \
         {unanswered:?}\n\
         {invoices_wanted} invoices INV-000001..{invoices_wanted:06}; {events} events on NATS, \
         all delivered {drained_after:.1?} after the load began, {redelivered} of them taken \
         over from the killed replica's relay and stored once; whole test {:.1?}",
        count(&tally.requests),
        count(&tally.interrupted),
        count(&tally.lost),
        count(&tally.in_progress),
        count(&tally.replayed),
        started.elapsed(),
    );
    db.close().await;
    drop(haproxy);
    drop(replicas);
    drop(stream);
    drop(redis_keys);
    drop(storage);
}

/// `BILLED` tenants onboarded through the balancer; returns their ids.
async fn billed_tenants(base: &str, admin: &str, first: usize) -> Vec<uuid::Uuid> {
    let client = reqwest::Client::new();
    let tally = Tally::default();
    let mut ids = Vec::new();
    for n in first..first + BILLED {
        let domain = format!("bill{n}.example");
        let body = json!({"name": format!("Billed {n}"), "key": format!("bill{n}"),
            "domains": [domain], "contact": {"firstName": "Bo", "lastName": "Billed",
            "email": format!("bo@{domain}"), "isPrimary": true}});
        let answer = post_until_answered(
            &client,
            &tally,
            &format!("{base}/tenants"),
            Some(admin),
            &body,
            &format!("bill-{n}"),
        )
        .await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        ids.push(
            answer.body["id"]
                .as_str()
                .unwrap()
                .parse::<uuid::Uuid>()
                .unwrap(),
        );
    }
    ids
}

/// Makes `ids` (as the provisioning pipeline and a subscription would) ACTIVE with daily billing
/// terms anchored `PERIODS - 1` days and an hour ago, so that `PERIODS` periods are due at once.
async fn start_billing(db: &sqlx::PgPool, ids: &[uuid::Uuid]) {
    let anchor = chrono::Utc::now()
        - chrono::Duration::days(PERIODS as i64 - 1)
        - chrono::Duration::hours(1);
    let mut tx = db.begin().await.unwrap();
    sqlx::query("UPDATE tenants SET status = 0 WHERE id = ANY($1)")
        .bind(ids)
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO tenant_billing (tenant_id, price, currency_code, cycle_count, cycle_unit,
             anchor_at, next_period, next_period_start, modified_on)
         SELECT id, 9.5, 'USD', 1, 'day', $2, 0, $2, now() FROM tenants WHERE id = ANY($1)",
    )
    .bind(ids)
    .bind(anchor)
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
}

/// One client's public requests spread over the three replicas are limited at
/// `PUBLIC_LIMIT` in all, not three times that; the balancer's `X-Forwarded-For` is believed
/// because the balancer is the one `TRUSTED_PROXIES` entry, so a client writing its own entry
/// does not get a fresh budget, and another client has its own.
async fn rate_limits_count_clients_across_replicas(base: &str) -> String {
    // Windows are whole minutes: a run that straddles two is done again with another client.
    for attempt in 0..3 {
        let client = client_from(&format!("127.9.0.{}", attempt + 1));
        let mut statuses = Vec::new();
        let mut replicas = BTreeSet::new();
        let mut resets = BTreeSet::new();
        let url = format!("{base}/leads/{}/verify", uuid::Uuid::new_v4());
        for n in 0..PUBLIC_LIMIT + 10 {
            let mut request = client.post(&url).bearer_auth("not-a-key");
            if n >= PUBLIC_LIMIT {
                request = request.header("x-forwarded-for", format!("198.51.100.{n}"));
            }
            let response = request.send().await.unwrap();
            statuses.push(response.status().as_u16());
            let header = |name| {
                response
                    .headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string()
            };
            replicas.insert(header("x-replica"));
            resets.insert(header("x-ratelimit-reset"));
        }
        if resets.len() > 1 {
            continue;
        }
        assert_eq!(replicas.len(), 3, "spread over every replica: {replicas:?}");
        let refused = statuses.iter().filter(|s| **s == 429).count();
        assert_eq!(
            (statuses.len() - refused, refused),
            (PUBLIC_LIMIT, 10),
            "{PUBLIC_LIMIT} answered, then refused, forged X-Forwarded-For or not: {statuses:?}"
        );
        assert!(
            statuses[..PUBLIC_LIMIT].iter().all(|s| *s == 401),
            "{statuses:?}"
        );
        let other = client_from("127.9.1.1")
            .post(&url)
            .bearer_auth("x")
            .send()
            .await
            .unwrap();
        assert_eq!(
            other.status(),
            401,
            "another client has a budget of its own"
        );
        return format!(
            "rate limit {PUBLIC_LIMIT} of {} over 3 replicas",
            statuses.len()
        );
    }
    panic!("three rate-limit runs straddled a minute");
}

/// A verification key sent to the three replicas at once verifies once; one sign-up sent with
/// one Idempotency-Key to the three replicas at once signs up once, and every copy gets its
/// answer; so does an administrator's onboarding.
async fn single_use_keys_and_idempotency_keys_hold_across_replicas(
    base: &str,
    admin: &str,
    db: &sqlx::PgPool,
) {
    let client = client_from("127.9.2.1");
    let tally = Tally::default();
    let sign_up = json!({"firstName": "Sol", "lastName": "Once", "email": "sol@once.example",
        "companyName": "Once"});
    let lead = post_until_answered(
        &client,
        &tally,
        &format!("{base}/leads"),
        None,
        &sign_up,
        "k1",
    )
    .await;
    assert_eq!(lead.status, 200, "{}", lead.body);
    let (id, code) = (
        lead.body["id"].as_str().unwrap(),
        lead.body["key"].as_str().unwrap(),
    );
    let url = format!("{base}/leads/{id}/verify");
    let tries =
        futures_util::future::join_all((0..3).map(|_| send(&client, &url, Some(code), None, None)))
            .await;
    let tries: Vec<Answer> = tries.into_iter().map(Result::unwrap).collect();
    let replicas: BTreeSet<&str> = tries.iter().map(|a| a.replica.as_str()).collect();
    assert_eq!(replicas.len(), 3, "one try on each replica");
    let mut statuses: Vec<u16> = tries.iter().map(|a| a.status).collect();
    statuses.sort();
    assert_eq!(statuses, [200, 401, 401], "a key verifies once");

    // The same request with the same key at once on the three replicas: done once.
    for (path, body, bearer) in [
        (
            "/leads",
            json!({"firstName": "Ida", "lastName": "Twice", "email": "ida@twice.example",
            "companyName": "Twice"}),
            None,
        ),
        (
            "/tenants",
            json!({"name": "Keyed", "key": "keyed", "domains": ["keyed.example"],
            "contact": {"firstName": "Kay", "lastName": "Keyed", "email": "kay@keyed.example",
            "isPrimary": true}}),
            Some(admin),
        ),
    ] {
        let url = format!("{base}{path}");
        let answers = futures_util::future::join_all(
            (0..3).map(|_| post_until_answered(&client, &tally, &url, bearer, &body, "same-key")),
        )
        .await;
        let bodies: BTreeSet<String> = answers.iter().map(|a| a.body.to_string()).collect();
        assert!(answers.iter().all(|a| a.status == 200), "POST {path}");
        assert_eq!(
            bodies.len(),
            1,
            "every copy of POST {path} got the one answer: {bodies:?}"
        );
        assert_eq!(
            answers.iter().filter(|a| !a.replayed).count(),
            1,
            "POST {path}: one did it"
        );
    }
    let leads: i64 =
        sqlx::query_scalar("SELECT count(*) FROM leads WHERE email = 'ida@twice.example'")
            .fetch_one(db)
            .await
            .unwrap();
    let tenants: i64 = sqlx::query_scalar("SELECT count(*) FROM tenants WHERE key = 'keyed'")
        .fetch_one(db)
        .await
        .unwrap();
    assert_eq!((leads, tenants), (1, 1));
}
