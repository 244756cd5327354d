//! The foundation: command line and configuration errors, authentication on a protected route,
//! the LoopBack error bodies, `/ping`, health, documentation pages, start-up on new and existing
//! databases, migrations, the development JWT secret and graceful shutdown.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use secrecy::{ExposeSecret, SecretString};
use sqlx::Row;
use tms::auth::{ALL_PERMISSIONS, JwtKeys, now_secs};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

// ---------------------------------------------------------------------------------------------
// The command line
// ---------------------------------------------------------------------------------------------

/// Runs the `tms` binary with exactly `env` as its environment; kills it after 30 s.
fn run_tms(args: &[&str], env: &[(&str, &str)]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let stdout_path = dir.path().join("stdout");
    let stderr_path = dir.path().join("stderr");
    let mut child = Command::new(env!("CARGO_BIN_EXE_tms"))
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout_path).unwrap())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .expect("cannot run the tms binary");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "tms {args:?} did not exit within 30 s; stderr: {}",
                std::fs::read_to_string(&stderr_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: std::fs::read(&stdout_path).unwrap(),
        stderr: std::fs::read(&stderr_path).unwrap(),
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `tms health`, a container's health check: 0 while the server answers ready, 1 when it does
/// not (nothing listens, or not ready).
#[tokio::test]
async fn the_health_command_tells_whether_the_server_is_ready() {
    let app = TestApp::spawn(Db::Sqlite).await;
    let ready = app.url("/health/ready");
    let url = ready.clone();
    let out = tokio::task::spawn_blocking(move || run_tms(&["health", "--url", &url], &[]))
        .await
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let port = closed.port().to_string();
    let out = tokio::task::spawn_blocking(move || run_tms(&["health"], &[("PORT", &port)]))
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(
        text(&out.stderr).contains("/health/ready"),
        "{}",
        text(&out.stderr)
    );
    let missing = app.url("/health/nothing");
    let out = tokio::task::spawn_blocking(move || run_tms(&["health", "--url", &missing], &[]))
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("404"), "{}", text(&out.stderr));
}

type BadConfig<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);

#[test]
fn bad_configuration_exits_2_with_one_line_naming_the_variable() {
    let data_dir = tempfile::tempdir().unwrap();
    let data_dir = data_dir.path().to_str().unwrap();
    // (arguments, variables, the variable the error must name)
    let cases: &[BadConfig] = &[
        (&["config"], &[("PORT", "abc")], "PORT"),
        (&["config"], &[("PORT", "70000")], "PORT"),
        (&["config"], &[("LOG_LEVEL", "loud")], "LOG_LEVEL"),
        (
            &["config"],
            &[("DATABASE_URL", "mysql://x")],
            "DATABASE_URL",
        ),
        (&["config"], &[("TMS_ENV", "prod")], "JWT_SECRET"),
        (&["config"], &[("TMS_ENV", "staging")], "TMS_ENV"),
        (&["config"], &[("DB_SCHEMA", "a;b")], "DB_SCHEMA"),
        // The server itself (the default command) refuses the same way, before binding.
        (&[], &[("PORT", "abc")], "PORT"),
        (&["serve"], &[("LOG_LEVEL", "loud")], "LOG_LEVEL"),
        (
            &["migrate"],
            &[("DATABASE_URL", "mysql://x")],
            "DATABASE_URL",
        ),
        (&["token"], &[("TMS_ENV", "prod")], "JWT_SECRET"),
    ];
    for (args, vars, var) in cases {
        let mut env = vec![("TMS_DATA_DIR", data_dir)];
        env.extend_from_slice(vars);
        let out = run_tms(args, &env);
        let stderr = text(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(2),
            "tms {args:?} with {vars:?}: {stderr}"
        );
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(
            lines.len(),
            1,
            "tms {args:?} with {vars:?}: stderr must be one line, got {stderr:?}"
        );
        assert!(
            lines[0].contains(var),
            "tms {args:?} with {vars:?}: {:?} does not name {var}",
            lines[0]
        );
        assert!(
            !stderr.contains("panicked") && !stderr.contains("backtrace"),
            "{stderr}"
        );
        assert!(out.stdout.is_empty(), "nothing on stdout: {:?}", out.stdout);
    }
}

