//! The detectors. One vectorised pass finds the only bytes that can start a
//! structured match (digits, ':' and '@'); an Aho-Corasick pass finds secret
//! prefixes. Everything else is hand-written validation around those hits, so
//! clean text costs two linear scans and no allocation.

use aho_corasick::{AhoCorasick, MatchKind};
use base64::Engine as _;
use regex::Regex;

use crate::checks::{entropy, iban_len, iban_mod97_ok, iban_ok, issuer_ok, luhn_ok, ssn_ok};
use crate::config::{DetectorKind, Validator};

/// What produced a finding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Source {
    Detector(DetectorKind),
    /// Index into `MaskConfig::custom`.
    Custom(usize),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Hit {
    pub start: usize,
    pub end: usize,
    pub src: Source,
}

#[derive(Clone, Copy)]
enum SecretPat {
    Aws,
    Github,
    GithubPat,
    Stripe,
    SkDash,
    Jwt,
    Pem,
}

const SECRET_PATTERNS: &[(&str, SecretPat)] = &[
    ("AKIA", SecretPat::Aws),
    ("ASIA", SecretPat::Aws),
    ("ABIA", SecretPat::Aws),
    ("ACCA", SecretPat::Aws),
    ("AGPA", SecretPat::Aws),
    ("AIDA", SecretPat::Aws),
    ("AIPA", SecretPat::Aws),
    ("ANPA", SecretPat::Aws),
    ("ANVA", SecretPat::Aws),
    ("AROA", SecretPat::Aws),
    ("APKA", SecretPat::Aws),
    ("ghp_", SecretPat::Github),
    ("gho_", SecretPat::Github),
    ("ghu_", SecretPat::Github),
    ("ghs_", SecretPat::Github),
    ("ghr_", SecretPat::Github),
    ("github_pat_", SecretPat::GithubPat),
    ("sk_live_", SecretPat::Stripe),
    ("rk_live_", SecretPat::Stripe),
    ("sk-", SecretPat::SkDash),
    ("eyJ", SecretPat::Jwt),
    ("-----BEGIN ", SecretPat::Pem),
];

pub(crate) struct CustomDet {
    pub re: Regex,
    pub validator: Option<Validator>,
}

pub(crate) struct Scanner {
    on: [bool; 15],
    /// Digit/':'/'@'-triggered detectors enabled at all.
    any_trigger: bool,
    secrets: Option<(AhoCorasick, Vec<SecretPat>)>,
    pub customs: Vec<CustomDet>,
}

#[inline]
fn is_alnum(c: u8) -> bool {
    c.is_ascii_alphanumeric()
}
#[inline]
fn is_word(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}
#[inline]
fn is_digit(c: u8) -> bool {
    c.is_ascii_digit()
}
#[inline]
fn at(b: &[u8], i: usize) -> u8 {
    // 0 is never a meaningful byte for any detector, so it doubles as "none".
    if i < b.len() {
        b[i]
    } else {
        0
    }
}
#[inline]
fn before(b: &[u8], i: usize) -> u8 {
    if i > 0 {
        b[i - 1]
    } else {
        0
    }
}

/// Finds bytes that can start a structured match: digits, ':' and '@'
/// (':' is '9' + 1, so digits and colon are one range compare). Keeps the
/// 32-byte block mask so clustered triggers (timestamps) cost no rescans.
struct Triggers<'a> {
    b: &'a [u8],
    base: usize,
    mask: u32,
}

impl<'a> Triggers<'a> {
    fn new(b: &'a [u8]) -> Self {
        // No cached block yet: a base no index can fall into.
        Triggers {
            b,
            base: usize::MAX / 2,
            mask: 0,
        }
    }

    #[inline]
    fn next_from(&mut self, mut i: usize) -> Option<usize> {
        loop {
            if i >= self.base && i < self.base + 32 {
                let m = self.mask & (u32::MAX << (i - self.base));
                if m != 0 {
                    return Some(self.base + m.trailing_zeros() as usize);
                }
                i = self.base + 32;
            }
            if i + 32 > self.b.len() {
                self.base = usize::MAX / 2; // no cached block
                self.mask = 0;
                return (i..self.b.len()).find(|&j| is_trigger(self.b[j]));
            }
            self.base = i;
            self.mask = block_mask(self.b, i);
            if self.mask != 0 {
                return Some(i + self.mask.trailing_zeros() as usize);
            }
            i += 32;
        }
    }
}

