//! The transactional outbox and mail, on SQLite and PostgreSQL: enqueue commits or rolls back
//! with the caller's transaction, the relay delivers once, retries with backoff (driven with an
//! injected clock, never by sleeping), never lets two relays claim the same row, re-claims
//! expired leases; mail arrives at a real SMTP server (Python's `aiosmtpd`, started per test)
//! and, without SMTP, as `.eml` files.

mod common;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use mailparse::{MailHeaderMap, ParsedMail};
use tokio::sync::Notify;
use uuid::Uuid;

use common::{Db as Kind, SmtpSink, TestDb, Value, capture_logs, json, run_on_db};
use tms::config::Config;
use tms::events::{self as outbox, Deliver, Step};
use tms::mail::{self, Mailer, Template};
use tms::store::Conn;

const TOPIC: &str = "event";
const LEASE: Duration = Duration::from_secs(60);

/// A handler that records what it delivers and fails its first `failures` calls.
#[derive(Default)]
struct Recorder {
    failures: AtomicU32,
    delivered: Mutex<Vec<(Uuid, Value)>>,
    notify: Notify,
}

impl Recorder {
    fn failing(failures: u32) -> Self {
        Self {
            failures: AtomicU32::new(failures),
            ..Self::default()
        }
    }

    fn delivered(&self) -> Vec<(Uuid, Value)> {
        self.delivered.lock().unwrap().clone()
    }
}

impl Deliver for Recorder {
    async fn deliver(&self, id: Uuid, payload: &Value) -> anyhow::Result<()> {
        // Let other relay steps run in between claim and completion.
        tokio::task::yield_now().await;
        let failing = self
            .failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if failing {
            anyhow::bail!("sink unavailable");
        }
        self.delivered.lock().unwrap().push((id, payload.clone()));
        self.notify.notify_waiters();
        Ok(())
    }
}

fn now() -> DateTime<Utc> {
    DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).unwrap()
}

fn secs(s: f64) -> chrono::Duration {
    chrono::Duration::milliseconds((s * 1000.0) as i64)
}

async fn entry(db: &tms::store::Db, id: Uuid) -> outbox::Entry {
    outbox::get(&mut db.conn(), id)
        .await
        .unwrap()
        .expect("the outbox row")
}

async fn enqueue_committed(db: &tms::store::Db, payload: Value) -> Uuid {
    let mut tx = db.begin().await.unwrap();
    let id = outbox::enqueue(&mut tx.conn(), TOPIC, None, &payload)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    id
}

// ---------------------------------------------------------------------------------------------
// The outbox
// ---------------------------------------------------------------------------------------------

async fn enqueue_follows_the_transaction_body(t: TestDb) -> TestDb {
    let db = &t.db;
    let mut tx = db.begin().await.unwrap();
    let id = outbox::enqueue(&mut tx.conn(), TOPIC, None, &json!({"n": 1}))
        .await
        .unwrap();
    assert!(
        outbox::get(&mut tx.conn(), id).await.unwrap().is_some(),
        "visible inside the transaction"
    );
    drop(tx); // rolls back
    assert!(outbox::get(&mut db.conn(), id).await.unwrap().is_none());
    assert_eq!(outbox::pending(&mut db.conn(), TOPIC).await.unwrap(), 0);
    let handler = Recorder::default();
    let later = now() + secs(86_400.0);
    let step = outbox::relay_step(db, TOPIC, &handler, later, LEASE)
        .await
        .unwrap();
    assert_eq!(step, Step::Empty);
    assert!(handler.delivered().is_empty());

    let committed = enqueue_committed(db, json!({"n": 2})).await;
    assert_eq!(outbox::pending(&mut db.conn(), TOPIC).await.unwrap(), 1);
    let e = entry(db, committed).await;
    assert_eq!(e.topic, TOPIC);
    assert_eq!(e.payload, json!({"n": 2}));
    assert_eq!(e.attempts, 0);
    assert!(e.delivered_at.is_none() && e.locked_until.is_none() && e.last_error.is_none());
    assert_eq!(e.next_attempt_at, e.created_on);
    t
}
both_stores!(
    enqueue_follows_the_transaction,
    enqueue_follows_the_transaction_body
);