#[test]
fn start_up_failures_say_what_failed_once_and_at_once() {
    let out = run_tms(&["config"], &[("PORT", "70000")]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(
        stderr.trim(),
        "tms: invalid configuration: PORT: must be between 0 and 65535, got 70000"
    );

    // An unreachable database: the address and the cause at once, not after a pool timeout.
    let data_dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let out = run_tms(
        &["serve"],
        &[
            ("TMS_DATA_DIR", data_dir.path().to_str().unwrap()),
            ("HOST", "127.0.0.1"),
            ("PORT", "0"),
            ("DATABASE_URL", "postgres://postgres@127.0.0.1:1/test"),
        ],
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(5), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line, printed once: {stderr:?}");
    assert!(
        lines[0].starts_with("tms: cannot connect to PostgreSQL at 127.0.0.1:1: ")
            && lines[0].contains("refused"),
        "{stderr}"
    );

    // A bad HOST fails before anything is created or migrated.
    let data_dir = tempfile::tempdir().unwrap();
    let out = run_tms(
        &["serve"],
        &[
            ("TMS_DATA_DIR", data_dir.path().to_str().unwrap()),
            ("HOST", "256.0.0.1"),
        ],
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr:?}");
    assert!(
        stderr.starts_with("tms: cannot listen on 256.0.0.1:3005 (HOST, PORT): "),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_dir(data_dir.path()).unwrap().count(),
        0,
        "nothing was written to the data directory"
    );
}

#[test]
fn config_command_masks_secrets() {
    let data_dir = tempfile::tempdir().unwrap();
    let secret = "jwt-value-that-must-not-leak-0123456789";
    let out = run_tms(
        &["config"],
        &[
            ("TMS_DATA_DIR", data_dir.path().to_str().unwrap()),
            ("JWT_SECRET", secret),
            ("DATABASE_URL", "postgres://u:pw-not-to-leak@h/db"),
            ("SMTP_URL", "smtp://mailer:smtp-pass-not-to-leak@mail:587"),
            ("AUTH0_CLIENT_SECRET", "auth0-secret-not-to-leak"),
        ],
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines.contains(&"JWT_SECRET=***"), "{stdout}");
    assert!(
        lines.contains(&"DATABASE_URL=postgres://u:***@h/db"),
        "{stdout}"
    );
    assert!(lines.contains(&"DATABASE=postgres"), "{stdout}");
    assert!(lines.contains(&"AUTH0_CLIENT_SECRET=***"), "{stdout}");
    for leaked in [
        secret,
        "pw-not-to-leak",
        "smtp-pass-not-to-leak",
        "auth0-secret-not-to-leak",
    ] {
        assert!(!stdout.contains(leaked), "{leaked} printed: {stdout}");
        assert!(!text(&out.stderr).contains(leaked), "{leaked} on stderr");
    }
    // Every line is NAME=value.
    for line in lines {
        let (name, _) = line.split_once('=').unwrap_or_else(|| panic!("{line}"));
        assert!(
            name.chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'),
            "{line}"
        );
    }
}

#[test]
fn token_command_mints_a_token_the_server_accepts() {
    let data_dir = tempfile::tempdir().unwrap();
    let env = [
        ("TMS_ENV", "test"),
        ("TMS_DATA_DIR", data_dir.path().to_str().unwrap()),
        ("JWT_SECRET", JWT_SECRET),
        ("JWT_ISSUER", JWT_ISSUER),
    ];
    let keys = JwtKeys::new(&SecretString::from(JWT_SECRET.to_string()), JWT_ISSUER);

    let out = run_tms(&["token", "--permissions", "all"], &env);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let token = text(&out.stdout);
    let token = token.trim();
    assert_eq!(token.lines().count(), 1, "one line: {token}");
    let principal = keys.verify(token).expect("the minted token verifies");
    let mut got = principal.permissions.clone();
    got.sort();
    let mut all: Vec<String> = ALL_PERMISSIONS.iter().map(|p| p.to_string()).collect();
    all.sort();
    assert_eq!(got, all);
    assert_eq!(principal.id, "00000000-0000-0000-0000-000000000001");

    let out = run_tms(
        &[
            "token",
            "--permissions",
            "10207, 10204",
            "--id",
            "caller-1",
            "--ttl",
            "60",
        ],
        &env,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let principal = keys.verify(text(&out.stdout).trim()).unwrap();
    assert_eq!(principal.id, "caller-1");
    assert_eq!(principal.permissions, ["10207", "10204"]);

    // Another issuer's keys refuse it.
    let other = JwtKeys::new(&SecretString::from(JWT_SECRET.to_string()), "someone-else");
    assert!(other.verify(text(&out.stdout).trim()).is_err());
}

#[test]
fn openapi_command_prints_the_document() {
    let data_dir = tempfile::tempdir().unwrap();
    let out = run_tms(
        &["openapi"],
        &[("TMS_DATA_DIR", data_dir.path().to_str().unwrap())],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let doc: Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
    assert_eq!(doc["openapi"], "3.0.0");
    assert!(doc["paths"].is_object());
    assert!(doc["paths"].get("/ping").is_some());
    // It is the document the server serves.
    assert_eq!(doc, tms::http::openapi::document());
}

/// The document is valid OpenAPI 3, by a real validator (`openapi-spec-validator`, which
/// `.ci/run` installs).
#[test]
fn the_openapi_document_passes_a_validator() {
    let test = "the_openapi_document_passes_a_validator";
    let available = python_module("openapi_spec_validator", "openapi-spec-validator");
    if !needs(test, "openapi-spec-validator", available) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, tms::http::openapi::document().to_string()).unwrap();
    let output = Command::new("python3")
        .args(["-m", "openapi_spec_validator"])
        .arg(&file)
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "the validator refused it: {said}");
    assert!(said.trim_end().ends_with("OK"), "{said}");
}

// ---------------------------------------------------------------------------------------------
// Authentication and authorization, on `GET /tenants/count` (ViewTenant, 10207)
// ---------------------------------------------------------------------------------------------

const PROBE: &str = "/tenants/count";

fn encode_claims(claims: &Value, secret: &str) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

fn unsigned_token(claims: &Value) -> String {
    format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

both_dbs!(missing_or_invalid_tokens_are_401, |app| async move {
    let now = now_secs();
    // Claims that would be accepted but for the one thing each case gets wrong.
    let valid_claims = |iss: &str, exp: u64| {
        json!({"id": TEST_USER_ID, "permissions": ["10207"], "iss": iss, "exp": exp,
               "iat": now - 120})
    };
    let expired = encode_claims(&valid_claims(JWT_ISSUER, now - 60), JWT_SECRET);
    let wrong_issuer = encode_claims(&valid_claims("not-tms", now + 600), JWT_SECRET);
    let wrong_secret = encode_claims(
        &valid_claims(JWT_ISSUER, now + 600),
        "another-secret-0123456789abcdef0123456789",
    );
    let alg_none = unsigned_token(&valid_claims(JWT_ISSUER, now + 600));
    let hs512 = jsonwebtoken::encode(
        &Header::new(Algorithm::HS512),
        &valid_claims(JWT_ISSUER, now + 600),
        &EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .unwrap();
    let no_exp = encode_claims(
        &json!({"id": TEST_USER_ID, "permissions": ["10207"], "iss": JWT_ISSUER}),
        JWT_SECRET,
    );
    let no_caller = encode_claims(
        &json!({"permissions": ["10207"], "iss": JWT_ISSUER, "exp": now + 600}),
        JWT_SECRET,
    );
    let not_yet_valid = encode_claims(
        &json!({"id": TEST_USER_ID, "permissions": ["10207"], "iss": JWT_ISSUER,
                "exp": now + 7200, "nbf": now + 3600}),
        JWT_SECRET,
    );
    let issued_in_the_future = encode_claims(
        &json!({"id": TEST_USER_ID, "permissions": ["10207"], "iss": JWT_ISSUER,
                "exp": now + 7200, "iat": now + 3600}),
        JWT_SECRET,
    );

    let bearer = |t: &str| format!("Bearer {t}");
    let cases: Vec<(&str, Option<String>)> = vec![
        ("no Authorization header", None),
        ("Bearer garbage", Some(bearer("garbage"))),
        ("empty Bearer", Some("Bearer ".into())),
        ("Basic scheme", Some("Basic dXNlcjpwYXNz".into())),
        ("expired", Some(bearer(&expired))),
        ("wrong issuer", Some(bearer(&wrong_issuer))),
        ("wrong secret", Some(bearer(&wrong_secret))),
        ("alg none", Some(bearer(&alg_none))),
        ("alg HS512", Some(bearer(&hs512))),
        ("no exp", Some(bearer(&no_exp))),
        ("no caller id", Some(bearer(&no_caller))),
        ("nbf an hour ahead", Some(bearer(&not_yet_valid))),
        ("iat an hour ahead", Some(bearer(&issued_in_the_future))),
    ];
    for (case, authorization) in cases {
        let mut request = app.client.get(app.url(PROBE));
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        let response = TestResponse::read(request.send().await.unwrap()).await;
        assert_eq!(response.status, 401, "{case}: {}", response.text);
        response.assert_error(401, "UnauthorizedError");
    }
});

both_dbs!(token_without_the_permission_is_403, |app| async move {
    for permissions in [&[][..], &["10204", "10203"][..]] {
        let response = app.get_raw(PROBE, Some(&app.token(permissions))).await;
        response.assert_error(403, "ForbiddenError");
    }
});

both_dbs!(token_with_the_permission_is_200, |app| async move {
    let (status, body) = app.get(PROBE, Some(&app.token(&["10207"]))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"count": 0}));
    // A token carrying only userTenantId (as the ARC SaaS facade mints them) is accepted too.
    let facade = encode_claims(
        &json!({"userTenantId": TEST_USER_ID, "permissions": ["10207"], "iss": JWT_ISSUER,
                "exp": now_secs() + 600}),
        JWT_SECRET,
    );
    let (status, body) = app.get(PROBE, Some(&facade)).await;
    assert_eq!(status, 200, "{body}");
    // A few seconds of clock skew between issuer and tms are tolerated.
    let skewed = encode_claims(
        &json!({"id": TEST_USER_ID, "permissions": ["10207"], "iss": JWT_ISSUER,
                "exp": now_secs() + 600, "iat": now_secs() + 10, "nbf": now_secs() + 10}),
        JWT_SECRET,
    );
    let (status, body) = app.get(PROBE, Some(&skewed)).await;
    assert_eq!(status, 200, "{body}");
});

// ---------------------------------------------------------------------------------------------
// Error bodies
// ---------------------------------------------------------------------------------------------

both_dbs!(unknown_route_is_404_not_found_error, |app| async move {
    let response = app.get_raw("/nope", None).await;
    response.assert_error(404, "NotFoundError");
    assert_eq!(
        response.json()["error"]["message"],
        "Endpoint \"GET /nope\" not found."
    );
    // With a token, and with a body, it is still a plain 404.
    let response = app
        .raw(
            Method::POST,
            "/nope/deeper?x=1",
            Some(&app.admin_token()),
            "{}",
            Some("application/json"),
        )
        .await;
    response.assert_error(404, "NotFoundError");
});

both_dbs!(wrong_method_is_405, |app| async move {
    for method in [Method::DELETE, Method::POST, Method::PUT, Method::PATCH] {
        let response = app.raw(method.clone(), "/ping", None, "", None).await;
        assert_eq!(response.status, 405, "{method}");
        response.assert_error(405, "MethodNotAllowedError");
    }
});

/// `POST /tenants` as an administrator with `body` sent verbatim as `content_type`; the whole
/// response.
async fn post_tenant_text(app: &TestApp, body: &str, content_type: Option<&str>) -> TestResponse {
    app.raw(
        Method::POST,
        "/tenants",
        Some(&app.admin_token()),
        body,
        content_type,
    )
    .await
}

both_dbs!(malformed_json_is_400_syntax_error, |app| async move {
    for body in ["{bad", "{\"name\": ", "[1,2", "nul"] {
        let response = post_tenant_text(&app, body, Some("application/json")).await;
        response.assert_error(400, "SyntaxError");
    }
    let (_, count) = app.get("/tenants/count", Some(&app.admin_token())).await;
    assert_eq!(count, json!({"count": 0}), "nothing written");
});

both_dbs!(
    body_over_the_limit_is_413,
    [("REQUEST_BODY_LIMIT", "2048")],
    |app| async move {
        let big = json!({
            "name": "x".repeat(4096),
            "key": "big",
            "domains": ["big.example.com"],
            "contact": {"firstName": "A", "lastName": "B", "email": "a@big.example.com",
                        "isPrimary": true}
        })
        .to_string();
        let response = post_tenant_text(&app, &big, Some("application/json")).await;
        response.assert_error(413, "PayloadTooLargeError");
    }
);

both_dbs!(wrong_content_type_is_415, |app| async move {
    let body = json!({"name": "Acme", "key": "acme", "domains": ["acme.example.com"]}).to_string();
    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        None,
    ] {
        let response = post_tenant_text(&app, &body, content_type).await;
        response.assert_error(415, "UnsupportedMediaTypeError");
    }
});

both_dbs!(request_ids_are_generated_or_propagated, |app| async move {
    let response = app.get_raw("/ping", None).await;
    let generated = response.header("x-request-id").expect("x-request-id");
    assert!(!generated.is_empty());
    let other = app.get_raw("/ping", None).await;
    assert_ne!(other.header("x-request-id"), Some(generated), "unique ids");

    let response = app
        .client
        .get(app.url("/nope"))
        .header("x-request-id", "trace-me-123")
        .send()
        .await
        .unwrap();
    let response = TestResponse::read(response).await;
    response.assert_error(404, "NotFoundError");
    assert_eq!(response.header("x-request-id"), Some("trace-me-123"));
});

// ---------------------------------------------------------------------------------------------
// /ping, health, documentation pages
// ---------------------------------------------------------------------------------------------

both_dbs!(
    ping_echoes_the_request_without_credentials,
    |app| async move {
        let response = app
            .client
            .get(app.url("/ping?probe=1"))
            .header("authorization", "Bearer secret-token-value")
            .header("cookie", "session=secret-cookie")
            .header("x-probe", "hello")
            .send()
            .await
            .unwrap();
        let response = TestResponse::read(response).await;
        assert_eq!(response.status, 200, "{}", response.text);
        assert!(response.header("x-request-id").is_some());
        let body = response.json();
        assert!(
            body["greeting"].as_str().is_some_and(|g| !g.is_empty()),
            "{body}"
        );
        let date = body["date"].as_str().expect("date is a string");
        assert!(
            chrono::DateTime::parse_from_rfc2822(date).is_ok()
                || chrono::DateTime::parse_from_rfc3339(date).is_ok(),
            "date {date:?}"
        );
        assert_eq!(body["url"], "/ping?probe=1");
        let headers = body["headers"].as_object().expect("headers is an object");
        assert_eq!(headers["x-probe"], "hello");
        assert!(headers.contains_key("host"), "{body}");
        assert!(!headers.contains_key("authorization"), "{body}");
        assert!(!headers.contains_key("cookie"), "{body}");
        assert!(!response.text.contains("secret-token-value"));
        assert!(!response.text.contains("secret-cookie"));
    }
);

both_dbs!(health_probes_answer, |app| async move {
    let (status, body) = app.get("/health/ready", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ok");
    assert_eq!(body["database"], app.db.name());
    let (status, body) = app.get("/health/live", None).await;
    assert_eq!(status, 200, "{body}");
});

/// The response is a 200 whose `Content-Type` starts with `content_type`.
#[track_caller]
fn assert_served_as(response: &TestResponse, content_type: &str) {
    assert_eq!(response.status, 200, "{}", response.text);
    assert!(
        response
            .header("content-type")
            .is_some_and(|v| v.starts_with(content_type)),
        "not {content_type}: {:?}",
        response.headers
    );
}

both_dbs!(openapi_document_is_served, |app| async move {
    let response = app.get_raw("/openapi.json", None).await;
    assert_served_as(&response, "application/json");
    let doc = response.json();
    assert_eq!(doc["openapi"], "3.0.0");
    assert!(doc["paths"].get("/ping").is_some(), "{}", doc["paths"]);
    assert!(doc["info"]["title"].is_string());
});

both_dbs!(explorer_and_home_pages_are_served, |app| async move {
    let explorer = app.get_raw("/explorer", None).await;
    assert_served_as(&explorer, "text/html");
    assert!(
        explorer.text.contains("/explorer/swagger-ui-bundle.js"),
        "{}",
        explorer.text
    );
    assert!(explorer.text.contains("/openapi.json"));

    let script = app.get_raw("/explorer/swagger-ui-bundle.js", None).await;
    assert_eq!(script.status, 200);
    let content_type = script.header("content-type").unwrap_or_default();
    assert!(
        content_type.starts_with("text/javascript")
            || content_type.starts_with("application/javascript"),
        "{content_type}"
    );
    assert!(script.text.len() > 100_000, "the bundle is served whole");

    let css = app.get_raw("/explorer/swagger-ui.css", None).await;
    assert_served_as(&css, "text/css");

    let home = app.get_raw("/", None).await;
    assert_served_as(&home, "text/html");
    assert!(home.text.contains("href=\"/explorer\""), "{}", home.text);
});

// ---------------------------------------------------------------------------------------------
// Start-up on new and existing databases
// ---------------------------------------------------------------------------------------------

both_dbs!(
    starts_on_an_empty_data_dir_and_again_on_it,
    |app| async move {
        if app.db == Db::Sqlite {
            let file = app.data_dir.join("tms.sqlite3");
            assert!(file.is_file(), "{} was created", file.display());
        }
        let (status, _) = app.get("/health/ready", None).await;
        assert_eq!(status, 200);

        let app = app.restart().await;
        let (status, body) = app.get("/health/ready", None).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["database"], app.db.name());
        let (status, _) = app.get("/ping", None).await;
        assert_eq!(status, 200);
    }
);

fn new_tenant(key: &str) -> Value {
    json!({
        "name": format!("Tenant {key}"),
        "key": key,
        "domains": [format!("{key}.example.com")],
        "contact": {
            "firstName": "Ada",
            "lastName": "Lovelace",
            "email": format!("ada@{key}.example.com"),
            "isPrimary": true
        }
    })
}

both_dbs!(rows_survive_a_restart, |app| async move {
    let token = app.admin_token();
    let (status, tenant) = app
        .post("/tenants", Some(&token), &new_tenant("restart"))
        .await;
    assert_eq!(status, 200, "{tenant}");
    let id = tenant["id"]
        .as_str()
        .expect("the created tenant has an id")
        .to_string();

    let app = app.restart().await;
    let token = app.admin_token();
    let (status, count) = app.get("/tenants/count", Some(&token)).await;
    assert_eq!(status, 200, "{count}");
    assert_eq!(count, json!({"count": 1}));
    let (status, again) = app.get(&format!("/tenants/{id}"), Some(&token)).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["key"], "restart");
});