#[inline]
fn is_trigger(c: u8) -> bool {
    (b'0'..=b':').contains(&c) || c == b'@'
}

/// Bit k set when `b[i + k]` is a trigger; requires `i + 32 <= b.len()`.
#[inline]
fn block_mask(b: &[u8], i: usize) -> u32 {
    debug_assert!(i + 32 <= b.len());
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: SSE2 is part of the x86_64 baseline; the two unaligned
        // 16-byte loads stay within b[i..i + 32].
        unsafe {
            use std::arch::x86_64::*;
            let lo = _mm_set1_epi8((b'0' - 1) as i8);
            let hi = _mm_set1_epi8((b':' + 1) as i8);
            let atsign = _mm_set1_epi8(b'@' as i8);
            let p = b.as_ptr().add(i);
            let class = |v: __m128i| {
                _mm_or_si128(
                    _mm_and_si128(_mm_cmpgt_epi8(v, lo), _mm_cmplt_epi8(v, hi)),
                    _mm_cmpeq_epi8(v, atsign),
                )
            };
            let a = class(_mm_loadu_si128(p as *const __m128i));
            let c = class(_mm_loadu_si128(p.add(16) as *const __m128i));
            (_mm_movemask_epi8(a) as u32) | ((_mm_movemask_epi8(c) as u32) << 16)
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let mut m = 0u32;
        for k in 0..32 {
            m |= (is_trigger(b[i + k]) as u32) << k;
        }
        m
    }
}

impl Scanner {
    pub fn new(enabled: &[DetectorKind], customs: Vec<CustomDet>) -> Scanner {
        let mut on = [false; 15];
        for k in enabled {
            on[k.index()] = true;
        }
        use DetectorKind::*;
        let any_trigger = [Card, Ssn, Iban, Email, Phone, Ipv4, Ipv6]
            .iter()
            .any(|k| on[k.index()]);
        let want = |p: SecretPat| match p {
            SecretPat::Aws => on[AwsKey.index()],
            SecretPat::Github | SecretPat::GithubPat => on[GithubToken.index()],
            SecretPat::Stripe => on[StripeKey.index()],
            SecretPat::SkDash => on[OpenaiKey.index()] || on[AnthropicKey.index()],
            SecretPat::Jwt => on[Jwt.index()],
            SecretPat::Pem => on[PrivateKey.index()],
        };
        let pats: Vec<_> = SECRET_PATTERNS.iter().filter(|(_, p)| want(*p)).collect();
        let secrets = if pats.is_empty() {
            None
        } else {
            let ac = AhoCorasick::builder()
                .match_kind(MatchKind::LeftmostFirst)
                .build(pats.iter().map(|(s, _)| s))
                .expect("static patterns compile");
            Some((ac, pats.iter().map(|(_, p)| *p).collect()))
        };
        Scanner {
            on,
            any_trigger,
            secrets,
            customs,
        }
    }

    #[inline]
    fn on(&self, k: DetectorKind) -> bool {
        self.on[k.index()]
    }

    pub fn enabled(&self, k: DetectorKind) -> bool {
        self.on(k)
    }

    /// Appends findings (unsorted, possibly overlapping) to `out`.
    pub fn scan(&self, s: &str, high_entropy: bool, out: &mut Vec<Hit>) {
        let b = s.as_bytes();
        if let Some((ac, kinds)) = &self.secrets {
            for m in ac.find_iter(b) {
                self.secret_at(b, m.start(), m.end(), kinds[m.pattern().as_usize()], out);
            }
        }
        if self.any_trigger {
            let mut i = 0;
            let mut card_done = 0;
            let mut trig = Triggers::new(b);
            while let Some(p) = trig.next_from(i) {
                let next = match b[p] {
                    b'@' => self.at_email(b, p, out),
                    b':' => self.at_colon(b, p, out),
                    _ => self.at_digit(b, p, &mut card_done, out),
                };
                debug_assert!(next > p);
                i = next.max(p + 1);
            }
        }
        for (idx, c) in self.customs.iter().enumerate() {
            for m in c.re.find_iter(s) {
                if m.is_empty() {
                    continue;
                }
                let ok = match c.validator {
                    None => true,
                    Some(Validator::Luhn) => {
                        m.as_str().bytes().filter(u8::is_ascii_digit).count() >= 2
                            && luhn_ok(m.as_str().as_bytes())
                    }
                    Some(Validator::Iban) => iban_ok(m.as_str().as_bytes()),
                };
                if ok {
                    out.push(Hit {
                        start: m.start(),
                        end: m.end(),
                        src: Source::Custom(idx),
                    });
                }
            }
        }
        if high_entropy && self.on(DetectorKind::HighEntropy) {
            high_entropy_tokens(b, out);
        }
    }

