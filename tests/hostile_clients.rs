//! Clients that hold connections: a head that never completes (sent in part, or dribbled byte by
//! byte), a keep-alive connection that stays idle, a connection that says nothing at all — each
//! is closed by its deadline — and a shutdown that does not wait for them beyond its own. And
//! clients answered before their request body was read: their connection is kept, or closed
//! only after an answer that says so and that they can read whole.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Deadlines short enough for a test: a head must arrive within 0.5 s of its first byte, an idle
/// connection lives 1.5 s, a write may stall 1 s, a shutdown waits 1 s for requests in flight.
const LIMITS: [(&str, &str); 4] = [
    ("HTTP_HEADER_TIMEOUT", "500"),
    ("HTTP_IDLE_TIMEOUT", "1500"),
    ("HTTP_WRITE_TIMEOUT", "1000"),
    ("SHUTDOWN_TIMEOUT", "1000"),
];

/// Waits until the server closes `stream` (end of file or reset) and returns how long that took
/// from `since`; panics after 10 s.
async fn closed_after(stream: &mut TcpStream, since: Instant) -> Duration {
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf)).await {
            Err(_) => panic!("the connection is still open after 10 s"),
            Ok(Ok(0) | Err(_)) => return since.elapsed(),
            Ok(Ok(_)) => {}
        }
    }
}

/// Reads one `Content-Length`-framed response from `stream` and returns its status line.
async fn read_response(stream: &mut TcpStream) -> String {
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).await.expect("a response");
        assert!(n > 0, "closed before a whole response");
        received.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&received).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let length: usize = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .expect("content-length");
            if received.len() >= end + 4 + length {
                return text.lines().next().unwrap_or_default().to_string();
            }
        }
    }
}

