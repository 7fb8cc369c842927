//! Frontend decode of the batch a driver sends per statement in the extended protocol
//! (what `pgbench -S -M extended` sends per transaction): Parse, Bind, Describe, Execute,
//! Sync, split off one read buffer and decoded. Run: `cargo bench -p warden-pg --bench codec`.

use bytes::{BufMut, BytesMut};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use std::hint::black_box;
use warden_pg::codec::{put_cstr, split_frame, Frame, FrontendMessage};

const PGBENCH_SELECT: &str = "SELECT abalance FROM pgbench_accounts WHERE aid = $1;";
const MAX_LEN: usize = 1 << 30;

fn parse(statement: &str, sql: &str, types: &[u32]) -> Frame {
    let mut b = BytesMut::new();
    put_cstr(&mut b, statement);
    put_cstr(&mut b, sql);
    b.put_i16(types.len() as i16);
    for t in types {
        b.put_u32(*t);
    }
    Frame::new(b'P', b.freeze())
}

/// Bind with text parameters (format codes: none = all text), results in text.
fn bind(portal: &str, statement: &str, params: &[Option<&[u8]>]) -> Frame {
    let mut b = BytesMut::new();
    put_cstr(&mut b, portal);
    put_cstr(&mut b, statement);
    b.put_i16(0);
    b.put_i16(params.len() as i16);
    for p in params {
        match p {
            Some(v) => {
                b.put_i32(v.len() as i32);
                b.extend_from_slice(v);
            }
            None => b.put_i32(-1),
        }
    }
    b.put_i16(0);
    Frame::new(b'B', b.freeze())
}

fn simple(tag: u8, body: &[u8]) -> Frame {
    Frame::new(tag, BytesMut::from(body).freeze())
}

fn batch(sql: &str, params: &[Option<&[u8]>]) -> BytesMut {
    let mut out = BytesMut::new();
    for f in [
        parse("", sql, &[]),
        bind("", "", params),
        simple(b'D', b"P\0"),
        simple(b'E', b"\0\0\0\0\0"),
        simple(b'S', b""),
    ] {
        f.encode(&mut out);
    }
    out
}

/// Split every frame off the buffer and decode it, as the session's read loop does.
fn decode_all(mut buf: BytesMut) -> usize {
    let mut n = 0;
    while let Some(frame) = split_frame(&mut buf, MAX_LEN).unwrap() {
        let msg = FrontendMessage::decode(&frame).unwrap();
        black_box(&msg);
        n += 1;
    }
    n
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("frontend_decode");
    let wide_sql = "INSERT INTO orders (id, customer, sku, qty, price, note, created, region, status, tag) \
                    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";
    let long = vec![b'x'; 2000];
    let cases: Vec<(&str, BytesMut)> = vec![
        ("pgbench_select_1_param", batch(PGBENCH_SELECT, &[Some(b"12345")])),
        (
            "insert_10_params",
            batch(
                wide_sql,
                &[
                    Some(b"1"),
                    Some(b"42"),
                    Some(b"SKU-0001"),
                    Some(b"3"),
                    Some(b"19.99"),
                    Some(&long[..]),
                    Some(b"2026-01-01 00:00:00+00"),
                    Some(b"eu"),
                    None,
                    Some(b"t"),
                ],
            ),
        ),
    ];
    for (name, buf) in &cases {
        assert_eq!(decode_all(buf.clone()), 5);
        g.throughput(Throughput::Bytes(buf.len() as u64));
        g.bench_function(*name, |b| {
            b.iter_batched(|| buf.clone(), decode_all, BatchSize::SmallInput)
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