// ---------------------------------------------------------------------------------------------
// Migrations
// ---------------------------------------------------------------------------------------------

type Columns = BTreeMap<String, BTreeSet<String>>;

fn migration_files(kind: &str) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(kind);
    std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "sql"))
        })
        .count()
}

/// The tables of the migrated database and their column names, `_sqlx_migrations` left out.
async fn columns(db: &tms::store::Db, schema: Option<&str>) -> Columns {
    let rows: Vec<(String, String)> = match db.pool() {
        tms::store::Pool::Sqlite(pool) => sqlx::query(
            "SELECT m.name AS table_name, p.name AS column_name \
             FROM sqlite_master m, pragma_table_info(m.name) p \
             WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%'",
        )
        .fetch_all(pool)
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get("table_name"), r.get("column_name")))
        .collect(),
        tms::store::Pool::Postgres(pool) => sqlx::query(
            "SELECT c.table_name::text AS table_name, c.column_name::text AS column_name \
             FROM information_schema.columns c \
             JOIN information_schema.tables t \
               ON t.table_schema = c.table_schema AND t.table_name = c.table_name \
             WHERE c.table_schema = $1 AND t.table_type = 'BASE TABLE'",
        )
        .bind(schema.expect("a PostgreSQL schema"))
        .fetch_all(pool)
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get("table_name"), r.get("column_name")))
        .collect(),
    };
    let mut out = Columns::new();
    for (table, column) in rows {
        if table == "_sqlx_migrations" {
            continue;
        }
        out.entry(table).or_default().insert(column);
    }
    out
}

