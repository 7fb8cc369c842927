//! End-to-end harness: a real `warden serve` process per test (own temp dir, own ports),
//! the admin CLI against its store, tokio-postgres clients through it, and scratch tables in
//! the real `test` database on 127.0.0.1:5432.
#![allow(dead_code)]

pub mod idp;
pub mod raw;

#[allow(unused_imports)]
pub use idp::{sign_jwt, TestIdp};

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_postgres::{Client, NoTls};

pub const WARDEN: &str = env!("CARGO_BIN_EXE_warden");
pub const DIRECT: &str = "host=127.0.0.1 port=5432 user=postgres dbname=test";
pub const OWNER: &str = "alice@example.com";

pub fn quickstart_policy() -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/quickstart/policy.cedar"),
    )
    .unwrap()
}

/// The `test` target every gateway gets.
const TEST_TARGET: &str = r#"
[[targets]]
name = "test"
host = "127.0.0.1"
port = 5432
database = "test"
user = "postgres"
tls = "disable"
"#;

pub struct GatewayBuilder {
    policy: String,
    extra_toml: String,
    env: Vec<(String, String)>,
    files: Vec<(String, Vec<u8>)>,
}

impl GatewayBuilder {
    pub fn policy(mut self, cedar: &str) -> Self {
        self.policy = cedar.to_string();
        self
    }
    /// Added to the config before the `test` target (a `[tls]` section, more `[[targets]]`).
    pub fn toml(mut self, text: &str) -> Self {
        self.extra_toml.push_str(text);
        self
    }
    /// An environment variable for the gateway and every CLI command (e.g. a password_env).
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }
    /// A file written next to the config before start (certificates, ...).
    pub fn file(mut self, name: &str, contents: impl Into<Vec<u8>>) -> Self {
        self.files.push((name.into(), contents.into()));
        self
    }

    pub fn start(self) -> Gateway {
        let (dir, config) = self.write_files("");
        let mut g = Gateway {
            dir,
            config,
            env: self.env,
            pg_port: 0,
            admin_port: 0,
            child: None,
            stderr: Arc::new(Mutex::new(String::new())),
        };
        g.spawn();
        g
    }

    /// Runs `warden serve` on a config that must not start; returns its stderr.
    pub fn serve_error(self) -> String {
        let (_dir, config) = self.write_files("");
        let out = Command::new(WARDEN).arg("--config").arg(&config).arg("serve").envs(self.env.iter().cloned()).env_remove("WARDEN_DATA_DIR").stdin(Stdio::null()).output().unwrap();
        assert!(!out.status.success(), "warden serve started on a config it should refuse");
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// The temp dir with policy, files and config; `listen_extra`: more `[listen]` lines.
    fn write_files(&self, listen_extra: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("warden.toml");
        std::fs::write(dir.path().join("policy.cedar"), &self.policy).unwrap();
        for (name, contents) in &self.files {
            std::fs::write(dir.path().join(name), contents).unwrap();
        }
        let toml = format!(
            "data_dir = \"data\"\n[listen]\npostgres = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n{listen_extra}[policy]\nfiles = [\"policy.cedar\"]\n{}\n{TEST_TARGET}",
            self.extra_toml
        );
        std::fs::write(&config, toml).unwrap();
        (dir, config)
    }
}

pub struct Gateway {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    env: Vec<(String, String)>,
    pub pg_port: u16,
    pub admin_port: u16,
    child: Option<Child>,
    stderr: Arc<Mutex<String>>,
}

impl Gateway {
    pub fn builder() -> GatewayBuilder {
        GatewayBuilder {
            policy: quickstart_policy(),
            extra_toml: String::new(),
            env: Vec::new(),
            files: Vec::new(),
        }
    }