    fn push(out: &mut Vec<Hit>, start: usize, end: usize, k: DetectorKind) {
        out.push(Hit {
            start,
            end,
            src: Source::Detector(k),
        });
    }

    // ---- digits ----------------------------------------------------------

    fn at_digit(&self, b: &[u8], p: usize, card_done: &mut usize, out: &mut Vec<Hit>) -> usize {
        use DetectorKind::*;
        let word_end = || {
            let mut e = p;
            while e < b.len() && is_alnum(b[e]) {
                e += 1;
            }
            e
        };
        if is_alnum(before(b, p)) {
            let mut lw = p;
            while lw > 0 && is_alnum(b[lw - 1]) {
                lw -= 1;
            }
            // Letters glued in front: only an IBAN country code or the hex
            // head of an IPv6 address can start that way.
            let free = !is_word(before(b, lw)) && before(b, lw) != b'-' && before(b, lw) != b'.';
            if free && self.on(Iban) && p - lw == 2 {
                if let Some(e) = iban_at(b, lw) {
                    Self::push(out, lw, e, Iban);
                    return e;
                }
            }
            if free
                && self.on(Ipv6)
                && b[lw..p].iter().all(u8::is_ascii_hexdigit)
                && before(b, lw) != b':'
            {
                if let Some(e) = ipv6_at(b, lw) {
                    Self::push(out, lw, e, Ipv6);
                    return e;
                }
            }
            return word_end();
        }
        let mut re = p;
        while re < b.len() && is_digit(b[re]) {
            re += 1;
        }
        let nx = at(b, re);
        if re - p == 4 && nx == b'-' {
            if let Some(e) = iso_datetime_end(b, p) {
                return e;
            }
        }
        if nx == b':' || nx.is_ascii_hexdigit() && !is_digit(nx) {
            if self.on(Ipv6)
                && !is_word(before(b, p))
                && before(b, p) != b':'
                && before(b, p) != b'.'
            {
                if let Some(e) = ipv6_at(b, p) {
                    Self::push(out, p, e, Ipv6);
                    return e;
                }
            }
            if nx != b':' {
                return word_end();
            }
        }
        if is_alnum(nx) {
            return word_end();
        }
        if nx == b'.' && self.on(Ipv4) {
            if let Some(e) = ipv4_at(b, p) {
                Self::push(out, p, e, Ipv4);
                return e;
            }
        }
        if self.on(Card) && p >= *card_done && chain_digits(b, p) >= 13 {
            let (found_end, chain_end) = card_chain(b, p, out);
            *card_done = chain_end;
            if let Some(e) = found_end {
                return e;
            }
        }
        if self.on(Ssn) && (re - p == 3 || re - p == 9) {
            if let Some(e) = ssn_at(b, p) {
                Self::push(out, p, e, Ssn);
                return e;
            }
        }
        if self.on(Phone) && phone_plausible(b, p, re) {
            if let Some((s, e)) = phone_at(b, p) {
                Self::push(out, s, e, Phone);
                return e;
            }
        }
        re
    }

    fn at_colon(&self, b: &[u8], p: usize, out: &mut Vec<Hit>) -> usize {
        // A ':' after an alphanumeric byte was already seen by the digit
        // path or belongs to a word ("Note:", "std::").
        let prev = before(b, p);
        if !self.on(DetectorKind::Ipv6) || prev == b'.' || prev == b':' {
            return p + 1;
        }
        if is_word(prev) {
            // An address whose first group is all hex letters ("afef:cc55::1")
            // had no digit to trigger on before this colon.
            let mut ws = p;
            while ws > 0 && b[ws - 1].is_ascii_hexdigit() && !is_digit(b[ws - 1]) {
                ws -= 1;
            }
            let lead = before(b, ws);
            if ws == p || is_word(lead) || lead == b':' || lead == b'.' {
                return p + 1;
            }
            return match ipv6_at(b, ws) {
                Some(e) => {
                    Self::push(out, ws, e, DetectorKind::Ipv6);
                    e
                }
                None => p + 1,
            };
        }
        if at(b, p + 1) != b':' {
            return p + 1;
        }
        match ipv6_at(b, p) {
            Some(e) => {
                Self::push(out, p, e, DetectorKind::Ipv6);
                e
            }
            None => p + 2,
        }
    }