async fn applied_migrations(db: &tms::store::Db) -> i64 {
    let sql = "SELECT count(*) FROM _sqlx_migrations WHERE success";
    match db.pool() {
        tms::store::Pool::Sqlite(pool) => sqlx::query_scalar(sql).fetch_one(pool).await.unwrap(),
        tms::store::Pool::Postgres(pool) => sqlx::query_scalar(sql).fetch_one(pool).await.unwrap(),
    }
}

/// Migrates a fresh database three times (twice on one pool, once more on a new pool, as a
/// restart would) and returns its tables; `None` when `kind` is unavailable.
async fn migrate_repeatedly(kind: Db, test: &str) -> Option<Columns> {
    let test_db = TestDb::connect(kind, test).await?;
    test_db.db.migrate().await.expect("first migration");
    let first = columns(&test_db.db, test_db.schema.as_deref()).await;
    test_db.db.migrate().await.expect("second migration");
    let again = test_db.reconnect().await;
    again.migrate().await.expect("migration on a new pool");
    let second = columns(&again, test_db.schema.as_deref()).await;
    assert_eq!(first, second, "migrating again changed the tables");
    let expected = migration_files(kind.name()) as i64;
    assert_eq!(applied_migrations(&again).await, expected);
    assert!(!first.is_empty());
    for table in [
        "addresses",
        "leads",
        "tenants",
        "contacts",
        "resources",
        "invoices",
        "tenant_mgmt_configs",
    ] {
        assert!(first.contains_key(table), "{table} missing: {first:?}");
    }
    again.close().await;
    test_db.close().await;
    Some(first)
}

