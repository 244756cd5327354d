//! `GET /metrics` (docs/operations.md, "Metrics") over real HTTP, on SQLite and PostgreSQL: the
//! Prometheus text with requests by route template, the tenants by status, outbox deliveries
//! and provisioning outcomes as they happen; guarded by `METRICS_TOKEN` on the service's port
//! (absent without one outside development), and served alone on `METRICS_ADDR`.

mod common;
mod lifecycle_support;
mod rest_support;

use common::*;
use lifecycle_support::*;
use rest_support::a_tenant;

const TOKEN: &str = "metrics-token-0123456789";

async fn scrape(app: &TestApp, token: Option<&str>) -> (u16, String, Option<String>) {
    let mut request = app.client.get(app.url("/metrics"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    (status, response.text().await.unwrap(), content_type)
}

/// The value of the sample `line` starts (name and labels), if the text has it.
fn sample(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

both_dbs!(
    metrics_count_what_happens,
    [("METRICS_TOKEN", TOKEN)],
    |app| async move {
        for token in [None, Some("wrong-token-0123456789")] {
            let (status, body, _) = scrape(&app, token).await;
            assert_eq!(status, 401, "{body}");
            assert!(body.contains("UnauthorizedError"), "{body}");
        }
        let tenant = a_tenant(&app, "acme").await;
        let token = app.admin_token();
        for _ in 0..3 {
            let (status, _) = app.get(&format!("/tenants/{tenant}"), Some(&token)).await;
            assert_eq!(status, 200);
        }
        let (status, _) = app.get("/no/such/route", Some(&token)).await;
        assert_eq!(status, 404);

        let (status, text, content_type) = scrape(&app, Some(TOKEN)).await;
        assert_eq!(status, 200, "{text}");
        assert_eq!(
            content_type.as_deref(),
            Some("text/plain; version=0.0.4; charset=utf-8")
        );
        let route = r#"tms_http_requests_total{route="/tenants/{id}",method="GET",status="200"}"#;
        assert_eq!(sample(&text, route), Some(3.0), "{text}");
        assert_eq!(
            sample(
                &text,
                r#"tms_http_requests_total{route="unmatched",method="GET",status="404"}"#
            ),
            Some(1.0),
            "raw paths never become labels"
        );
        assert!(!text.contains("/no/such/route"));
        assert_eq!(
            sample(&text, r#"tms_tenants{status="PENDINGPROVISION"}"#),
            Some(1.0)
        );
        assert_eq!(sample(&text, r#"tms_tenants{status="ACTIVE"}"#), Some(0.0));
        assert!(sample(&text, "tms_db_pool_max_connections").is_some_and(|n| n >= 1.0));

        // A provisioning: its event delivered, its result taken.
        let (status, body) = provision(&app, &tenant, &subscription("BASIC")).await;
        assert_eq!(status, 204, "{body}");
        let event = wait_for_event_of(&app, &tenant, "TENANT_PROVISIONING").await;
        let response = send(&app, &report(&event, json!({"status": 1}))).await;
        assert_eq!(response.status, 204, "{}", response.text);
        let (_, text, _) = scrape(&app, Some(TOKEN)).await;
        assert_eq!(
            sample(
                &text,
                r#"tms_outbox_deliveries_total{topic="event",result="delivered"}"#
            ),
            Some(1.0),
            "{text}"
        );
        assert_eq!(
            sample(
                &text,
                r#"tms_provisioning_duration_seconds_count{operation="provision",outcome="succeeded"}"#
            ),
            Some(1.0),
            "{text}"
        );
        assert_eq!(sample(&text, r#"tms_tenants{status="ACTIVE"}"#), Some(1.0));
        assert_eq!(
            sample(&text, r#"tms_tenants{status="PENDINGPROVISION"}"#),
            Some(0.0)
        );
        // The scrapes themselves are counted by their route.
        assert!(text.contains(r#"route="/metrics",method="GET",status="401""#));
    }
);

both_dbs!(metrics_without_a_token_are_not_served, |app| async move {
    // The test environment, like production: no METRICS_TOKEN, no /metrics on this port.
    let (status, body, _) = scrape(&app, None).await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("NotFoundError"), "{body}");
});

#[tokio::test]
async fn metrics_are_served_alone_on_their_own_address() {
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = free.local_addr().unwrap();
    drop(free);
    let app = TestApp::spawn_with(Db::Sqlite, &[("METRICS_ADDR", &addr.to_string())]).await;
    a_tenant(&app, "acme").await;
    let client = reqwest::Client::new();
    let response = client
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    assert_eq!(
        sample(&text, r#"tms_tenants{status="PENDINGPROVISION"}"#),
        Some(1.0),
        "{text}"
    );
    // Nothing else is served there.
    let response = client
        .get(format!("http://{addr}/tenants"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    // And the service's port still keeps it to itself.
    let (status, _, _) = scrape(&app, None).await;
    assert_eq!(status, 404);
}