    // ---- email -----------------------------------------------------------

    fn at_email(&self, b: &[u8], p: usize, out: &mut Vec<Hit>) -> usize {
        if !self.on(DetectorKind::Email) {
            return p + 1;
        }
        let is_local = |c: u8| is_alnum(c) || matches!(c, b'.' | b'_' | b'%' | b'+' | b'-');
        let mut ls = p;
        while ls > 0 && p - ls < 64 && is_local(b[ls - 1]) {
            ls -= 1;
        }
        while ls < p && b[ls] == b'.' {
            ls += 1;
        }
        if ls == p || b[p - 1] == b'.' {
            return p + 1;
        }
        let mut de = p + 1;
        while de < b.len() && (is_alnum(b[de]) || b[de] == b'-' || b[de] == b'.') && de - p <= 255 {
            de += 1;
        }
        while de > p + 1 && (b[de - 1] == b'.' || b[de - 1] == b'-') {
            de -= 1;
        }
        let dom = &b[p + 1..de];
        if dom.is_empty() || !is_alnum(dom[0]) || dom.windows(2).any(|w| w == b"..") {
            return p + 1;
        }
        let Some(dot) = dom.iter().rposition(|&c| c == b'.') else {
            return p + 1;
        };
        let tld = &dom[dot + 1..];
        if tld.len() < 2 || !tld.iter().all(u8::is_ascii_alphabetic) {
            return p + 1;
        }
        // "icon@2x.png": retina asset names, not addresses.
        let first = dom.split(|&c| c == b'.').next().unwrap_or(b"");
        if first.len() >= 2
            && first[..first.len() - 1].iter().all(u8::is_ascii_digit)
            && first[first.len() - 1] == b'x'
        {
            return p + 1;
        }
        Self::push(out, ls, de, DetectorKind::Email);
        de
    }

    // ---- secrets ---------------------------------------------------------

    fn secret_at(&self, b: &[u8], s: usize, e: usize, pat: SecretPat, out: &mut Vec<Hit>) {
        use DetectorKind::*;
        if !matches!(pat, SecretPat::Pem) && is_alnum(before(b, s)) {
            return;
        }
        let run = |from: usize, ok: &dyn Fn(u8) -> bool| {
            let mut x = from;
            while x < b.len() && ok(b[x]) {
                x += 1;
            }
            x
        };
        match pat {
            SecretPat::Aws => {
                let x = run(e, &|c| c.is_ascii_uppercase() || c.is_ascii_digit());
                if x - s == 20 && !is_alnum(at(b, x)) {
                    Self::push(out, s, x, AwsKey);
                }
            }
            SecretPat::Github => {
                let x = run(e, &is_alnum);
                if (30..=255).contains(&(x - e)) && at(b, x) != b'_' {
                    Self::push(out, s, x, GithubToken);
                }
            }
            SecretPat::GithubPat => {
                let x = run(e, &is_word);
                if x - e >= 40 {
                    Self::push(out, s, x, GithubToken);
                }
            }
            SecretPat::Stripe => {
                let x = run(e, &is_alnum);
                if x - e >= 16 && at(b, x) != b'_' {
                    Self::push(out, s, x, StripeKey);
                }
            }
            SecretPat::SkDash => {
                let x = run(e, &|c| is_word(c) || c == b'-');
                let body = &b[e..x];
                let (kind, body) = match body.strip_prefix(b"ant-") {
                    Some(rest) => (AnthropicKey, rest),
                    None => (OpenaiKey, body),
                };
                // Real keys mix cases and digits; "sk-learn-compat-shim" does not.
                let mixed = body.iter().any(u8::is_ascii_digit)
                    && body.iter().any(u8::is_ascii_uppercase)
                    && body.iter().any(u8::is_ascii_lowercase);
                if body.len() >= 20 && mixed && self.on(kind) {
                    Self::push(out, s, x, kind);
                }
            }
            SecretPat::Jwt => {
                if let Some(x) = jwt_at(b, s) {
                    Self::push(out, s, x, Jwt);
                }
            }
            SecretPat::Pem => {
                if let Some(x) = pem_at(b, e) {
                    Self::push(out, s, x, PrivateKey);
                }
            }
        }
    }
}