#[tokio::test]
async fn migrations_are_idempotent_sqlite() {
    migrate_repeatedly(Db::Sqlite, "migrations_are_idempotent_sqlite").await;
}

#[tokio::test]
async fn migrations_are_idempotent_postgres() {
    migrate_repeatedly(Db::Postgres, "migrations_are_idempotent_postgres").await;
}

#[tokio::test]
async fn sqlite_and_postgres_have_the_same_tables_and_columns() {
    let test = "sqlite_and_postgres_have_the_same_tables_and_columns";
    let Some(postgres) = migrate_repeatedly(Db::Postgres, test).await else {
        return;
    };
    let mut sqlite = migrate_repeatedly(Db::Sqlite, test)
        .await
        .expect("SQLite is always available");
    // The one table of SQLite's own: the index of tenants' domains, which PostgreSQL keeps in
    // a GIN index on the array (migrations/*/0015_flat_reads.sql).
    assert_eq!(
        sqlite.remove("tenant_domains"),
        Some(["domain".to_string(), "tenant_id".to_string()].into())
    );
    assert_eq!(
        sqlite.keys().collect::<Vec<_>>(),
        postgres.keys().collect::<Vec<_>>(),
        "tables differ"
    );
    for (table, columns) in &sqlite {
        assert_eq!(columns, &postgres[table], "columns of {table} differ");
    }
}

