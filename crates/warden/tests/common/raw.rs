//! Raw PostgreSQL wire helpers for tests that must send what no client library would.

use super::Gateway;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Backend messages as (tag, body).
pub fn parse(mut bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    while bytes.len() >= 5 {
        let len = u32::from_be_bytes(bytes[1..5].try_into().unwrap()) as usize;
        if len < 4 || bytes.len() < 1 + len {
            break;
        }
        out.push((bytes[0], bytes[5..1 + len].to_vec()));
        bytes = &bytes[1 + len..];
    }
    out
}

pub fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut f = vec![tag];
    f.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    f.extend_from_slice(body);
    f
}

pub fn startup_packet(params: &[(&str, &str)]) -> Vec<u8> {
    let mut body = 196608u32.to_be_bytes().to_vec();
    for (k, v) in params {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut p = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    p.extend_from_slice(&body);
    p
}

/// A connection past authentication, at ReadyForQuery.
pub async fn authed(gw: &Gateway, token: &str) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", gw.pg_port)).await.unwrap();
    s.write_all(&startup_packet(&[
        ("user", "bot"),
        ("database", "test"),
        ("options", "-c warden.node=reader"),
    ]))
    .await
    .unwrap();
    let mut pw = token.as_bytes().to_vec();
    pw.push(0);
    let mut sent_password = false;
    let mut got = Vec::new();
    loop {
        let mut buf = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "closed during startup: {got:?}");
        got.extend_from_slice(&buf[..n]);
        let msgs = parse(&got);
        if !sent_password && msgs.iter().any(|(t, _)| *t == b'R') {
            s.write_all(&frame(b'p', &pw)).await.unwrap();
            sent_password = true;
            got.clear();
        } else if msgs.iter().any(|(t, _)| *t == b'Z') {
            return s;
        }
    }
}
