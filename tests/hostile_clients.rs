//! Clients that hold connections: a head that never completes (sent in part, or dribbled byte by
//! byte), a keep-alive connection that stays idle, a connection that says nothing at all — each
//! is closed by its deadline — and a shutdown that does not wait for them beyond its own.

mod common;

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