async fn relay_delivers_once_body(t: TestDb) -> TestDb {
    let db = &t.db;
    let payload = json!({"type": "TENANT_PROVISIONING", "tenant": {"key": "acme"}});
    let id = enqueue_committed(db, payload.clone()).await;
    // A row of another topic is not this relay's business.
    let other = outbox::enqueue(&mut db.conn(), mail::TOPIC, None, &json!({"x": 1}))
        .await
        .unwrap();
    let handler = Recorder::default();
    let t0 = now();
    let step = outbox::relay_step(db, TOPIC, &handler, t0, LEASE)
        .await
        .unwrap();
    assert_eq!(step, Step::Delivered(id));
    assert_eq!(handler.delivered(), vec![(id, payload)]);
    let e = entry(db, id).await;
    assert_eq!(e.delivered_at, Some(t0));
    assert_eq!(e.attempts, 1);
    assert!(e.locked_until.is_none() && e.last_error.is_none());
    for at in [t0, t0 + secs(3600.0), t0 + secs(30.0 * 86_400.0)] {
        let step = outbox::relay_step(db, TOPIC, &handler, at, LEASE)
            .await
            .unwrap();
        assert_eq!(step, Step::Empty);
    }
    assert_eq!(handler.delivered().len(), 1);
    assert_eq!(outbox::pending(&mut db.conn(), TOPIC).await.unwrap(), 0);
    assert_eq!(
        outbox::pending(&mut db.conn(), mail::TOPIC).await.unwrap(),
        1
    );
    assert!(entry(db, other).await.delivered_at.is_none());

    // Retention: delivered rows can be pruned, pending ones stay.
    let pruned = outbox::prune_delivered(&mut db.conn(), t0 + secs(1.0))
        .await
        .unwrap();
    assert_eq!(pruned, 1);
    assert!(outbox::get(&mut db.conn(), id).await.unwrap().is_none());
    assert!(outbox::get(&mut db.conn(), other).await.unwrap().is_some());
    t
}
both_stores!(relay_delivers_once, relay_delivers_once_body);

async fn failures_are_retried_with_backoff_body(t: TestDb) -> TestDb {
    let db = &t.db;
    let id = enqueue_committed(db, json!({"n": 1})).await;
    let handler = Recorder::failing(2);
    let t0 = now();

    let step = outbox::relay_step(db, TOPIC, &handler, t0, LEASE)
        .await
        .unwrap();
    assert_eq!(step, Step::Failed(id));
    let e = entry(db, id).await;
    assert_eq!(e.attempts, 1);
    assert!(
        e.last_error
            .as_deref()
            .unwrap()
            .contains("sink unavailable")
    );
    assert!(e.locked_until.is_none(), "the lease is released");
    assert!(e.delivered_at.is_none());
    // First retry after 5 s, less up to a quarter of jitter.
    assert!(
        e.next_attempt_at >= t0 + secs(3.75) && e.next_attempt_at <= t0 + secs(5.0),
        "{:?} after {t0:?}",
        e.next_attempt_at
    );
    for at in [t0, t0 + secs(3.7)] {
        let step = outbox::relay_step(db, TOPIC, &handler, at, LEASE)
            .await
            .unwrap();
        assert_eq!(step, Step::Empty, "not due yet at {at:?}");
    }

    let t1 = e.next_attempt_at;
    let step = outbox::relay_step(db, TOPIC, &handler, t1, LEASE)
        .await
        .unwrap();
    assert_eq!(step, Step::Failed(id));
    let e = entry(db, id).await;
    assert_eq!(e.attempts, 2);
    // Second retry after 10 s, less up to a quarter.
    assert!(
        e.next_attempt_at >= t1 + secs(7.5) && e.next_attempt_at <= t1 + secs(10.0),
        "{:?} after {t1:?}",
        e.next_attempt_at
    );
    let step = outbox::relay_step(db, TOPIC, &handler, t1 + secs(7.4), LEASE)
        .await
        .unwrap();
    assert_eq!(step, Step::Empty);

    let t2 = e.next_attempt_at;
    let step = outbox::relay_step(db, TOPIC, &handler, t2, LEASE)
        .await
        .unwrap();
    assert_eq!(step, Step::Delivered(id));
    let e = entry(db, id).await;
    assert_eq!(e.attempts, 3);
    assert_eq!(e.delivered_at, Some(t2));
    assert!(
        e.last_error.is_some(),
        "the last failure is kept for the record"
    );
    assert_eq!(handler.delivered(), vec![(id, json!({"n": 1}))]);
    t
}
both_stores!(
    failures_are_retried_with_backoff,
    failures_are_retried_with_backoff_body
);

