//! Checksums and range checks shared by the detectors.

/// Luhn over ASCII digits; other bytes are skipped (callers pass spans that
/// may contain group separators).
pub(crate) fn luhn_ok(span: &[u8]) -> bool {
    let mut sum = 0u32;
    let mut double = false;
    let mut n = 0;
    for &c in span.iter().rev() {
        if !c.is_ascii_digit() {
            continue;
        }
        let mut d = (c - b'0') as u32;
        if double {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
        double = !double;
        n += 1;
    }
    n > 0 && sum.is_multiple_of(10)
}

/// Is this digit string (no separators) plausibly a payment card by issuer
/// prefix and length? Luhn alone lets 1 in 10 random numbers through; the
/// issuer table removes epoch timestamps (prefix 1), zero-padded ids (0),
/// and most order numbers. Card ranges per ISO/IEC 7812 as published by the
/// networks: Visa, Mastercard, Amex, Discover, JCB, Diners, UnionPay,
/// Maestro, Mir, RuPay, Troy, Verve. UATP (prefix 1, airline) is left out on
/// purpose: its 15-digit shape collides with 1.5e14-scale ids.
pub(crate) fn issuer_ok(d: &[u8]) -> bool {
    let n = d.len();
    if !(13..=19).contains(&n) {
        return false;
    }
    let p = |k: usize| -> u32 { d[..k].iter().fold(0u32, |a, &c| a * 10 + (c - b'0') as u32) };
    match d[0] {
        b'4' => n == 13 || n == 16 || n == 19, // Visa
        b'5' => {
            let p2 = p(2);
            if (51..=55).contains(&p2) {
                n == 16 // Mastercard
            } else {
                n >= 13 // Maestro 50, 56-59; Verve 506
            }
        }
        b'2' => {
            let p4 = p(4);
            ((2221..=2720).contains(&p4) && n == 16) // Mastercard 2-series
                || ((2200..=2204).contains(&p4) && n >= 16) // Mir
        }
        b'3' => {
            let p2 = p(2);
            let p3 = p(3);
            let p4 = p(4);
            ((p2 == 34 || p2 == 37) && n == 15) // Amex
                || ((3528..=3589).contains(&p4) && n >= 16) // JCB
                || (((300..=305).contains(&p3) || p4 == 3095 || p2 == 36 || p2 == 38 || p2 == 39)
                    && n >= 14) // Diners
        }
        b'6' => n >= 13, // Discover, UnionPay 62, Maestro 6x, RuPay 60/65, InstaPayment 637-639
        b'8' => {
            let p2 = p(2);
            (p2 == 81 || p2 == 82) && n >= 16 // UnionPay 81, RuPay 82
        }
        b'9' => p(4) == 9792 && n == 16, // Troy
        _ => false,
    }
}

/// US SSN ranges the SSA never issues.
pub(crate) fn ssn_ok(area: &[u8], group: &[u8], serial: &[u8]) -> bool {
    area != b"000" && area != b"666" && area[0] != b'9' && group != b"00" && serial != b"0000"
}

/// IBAN length per country (SWIFT IBAN registry).
#[rustfmt::skip]
pub(crate) fn iban_len(cc: [u8; 2]) -> Option<usize> {
    let l = match &cc {
        b"AD" => 24, b"AE" => 23, b"AL" => 28, b"AT" => 20, b"AZ" => 28, b"BA" => 20, b"BE" => 16,
        b"BG" => 22, b"BH" => 22, b"BI" => 27, b"BR" => 29, b"BY" => 28, b"CH" => 21, b"CR" => 22,
        b"CY" => 28, b"CZ" => 24, b"DE" => 22, b"DJ" => 27, b"DK" => 18, b"DO" => 28, b"EE" => 20,
        b"EG" => 29, b"ES" => 24, b"FI" => 18, b"FK" => 18, b"FO" => 18, b"FR" => 27, b"GB" => 22,
        b"GE" => 22, b"GI" => 23, b"GL" => 18, b"GR" => 27, b"GT" => 28, b"HR" => 21, b"HU" => 28,
        b"IE" => 22, b"IL" => 23, b"IQ" => 23, b"IS" => 26, b"IT" => 27, b"JO" => 30, b"KW" => 30,
        b"KZ" => 20, b"LB" => 28, b"LC" => 32, b"LI" => 21, b"LT" => 20, b"LU" => 20, b"LV" => 21,
        b"LY" => 25, b"MC" => 27, b"MD" => 24, b"ME" => 22, b"MK" => 19, b"MN" => 20, b"MR" => 27,
        b"MT" => 31, b"MU" => 30, b"NI" => 28, b"NL" => 18, b"NO" => 15, b"OM" => 23, b"PK" => 24,
        b"PL" => 28, b"PS" => 29, b"PT" => 25, b"QA" => 29, b"RO" => 24, b"RS" => 22, b"RU" => 33,
        b"SA" => 24, b"SC" => 31, b"SD" => 18, b"SE" => 24, b"SI" => 19, b"SK" => 24, b"SM" => 27,
        b"SO" => 23, b"ST" => 25, b"SV" => 28, b"TL" => 23, b"TN" => 24, b"TR" => 26, b"UA" => 29,
        b"VA" => 22, b"VG" => 24, b"XK" => 20, b"YE" => 30,
        _ => return None,
    };
    Some(l)
}

/// ISO 13616 mod-97 over an upper-cased, separator-free IBAN.
pub(crate) fn iban_mod97_ok(iban: &[u8]) -> bool {
    if iban.len() < 5 || !iban[2].is_ascii_digit() || !iban[3].is_ascii_digit() {
        return false;
    }
    let mut r: u32 = 0;
    for &c in iban[4..].iter().chain(&iban[..4]) {
        match c {
            b'0'..=b'9' => r = (r * 10 + (c - b'0') as u32) % 97,
            b'A'..=b'Z' => r = (r * 100 + (c - b'A' + 10) as u32) % 97,
            _ => return false,
        }
    }
    r == 1
}

/// Whole-string IBAN check for the custom-detector validator.
pub(crate) fn iban_ok(s: &[u8]) -> bool {
    let mut buf = [0u8; 34];
    let mut n = 0;
    for &c in s {
        if c == b' ' {
            continue;
        }
        if n == buf.len() || !c.is_ascii_alphanumeric() {
            return false;
        }
        buf[n] = c.to_ascii_uppercase();
        n += 1;
    }
    n >= 5
        && buf[0].is_ascii_alphabetic()
        && buf[1].is_ascii_alphabetic()
        && iban_len([buf[0], buf[1]]) == Some(n)
        && iban_mod97_ok(&buf[..n])
}

/// Shannon entropy in bits per byte.
pub(crate) fn entropy(s: &[u8]) -> f64 {
    let mut counts = [0u32; 256];
    for &c in s {
        counts[c as usize] += 1;
    }
    let n = s.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / n;
            -p * p.log2()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luhn() {
        assert!(luhn_ok(b"4111111111111111"));
        assert!(luhn_ok(b"4111 1111 1111 1111"));
        assert!(!luhn_ok(b"4111111111111112"));
        assert!(luhn_ok(b"378282246310005"));
        assert!(!luhn_ok(b""));
    }

    #[test]
    fn issuers() {
        assert!(issuer_ok(b"4111111111111111"));
        assert!(issuer_ok(b"378282246310005"));
        assert!(!issuer_ok(b"371111111111111111")); // Amex is 15 digits
        assert!(issuer_ok(b"5555555555554444"));
        assert!(issuer_ok(b"2223003122003222"));
        assert!(!issuer_ok(b"1700000000000")); // epoch ms
        assert!(!issuer_ok(b"0000000000000000"));
        assert!(!issuer_ok(b"9999999999999999"));
    }

    #[test]
    fn ssn_ranges() {
        assert!(ssn_ok(b"123", b"45", b"6789"));
        assert!(!ssn_ok(b"000", b"45", b"6789"));
        assert!(!ssn_ok(b"666", b"45", b"6789"));
        assert!(!ssn_ok(b"912", b"45", b"6789"));
        assert!(!ssn_ok(b"123", b"00", b"6789"));
        assert!(!ssn_ok(b"123", b"45", b"0000"));
    }

    #[test]
    fn iban() {
        assert!(iban_ok(b"DE89 3704 0044 0532 0130 00"));
        assert!(iban_ok(b"GB82WEST12345698765432"));
        assert!(!iban_ok(b"GB82WEST12345698765433"));
        assert!(!iban_ok(b"XX82WEST12345698765432"));
    }

    #[test]
    fn entropy_values() {
        assert!(entropy(b"aaaaaaaaaaaaaaaa") < 0.01);
        assert!(entropy(b"Zx9Qw3Lk7Pv2Rt8M") > 3.9);
    }
}