fn jwt_at(b: &[u8], s: usize) -> Option<usize> {
    let is_b64 = |c: u8| is_alnum(c) || c == b'-' || c == b'_';
    let mut x = s;
    let mut dots = [0usize; 2];
    for d in &mut dots {
        let st = x;
        while x < b.len() && is_b64(b[x]) {
            x += 1;
        }
        if x - st < 2 || at(b, x) != b'.' {
            return None;
        }
        *d = x;
        x += 1;
    }
    while x < b.len() && is_b64(b[x]) {
        x += 1;
    }
    // Trailing '=' padding is not base64url but shows up in the wild.
    while at(b, x) == b'=' {
        x += 1;
    }
    if is_alnum(at(b, x)) {
        return None;
    }
    let header = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(&b[s..dots[0]])
        .ok()?;
    let v: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&header).ok()?;
    v.contains_key("alg").then_some(x)
}

fn pem_at(b: &[u8], e: usize) -> Option<usize> {
    let mut x = e;
    while x < b.len() && x - e <= 40 && (b[x].is_ascii_uppercase() || b[x] == b' ') {
        x += 1;
    }
    if !b[e..x].ends_with(b"PRIVATE KEY") || !b[x..].starts_with(b"-----") {
        return None;
    }
    let body = x + 5;
    // No END marker (truncated output): mask to the end rather than leak.
    let Some(endpos) = memchr::memmem::find(&b[body..], b"-----END ") else {
        return Some(b.len());
    };
    let tail = body + endpos + 9;
    match memchr::memmem::find(&b[tail..], b"-----") {
        Some(k) if k <= 40 => Some(tail + k + 5),
        _ => Some(b.len()),
    }
}

/// End of an ISO-8601 date or date-time starting at `p` (`2024-03-01`,
/// `2024-03-01T12:00:00.123Z`, `2024-03-01 12:00:00+02:00`). No detector
/// matches inside one, and log lines start with one, so it is skipped whole.
fn iso_datetime_end(b: &[u8], p: usize) -> Option<usize> {
    let dd = |i: usize| is_digit(at(b, i)) && is_digit(at(b, i + 1));
    if !(dd(p + 5) && at(b, p + 7) == b'-' && dd(p + 8) && !is_digit(at(b, p + 10))) {
        return None;
    }
    let mut x = p + 10;
    if matches!(at(b, x), b'T' | b' ') && dd(x + 1) && at(b, x + 3) == b':' && dd(x + 4) {
        x += 6;
        if at(b, x) == b':' && dd(x + 1) {
            x += 3;
            if at(b, x) == b'.' && is_digit(at(b, x + 1)) {
                x += 1;
                while is_digit(at(b, x)) {
                    x += 1;
                }
            }
        }
        if at(b, x) == b'Z' {
            x += 1;
        } else if matches!(at(b, x), b'+' | b'-') && dd(x + 1) && !is_digit(at(b, x + 3)) {
            x += 3;
            if at(b, x) == b':' && dd(x + 1) {
                x += 3;
            }
        }
    }
    // A digit right after means this was not a timestamp after all.
    (!is_digit(at(b, x))).then_some(x)
}

/// Digits in the chain of groups joined by single spaces or dashes that
/// starts at `p`: the cheap test that keeps timestamps and short numbers out
/// of the card path.
#[inline]
fn chain_digits(b: &[u8], p: usize) -> usize {
    let mut n = 0;
    let mut x = p;
    loop {
        while x < b.len() && is_digit(b[x]) {
            x += 1;
            n += 1;
        }
        if (at(b, x) == b' ' || at(b, x) == b'-') && is_digit(at(b, x + 1)) {
            x += 1;
        } else {
            return n;
        }
    }
}

/// Shapes `phone_at` can accept: after '+' or '(', a 3-digit area code, a
/// leading trunk '1' or '0', each followed by more groups.
#[inline]
fn phone_plausible(b: &[u8], p: usize, re: usize) -> bool {
    let prev = before(b, p);
    if prev == b'+' {
        return true;
    }
    if is_word(prev) || matches!(prev, b'-' | b'.' | b'/' | b'#' | b'$' | b'%') {
        return false;
    }
    let len = re - p;
    let shape = prev == b'(' || len == 3 || (len == 1 && b[p] == b'1') || b[p] == b'0';
    let sep = |c: u8| matches!(c, b' ' | b'-' | b'.' | b'(' | b')');
    shape
        && sep(at(b, re))
        && (is_digit(at(b, re + 1)) || (sep(at(b, re + 1)) && is_digit(at(b, re + 2))))
}