    /// A gateway on the quickstart policy with the `test` target.
    pub fn start() -> Gateway {
        Self::builder().start()
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new(WARDEN);
        cmd.arg("--config")
            .arg(&self.config)
            .arg("serve")
            .envs(self.env.iter().cloned())
            .env_remove("WARDEN_DATA_DIR")
            .env_remove("WARDEN_LOG");
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = self.stderr.clone();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("warden listening") {
                    let _ = tx.send((port_after(&line, "postgres="), port_after(&line, "admin=")));
                }
                let mut log = log.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        self.child = Some(child);
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok((pg, admin)) => (self.pg_port, self.admin_port) = (pg, admin),
            Err(_) => panic!(
                "gateway did not report its ports; stderr:\n{}",
                self.stderr()
            ),
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Everything the gateway has written to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// SIGTERM and wait: the gateway flushes its audit log and closes the store.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status()
                .unwrap();
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                if child.try_wait().unwrap().is_some() {
                    break;
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    panic!(
                        "gateway did not exit on SIGTERM; stderr:\n{}",
                        self.stderr()
                    );
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// SIGKILL and wait: no chance to flush anything.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// Runs `warden --config <cfg> ARGS`.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(WARDEN)
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .envs(self.env.iter().cloned())
            .env_remove("WARDEN_DATA_DIR")
            .output()
            .unwrap()
    }

    /// Runs an admin command that must succeed; returns its stdout.
    pub fn admin(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "warden {args:?} failed: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Creates an agent owned by `owner`; returns its enrollment secret.
    pub fn create_agent(&self, name: &str, owner: &str) -> String {
        let out = self.admin(&["agent", "create", name, "--owner", owner, "--json"]);
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        v["enrollment_secret"].as_str().unwrap().to_string()
    }

    pub fn token(&self, agent: &str, node: Option<&str>, ttl: &str) -> String {
        let mut args = vec!["token", "issue", "--agent", agent, "--ttl", ttl];
        if let Some(n) = node {
            args.extend(["--node", n]);
        }
        self.admin(&args).trim().to_string()
    }

    /// An agent with a 5-minute token (not pinned to a node).
    pub fn agent_with_token(&self, name: &str) -> String {
        self.create_agent(name, OWNER);
        self.token(name, None, "5m")
    }

    pub fn conn_string(
        &self,
        agent: &str,
        token: &str,
        dbname: &str,
        node: Option<&str>,
    ) -> String {
        let mut s = format!("host=127.0.0.1 port={} user={agent} password='{token}' dbname={dbname} connect_timeout=10", self.pg_port);
        if let Some(n) = node {
            s.push_str(&format!(" options='-c warden.node={n}'"));
        }
        s
    }

    pub async fn connect(
        &self,
        agent: &str,
        token: &str,
        node: Option<&str>,
    ) -> Result<Conn, tokio_postgres::Error> {
        connect_str(&self.conn_string(agent, token, "test", node)).await
    }

    /// The psql command line for this gateway, password in the environment.
    pub fn psql(
        &self,
        agent: &str,
        token: &str,
        node: &str,
        extra_conninfo: &str,
        sql: &str,
    ) -> Output {
        let conninfo = format!("host=127.0.0.1 port={} user={agent} dbname=test options='-c warden.node={node}' {extra_conninfo}", self.pg_port);
        Command::new("psql")
            .arg("-X")
            .arg(conninfo)
            .arg("-c")
            .arg(sql)
            .env("PGPASSWORD", token)
            .env("PGCONNECT_TIMEOUT", "10")
            .output()
            .unwrap()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn port_after(line: &str, key: &str) -> u16 {
    let rest = &line[line
        .find(key)
        .unwrap_or_else(|| panic!("no {key} in {line:?}"))
        + key.len()..];
    let addr = rest.split_whitespace().next().unwrap();
    addr.rsplit(':').next().unwrap().parse().unwrap()
}

/// A client plus its connection task, whose result carries errors the server sends outside
/// any query (a FATAL ending the session).
pub struct Conn {
    pub client: Client,
    pub done: tokio::task::JoinHandle<Result<(), tokio_postgres::Error>>,
}

impl std::ops::Deref for Conn {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.client
    }
}

pub async fn connect_str(s: &str) -> Result<Conn, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(s, NoTls).await?;
    let done = tokio::spawn(connection);
    Ok(Conn { client, done })
}

pub async fn direct() -> Conn {
    connect_str(DIRECT)
        .await
        .expect("direct connection to 127.0.0.1:5432")
}

/// SQLSTATE of an error, if the server sent one.
pub fn sqlstate(e: &tokio_postgres::Error) -> Option<String> {
    e.code().map(|c| c.code().to_string())
}

/// The full text of an error: the server's message, detail and hint, or the client's chain.
pub fn error_text(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!(
            "{} {}: {} | {} | {}",
            db.severity(),
            db.code().code(),
            db.message(),
            db.detail().unwrap_or(""),
            db.hint().unwrap_or("")
        ),
        None => {
            let mut s = e.to_string();
            let mut src = std::error::Error::source(e);
            while let Some(inner) = src {
                s.push_str(": ");
                s.push_str(&inner.to_string());
                src = inner.source();
            }
            s
        }
    }
}

/// Polls `f` until it returns Some, or panics after `limit`.
pub fn wait_for<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A name unique across parallel tests and test processes.
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "w_{prefix}_{}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        nanos % 100_000
    )
}

/// A scratch table `(id int primary key, name text)` with rows 1 alice, 2 bob, 3 carol in
/// the real `test` database, dropped on Drop.
pub struct Table {
    pub name: String,
}

impl Table {
    pub async fn new(prefix: &str) -> Table {
        let name = unique(prefix);
        let db = direct().await;
        db.batch_execute(&format!("CREATE TABLE public.{name} (id int PRIMARY KEY, name text NOT NULL); INSERT INTO public.{name} VALUES (1, 'alice'), (2, 'bob'), (3, 'carol');"))
            .await
            .unwrap();
        Table { name }
    }

    /// The table's rows read directly from PostgreSQL, ordered by id.
    pub async fn rows(&self) -> Vec<(i32, String)> {
        let db = direct().await;
        db.query(
            &format!("SELECT id, name FROM public.{} ORDER BY id", self.name),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
    }
}

impl Drop for Table {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .args([
                "-X",
                "-q",
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-d",
                "test",
                "-c",
            ])
            .arg(format!("DROP TABLE IF EXISTS public.{}", self.name))
            .output();
    }
}