async fn an_expired_lease_is_reclaimed_body(t: TestDb) -> TestDb {
    let db = &t.db;
    let id = enqueue_committed(db, json!({"n": 1})).await;
    let t0 = now();
    // A relay claims the row and dies before delivering.
    let claimed = outbox::claim_due(db, TOPIC, t0, Duration::from_secs(30))
        .await
        .unwrap()
        .expect("a due row");
    assert_eq!(claimed.id, id);
    assert_eq!(claimed.attempt, 1);
    assert_eq!(claimed.locked_until, t0 + secs(30.0));
    assert_eq!(entry(db, id).await.locked_until, Some(t0 + secs(30.0)));

    let handler = Recorder::default();
    for at in [t0, t0 + secs(10.0), t0 + secs(30.0)] {
        let step = outbox::relay_step(db, TOPIC, &handler, at, LEASE)
            .await
            .unwrap();
        assert_eq!(step, Step::Empty, "leased until t0 + 30 s, asked at {at:?}");
    }
    let step = outbox::relay_step(db, TOPIC, &handler, t0 + secs(30.001), LEASE)
        .await
        .unwrap();
    assert_eq!(step, Step::Delivered(id));
    assert_eq!(handler.delivered().len(), 1);
    t
}
both_stores!(
    an_expired_lease_is_reclaimed,
    an_expired_lease_is_reclaimed_body
);

/// A relay that dies after its claim (a crash, a kill) has made an attempt: the claim counts it,
/// so a relay that keeps dying on a row shows in its `attempts`.
async fn an_attempt_lost_with_its_relay_is_counted_body(t: TestDb) -> TestDb {
    let db = &t.db;
    let id = enqueue_committed(db, json!({"n": 1})).await;
    let t0 = now();
    let lease = Duration::from_secs(30);
    for (n, at) in [t0, t0 + secs(31.0)].into_iter().enumerate() {
        let claimed = outbox::claim_due(db, TOPIC, at, lease)
            .await
            .unwrap()
            .expect("a due row");
        assert_eq!(claimed.id, id);
        // The relay dies here, before delivering.
        assert_eq!(entry(db, id).await.attempts, n as u32 + 1, "claim {n}");
    }
    let handler = Recorder::default();
    let step = outbox::relay_step(db, TOPIC, &handler, t0 + secs(62.0), lease)
        .await
        .unwrap();
    assert_eq!(step, Step::Delivered(id));
    let e = entry(db, id).await;
    assert_eq!(e.attempts, 3, "two lost attempts and the successful one");
    assert!(e.delivered_at.is_some());
    t
}
both_stores!(
    an_attempt_lost_with_its_relay_is_counted,
    an_attempt_lost_with_its_relay_is_counted_body
);

/// A handler that takes `delay`, counting its calls.
struct Slow {
    delay: Duration,
    calls: AtomicU32,
}

impl Deliver for Slow {
    async fn deliver(&self, _id: Uuid, _payload: &Value) -> anyhow::Result<()> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(self.delay).await;
        Ok(())
    }
}