// ---------------------------------------------------------------------------------------------
// The development JWT secret
// ---------------------------------------------------------------------------------------------

fn config_of(pairs: &[(&str, &str)]) -> tms::config::Config {
    tms::config::Config::from_map(
        &pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
    .unwrap()
}

#[test]
fn dev_secret_is_generated_once_and_kept_private() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("not-yet-created");
    let config = config_of(&[
        ("TMS_ENV", "dev"),
        ("TMS_DATA_DIR", data_dir.to_str().unwrap()),
    ]);
    assert!(config.jwt_secret.is_none());

    let first = tms::resolve_jwt_secret(&config).unwrap();
    assert!(first.generated_for_dev);
    assert!(first.secret.expose_secret().len() >= 32);
    let file = data_dir.join("jwt-secret");
    assert!(file.is_file(), "{} was written", file.display());
    assert_eq!(
        std::fs::read_to_string(&file).unwrap().trim(),
        first.secret.expose_secret()
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");
    }

    let second = tms::resolve_jwt_secret(&config).unwrap();
    assert!(second.generated_for_dev);
    assert_eq!(
        first.secret.expose_secret(),
        second.secret.expose_secret(),
        "the secret is kept across runs"
    );

    // A configured secret wins and nothing is written.
    let other_dir = dir.path().join("configured");
    let config = config_of(&[
        ("TMS_ENV", "dev"),
        ("TMS_DATA_DIR", other_dir.to_str().unwrap()),
        ("JWT_SECRET", "configured-secret-0123456789abcdef"),
    ]);
    let configured = tms::resolve_jwt_secret(&config).unwrap();
    assert!(!configured.generated_for_dev);
    assert_eq!(
        configured.secret.expose_secret(),
        "configured-secret-0123456789abcdef"
    );
    assert!(!other_dir.join("jwt-secret").exists());
}

