//! Malformed bytes on the wire, before and after authentication: each gets an
//! ErrorResponse or a closed connection, and the gateway keeps serving.

mod common;

use common::raw::{authed, frame, parse, startup_packet};
use common::*;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads until the gateway closes the connection (or `limit` passes: then the gateway is
/// holding a broken connection open, which the caller reports).
async fn read_to_close(s: &mut TcpStream, limit: Duration) -> Result<Vec<u8>, Vec<u8>> {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let mut buf = [0u8; 4096];
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return Err(got),
            Ok(Ok(0)) | Ok(Err(_)) => return Ok(got),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// Sends `bytes` (then half-closes if asked) and expects an ErrorResponse or a plain close.
async fn expect_error_or_close(port: u16, bytes: &[u8], half_close: bool, what: &str) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let _ = s.write_all(bytes).await;
    if half_close {
        let _ = s.shutdown().await;
    }
    let got = read_to_close(&mut s, Duration::from_secs(10))
        .await
        .unwrap_or_else(|partial| {
            panic!("{what}: connection still open after 10 s (got {partial:?})")
        });
    check_error_or_nothing(&got, what);
}

/// The answer may be an ErrorResponse, or nothing but a close; a password request may come
/// first when the startup packet itself was fine. Never AuthenticationOk or ReadyForQuery.
fn check_error_or_nothing(got: &[u8], what: &str) {
    let msgs = parse(got);
    let password_request = |(t, b): &(u8, Vec<u8>)| {
        *t == b'R' && b.first_chunk::<4>().is_some_and(|c| *c != [0, 0, 0, 0])
    };
    let rest: Vec<_> = msgs.iter().skip_while(|m| password_request(m)).collect();
    assert!(
        rest.is_empty() || rest[0].0 == b'E',
        "{what}: expected an ErrorResponse or a close, got {got:?}"
    );
    assert!(
        !msgs.iter().any(|(t, _)| *t == b'Z'),
        "{what}: the gateway went on as if nothing happened: {got:?}"
    );
    for (tag, body) in &msgs {
        if *tag == b'E' {
            println!(
                "{what}: {}",
                String::from_utf8_lossy(body).replace('\0', " ")
            );
        }
    }
}

/// Sends a simple query on a raw connection and returns the messages up to ReadyForQuery.
async fn raw_query(s: &mut TcpStream, sql: &str) -> Vec<(u8, Vec<u8>)> {
    let mut body = sql.as_bytes().to_vec();
    body.push(0);
    s.write_all(&frame(b'Q', &body)).await.unwrap();
    let mut got = Vec::new();
    loop {
        let mut buf = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "closed: {got:?}");
        got.extend_from_slice(&buf[..n]);
        let msgs = parse(&got);
        if msgs.last().is_some_and(|(t, _)| *t == b'Z') {
            return msgs;
        }
    }
}

