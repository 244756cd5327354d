//! Data at rest on the embedded set-up: the SQLite database with its `-wal` and `-shm`, the data
//! directory, the mail outbox and its `.eml` files, the jsonl event log and the development JWT
//! secret are owner-only — files 0600, directories 0700 — whatever the umask, and loose ones
//! left from before are tightened at start-up.
//!
//! The umask belongs to the whole process, so the server runs as a child process (the `tms`
//! binary, started by `sh` with `umask 022`), never in the threads of this test binary.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use secrecy::SecretString;
use serde_json::{Value, json};
use tms::auth::{ALL_PERMISSIONS, JwtKeys};

/// A `tms serve` started with a permissive umask on data directory `data_dir`; killed when
/// dropped.
struct Server {
    child: Child,
    base: String,
    data_dir: PathBuf,
    client: reqwest::Client,
}

impl Server {
    async fn start(data_dir: &Path) -> Server {
        Self::start_with(data_dir, &[]).await
    }

    /// [`Server::start`] with `extra` variables (a PostgreSQL database, say).
    async fn start_with(data_dir: &Path, extra: &[(&str, &str)]) -> Server {
        let port = common::SmtpSink::free_port().to_string();
        let data = data_dir.display().to_string();
        let child = Command::new("/bin/sh")
            .args([
                "-c",
                "umask 022 && exec \"$0\" serve",
                env!("CARGO_BIN_EXE_tms"),
            ])
            .env_clear()
            .envs([
                ("TMS_DATA_DIR", data.as_str()),
                ("HOST", "127.0.0.1"),
                ("PORT", port.as_str()),
                ("LOG_LEVEL", "warn"),
                ("BILLING_INTERVAL", "0"),
            ])
            .envs(extra.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot run the tms binary");
        let server = Server {
            child,
            base: format!("http://127.0.0.1:{port}"),
            data_dir: data_dir.to_path_buf(),
            client: reqwest::Client::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while server
            .client
            .get(format!("{}/ping", server.base))
            .send()
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "the server did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        server
    }

    /// An administrator's token, signed with the secret the server generated.
    fn admin_token(&self) -> String {
        let secret = std::fs::read_to_string(self.data_dir.join("jwt-secret"))
            .expect("the server generates its development secret");
        JwtKeys::new(&SecretString::from(secret.trim().to_string()), "tms")
            .mint(
                "data-at-rest",
                ALL_PERMISSIONS.iter().map(|p| p.to_string()).collect(),
                600,
            )
            .unwrap()
    }

    async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
        let mut request = self.client.post(format!("{}{path}", self.base)).json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Kills the process at once, as a crash would (SQLite's `-wal` and `-shm` stay behind).
    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Waits until `ready` holds (the relays write mail and events in the background).
async fn eventually(what: &str, ready: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ready() {
        assert!(Instant::now() < deadline, "{what} did not happen");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn outbox_files(data_dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(data_dir.join("outbox"))
        .map(|entries| entries.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

fn mails(data_dir: &Path) -> usize {
    outbox_files(data_dir)
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
        .count()
}

fn provisioning_events(data_dir: &Path) -> usize {
    std::fs::read_to_string(data_dir.join("events.jsonl"))
        .map(|text| text.matches("\"TENANT_PROVISIONING\"").count())
        .unwrap_or(0)
}

/// Every file and directory named in the module documentation, and every file of the outbox,
/// with the mode it has.
fn modes(data_dir: &Path) -> Vec<(String, u32)> {
    let mut paths = vec![
        data_dir.join("tms.sqlite3"),
        data_dir.join("tms.sqlite3-wal"),
        data_dir.join("tms.sqlite3-shm"),
    ];
    paths.extend(common_paths(data_dir));
    paths
        .into_iter()
        .map(|p| (p.display().to_string(), mode(&p)))
        .collect()
}

/// The files and directories of the data directory that hold secrets whatever the database:
/// the directory, the development JWT secret, the event log, the outbox and its mails.
fn common_paths(data_dir: &Path) -> Vec<PathBuf> {
    let mut paths = vec![
        data_dir.to_path_buf(),
        data_dir.join("jwt-secret"),
        data_dir.join("events.jsonl"),
        data_dir.join("outbox"),
    ];
    paths.extend(outbox_files(data_dir));
    paths
}

/// What every path of [`modes`] must have: 0700 for directories, 0600 for files.
fn owner_only(data_dir: &Path) -> Vec<(String, u32)> {
    modes(data_dir)
        .into_iter()
        .map(|(path, _)| {
            let wanted = if Path::new(&path).is_dir() {
                0o700
            } else {
                0o600
            };
            (path, wanted)
        })
        .collect()
}

/// Signs a lead up (a verification mail lands in the outbox) and provisions a tenant (its
/// TENANT_PROVISIONING event, with the webhook secret, lands in `events.jsonl`).
async fn sign_up_and_provision(server: &Server, key: &str) {
    let data_dir = server.data_dir.clone();
    let (mails_before, events_before) = (mails(&data_dir), provisioning_events(&data_dir));
    let (status, _) = server
        .post(
            "/leads",
            None,
            json!({"firstName": "Ada", "lastName": "Lovelace",
                "email": format!("ada@{key}.com"), "companyName": "Acme"}),
        )
        .await;
    assert_eq!(status, 200, "sign-up");
    let token = server.admin_token();
    let (status, tenant) = server
        .post(
            "/tenants",
            Some(&token),
            json!({"name": "Globex", "key": key, "domains": [format!("{key}.com")],
                "contact": {"firstName": "Hank", "lastName": "Scorpio",
                    "email": format!("hank@{key}.com"), "isPrimary": true}}),
        )
        .await;
    assert_eq!(status, 200, "onboarding: {tenant}");
    let id = tenant["id"].as_str().unwrap().to_string();
    let (status, answer) = server
        .post(
            &format!("/tenants/{id}/provision"),
            Some(&token),
            json!({"id": "sub-1", "plan": {"tier": "STANDARD"}}),
        )
        .await;
    assert_eq!(status, 204, "provisioning: {answer}");
    eventually("the verification mail", || mails(&data_dir) > mails_before).await;
    eventually("the provisioning event", || {
        provisioning_events(&data_dir) > events_before
    })
    .await;
}

#[tokio::test]
async fn files_are_owner_only_whatever_the_umask() {
    common::needs(
        "data_at_rest::files_are_owner_only_whatever_the_umask",
        "sqlite",
        Ok(()),
    );
    let root = tempfile::tempdir().unwrap();
    let data_dir = root.path().join("data");
    let server = Server::start(&data_dir).await;
    sign_up_and_provision(&server, "acme").await;
    assert_eq!(modes(&data_dir), owner_only(&data_dir));
    server.kill();
}

/// With PostgreSQL the data directory still holds the outbox, the event log and the development
/// secret: owner-only too.
#[tokio::test]
async fn files_are_owner_only_whatever_the_umask_on_postgres() {
    let test = "data_at_rest::files_are_owner_only_whatever_the_umask_on_postgres";
    if !common::db_available(common::Db::Postgres, test) {
        return;
    }
    let storage = common::Storage::new(common::Db::Postgres);
    let (url, schema) = (
        storage.postgres_app_url().unwrap(),
        storage.postgres_schema().unwrap(),
    );
    let root = tempfile::tempdir().unwrap();
    let data_dir = root.path().join("data");
    let server =
        Server::start_with(&data_dir, &[("DATABASE_URL", url), ("DB_SCHEMA", schema)]).await;
    sign_up_and_provision(&server, "acme").await;
    assert!(
        !data_dir.join("tms.sqlite3").exists(),
        "the database is PostgreSQL"
    );
    let seen: Vec<(String, u32)> = common_paths(&data_dir)
        .into_iter()
        .map(|p| (p.display().to_string(), mode(&p)))
        .collect();
    let wanted: Vec<(String, u32)> = seen
        .iter()
        .map(|(p, _)| (p.clone(), if Path::new(p).is_dir() { 0o700 } else { 0o600 }))
        .collect();
    assert_eq!(seen, wanted);
    server.kill();
}

#[tokio::test]
async fn loose_files_from_before_are_tightened_at_start_up() {
    common::needs(
        "data_at_rest::loose_files_from_before_are_tightened_at_start_up",
        "sqlite",
        Ok(()),
    );
    let root = tempfile::tempdir().unwrap();
    let data_dir = root.path().join("data");
    let server = Server::start(&data_dir).await;
    sign_up_and_provision(&server, "acme").await;
    // A crash leaves the `-wal` and `-shm` behind; then everything is loosened, as an earlier
    // version, a copy or a restored backup would have left it.
    server.kill();
    let loose = modes(&data_dir);
    for (path, _) in &loose {
        set_mode(
            Path::new(path),
            if Path::new(path).is_dir() {
                0o755
            } else {
                0o644
            },
        );
    }
    assert!(
        modes(&data_dir).iter().all(|(_, mode)| mode & 0o044 != 0),
        "loosened: {:?}",
        modes(&data_dir)
    );

    let server = Server::start(&data_dir).await;
    assert_eq!(
        modes(&data_dir),
        owner_only(&data_dir),
        "tightened at start-up, before any request"
    );
    // And it goes on working with them.
    sign_up_and_provision(&server, "globex").await;
    assert_eq!(modes(&data_dir), owner_only(&data_dir));
    server.kill();
}
