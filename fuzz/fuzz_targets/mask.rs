//! Masking on arbitrary bytes: `mask_str` (as lossy UTF-8), `mask_pg_value`
//! over many column types and formats, and `mask_data_row`. Never panics, and
//! no card the detector reports in the input is reported again in the output.
//! The property lives in `warden_mask::fuzzing` so `cargo test` runs it too.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    warden_mask::fuzzing::check(data);
});