async fn still_serves(gw: &Gateway, token: &str) {
    let c = gw
        .connect("bot", token, Some("reader"))
        .await
        .expect("the gateway still accepts clients");
    assert_eq!(
        c.query_one("SELECT 1 + 1", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        2
    );
}

#[tokio::test]
async fn malformed_startup_and_protocol_messages_never_crash_the_gateway() {
    let gw = Gateway::builder()
        .toml("[limits]\nstartup_timeout = \"5s\"\n")
        .start();
    let token = gw.agent_with_token("bot");
    let port = gw.pg_port;

    // Before authentication.
    expect_error_or_close(
        port,
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        false,
        "HTTP request",
    )
    .await;
    expect_error_or_close(
        port,
        &[0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 0, 1, 2, 3],
        false,
        "raw garbage",
    )
    .await;
    expect_error_or_close(
        port,
        &[0x7f, 0xff, 0xff, 0xff, 0, 3, 0, 0],
        false,
        "startup with a huge length",
    )
    .await;
    expect_error_or_close(
        port,
        &[0, 0, 0, 2],
        false,
        "startup shorter than its header",
    )
    .await;
    expect_error_or_close(
        port,
        &[0, 0, 0, 8, 0, 9, 0, 0],
        false,
        "unknown protocol version",
    )
    .await;
    let full = startup_packet(&[("user", "bot"), ("database", "test")]);
    expect_error_or_close(port, &full[..full.len() / 2], true, "truncated startup").await;
    expect_error_or_close(
        port,
        &[0, 0, 0, 100, 0, 3, 0, 0, b'u'],
        false,
        "startup that never completes",
    )
    .await;
    let mut no_nul = 196608u32.to_be_bytes().to_vec();
    no_nul.extend_from_slice(b"user\0bot");
    let mut p = ((no_nul.len() + 4) as u32).to_be_bytes().to_vec();
    p.extend_from_slice(&no_nul);
    expect_error_or_close(port, &p, false, "startup parameters without terminators").await;
    let mut bad_password = startup_packet(&[("user", "bot"), ("database", "test")]);
    bad_password.extend_from_slice(&[b'p', 0xff, 0xff, 0xff, 0xff]);
    expect_error_or_close(
        port,
        &bad_password,
        false,
        "password message with a huge length",
    )
    .await;
    still_serves(&gw, &token).await;

    // After authentication: each case on a fresh authenticated connection.
    let after_auth: Vec<(&str, Vec<u8>)> = vec![
        // Bind claiming 1000 parameter formats with no bytes behind them.
        ("Bind with lying counts", frame(b'B', &[0, 0, 0x03, 0xe8])),
        (
            "Bind with a parameter longer than the message",
            frame(b'B', &[0, 0, 0, 0, 0, 1, 0x7f, 0xff, 0xff, 0xff, 1]),
        ),
        ("unknown message type", frame(b'z', b"whatever")),
        (
            "message with a negative length",
            vec![b'Q', 0xff, 0xff, 0xff, 0xf0],
        ),
        ("Query without its terminator", frame(b'Q', b"SELECT 1")),
        (
            "Parse with lying parameter count",
            frame(b'P', b"\0SELECT 1\0\x7f\xff"),
        ),
        ("Execute without portal terminator", frame(b'E', b"abc")),
    ];
    for (what, bytes) in &after_auth {
        let mut s = authed(&gw, &token).await;
        s.write_all(bytes).await.unwrap();
        match read_to_close(&mut s, Duration::from_secs(5)).await {
            Ok(got) => check_error_or_nothing(&got, what),
            // Still open: then it must have answered with an error and still work.
            Err(got) => {
                check_error_or_nothing(&got, what);
                assert!(
                    !got.is_empty(),
                    "{what}: no answer and the connection hangs"
                );
                let msgs = raw_query(&mut s, "SELECT 1").await;
                assert!(
                    msgs.iter().any(|(t, _)| *t == b'D'),
                    "{what}: connection left open but unusable: {msgs:?}"
                );
            }
        }
    }

    // A message cut short, then the client goes away.
    let mut s = authed(&gw, &token).await;
    let q = frame(b'Q', b"SELECT 1\0");
    s.write_all(&q[..7]).await.unwrap();
    s.shutdown().await.unwrap();
    check_error_or_nothing(
        &read_to_close(&mut s, Duration::from_secs(10))
            .await
            .expect("truncated message: closed"),
        "truncated message",
    );

    // The fast-path FunctionCall: refused as a denial, and the session goes on.
    let mut s = authed(&gw, &token).await;
    // FunctionCall: oid 1255, 0 arg formats, 0 args, result format 0.
    let mut body = 1255u32.to_be_bytes().to_vec();
    body.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    s.write_all(&frame(b'F', &body)).await.unwrap();
    let mut got = Vec::new();
    while !parse(&got).iter().any(|(t, _)| *t == b'Z' || *t == b'E')
        || !parse(&got).iter().any(|(t, _)| *t == b'Z')
    {
        let mut buf = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
            .await
            .expect("answer to FunctionCall")
            .unwrap();
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    let msgs = parse(&got);
    let error = msgs
        .iter()
        .find(|(t, _)| *t == b'E')
        .unwrap_or_else(|| panic!("FunctionCall must be refused: {msgs:?}"));
    assert!(
        contains_bytes(&error.1, b"C42501"),
        "FunctionCall refusal should be 42501: {}",
        String::from_utf8_lossy(&error.1)
    );
    assert!(
        msgs.iter().any(|(t, _)| *t == b'Z'),
        "the session should go on after a refused FunctionCall: {msgs:?}"
    );
    let msgs = raw_query(&mut s, "SELECT 1").await;
    assert!(msgs.iter().any(|(t, _)| *t == b'D'), "{msgs:?}");

    still_serves(&gw, &token).await;
}