#[tokio::test]
async fn half_sent_and_dribbled_heads_are_cut_off() {
    let app = TestApp::spawn_with(Db::Sqlite, &LIMITS).await;
    let start = Instant::now();
    // Twenty connections that stop in the middle of a header.
    let mut half_sent = Vec::new();
    for _ in 0..20 {
        let mut stream = TcpStream::connect(app.addr).await.unwrap();
        stream
            .write_all(b"GET /ping HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
            .await
            .unwrap();
        half_sent.push(stream);
    }
    // One that sends a byte every 100 ms, for ever.
    let mut dribbler = TcpStream::connect(app.addr).await.unwrap();
    let dribbled = tokio::spawn({
        let head = b"GET /ping HTTP/1.1\r\nHost: localhost\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".to_vec();
        async move {
            let started = Instant::now();
            for byte in head {
                if dribbler.write_all(&[byte]).await.is_err() {
                    return started.elapsed();
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            panic!("the dribbled head was never cut off");
        }
    });
    // Meanwhile a well-behaved client is served.
    let (status, _) = app.get("/ping", None).await;
    assert_eq!(status, 200);

    for stream in &mut half_sent {
        let after = closed_after(stream, start).await;
        assert!(
            after < Duration::from_secs(3),
            "a half-sent head was held for {after:?}"
        );
    }
    let after = dribbled.await.unwrap();
    assert!(
        after < Duration::from_secs(3),
        "the dribbling client was held for {after:?}"
    );
}

#[tokio::test]
async fn idle_and_silent_connections_are_closed() {
    let app = TestApp::spawn_with(Db::Sqlite, &LIMITS).await;
    // A keep-alive connection that made one request and then idles.
    let mut idle = TcpStream::connect(app.addr).await.unwrap();
    idle.write_all(b"GET /ping HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(read_response(&mut idle).await, "HTTP/1.1 200 OK");
    let answered = Instant::now();
    // A connection that never says anything.
    let mut silent = TcpStream::connect(app.addr).await.unwrap();
    let opened = Instant::now();

    let after = closed_after(&mut idle, answered).await;
    assert!(
        after >= Duration::from_millis(1000) && after < Duration::from_secs(5),
        "the idle keep-alive connection lived {after:?} (idle timeout 1.5 s)"
    );
    let after = closed_after(&mut silent, opened).await;
    assert!(
        after >= Duration::from_millis(1000) && after < Duration::from_secs(5),
        "the silent connection lived {after:?} (idle timeout 1.5 s)"
    );

    // A keep-alive connection in use is not cut between requests that come in time.
    let mut busy = TcpStream::connect(app.addr).await.unwrap();
    for _ in 0..4 {
        busy.write_all(b"GET /ping HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .unwrap();
        assert_eq!(read_response(&mut busy).await, "HTTP/1.1 200 OK");
        tokio::time::sleep(Duration::from_millis(600)).await;
    }
}

/// A request whose head came in time is not cut off while its body arrives slowly (longer than
/// the head deadline), on a new connection and on a kept-alive one.
#[tokio::test]
async fn a_slow_body_after_a_complete_head_is_served() {
    let app = TestApp::spawn_with(Db::Sqlite, &LIMITS).await;
    let body = json!({"firstName": "Ada", "lastName": "Lovelace", "email": "ada@slow.io",
                      "companyName": "Slow"})
    .to_string();
    let request_head = format!(
        "POST /leads HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    );
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    for round in 0..2 {
        stream.write_all(request_head.as_bytes()).await.unwrap();
        // The body, in four parts over 1.2 s (more than twice the head deadline).
        for part in body.as_bytes().chunks(body.len().div_ceil(4)) {
            tokio::time::sleep(Duration::from_millis(300)).await;
            stream.write_all(part).await.unwrap();
        }
        let status = read_response(&mut stream).await;
        assert!(
            status == "HTTP/1.1 200 OK" || status.starts_with("HTTP/1.1 409"),
            "round {round}: {status}"
        );
    }
}

/// A client that stops reading a large response is cut off once writing has made no progress for
/// the write deadline; the server does not hold the connection (and the response) for ever.
#[tokio::test]
async fn a_client_that_stops_reading_is_cut_off() {
    let app = TestApp::spawn_with(Db::Sqlite, &LIMITS).await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(app.addr).await.unwrap();
    // Six large responses, pipelined: more than the kernel's buffers hold.
    let requests = 6;
    stream
        .write_all(
            &b"GET /explorer/swagger-ui-bundle.js HTTP/1.1\r\nHost: localhost\r\n\r\n"
                .repeat(requests),
        )
        .await
        .unwrap();
    // Read nothing for three seconds: the server's writes stall, and its deadline (1 s) passes.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut received = Vec::new();
    let read =
        tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut received)).await;
    let length = std::fs::metadata(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("assets/explorer/swagger-ui-bundle.js"),
    )
    .unwrap()
    .len() as usize;
    assert!(read.is_ok(), "the connection is closed, not held");
    assert!(
        received.len() < requests * length,
        "the server gave up before sending everything ({} of {} bytes)",
        received.len(),
        requests * length
    );
}

// ---------------------------------------------------------------------------------------------
// Answers given before the request body was read
// ---------------------------------------------------------------------------------------------

/// A small tenant, the body of the requests answered before it is read.
const SMALL_BODY: &str = r#"{"name":"Acme","key":"acme"}"#;

/// A JSON body of about 300 KB: more than the server drains of a body it did not read, less than
/// the body limit.
fn large_body() -> String {
    format!(r#"{{"name":"{}"}}"#, "x".repeat(300 * 1024))
}

/// A client with at most one pooled HTTP/1.1 connection, so every request reuses the one before.
fn pooled_client() -> reqwest::Client {
    reqwest::Client::builder()
        .http1_only()
        .pool_max_idle_per_host(1)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// One whole response read from a raw connection.
struct RawResponse {
    status: String,
    /// The header lines, lower-cased.
    headers: Vec<String>,
    body: Vec<u8>,
}

impl RawResponse {
    fn closes(&self) -> bool {
        self.headers
            .iter()
            .any(|h| h.starts_with("connection:") && h.contains("close"))
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// Parses one `Content-Length`-framed response at the start of `received`, if it is all there.
fn parse_response(received: &[u8]) -> Option<RawResponse> {
    let end = received.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&received[..end]).to_string();
    let mut lines = head.lines();
    let status = lines.next().unwrap_or_default().to_string();
    let headers: Vec<String> = lines.map(str::to_ascii_lowercase).collect();
    let length: usize = headers
        .iter()
        .find_map(|l| {
            l.strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .expect("content-length");
    let body = received.get(end + 4..end + 4 + length)?.to_vec();
    Some(RawResponse {
        status,
        headers,
        body,
    })
}

/// Reads one whole response from `stream` (nothing after it).
async fn read_raw_response(stream: &mut TcpStream) -> RawResponse {
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(response) = parse_response(&received) {
            return response;
        }
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .expect("a response within 10 s")
            .expect("a response, not an error");
        assert!(n > 0, "closed before a whole response");
        received.extend_from_slice(&buf[..n]);
    }
}

/// A proxy to `target` that passes each request head and what follows it on in two writes, a
/// moment apart, as clients do that send a head and its body with two calls (Python's
/// `http.client`, for one). Answers pass through as they come; the server's end of the
/// connection reaches the client a moment after the last answer, as it can over a network,
/// where a client may send its next request in between. Returns its address.
async fn split_proxy(target: SocketAddr) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(upstream) = TcpStream::connect(target).await else {
                    return;
                };
                let _ = (client.set_nodelay(true), upstream.set_nodelay(true));
                let (mut from_client, mut to_client) = client.into_split();
                let (mut from_server, mut to_server) = upstream.into_split();
                let requests = async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    while let Ok(n @ 1..) = from_client.read(&mut buf).await {
                        let data = &buf[..n];
                        let split = data
                            .windows(4)
                            .position(|w| w == b"\r\n\r\n")
                            .map_or(n, |end| end + 4);
                        if to_server.write_all(&data[..split]).await.is_err() {
                            break;
                        }
                        if split < n {
                            tokio::time::sleep(Duration::from_millis(1)).await;
                            if to_server.write_all(&data[split..]).await.is_err() {
                                break;
                            }
                        }
                    }
                    let _ = to_server.shutdown().await;
                };
                let answers = async move {
                    let _ = tokio::io::copy(&mut from_server, &mut to_client).await;
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    let _ = to_client.shutdown().await;
                };
                tokio::join!(requests, answers);
            });
        }
    });
    addr
}

/// A pooled client alternates a request answered before its body is read (401: the token is
/// checked first) and `GET /ping`, on one kept-alive connection, with each body sent apart from
/// its head: no request finds that connection closed under it.
#[tokio::test]
async fn a_pooled_connection_outlives_answers_given_before_the_body() {
    let app = TestApp::spawn_with(Db::Sqlite, &LIMITS).await;
    let base = format!("http://{}", split_proxy(app.addr).await);
    let client = pooled_client();
    let started = Instant::now();
    let (mut requests, mut failures) = (0, Vec::new());
    while requests < 4000 && started.elapsed() < Duration::from_secs(4) {
        let refused = client
            .post(format!("{base}/tenants"))
            .bearer_auth("not-a-token")
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(SMALL_BODY);
        let ping = client.get(format!("{base}/ping"));
        for (request, expected) in [(refused, 401), (ping, 200)] {
            requests += 1;
            match request.send().await {
                Ok(response) => {
                    let response = TestResponse::read(response).await;
                    assert_eq!(response.status, expected, "{}", response.text);
                }
                Err(err) => failures.push(format!("{err:?}")),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {requests} requests failed, first: {}",
        failures.len(),
        failures[0]
    );
}

/// A request answered before its body has arrived (the body follows the head after a pause)
/// keeps its connection: the answer does not say `Connection: close`, and the connection serves
/// the next request, even after a pause longer than the head deadline.
#[tokio::test]
async fn an_answer_before_a_late_body_keeps_the_connection() {
    let app = TestApp::spawn_with(Db::Sqlite, &LIMITS).await;
    let head = format!(
        "POST /tenants HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer not-a-token\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        SMALL_BODY.len()
    );
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    for round in 0..3 {
        stream.write_all(head.as_bytes()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        stream.write_all(SMALL_BODY.as_bytes()).await.unwrap();
        let response = read_raw_response(&mut stream).await;
        assert!(
            response.status.starts_with("HTTP/1.1 401"),
            "round {round}: {}",
            response.status
        );
        assert!(!response.closes(), "round {round}: {:?}", response.headers);
        assert_loopback_error(&response.json(), 401, "UnauthorizedError");
        // Idle for longer than the head deadline (0.5 s), less than the idle deadline (1.5 s).
        tokio::time::sleep(Duration::from_millis(800)).await;
        stream
            .write_all(b"GET /ping HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .unwrap();
        let response = read_raw_response(&mut stream).await;
        assert_eq!(response.status, "HTTP/1.1 200 OK", "round {round}");
    }
}

/// The server of the large-body tests: [`LIMITS`], and a body limit (100 KB) below the large
/// body.
async fn spawn_with_a_small_body_limit() -> TestApp {
    let mut overrides = LIMITS.to_vec();
    overrides.push(("REQUEST_BODY_LIMIT", "102400"));
    TestApp::spawn_with(Db::Sqlite, &overrides).await
}

/// The requests of the large-body tests, to `/tenants`, each with its status and error name: a
/// 401 (no valid token) and a 405 (a method the guarded route does not have, asked with a valid
/// token), both answered before the body is read, and a 413 (over the body limit), answered
/// with most of the body unread.
fn answered_before_the_body(app: &TestApp) -> [(Method, String, u16, &'static str); 3] {
    let bad_token = "not-a-token".to_string();
    [
        (Method::POST, bad_token, 401, "UnauthorizedError"),
        (Method::PUT, app.admin_token(), 405, "MethodNotAllowedError"),
        (Method::POST, app.admin_token(), 413, "PayloadTooLargeError"),
    ]
}

/// A body that does not come (its head promises more than is sent) holds the answer back for
/// a short while only: the answer then says `Connection: close`, and the connection is closed.
#[tokio::test]
async fn a_body_that_does_not_come_gets_the_answer_and_a_close() {
    let app = TestApp::spawn_with(Db::Sqlite, &LIMITS).await;
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    stream
        .write_all(
            b"POST /tenants HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer not-a-token\r\n\
              Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"name\":",
        )
        .await
        .unwrap();
    let sent = Instant::now();
    let response = read_raw_response(&mut stream).await;
    assert!(
        response.status.starts_with("HTTP/1.1 401"),
        "{}",
        response.status
    );
    assert!(response.closes(), "{:?}", response.headers);
    assert_loopback_error(&response.json(), 401, "UnauthorizedError");
    closed_after(&mut stream, sent).await;
}

/// A large body answered before it is read: the client gets the answer (not a broken pipe), and
/// its next request works.
#[tokio::test]
async fn a_large_body_answered_early_gets_its_answer() {
    let app = spawn_with_a_small_body_limit().await;
    let base = format!("http://{}", split_proxy(app.addr).await);
    let client = pooled_client();
    let body = large_body();
    for (method, token, status, name) in answered_before_the_body(&app) {
        for round in 0..3 {
            let response = client
                .request(method.clone(), format!("{base}/tenants"))
                .bearer_auth(&token)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone())
                .send()
                .await
                .unwrap_or_else(|err| panic!("{method} round {round}: {err:?}"));
            TestResponse::read(response)
                .await
                .assert_error(status, name);
            let ping = client
                .get(format!("{base}/ping"))
                .send()
                .await
                .unwrap_or_else(|err| panic!("ping after {method} round {round}: {err:?}"));
            assert_eq!(ping.status(), 200);
        }
    }
}

/// A client still sending a large body when the answer comes reads the whole answer, which says
/// `Connection: close`; the server reads (and discards) the rest of the body before closing, so
/// the client's writes do not fail and its connection ends cleanly rather than with a reset.
#[tokio::test]
async fn a_client_still_sending_a_large_body_reads_the_answer() {
    let app = spawn_with_a_small_body_limit().await;
    let body = large_body();
    for (method, token, status, name) in answered_before_the_body(&app) {
        let stream = TcpStream::connect(app.addr).await.unwrap();
        let (mut reader, mut writer) = stream.into_split();
        let request = format!(
            "{method} /tenants HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let sent = tokio::spawn(async move {
            // In parts, with pauses, as over a slower link: the answer comes while it sends.
            for part in request.as_bytes().chunks(32 * 1024) {
                writer.write_all(part).await?;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            writer.shutdown().await
        });
        let mut received = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), reader.read_to_end(&mut received))
            .await
            .expect("the server ends the connection");
        let sent = sent.await.unwrap();
        assert!(
            read.is_ok(),
            "{method}: reading the answer failed: {read:?}"
        );
        assert!(sent.is_ok(), "{method}: sending the body failed: {sent:?}");
        let response = parse_response(&received).expect("a whole answer");
        assert!(
            response.status.starts_with(&format!("HTTP/1.1 {status}")),
            "{}",
            response.status
        );
        assert!(response.closes(), "{method}: {:?}", response.headers);
        assert_loopback_error(&response.json(), status, name);
    }
    let (status, _) = app.get("/ping", None).await;
    assert_eq!(status, 200);
}

/// Signals a shutdown and requires the server to stop well within a few seconds
/// (`SHUTDOWN_TIMEOUT` of [`LIMITS`] is 1 s).
async fn shut_down_within_its_deadline(app: &mut TestApp) {
    let signalled = Instant::now();
    app.signal_shutdown();
    tokio::time::timeout(Duration::from_secs(10), app.wait_stopped())
        .await
        .expect("the shutdown is bounded")
        .expect("run_until_stopped returns Ok");
    let took = signalled.elapsed();
    assert!(
        took < Duration::from_secs(4),
        "the shutdown took {took:?} (SHUTDOWN_TIMEOUT 1 s)"
    );
}

#[tokio::test]
async fn a_shutdown_does_not_wait_for_stuck_clients() {
    let mut app = TestApp::spawn_with(Db::Sqlite, &LIMITS).await;
    // Connections in every state: idle, half-sent head, and a request whose body never comes.
    let idle = TcpStream::connect(app.addr).await.unwrap();
    let mut half = TcpStream::connect(app.addr).await.unwrap();
    half.write_all(b"GET /ping HTTP/1.1\r\nHost: lo")
        .await
        .unwrap();
    let mut stuck = TcpStream::connect(app.addr).await.unwrap();
    let head = format!(
        "POST /tenants HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"name\":",
        app.admin_token()
    );
    stuck.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    shut_down_within_its_deadline(&mut app).await;
    assert!(TcpStream::connect(app.addr).await.is_err());
    drop((idle, half, stuck));
}

// ---------------------------------------------------------------------------------------------
// Memory under maximal lists
// ---------------------------------------------------------------------------------------------

/// `VmRSS` or `VmHWM` of process `pid`, in kB.
fn memory_kb(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// Fills a migrated SQLite database with `tenants` tenants, each with an address and five
/// contacts, in one transaction.
async fn fill(file: &std::path::Path, tenants: usize) {
    use sqlx::Connection;
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", file.display()))
        .await
        .unwrap();
    let mut tx = conn.begin().await.unwrap();
    let now = "2026-11-30T00:00:00.000Z";
    for t in 0..tenants {
        let tenant = uuid::Uuid::new_v4().to_string();
        let address = uuid::Uuid::new_v4().to_string();
        sqlx::query(
            "INSERT INTO addresses (id, address, city, state, zip, country, created_on, modified_on) \
             VALUES (?1, '12 Long Street, Building 7', 'Springfield', 'Oregon', '97477', 'USA', ?2, ?2)",
        )
        .bind(&address)
        .bind(now)
        .execute(&mut *tx)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO tenants (id, name, status, key, domains, address_id, created_on, modified_on, \
             created_by, modified_by) VALUES (?1, ?2, 1, ?3, ?4, ?5, ?6, ?6, 'seed', 'seed')",
        )
        .bind(&tenant)
        .bind(format!("Tenant number {t} Incorporated"))
        .bind(format!("t{t}"))
        .bind(format!("[\"t{t}.example.com\",\"www.t{t}.example.com\"]"))
        .bind(&address)
        .bind(now)
        .execute(&mut *tx)
        .await
        .unwrap();
        for c in 0..5 {
            sqlx::query(
                "INSERT INTO contacts (id, first_name, last_name, email, is_primary, contact_type, tenant_id, \
                 created_on, modified_on, created_by, modified_by) \
                 VALUES (?1, 'Firstname', 'Lastname-of-the-contact', ?2, ?3, 'admin', ?4, ?5, ?5, 'seed', 'seed')",
            )
            .bind(uuid::Uuid::new_v4().to_string())
            .bind(format!("contact{c}@t{t}.example.com"))
            .bind(c == 0)
            .bind(&tenant)
            .bind(now)
            .execute(&mut *tx)
            .await
            .unwrap();
        }
    }
    tx.commit().await.unwrap();
    conn.close().await.unwrap();
}

/// Eight lists at once, each asking for every tenant with its contacts and address and no
/// limit, three times over: each answers `MAX_LIST_LIMIT` (1000) tenants, and afterwards the
/// server's resident memory is back close to where it was (the binary's allocator returns freed
/// memory; the peak is reported).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maximal_lists_leave_memory_where_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().display().to_string();
    let port = SmtpSink::free_port().to_string();
    let env: Vec<(&str, &str)> = vec![
        ("TMS_ENV", "test"),
        ("TMS_DATA_DIR", &data_dir),
        ("HOST", "127.0.0.1"),
        ("PORT", &port),
        ("JWT_SECRET", JWT_SECRET),
        ("JWT_ISSUER", JWT_ISSUER),
        ("LOG_LEVEL", "warn"),
    ];
    let migrated = std::process::Command::new(env!("CARGO_BIN_EXE_tms"))
        .arg("migrate")
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(migrated.status.success(), "{migrated:?}");
    fill(&dir.path().join("tms.sqlite3"), 1200).await;

    let mut server = std::process::Command::new(env!("CARGO_BIN_EXE_tms"))
        .arg("serve")
        .env_clear()
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = server.id();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while client.get(format!("{base}/ping")).send().await.is_err() {
        assert!(Instant::now() < deadline, "the server did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let token = tms::auth::JwtKeys::new(
        &secrecy::SecretString::from(JWT_SECRET.to_string()),
        JWT_ISSUER,
    )
    .mint("memory-test", vec!["10207".into()], 600)
    .unwrap();
    let list = format!("{base}/tenants?filter[include][0]=contacts&filter[include][1]=address");
    let fetch = || {
        let (client, list, token) = (client.clone(), list.clone(), token.clone());
        async move {
            let response = client.get(&list).bearer_auth(&token).send().await.unwrap();
            assert_eq!(response.status(), 200);
            let rows: Vec<Value> = response.json().await.unwrap();
            assert_eq!(rows.len(), 1000, "a list answers MAX_LIST_LIMIT rows");
            assert_eq!(rows[0]["contacts"].as_array().map(Vec::len), Some(5));
            assert!(rows[0]["address"].is_object());
        }
    };
    let burst = || futures_util::future::join_all((0..8).map(|_| fetch()));
    // Freed memory goes back about a second after it was freed (jemalloc's decay).
    let settled = |limit_kb: u64| async move {
        let mut rss = memory_kb(pid, "VmRSS:");
        for _ in 0..50 {
            if rss <= limit_kb {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            rss = memory_kb(pid, "VmRSS:");
        }
        rss
    };
    fetch().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = memory_kb(pid, "VmRSS:");
    // A first burst opens every pooled connection; what those keep (SQLite's page cache of
    // 2 MB each, prepared statements) is bounded by DB_POOL_SIZE and stays.
    burst().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = memory_kb(pid, "VmRSS:");
    for _ in 0..3 {
        burst().await;
    }
    let peak = memory_kb(pid, "VmHWM:");
    let after = settled(before + 12 * 1024).await;
    let _ = server.kill();
    let _ = server.wait();
    eprintln!(
        "RSS idle {idle} kB, after a first burst {before} kB, peak {peak} kB, after three more {after} kB"
    );
    assert!(
        peak > before + 64 * 1024,
        "the lists should have used memory: before {before} kB, peak {peak} kB"
    );
    assert!(
        after <= before + 12 * 1024,
        "RSS stayed up: before {before} kB, peak {peak} kB, after {after} kB"
    );
    assert!(
        before <= idle + 48 * 1024,
        "the pool's first burst kept more than its caches: idle {idle} kB, after {before} kB"
    );
}

/// A shutdown does not wait for a background delivery stuck on a mail server that never
/// answers: the whole shutdown fits in SHUTDOWN_TIMEOUT (the mail stays queued for later).
#[tokio::test]
async fn a_shutdown_does_not_wait_for_a_stuck_mail_server() {
    // Accepts connections and never says a word.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let smtp = format!(
        "smtp://127.0.0.1:{}?tls=none",
        silent.local_addr().unwrap().port()
    );
    let held = tokio::spawn(async move {
        let mut connections = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            connections.push(stream);
        }
    });
    let mut overrides = LIMITS.to_vec();
    overrides.push(("SMTP_URL", &smtp));
    let mut app = TestApp::spawn_with(Db::Sqlite, &overrides).await;
    let (status, body) = app
        .post(
            "/leads",
            None,
            &json!({"firstName": "Ada", "lastName": "Lovelace", "email": "ada@stuck.io",
                    "companyName": "Stuck"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // Let the relay pick the mail up and hang on the silent server.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    shut_down_within_its_deadline(&mut app).await;
    held.abort();
}
