//! The write scenarios: `POST /tenants` (an administrator's onboarding: address, tenant and
//! contact in one transaction) and the lead funnel (sign-up, verification, onboarding), each
//! client writing new tenants back to back.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use serde_json::{Value, json};

use super::{Args, Client, ClientStats, PhaseStats, Window, load, request};

/// `POST /tenants` at `concurrency` against the server on `port`; tenants are numbered from
/// `next`, shared by the clients (and by consecutive runs).
pub(super) async fn onboarding(
    args: &Args,
    port: u16,
    token: &str,
    next: &Arc<AtomicUsize>,
    concurrency: usize,
) -> anyhow::Result<PhaseStats> {
    load(concurrency, args.warmup(), args.duration(), |_, window| {
        onboarding_client(port, token.to_string(), Arc::clone(next), window)
    })
    .await
}

/// One client onboarding new tenants back to back; a request counts as successful on 200.
async fn onboarding_client(
    port: u16,
    token: String,
    next: Arc<AtomicUsize>,
    window: Window,
) -> ClientStats {
    let mut stats = ClientStats::default();
    let mut client = Client::new(port);
    while Instant::now() < window.end {
        let n = next.fetch_add(1, Ordering::Relaxed);
        let domain = format!("w{n}.example.com");
        let body = json!({
            "name": format!("Write tenant {n}"),
            "key": format!("w{n}"),
            "domains": [domain],
            "country": "US",
            "city": "Springfield",
            "contact": {"firstName": "Load", "lastName": "Bench",
                        "email": format!("admin@{domain}"), "isPrimary": true},
        });
        let request = request("POST", "/tenants", Some(&token), &body);
        let started = Instant::now();
        let ok = matches!(client.send(&request).await, Ok((200, _)));
        if !stats.record(&window, started, ok) {
            break;
        }
    }
    stats.finished = Some(Instant::now());
    stats
}

/// What `POST /tenants` runs, as a pgbench script: one transaction with the same statements in
/// the same order (`domain::onboarding::onboard` through `store::crud`: the address, the tenant
/// and the contact, each with its audit record, the tenant's status counter kept by its
/// trigger, then the tenant read back with its contacts, resources, lead and address). Keys and
/// ids are new on every run, as the service makes them.
pub(super) const ONBOARDING_SCRIPT: &str = include_str!("onboarding.pgbench");

/// The funnel at `concurrency` against the server on `port`: each iteration signs a lead up,
/// verifies it with the key the sign-up answers (`LEAD_KEY_IN_RESPONSE=true`) and onboards its
/// tenant with the lead token; one sample per whole iteration, successful when all three
/// answer 200.
pub(super) async fn funnel(
    args: &Args,
    port: u16,
    next: &Arc<AtomicUsize>,
    concurrency: usize,
) -> anyhow::Result<PhaseStats> {
    load(concurrency, args.warmup(), args.duration(), |_, window| {
        funnel_client(port, Arc::clone(next), window)
    })
    .await
}

/// Sends `request`; the answer's JSON when it is a 200.
async fn call(client: &mut Client, request: &[u8]) -> Option<Value> {
    match client.send(request).await {
        Ok((200, body)) => serde_json::from_slice(body).ok(),
        _ => None,
    }
}

/// One lead through the funnel; whether every step answered 200.
async fn one_lead(client: &mut Client, n: usize) -> Option<()> {
    let domain = format!("f{n}.example.com");
    let lead = call(
        client,
        &request(
            "POST",
            "/leads",
            None,
            &json!({"firstName": "Ada", "lastName": "Lovelace", "email": format!("ada@{domain}"),
                    "companyName": format!("Funnel company {n}")}),
        ),
    )
    .await?;
    let id = lead["id"].as_str()?.to_string();
    let key = lead["key"].as_str()?.to_string();
    let verified = call(
        client,
        &request(
            "POST",
            &format!("/leads/{id}/verify"),
            Some(&key),
            &json!({}),
        ),
    )
    .await?;
    let token = verified["token"].as_str()?.to_string();
    call(
        client,
        &request(
            "POST",
            &format!("/leads/{id}/tenants"),
            Some(&token),
            &json!({"key": format!("f{n}"), "domains": [domain]}),
        ),
    )
    .await?;
    Some(())
}

async fn funnel_client(port: u16, next: Arc<AtomicUsize>, window: Window) -> ClientStats {
    let mut stats = ClientStats::default();
    let mut client = Client::new(port);
    while Instant::now() < window.end {
        let n = next.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let ok = one_lead(&mut client, n).await.is_some();
        if !stats.record(&window, started, ok) {
            break;
        }
    }
    stats.finished = Some(Instant::now());
    stats
}