/// A delivery that takes several times the lease keeps its row: the lease is renewed while the
/// handler runs, so another relay never takes the row meanwhile; once the relay is gone (killed)
/// the row is free again a lease after the last renewal.
async fn a_slow_delivery_keeps_its_lease_body(t: TestDb) -> TestDb {
    let db = &t.db;
    let id = enqueue_committed(db, json!({"n": 1})).await;
    let lease = Duration::from_millis(1500);
    let slow = Arc::new(Slow {
        delay: Duration::from_secs(5),
        calls: AtomicU32::new(0),
    });
    let delivering = {
        let (db, slow) = (db.clone(), slow.clone());
        tokio::spawn(async move { outbox::relay_step(&db, TOPIC, &slow, now(), lease).await })
    };
    while slow.calls.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Another relay, on the same clock, tries all along.
    while !delivering.is_finished() {
        let other = outbox::claim_due(db, TOPIC, now(), lease).await.unwrap();
        assert_eq!(
            other.map(|c| c.id),
            None,
            "another relay took the row while it was being delivered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(delivering.await.unwrap().unwrap(), Step::Delivered(id));
    assert_eq!(slow.calls.load(Ordering::SeqCst), 1);
    let e = entry(db, id).await;
    assert_eq!(e.attempts, 1);
    assert!(e.delivered_at.is_some() && e.locked_until.is_none());

    // A relay killed in the middle of a delivery renews nothing more: its row is taken again.
    let id = enqueue_committed(db, json!({"n": 2})).await;
    let killed = {
        let (db, slow) = (db.clone(), slow.clone());
        tokio::spawn(async move { outbox::relay_step(&db, TOPIC, &slow, now(), lease).await })
    };
    while slow.calls.load(Ordering::SeqCst) == 1 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    killed.abort();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(claimed) = outbox::claim_due(db, TOPIC, now(), lease).await.unwrap() {
            assert_eq!(claimed.id, id);
            assert_eq!(claimed.attempt, 2, "the killed attempt counts");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the row stays leased");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    t
}
both_stores!(
    a_slow_delivery_keeps_its_lease,
    a_slow_delivery_keeps_its_lease_body
);

async fn concurrent_relays_never_claim_the_same_row_body(t: TestDb) -> TestDb {
    const ROWS: usize = 60;
    const RELAYS: usize = 8;
    let db = &t.db;
    let mut ids = HashSet::new();
    for n in 0..ROWS {
        ids.insert(enqueue_committed(db, json!({"n": n})).await);
    }
    let handler = Arc::new(Recorder::default());
    let t0 = now();
    let relays: Vec<_> = (0..RELAYS)
        .map(|_| {
            let (db, handler) = (db.clone(), handler.clone());
            tokio::spawn(async move {
                let mut steps = 0;
                loop {
                    match outbox::relay_step(&db, TOPIC, &handler, t0, LEASE).await {
                        Ok(Step::Delivered(_)) => steps += 1,
                        Ok(Step::Empty) => return steps,
                        Ok(Step::Failed(id)) => panic!("{id} failed"),
                        Err(err) => panic!("relay step: {err:#}"),
                    }
                }
            })
        })
        .collect();
    let mut steps = 0;
    for relay in relays {
        steps += relay.await.unwrap();
    }
    let delivered = handler.delivered();
    let mut per_id: HashMap<Uuid, usize> = HashMap::new();
    for (id, _) in &delivered {
        *per_id.entry(*id).or_default() += 1;
    }
    assert_eq!(delivered.len(), ROWS, "deliveries");
    assert_eq!(steps, ROWS);
    assert!(per_id.values().all(|&n| n == 1), "a row delivered twice");
    assert_eq!(per_id.keys().copied().collect::<HashSet<_>>(), ids);
    assert_eq!(outbox::pending(&mut db.conn(), TOPIC).await.unwrap(), 0);
    t
}
both_stores!(
    concurrent_relays_never_claim_the_same_row,
    concurrent_relays_never_claim_the_same_row_body
);

async fn spawned_relay_delivers_and_stops_on_shutdown_body(t: TestDb) -> TestDb {
    let db = &t.db;
    let handler = Arc::new(Recorder::default());
    let shutdown = tokio_util::sync::CancellationToken::new();
    let delivered = handler.notify.notified();
    tokio::pin!(delivered);
    delivered.as_mut().enable();
    let relay = outbox::spawn_relay(db.clone(), TOPIC, handler.clone(), shutdown.clone());
    let id = enqueue_committed(db, json!({"n": 1})).await;
    tokio::time::timeout(Duration::from_secs(20), delivered)
        .await
        .expect("the relay delivers the row");
    assert_eq!(handler.delivered(), vec![(id, json!({"n": 1}))]);
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(20), relay)
        .await
        .expect("the relay stops on shutdown")
        .unwrap();
    t
}
both_stores!(
    spawned_relay_delivers_and_stops_on_shutdown,
    spawned_relay_delivers_and_stops_on_shutdown_body
);

// ---------------------------------------------------------------------------------------------
// Mail
// ---------------------------------------------------------------------------------------------

fn mail_config(data_dir: &Path, smtp_url: Option<&str>) -> Config {
    let mut vars: HashMap<String, String> = [
        ("TMS_ENV", "test"),
        ("APP_NAME", "Acme Cloud"),
        ("FROM_EMAIL", "hello@acme.test"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    vars.insert("TMS_DATA_DIR".into(), data_dir.display().to_string());
    if let Some(url) = smtp_url {
        vars.insert("SMTP_URL".into(), url.to_string());
    }
    Config::from_map(&vars).expect("mail test configuration")
}

/// Queues the validate_lead mail to ada@example.com with `link` on `conn`; the id of its row.
async fn queue_validate_lead(mailer: &Mailer, conn: &mut Conn<'_>, link: &str) -> Uuid {
    let vars = json!({
        "firstName": "<b>Ada</b>",
        "lastName": "Lovelace",
        "companyName": "Analytical Engines",
        "email": "ada@example.com",
        "link": link,
        "expiresInMinutes": 60,
    });
    mailer
        .queue(conn, "ada@example.com", Template::ValidateLead, vars)
        .await
        .unwrap()
}

/// The decoded body of the one part of `mail` with content type `mimetype`.
fn part(mail: &ParsedMail<'_>, mimetype: &str) -> String {
    let parts: Vec<_> = mail
        .subparts
        .iter()
        .filter(|p| p.ctype.mimetype == mimetype)
        .collect();
    assert_eq!(parts.len(), 1, "one {mimetype} part");
    parts[0].get_body().expect("a decodable part")
}

/// Checks a received validate_lead message for outbox row `id`.
fn assert_validate_lead_message(raw: &[u8], id: Uuid, link: &str) {
    let mail = mailparse::parse_mail(raw).expect("a parseable message");
    let header = |name: &str| {
        mail.headers
            .get_first_value(name)
            .unwrap_or_else(|| panic!("{name} header missing"))
    };
    assert_eq!(
        header("Subject"),
        "Confirm your email address for Acme Cloud"
    );
    let from = mailparse::addrparse(&header("From")).expect("a From address");
    match &from[..] {
        [mailparse::MailAddr::Single(sender)] => {
            assert_eq!(sender.display_name.as_deref(), Some("Acme Cloud"));
            assert_eq!(sender.addr, "hello@acme.test");
        }
        other => panic!("From: {other:?}"),
    }
    assert_eq!(header("To"), "ada@example.com");
    assert_eq!(header("Message-ID"), format!("<{id}@acme.test>"));
    assert!(!header("Date").is_empty());
    assert_eq!(mail.ctype.mimetype, "multipart/alternative");
    let text = part(&mail, "text/plain");
    let html = part(&mail, "text/html");
    assert!(text.contains(link), "{text}");
    assert!(text.contains("Hello <b>Ada</b> Lovelace"), "{text}");
    let href = format!("href=\"{}\"", link.replace('&', "&amp;"));
    assert!(html.contains(&href), "{html}");
    assert!(
        html.contains("Hello &lt;b&gt;Ada&lt;/b&gt; Lovelace"),
        "{html}"
    );
}

/// The raw message — an `.eml` file read as text — has `link` whole on a line of its own, as
/// a developer copies it from the file: not quoted-printable (`=3D`, lines broken at 76).
fn assert_link_on_a_line_of_its_own(raw: &[u8], link: &str) {
    let raw = String::from_utf8_lossy(raw);
    assert!(
        link.len() > 76,
        "the link is longer than a quoted-printable line"
    );
    assert!(
        raw.lines().any(|line| line == link),
        "no line is exactly {link} in\n{raw}"
    );
}

async fn mail_without_smtp_is_an_eml_file_body(t: TestDb) -> TestDb {
    let db = &t.db;
    let (logs, _log_guard) = capture_logs();

    let mailer = Mailer::from_config(&mail_config(&t.data_dir, None)).unwrap();
    // As long as the service's own links: longer than a quoted-printable line.
    let key = Uuid::new_v4().simple().to_string();
    let link = format!(
        "https://app.acme.test/verify?code={key}&leadId={}",
        Uuid::new_v4()
    );

    // Queued in a transaction that rolls back: nothing is ever sent.
    let mut tx = db.begin().await.unwrap();
    queue_validate_lead(&mailer, &mut tx.conn(), "https://app.acme.test/never").await;
    drop(tx);

    let mut tx = db.begin().await.unwrap();
    let id = queue_validate_lead(&mailer, &mut tx.conn(), &link).await;
    tx.commit().await.unwrap();
    let payload = entry(db, id).await.payload;
    assert_eq!(payload["to"], "ada@example.com");
    assert_eq!(payload["from"], "Acme Cloud <hello@acme.test>");
    assert_eq!(
        payload["subject"],
        "Confirm your email address for Acme Cloud"
    );

    let step = outbox::relay_step(db, mail::TOPIC, &mailer, now(), LEASE)
        .await
        .unwrap();
    assert_eq!(step, Step::Delivered(id));
    let step = outbox::relay_step(db, mail::TOPIC, &mailer, now(), LEASE)
        .await
        .unwrap();
    assert_eq!(step, Step::Empty);

    let dir = t.data_dir.join("outbox");
    let files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let name = files[0].file_name().unwrap().to_str().unwrap().to_string();
    assert!(name.ends_with(&format!("-{id}.eml")), "{name}");
    // <YYYYMMDD>T<HHMMSS>.<mmm>Z-<id>.eml
    let stamp = name.split('-').next().unwrap();
    assert_eq!(stamp.len(), "20260102T030405.678Z".len(), "{name}");
    assert!(chrono::NaiveDateTime::parse_from_str(stamp, "%Y%m%dT%H%M%S%.3fZ").is_ok());
    let raw = std::fs::read(&files[0]).unwrap();
    assert_validate_lead_message(&raw, id, &link);
    assert_link_on_a_line_of_its_own(&raw, &link);
    // The mail carries the lead's key: the owner's alone, like the development secret.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&files[0]), 0o600, "{}", files[0].display());
        assert_eq!(mode(&dir), 0o700, "{}", dir.display());
    }

    // Outside development the log names the message but never shows the link: its key is a
    // secret.
    let logged = logs.text();
    let line = logged
        .lines()
        .find(|l| l.contains("mail written to the outbox directory"))
        .unwrap_or_else(|| panic!("no log line in {logged}"));
    assert!(line.contains(" INFO "), "{line}");
    assert!(line.contains("ada@example.com"), "{line}");
    assert!(
        line.contains("Confirm your email address for Acme Cloud"),
        "{line}"
    );
    assert!(!logged.contains(&key), "the key is in the log: {logged}");
    drop(_log_guard);

    // In development (TMS_ENV=dev) the link is logged, for a newcomer without a mail server.
    let (logs, _log_guard) = capture_logs();
    let mut dev_config = mail_config(&t.data_dir, None);
    dev_config.env = tms::config::Environment::Dev;
    let dev_mailer = Mailer::from_config(&dev_config).unwrap();
    let mut tx = db.begin().await.unwrap();
    let id = queue_validate_lead(&dev_mailer, &mut tx.conn(), &link).await;
    tx.commit().await.unwrap();
    let step = outbox::relay_step(db, mail::TOPIC, &dev_mailer, now(), LEASE)
        .await
        .unwrap();
    assert_eq!(step, Step::Delivered(id));
    let logged = logs.text();
    let line = logged
        .lines()
        .find(|l| l.contains("mail written to the outbox directory"))
        .unwrap_or_else(|| panic!("no log line in {logged}"));
    assert!(line.contains(&link), "{line}");
    t
}

both_stores!(
    mail_without_smtp_is_an_eml_file,
    mail_without_smtp_is_an_eml_file_body
);

async fn mail_arrives_at_a_real_smtp_server_body(t: TestDb) -> TestDb {
    let db = &t.db;
    let port = SmtpSink::free_port();
    let maildir = t.data_dir.join("maildir");
    let server = SmtpSink::start_at(port, &maildir).await;
    let mailer = Mailer::from_config(&mail_config(&t.data_dir, Some(&server.url()))).unwrap();
    assert_eq!(
        mailer.describe_transport(),
        format!("smtp 127.0.0.1:{port} (no TLS)")
    );
    // A long link: it arrives whole, on a line of its own, and decodes whole.
    let link = format!(
        "https://app.acme.test/verify?code={}{}",
        Uuid::new_v4().simple(),
        Uuid::new_v4().simple()
    );
    let id = queue_validate_lead(&mailer, &mut db.conn(), &link).await;
    let t0 = now();
    let step = outbox::relay_step(db, mail::TOPIC, &mailer, t0, LEASE)
        .await
        .unwrap();
    assert_eq!(step, Step::Delivered(id));
    let received = server.messages();
    assert_eq!(received.len(), 1);
    assert_validate_lead_message(&received[0], id, &link);
    assert_link_on_a_line_of_its_own(&received[0], &link);
    assert!(
        !t.data_dir.join("outbox").exists(),
        "no .eml files with SMTP"
    );

    // The server goes away: the mail waits in the outbox and goes out once it is back.
    server.stop();
    let welcome = mailer
        .queue(
            &mut db.conn(),
            "ada@example.com",
            Template::TenantWelcome,
            json!({
                "firstName": "Ada", "lastName": "Lovelace", "tenantName": "Engines",
                "tenantKey": "engines", "loginUrl": "https://engines.acme.test/login",
            }),
        )
        .await
        .unwrap();
    let step = outbox::relay_step(db, mail::TOPIC, &mailer, now(), LEASE)
        .await
        .unwrap();
    assert_eq!(step, Step::Failed(welcome));
    let e = entry(db, welcome).await;
    assert!(
        e.last_error.as_deref().unwrap().contains("SMTP"),
        "{:?}",
        e.last_error
    );
    let server = SmtpSink::start_at(port, &maildir).await;
    let step = outbox::relay_step(db, mail::TOPIC, &mailer, e.next_attempt_at, LEASE)
        .await
        .unwrap();
    assert_eq!(step, Step::Delivered(welcome));
    let received = server.messages();
    assert_eq!(received.len(), 2);
    let welcome_mail = received
        .iter()
        .map(|raw| mailparse::parse_mail(raw).unwrap())
        .find(|m| m.headers.get_first_value("Message-ID") == Some(format!("<{welcome}@acme.test>")))
        .expect("the welcome mail");
    assert_eq!(
        welcome_mail.headers.get_first_value("Subject").unwrap(),
        "Your Acme Cloud tenant Engines is ready"
    );
    assert!(part(&welcome_mail, "text/plain").contains("https://engines.acme.test/login"));
    assert!(part(&welcome_mail, "text/html").contains("href=\"https://engines.acme.test/login\""));
    drop(server);
    t
}

#[tokio::test]
async fn mail_arrives_at_a_real_smtp_server_sqlite() {
    let test = "mail_arrives_at_a_real_smtp_server_sqlite";
    if SmtpSink::available(test) {
        run_on_db(Kind::Sqlite, test, mail_arrives_at_a_real_smtp_server_body).await;
    }
}

#[tokio::test]
async fn mail_arrives_at_a_real_smtp_server_postgres() {
    let test = "mail_arrives_at_a_real_smtp_server_postgres";
    if SmtpSink::available(test) {
        run_on_db(
            Kind::Postgres,
            test,
            mail_arrives_at_a_real_smtp_server_body,
        )
        .await;
    }
}
