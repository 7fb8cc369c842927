//! The gateway authenticates upstream itself with SCRAM-SHA-256 and md5, against a
//! throwaway PostgreSQL cluster that trusts nobody (the local server trusts loopback, so it
//! cannot prove this).

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";
const SUPERUSER_PW: &str = "scram-super-Pw-1";
const MD5_PW: &str = "md5-user-Pw-2";

/// A PostgreSQL cluster in a temp dir owned by `postgres`, stopped on Drop.
struct Cluster {
    dir: tempfile::TempDir,
    port: u16,
}

fn as_postgres(args: &[&str]) -> std::process::Output {
    let out = Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

impl Cluster {
    fn start() -> Cluster {
        let dir = tempfile::Builder::new()
            .prefix("warden-pg-")
            .tempdir()
            .unwrap();
        Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(dir.path())
            .status()
            .unwrap();
        let data = dir.path().join("data");
        let pwfile = dir.path().join("pw");
        std::fs::write(&pwfile, SUPERUSER_PW).unwrap();
        Command::new("chown")
            .arg("postgres:postgres")
            .arg(&pwfile)
            .status()
            .unwrap();
        as_postgres(&[
            &format!("{PG_BIN}/initdb"),
            "-D",
            s(&data),
            "-U",
            "postgres",
            "--auth=scram-sha-256",
            "--pwfile",
            s(&pwfile),
        ]);
        // md5 for the md5 user (first match wins), scram for everyone else.
        let hba = data.join("pg_hba.conf");
        let rest = std::fs::read_to_string(&hba).unwrap();
        std::fs::write(&hba, format!("host all md5user 127.0.0.1/32 md5\n{rest}")).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let opts = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c log_connections=on",
            s(dir.path())
        );
        let log = dir.path().join("log");
        as_postgres(&[
            &format!("{PG_BIN}/pg_ctl"),
            "-D",
            s(&data),
            "-o",
            &opts,
            "-l",
            s(&log),
            "-w",
            "-t",
            "60",
            "start",
        ]);
        Cluster { dir, port }
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn conn(&self, user: &str, password: &str, db: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user={user} password={password} dbname={db}",
            self.port
        )
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new("runuser")
            .args([
                "-u",
                "postgres",
                "--",
                &format!("{PG_BIN}/pg_ctl"),
                "-D",
                s(&self.data()),
                "-m",
                "immediate",
                "stop",
            ])
            .output();
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[tokio::test]
async fn scram_and_md5_upstream_auth_work_and_a_wrong_password_is_a_clean_unavailable() {
    let cluster = Cluster::start();
    // Set up the md5 user and a table through a direct SCRAM connection.
    let admin = connect_str(&cluster.conn("postgres", SUPERUSER_PW, "postgres"))
        .await
        .expect("direct SCRAM connection to the throwaway cluster");
    admin
        .batch_execute(&format!(
            "SET password_encryption = 'md5'; CREATE ROLE md5user LOGIN PASSWORD '{MD5_PW}'; \
             CREATE TABLE public.t (id int, name text); INSERT INTO public.t VALUES (1, 'on the throwaway cluster'); GRANT SELECT ON public.t TO md5user;"
        ))
        .await
        .unwrap();
    let stored: String = admin
        .query_one(
            "SELECT rolpassword FROM pg_authid WHERE rolname = 'md5user'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        stored.starts_with("md5"),
        "the md5 user's password must be stored as md5: {stored}"
    );
    let stored: String = admin
        .query_one(
            "SELECT rolpassword FROM pg_authid WHERE rolname = 'postgres'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(stored.starts_with("SCRAM-SHA-256$"), "{stored}");

    let port = cluster.port;
    let targets = format!(
        r#"
[[targets]]
name = "scram"
host = "127.0.0.1"
port = {port}
database = "postgres"
user = "postgres"
password_env = "WARDEN_TEST_SCRAM_PW"

[[targets]]
name = "md5"
host = "127.0.0.1"
port = {port}
database = "postgres"
user = "md5user"
password_env = "WARDEN_TEST_MD5_PW"

[[targets]]
name = "wrongpw"
host = "127.0.0.1"
port = {port}
database = "postgres"
user = "postgres"
password_env = "WARDEN_TEST_WRONG_PW"

[[targets]]
name = "nopw"
host = "127.0.0.1"
port = {port}
database = "postgres"
user = "postgres"
"#
    );
    let gw = Gateway::builder()
        .policy("@id(\"read-anything\")\npermit(principal, action == Warden::Action::\"select\", resource) when { context.node == \"reader\" };\n")
        .toml(&targets)
        .env("WARDEN_TEST_SCRAM_PW", SUPERUSER_PW)
        .env("WARDEN_TEST_MD5_PW", MD5_PW)
        .env("WARDEN_TEST_WRONG_PW", "not-the-password-9")
        .start();
    let token = gw.agent_with_token("bot");

    for target in ["scram", "md5"] {
        let c = connect_str(&gw.conn_string("bot", &token, target, Some("reader")))
            .await
            .unwrap_or_else(|e| panic!("{target}: {}", error_text(&e)));
        let row = c
            .query_one("SELECT name FROM public.t WHERE id = $1", &[&1i32])
            .await
            .unwrap_or_else(|e| panic!("{target}: {}", error_text(&e)));
        assert_eq!(
            row.get::<_, String>(0),
            "on the throwaway cluster",
            "{target}"
        );
    }
    // The upstream logged which method authenticated each connection.
    let log = std::fs::read_to_string(cluster.dir.path().join("log")).unwrap();
    assert!(
        log.contains(r#"identity="md5user" method=md5"#),
        "no md5 authentication in the upstream log:\n{log}"
    );
    assert!(
        log.contains(r#"identity="postgres" method=scram-sha-256"#),
        "no SCRAM authentication in the upstream log:\n{log}"
    );

    for (target, expect) in [
        ("wrongpw", "\"wrongpw\" is unavailable"),
        ("nopw", "\"nopw\" is unavailable"),
    ] {
        let e = match connect_str(&gw.conn_string("bot", &token, target, Some("reader"))).await {
            Ok(_) => panic!("{target}: connecting with a wrong upstream password must fail"),
            Err(e) => e,
        };
        let text = error_text(&e);
        assert!(text.contains(expect), "{target}: {text}");
        assert_eq!(sqlstate(&e).as_deref(), Some("08006"), "{text}");
        for secret in [SUPERUSER_PW, MD5_PW, "not-the-password-9"] {
            assert!(!text.contains(secret), "{target}: {text}");
        }
        assert!(
            !text.contains("password authentication failed"),
            "the upstream's own error stays in the gateway's log: {text}"
        );
    }
    // The gateway is unharmed.
    let c = connect_str(&gw.conn_string("bot", &token, "scram", Some("reader")))
        .await
        .unwrap();
    c.simple_query("SELECT 1").await.unwrap();
}
