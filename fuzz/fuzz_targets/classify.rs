//! The SQL classifier on arbitrary text: it must never panic, and whatever it accepts must
//! carry at least one access per statement (an empty list would be allowed by any policy).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(sql) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(c) = warden_pg::classify::classify(sql) {
        for s in &c.statements {
            assert!(
                !s.accesses.is_empty(),
                "statement without accesses: {:?}",
                s.text
            );
            assert!(
                s.accesses.windows(2).all(|w| w[0] < w[1]),
                "accesses not sorted/deduplicated: {:?}",
                s.accesses
            );
        }
    }
    // The PREPARE view comes from the same parse; it must agree on success.
    assert_eq!(
        warden_pg::classify::classify(sql).is_ok(),
        warden_pg::classify::sql_prepare_names(sql).is_ok()
    );
});