/// Finds cards in the chain of digit groups starting at `p` (groups joined by
/// one space or dash). Returns (end of the last card found, end of chain).
fn card_chain(b: &[u8], p: usize, out: &mut Vec<Hit>) -> (Option<usize>, usize) {
    const MAXG: usize = 48;
    let mut g = [(0usize, 0usize); MAXG];
    let mut n = 0;
    let mut x = p;
    loop {
        let st = x;
        while x < b.len() && is_digit(b[x]) {
            x += 1;
        }
        g[n] = (st, x);
        n += 1;
        if n < MAXG && (at(b, x) == b' ' || at(b, x) == b'-') && is_digit(at(b, x + 1)) {
            x += 1;
        } else {
            break;
        }
    }
    let chain_end = g[n - 1].1;
    let glen = |i: usize| g[i].1 - g[i].0;
    let left_ok = |i: usize| {
        if i == 0 {
            card_left_ok(b, p)
        } else {
            b[g[i].0 - 1] == b' '
        }
    };
    let right_ok = |j: usize| {
        if j == n - 1 {
            card_right_ok(b, chain_end)
        } else {
            b[g[j].1] == b' '
        }
    };
    let mut found = None;
    let mut i = 0;
    while i < n {
        let mut best = None;
        if left_ok(i) {
            let mut digits = 0;
            for j in i..n {
                // Printed cards group as 4-4-4-4(-3), 4-6-5 or 4-6-4: every
                // group but the last has 4 to 6 digits.
                if j > i && !(4..=6).contains(&glen(j - 1)) {
                    break;
                }
                digits += glen(j);
                if digits > 19 {
                    break;
                }
                if digits >= 13 && right_ok(j) && card_ok(&b[g[i].0..g[j].1], digits) {
                    best = Some(j);
                }
            }
        }
        match best {
            Some(j) => {
                out.push(Hit {
                    start: g[i].0,
                    end: g[j].1,
                    src: Source::Detector(DetectorKind::Card),
                });
                found = Some(g[j].1);
                i = j + 1;
            }
            None => i += 1,
        }
    }
    (found, chain_end)
}

fn card_ok(span: &[u8], digits: usize) -> bool {
    let mut d = [0u8; 19];
    let mut k = 0;
    for &c in span {
        if is_digit(c) {
            d[k] = c;
            k += 1;
        }
    }
    debug_assert_eq!(k, digits);
    issuer_ok(&d[..k]) && luhn_ok(&d[..k])
}

/// Digits glued to an identifier ("ORD-4111...", "id_4111...", "x.4111...")
/// or following '+' (a phone) are not read as cards.
fn card_left_ok(b: &[u8], p: usize) -> bool {
    let c = before(b, p);
    let cc = if p >= 2 { b[p - 2] } else { 0 };
    !(is_word(c) || c == b'+' || (c == b'.' && is_digit(cc)) || (c == b'-' && is_alnum(cc)))
}

fn card_right_ok(b: &[u8], e: usize) -> bool {
    let c = at(b, e);
    let cn = at(b, e + 1);
    !(is_word(c) || ((c == b'.' || c == b'-') && is_alnum(cn)))
}

fn ssn_at(b: &[u8], p: usize) -> Option<usize> {
    let d = |i: usize| is_digit(at(b, i));
    let left = before(b, p);
    let left2 = if p >= 2 { b[p - 2] } else { 0 };
    if is_word(left)
        || matches!(left, b'-' | b'.' | b'+' | b'/' | b'#' | b'$' | b'(')
        || (left == b' ' && is_digit(left2))
    {
        return None;
    }
    let right_ok = |e: usize| {
        let c = at(b, e);
        !(is_word(c)
            || (matches!(c, b'-' | b'.' | b'/') && is_digit(at(b, e + 1)))
            || (c == b' ' && is_digit(at(b, e + 1))))
    };
    let sep = at(b, p + 3);
    if (sep == b'-' || sep == b' ')
        && d(p)
        && d(p + 1)
        && d(p + 2)
        && d(p + 4)
        && d(p + 5)
        && at(b, p + 6) == sep
        && d(p + 7)
        && d(p + 8)
        && d(p + 9)
        && d(p + 10)
        && right_ok(p + 11)
        && ssn_ok(&b[p..p + 3], &b[p + 4..p + 6], &b[p + 7..p + 11])
    {
        return Some(p + 11);
    }
    // A bare nine-digit run is an SSN only when labelled as one nearby:
    // otherwise every 9-digit id would be masked.
    if (0..9).all(|i| d(p + i))
        && !d(p + 9)
        && right_ok(p + 9)
        && ssn_ok(&b[p..p + 3], &b[p + 3..p + 5], &b[p + 5..p + 9])
    {
        let from = p.saturating_sub(24);
        let ctx = &b[from..p];
        let labelled = ctx.windows(3).any(|w| w.eq_ignore_ascii_case(b"ssn"))
            || ctx.windows(6).any(|w| w.eq_ignore_ascii_case(b"social"));
        if labelled {
            return Some(p + 9);
        }
    }
    None
}