#[tokio::test]
async fn development_start_up_message_gives_the_urls_and_a_token_on_the_terminal_only() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap();
    let (logs, _log_guard) = capture_logs();
    let app = tms::App::build(config_of(&[("TMS_DATA_DIR", data_dir), ("PORT", "0")]))
        .await
        .unwrap();
    // Development listens on loopback only.
    assert!(app.local_addr().ip().is_loopback(), "{}", app.local_addr());
    let url = format!("http://localhost:{}", app.port());

    let message = app
        .start_up_message(true)
        .unwrap()
        .expect("a start-up message in development");
    assert!(message.contains(&format!("on {url}\n")), "{message}");
    assert!(message.contains(&format!("{url}/explorer\n")), "{message}");
    let token = message
        .split_whitespace()
        .find(|word| word.starts_with("eyJ"))
        .unwrap_or_else(|| panic!("no token in {message}"));
    let secret = std::fs::read_to_string(dir.path().join("jwt-secret")).unwrap();
    let caller = JwtKeys::new(&SecretString::from(secret.trim().to_string()), "tms")
        .verify(token)
        .expect("the token is signed with the development secret");
    assert!(
        ALL_PERMISSIONS.iter().all(|code| caller.has(code)),
        "an admin token"
    );

    // Output that is not a terminal (a file, a pipe to a log collector) gets no token.
    let redirected = app.start_up_message(false).unwrap().unwrap();
    assert!(
        redirected.contains(&format!("{url}/explorer")),
        "{redirected}"
    );
    assert!(!redirected.contains("eyJ"), "{redirected}");
    assert!(redirected.contains("tms token"), "{redirected}");
    // Nor does the log.
    let logged = logs.text();
    assert!(
        !logged.contains("eyJ") && !logged.contains(token),
        "{logged}"
    );
    drop(app);

    // Test and prod print nothing: their output goes to logs.
    let dir = tempfile::tempdir().unwrap();
    let app = tms::App::build(config_of(&[
        ("TMS_ENV", "test"),
        ("HOST", "127.0.0.1"),
        ("PORT", "0"),
        ("TMS_DATA_DIR", dir.path().to_str().unwrap()),
    ]))
    .await
    .unwrap();
    assert!(app.start_up_message(true).unwrap().is_none());
    assert!(!logs.text().contains("eyJ"), "{}", logs.text());
}

#[tokio::test]
async fn dev_server_accepts_tokens_signed_with_its_generated_secret() {
    let app = TestApp::spawn_with(Db::Sqlite, &[("TMS_ENV", "dev"), ("JWT_SECRET", "")]).await;
    let secret = std::fs::read_to_string(app.data_dir.join("jwt-secret"))
        .expect("the dev secret was written to the data dir");
    let keys = JwtKeys::new(&SecretString::from(secret.trim().to_string()), JWT_ISSUER);
    let token = keys.mint(TEST_USER_ID, vec!["10207".into()], 60).unwrap();
    let (status, body) = app.get(PROBE, Some(&token)).await;
    assert_eq!(status, 200, "{body}");
    // The harness's fixed secret is not the one in force.
    let response = app.get_raw(PROBE, Some(&app.token(&["10207"]))).await;
    response.assert_error(401, "UnauthorizedError");
}

