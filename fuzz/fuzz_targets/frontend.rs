//! The frontend (client → gateway) wire decoder on arbitrary bytes: framing, message decode,
//! the untagged startup packet and the startup-parameter parser must never panic, and every
//! frame split off the buffer must account for exactly the bytes its length word claims.
#![no_main]

use libfuzzer_sys::fuzz_target;
use warden_pg::codec::{decode_startup, frontend, split_frame, split_startup, FrontendMessage, StartupPacket};
use warden_pg::startup::parse_startup;

/// Small on purpose: a length word above it must be refused, not allocated.
const MAX_LEN: usize = 1 << 20;

fn check_startup(packet: &StartupPacket) {
    if let StartupPacket::Startup { params } = packet {
        if let Ok(req) = parse_startup(params) {
            assert!(!req.user.is_empty(), "startup accepted without a user");
            assert!(!req.database.is_empty(), "startup accepted without a database");
            for (name, _) in &req.forwarded {
                assert!(!name.starts_with("warden."), "gateway option forwarded upstream: {name}");
                assert_eq!(name, &name.to_ascii_lowercase(), "forwarded name not lower-cased");
            }
        }
    }
}

/// A `BytesMut` holding `data`, started from a codec helper's buffer so this target needs no
/// direct `bytes` dependency (the fuzz crate depends on warden-pg and warden-core only).
macro_rules! buffer {
    ($data:expr) => {{
        let mut b = frontend::startup(&[]);
        b.clear();
        b.extend_from_slice($data);
        b
    }};
}

fuzz_target!(|data: &[u8]| {
    // 1. The connection's first message: untagged startup packet, then the tagged stream.
    let mut buf = buffer!(data);
    let before = buf.len();
    match split_startup(&mut buf, MAX_LEN) {
        Ok(Some(packet)) => {
            assert!(buf.len() < before, "startup packet consumed nothing");
            check_startup(&packet);
        }
        Ok(None) => assert_eq!(buf.len(), before, "incomplete startup consumed bytes"),
        Err(_) => {}
    }

    // 2. decode_startup on the raw bytes (the body after the length word).
    if let Ok(packet) = decode_startup(buffer!(data).freeze()) {
        check_startup(&packet);
    }

    // 3. The whole input as a stream of tagged frames.
    let mut buf = buffer!(data);
    loop {
        let before = buf.len();
        match split_frame(&mut buf, MAX_LEN) {
            Ok(Some(frame)) => {
                assert_eq!(before - buf.len(), 5 + frame.body.len(), "frame size mismatch");
                assert!(frame.encoded_len() <= MAX_LEN + 1);
                // Round trip: re-encoding gives back the bytes that were split off.
                let mut re = buffer!(&[]);
                frame.encode(&mut re);
                assert_eq!(&re[..], &data[data.len() - before..data.len() - buf.len()]);
                if let Ok(msg) = FrontendMessage::decode(&frame) {
                    let _ = format!("{msg:?}");
                }
            }
            Ok(None) => {
                assert_eq!(buf.len(), before, "incomplete frame consumed bytes");
                break;
            }
            Err(_) => break,
        }
    }
});