/// Phone numbers: E.164 ("+" and 8-15 digits, any grouping), NANP with
/// separators ("(415) 555-2671", "415-555-2671", "1 415 555 2671"), and
/// trunk-prefixed national numbers ("020 7946 0958", "01 23 45 67 89").
/// Bare digit runs are never phones: they are ids and timestamps far more
/// often.
fn phone_at(b: &[u8], p: usize) -> Option<(usize, usize)> {
    let prev = before(b, p);
    let prev2 = if p >= 2 { b[p - 2] } else { 0 };
    let intl = prev == b'+' && !is_word(prev2);
    let paren = prev == b'(' && !is_word(prev2);
    if !intl
        && !paren
        && (is_word(prev)
            || matches!(prev, b'-' | b'.' | b'/' | b'#' | b'+' | b'$' | b'%')
            || (prev == b' ' && is_digit(prev2)))
    {
        // Glued to an identifier, or the tail of a longer run of digit groups.
        return None;
    }
    const MAXG: usize = 8;
    let mut g = [(0usize, 0usize); MAXG];
    let mut seps = [0u8; MAXG]; // the non-space separator before group i (0: space only)
    let mut parens = [false; MAXG];
    let mut n = 0;
    let mut x = p;
    loop {
        let st = x;
        while x < b.len() && is_digit(b[x]) {
            x += 1;
        }
        g[n] = (st, x);
        n += 1;
        let mut y = x;
        let mut sep = 0u8;
        let mut has_paren = false;
        while y < b.len() && y - x < 2 && matches!(b[y], b' ' | b'-' | b'.' | b'(' | b')') {
            if b[y] != b' ' {
                sep = b[y];
            }
            has_paren |= b[y] == b'(' || b[y] == b')';
            y += 1;
        }
        if y > x && n < MAXG && is_digit(at(b, y)) {
            seps[n] = sep;
            parens[n] = has_paren;
            x = y;
        } else {
            break;
        }
    }
    let end = g[n - 1].1;
    let c = at(b, end);
    if is_word(c) || (matches!(c, b'-' | b'.' | b'/' | b':' | b',') && is_digit(at(b, end + 1))) {
        return None;
    }
    let glen = |i: usize| g[i].1 - g[i].0;
    let total: usize = (0..n).map(glen).sum();
    let first = b[p];
    if intl {
        if (8..=15).contains(&total) && first != b'0' {
            return Some((p - 1, end));
        }
        return None;
    }
    // NANP: [1] NXX NXX XXXX
    let off = if n == 4 && glen(0) == 1 && first == b'1' && !paren {
        1
    } else {
        0
    };
    if n - off == 3 && glen(off) == 3 && glen(off + 1) == 3 && glen(off + 2) == 4 {
        let area = b[g[off].0];
        let exch = b[g[off + 1].0];
        // Parentheses may only wrap the area code.
        let paren_ok = if paren {
            off == 0 && parens[1] && !parens[2]
        } else if off == 1 {
            !parens[3] && (parens[1] == parens[2])
        } else {
            !parens[1] && !parens[2]
        };
        if area >= b'2' && exch >= b'2' && paren_ok {
            return Some((if paren { p - 1 } else { p }, end));
        }
        return None;
    }
    if paren {
        return None;
    }
    // Trunk-prefixed national form: one consistent separator, groups >= 2.
    if first == b'0'
        && at(b, p + 1) != b'0'
        && (10..=11).contains(&total)
        && (2..=5).contains(&n)
        && (0..n).all(|i| glen(i) >= 2)
        && (1..n).all(|i| !parens[i] && seps[i] == seps[1])
    {
        return Some((p, end));
    }
    None
}

