//! Redis processes of the tests in tests/redis_deployed.rs: `redis-server` data nodes and
//! sentinels on free ports, killed when dropped, and certificates made with `openssl`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::needs;

// ---------------------------------------------------------------------------------------------
// Processes of the test
// ---------------------------------------------------------------------------------------------

/// A `redis-server` (data node or sentinel), killed and reaped when dropped, panic or not.
pub struct Server {
    pub port: u16,
    child: Option<Child>,
}

impl Server {
    /// Starts `redis-server args…` in `dir` and waits until it accepts connections on `port`.
    pub fn start(name: &str, port: u16, dir: &Path, args: &[String]) -> Server {
        let log = std::fs::File::create(dir.join(format!("{name}.log"))).expect("log file");
        let child = Command::new("redis-server")
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start redis-server ({name}): {err}"));
        let server = Server {
            port,
            child: Some(child),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "{name} did not listen on {port}: {}",
                std::fs::read_to_string(dir.join(format!("{name}.log"))).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    /// `kill -9`, as a crashed host.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends `signal` (`STOP`, `CONT`) to the process.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("a running server").id();
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .expect("cannot run kill");
        assert!(status.success(), "kill -{signal} {pid}");
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

/// Whether `redis-server` (with TLS) and `openssl` are installed; under CI they must be.
pub fn tools_available(test: &str, tls: bool) -> bool {
    let found = |program: &str, arg: &str| {
        Command::new(program)
            .arg(arg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    let mut missing = Vec::new();
    if !found("redis-server", "--version") {
        missing.push("redis-server");
    }
    if tls && !found("openssl", "version") {
        missing.push("openssl");
    }
    needs(
        test,
        "redis-server and openssl",
        if missing.is_empty() {
            Ok(())
        } else {
            Err(format!("{} not installed", missing.join(", ")))
        },
    )
}

/// The TLS settings of a node with `cert` and `key` that trusts `ca` and asks clients for no
/// certificate, as (name, value) pairs: `--name value` on a command line, `name value` in a
/// configuration file.
pub fn tls_settings(cert: &Path, key: &Path, ca: &Path) -> Vec<(String, String)> {
    [
        ("tls-cert-file", cert),
        ("tls-key-file", key),
        ("tls-ca-cert-file", ca),
    ]
    .map(|(k, v)| (k.to_string(), v.display().to_string()))
    .into_iter()
    .chain([("tls-auth-clients".to_string(), "no".to_string())])
    .collect()
}

/// A data node that speaks TLS only, on `port`, with [`tls_settings`].
pub fn tls_node_args(port: u16, cert: &Path, key: &Path, ca: &Path) -> Vec<String> {
    let mut args = data_node_args(0);
    args.extend(["--tls-port".to_string(), port.to_string()]);
    for (name, value) in tls_settings(cert, key, ca) {
        args.extend([format!("--{name}"), value]);
    }
    args
}

pub fn data_node_args(port: u16) -> Vec<String> {
    [
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
    ]
    .map(str::to_string)
    .to_vec()
}

pub async fn connection(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .expect("a Redis URL")
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|err| panic!("cannot connect to {url}: {err}"))
}

// ---------------------------------------------------------------------------------------------
// TLS with the operator's CA
// ---------------------------------------------------------------------------------------------

/// Runs `openssl args…` in `dir`.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("cannot run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA `<name>-ca.crt` (with its key) in `dir`.
pub fn make_ca(dir: &Path, name: &str) -> PathBuf {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN={name} test CA"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-keyout",
            &format!("{name}-ca.key"),
            "-out",
            &format!("{name}-ca.crt"),
        ],
    );
    dir.join(format!("{name}-ca.crt"))
}

/// A server certificate for 127.0.0.1 and localhost signed by the CA `ca`: `server.crt`,
/// `server.key`.
pub fn make_server_cert(dir: &Path, ca: &str) -> (PathBuf, PathBuf) {
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
         keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            &format!("{ca}-ca.crt"),
            "-CAkey",
            &format!("{ca}-ca.key"),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "server.ext",
            "-out",
            "server.crt",
        ],
    );
    (dir.join("server.crt"), dir.join("server.key"))
}