pub fn original_rows() -> Vec<(i32, String)> {
    vec![(1, "alice".into()), (2, "bob".into()), (3, "carol".into())]
}

/// A minimal HTTP/1.1 POST with a JSON body; returns (status, body).
pub fn http_post_json(port: u16, path: &str, body: &serde_json::Value) -> (u16, String) {
    use std::io::{Read, Write};
    let body = body.to_string();
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(tcp, "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).unwrap();
    let mut resp = String::new();
    tcp.read_to_string(&mut resp).unwrap();
    let status = resp
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad HTTP response {resp:?}"));
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// Every file under `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

pub fn contains_bytes(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

// ---- identity lifecycle helpers (issue 11) ----

/// An HTTP/1.1 request with extra headers and an optional body; returns (status, body).
pub fn http_request(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: Option<&str>) -> (u16, String) {
    let (status, _, body) = http_exchange(port, method, path, headers, body);
    (status, body)
}

/// Like [`http_request`], with the response headers (names lowercased, in order).
pub fn http_exchange(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: Option<&str>) -> (u16, Vec<(String, String)>, String) {
    use std::io::{Read, Write};
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    let body = body.unwrap_or("");
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    tcp.write_all(req.as_bytes()).unwrap();
    let mut resp = String::new();
    tcp.read_to_string(&mut resp).unwrap();
    let status = resp.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("bad HTTP response {resp:?}"));
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    let headers = head.lines().skip(1).filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string())).collect();
    (status, headers, dechunk(body))
}

/// Undoes `Transfer-Encoding: chunked` if the body looks chunked (axum chunks some bodies).
fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    loop {
        let Some((size, after)) = rest.split_once("\r\n") else { return body.to_string() };
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else { return body.to_string() };
        if n == 0 {
            return out;
        }
        if after.len() < n {
            return body.to_string();
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
}

pub fn base64url(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..=chunk.len() {
            out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

pub const SCIM_TOKEN: &str = "scim-test-token-0123456789abcdef";

/// SCIM request with the test bearer token and `application/scim+json`.
pub fn scim(gw: &Gateway, method: &str, path: &str, body: Option<&serde_json::Value>) -> (u16, serde_json::Value) {
    let auth = format!("Bearer {SCIM_TOKEN}");
    let text = body.map(|b| b.to_string());
    let (status, body) = http_request(gw.admin_port, method, path, &[("Authorization", &auth), ("Content-Type", "application/scim+json")], text.as_deref());
    (status, serde_json::from_str(&body).unwrap_or(serde_json::Value::Null))
}

/// A JSON API call with an optional bearer token.
pub fn api(gw: &Gateway, method: &str, path: &str, bearer: Option<&str>, body: Option<&serde_json::Value>) -> (u16, serde_json::Value) {
    let auth = bearer.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(a) = &auth {
        headers.push(("Authorization", a));
    }
    let text = body.map(|b| b.to_string());
    let (status, body) = http_request(gw.admin_port, method, path, &headers, text.as_deref());
    (status, serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body)))
}

impl GatewayBuilder {
    /// Like `start`, with the HTTP gateway on an ephemeral port as well
    /// (`[listen] http = "127.0.0.1:0"`); its port is `Gateway::http_port`.
    pub fn start_with_http(self) -> Gateway {
        let (dir, config) = self.write_files("http = \"127.0.0.1:0\"\n");
        let mut g = Gateway { dir, config, env: self.env, pg_port: 0, admin_port: 0, child: None, stderr: Arc::new(Mutex::new(String::new())) };
        g.spawn();
        g
    }
}

impl Gateway {
    /// The HTTP gateway's port, from its "http gateway listening" log line.
    pub fn http_port(&self) -> u16 {
        let log = self.stderr();
        let line = log.lines().find(|l| l.contains("http gateway listening")).unwrap_or_else(|| panic!("no HTTP listener in the log:\n{log}"));
        port_after(line, "http=")
    }
}

// ---- Added for the approvals tests (issue 10). ----

impl Gateway {
    /// Stops the gateway (SIGTERM, waits) and starts it again on the same config and data
    /// dir; the ports change.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Connects with an explicit `options` startup parameter (e.g.
    /// `-c warden.node=writer -c warden.approval=resume`).
    pub async fn connect_with_options(&self, agent: &str, token: &str, options: &str) -> Result<Conn, tokio_postgres::Error> {
        connect_str(&format!("host=127.0.0.1 port={} user={agent} password='{token}' dbname=test connect_timeout=10 options='{options}'", self.pg_port)).await
    }
}

// ---- masking helpers (issue 9) ----

impl Gateway {
    /// The process id of the running `warden serve` child (for /proc/<pid>/status).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// A field of /proc/<pid>/status in kB (`VmRSS`, `VmHWM`), if the gateway runs.
    pub fn proc_status_kb(&self, field: &str) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        let line = status.lines().find(|l| l.starts_with(&format!("{field}:")))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }
}