// ---------------------------------------------------------------------------------------------
// Graceful shutdown
// ---------------------------------------------------------------------------------------------

both_dbs!(
    shutdown_stops_the_server_and_frees_the_port,
    |app| async move {
        let (status, _) = app.get("/ping", None).await;
        assert_eq!(status, 200);
        let addr = app.addr;
        tokio::time::timeout(Duration::from_secs(10), app.stop())
            .await
            .expect("the server stops promptly")
            .expect("run_until_stopped returns Ok");
        assert!(
            tokio::net::TcpStream::connect(addr).await.is_err(),
            "the port no longer accepts connections"
        );
    }
);

/// Splits what a connection received into complete HTTP/1.1 responses (status line and body
/// length each); panics on a truncated response.
fn complete_responses(mut bytes: &[u8]) -> Vec<(String, usize)> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let end = bytes
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("truncated response head after {} responses", out.len()));
        let head = String::from_utf8_lossy(&bytes[..end]).into_owned();
        let length: usize = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().parse().unwrap())
            })
            .unwrap_or_else(|| panic!("no content-length in {head}"));
        let rest = &bytes[end + 4..];
        assert!(
            rest.len() >= length,
            "response {} truncated: {} of {length} body bytes",
            out.len() + 1,
            rest.len()
        );
        out.push((head.lines().next().unwrap_or_default().to_string(), length));
        bytes = &rest[length..];
    }
    out
}

/// Reads until the peer closes the connection (or 20 s pass).
async fn read_to_close(stream: &mut tokio::net::TcpStream) -> Vec<u8> {
    let mut received = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut received))
        .await
        .expect("the server closes the connection once it is done")
        .expect("the connection is not reset");
    received
}

/// Fires the shutdown signal while `in_flight` (a request or response) is not done yet, and
/// checks that the server is still running a moment later.
async fn signal_shutdown_during(app: &mut TestApp, in_flight: &str) {
    app.signal_shutdown();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !app.server_finished(),
        "the server stopped while {in_flight}"
    );
}

/// Waits (at most 10 s) for the server to stop once `what` is done; it must stop cleanly.
async fn assert_stops_once_done(app: &mut TestApp, what: &str) {
    tokio::time::timeout(Duration::from_secs(10), app.wait_stopped())
        .await
        .unwrap_or_else(|_| panic!("the server stops once the {what} is done"))
        .expect("run_until_stopped returns Ok");
}

both_dbs!(
    shutdown_lets_in_flight_responses_finish,
    |mut app| async move {
        // Several large responses, pipelined on one connection and not read: more than the
        // kernel buffers hold, so the server is still writing when the signal fires.
        let bundle_len = std::fs::metadata(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/explorer/swagger-ui-bundle.js"),
        )
        .unwrap()
        .len() as usize;
        let requests = 6;
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let mut stream = socket.connect(app.addr).await.unwrap();
        let request = b"GET /explorer/swagger-ui-bundle.js HTTP/1.1\r\nHost: localhost\r\n\r\n";
        stream.write_all(&request.repeat(requests)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;

        signal_shutdown_during(&mut app, "a response was still being written").await;

        let responses = complete_responses(&read_to_close(&mut stream).await);
        assert!(!responses.is_empty(), "the in-flight response was sent");
        assert!(responses.len() <= requests);
        for (status, length) in &responses {
            assert_eq!(status, "HTTP/1.1 200 OK");
            assert_eq!(*length, bundle_len);
        }
        assert_stops_once_done(&mut app, "response").await;
        assert!(tokio::net::TcpStream::connect(app.addr).await.is_err());
    }
);

both_dbs!(
    shutdown_lets_an_in_flight_request_finish,
    |mut app| async move {
        // A request whose body is still arriving when the signal fires.
        let body = new_tenant("inflight").to_string();
        let (first, second) = body.as_bytes().split_at(body.len() / 2);
        let mut stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
        let head = format!(
            "POST /tenants HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            app.admin_token(),
            body.len()
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(first).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;

        signal_shutdown_during(&mut app, "a request was still arriving").await;

        stream.write_all(second).await.unwrap();
        let received = read_to_close(&mut stream).await;
        let responses = complete_responses(&received);
        assert_eq!(responses.len(), 1, "{}", String::from_utf8_lossy(&received));
        assert_eq!(
            responses[0].0,
            "HTTP/1.1 200 OK",
            "{}",
            String::from_utf8_lossy(&received)
        );
        assert_stops_once_done(&mut app, "request").await;

        // The tenant was written: a restart on the same database sees it.
        let app = app.restart().await;
        let (status, count) = app.get("/tenants/count", Some(&app.admin_token())).await;
        assert_eq!(status, 200, "{count}");
        assert_eq!(count, json!({"count": 1}));
    }
);