fn ipv4_at(b: &[u8], p: usize) -> Option<usize> {
    let prev = before(b, p);
    if is_word(prev) || prev == b'.' {
        return None;
    }
    let mut x = p;
    for part in 0..4 {
        let st = x;
        while x < b.len() && is_digit(b[x]) && x - st < 4 {
            x += 1;
        }
        let len = x - st;
        if len == 0 || len > 3 || (len > 1 && b[st] == b'0') {
            return None;
        }
        let v: u32 = b[st..x].iter().fold(0, |a, &c| a * 10 + (c - b'0') as u32);
        if v > 255 {
            return None;
        }
        if part < 3 {
            if at(b, x) != b'.' {
                return None;
            }
            x += 1;
        }
    }
    let c = at(b, x);
    if is_word(c) || (c == b'.' && is_digit(at(b, x + 1))) {
        return None;
    }
    Some(x)
}

fn ipv6_at(b: &[u8], s: usize) -> Option<usize> {
    let mut x = s;
    // A group has at most four hex digits (the dotted IPv4 tail at most three digits a
    // part): a longer run ends the candidate at once, so hex digests and ids cost a few
    // bytes, not a 45-byte walk.
    let mut group = 0;
    while x < b.len() && x - s <= 45 && (b[x].is_ascii_hexdigit() || b[x] == b':' || b[x] == b'.') {
        if b[x] == b':' || b[x] == b'.' {
            group = 0;
        } else {
            group += 1;
            if group > 4 {
                return None;
            }
        }
        x += 1;
    }
    if x - s > 45 || is_word(at(b, x)) {
        return None;
    }
    while x > s && b[x - 1] == b'.' {
        x -= 1;
    }
    let try_parse = |e: usize| -> bool {
        let t = &b[s..e];
        t.iter().filter(|&&c| c == b':').count() >= 2
            && t.iter().any(u8::is_ascii_hexdigit)
            && std::str::from_utf8(t)
                .ok()
                .and_then(|t| t.parse::<std::net::Ipv6Addr>().ok())
                .is_some()
    };
    if try_parse(x) {
        return Some(x);
    }
    // "addr fe80::1: unreachable"
    if x > s + 1 && b[x - 1] == b':' && b[x - 2] != b':' && try_parse(x - 1) {
        return Some(x - 1);
    }
    None
}

fn iban_at(b: &[u8], s: usize) -> Option<usize> {
    let cc = [b[s].to_ascii_uppercase(), b[s + 1].to_ascii_uppercase()];
    let len = iban_len(cc)?;
    let mut buf = [0u8; 34];
    let mut n = 0;
    let mut x = s;
    while n < len && x < b.len() {
        let c = b[x];
        if is_alnum(c) {
            buf[n] = c.to_ascii_uppercase();
            n += 1;
            x += 1;
        } else if c == b' ' && n % 4 == 0 && is_alnum(at(b, x + 1)) {
            x += 1;
        } else {
            break;
        }
    }
    if n != len || is_word(at(b, x)) || !iban_mod97_ok(&buf[..n]) {
        return None;
    }
    Some(x)
}

/// Tokens of a secret-named column that look random: long, mixed classes,
/// high Shannon entropy.
fn high_entropy_tokens(b: &[u8], out: &mut Vec<Hit>) {
    let tok = |c: u8| is_alnum(c) || b"+/=_-.~$!#%^&*@:".contains(&c);
    let mut i = 0;
    while i < b.len() {
        if !tok(b[i]) {
            i += 1;
            continue;
        }
        let st = i;
        while i < b.len() && tok(b[i]) {
            i += 1;
        }
        let t = &b[st..i];
        if t.len() >= 16 {
            let classes = [
                t.iter().any(u8::is_ascii_lowercase),
                t.iter().any(u8::is_ascii_uppercase),
                t.iter().any(u8::is_ascii_digit),
            ]
            .iter()
            .filter(|&&x| x)
            .count();
            if classes >= 2 && entropy(t) >= 3.0 {
                out.push(Hit {
                    start: st,
                    end: i,
                    src: Source::Detector(DetectorKind::HighEntropy),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trigger_scan_matches_scalar() {
        let text = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ !\"#$%&'()*+,-./;<=>?[]^_`{|}~\xff\x80 tail 7 and : and @ 0123456789 more text past the block boundary 42 and @ the end 9";
        let mut i = 0;
        let mut got = Vec::new();
        let mut t = Triggers::new(text);
        while let Some(p) = t.next_from(i) {
            got.push(p);
            i = p + 1;
        }
        let want: Vec<usize> = text
            .iter()
            .enumerate()
            .filter(|(_, &c)| c.is_ascii_digit() || c == b':' || c == b'@')
            .map(|(i, _)| i)
            .collect();
        assert_eq!(got, want);
    }
}
