//! The chain's definitions, shared by the writer and the verifier.
//!
//! `hash_n = SHA-256(prev_hash_hex || seq_be || event_json)` where `prev_hash_hex` is the
//! previous event's hash as 64 lowercase hex ASCII bytes (64 `'0'`s for seq 1), `seq_be` is
//! the event's seq as 8 big-endian bytes and `event_json` the exact stored JSON text. The
//! first two parts have fixed lengths, so the encoding is unambiguous; binding `seq` makes a
//! moved row fail even if its neighbours were re-linked.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

pub fn event_hash(prev_hash_hex: &str, seq: i64, event_json: &str) -> String {
    let mut h = Sha256::new();
    h.update(prev_hash_hex.as_bytes());
    h.update((seq as u64).to_be_bytes());
    h.update(event_json.as_bytes());
    hex::encode(h.finalize())
}

fn checkpoint_message(seq: i64, hash_hex: &str) -> Vec<u8> {
    let mut m = b"warden-audit-checkpoint-v1\0".to_vec();
    m.extend_from_slice(&(seq as u64).to_be_bytes());
    m.extend_from_slice(hash_hex.as_bytes());
    m
}

pub fn sign_checkpoint(key: &SigningKey, seq: i64, hash_hex: &str) -> String {
    hex::encode(key.sign(&checkpoint_message(seq, hash_hex)).to_bytes())
}

pub fn verify_checkpoint(key: &VerifyingKey, seq: i64, hash_hex: &str, sig_hex: &str) -> bool {
    let Ok(bytes) = hex::decode(sig_hex) else {
        return false;
    };
    let Ok(sig) = Signature::from_slice(&bytes) else {
        return false;
    };
    // Strict: rejects small-order keys and non-canonical signatures.
    key.verify_strict(&checkpoint_message(seq, hash_hex), &sig)
        .is_ok()
}
