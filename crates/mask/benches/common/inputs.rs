//! Inputs shared by the criterion bench (benches/detect.rs) and the per-CPU-second
//! throughput example (examples/throughput.rs), so both measure the same text.

pub const MIB: usize = 1 << 20;

struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[(self.next() as usize) % xs.len()]
    }
}

const WORDS: &[&str] = &[
    "request",
    "completed",
    "handler",
    "session",
    "upstream",
    "returned",
    "cache",
    "miss",
    "for",
    "the",
    "user",
    "agent",
    "node",
    "policy",
    "allowed",
    "query",
    "against",
    "table",
    "customers",
    "orders",
    "retrying",
    "connection",
    "pool",
    "healthy",
    "shard",
    "replica",
    "lag",
    "within",
    "budget",
    "graph",
];

pub fn clean_logs() -> String {
    let mut r = Lcg(7);
    let mut s = String::with_capacity(MIB + 256);
    while s.len() < MIB {
        let level = r.pick(&["INFO", "DEBUG", "WARN"]);
        s.push_str(&format!(
            "2024-03-{:02}T{:02}:{:02}:{:02}.{:03}Z {level} {} {} {} {} path=/api/v1/{}/{} status={} dur={}ms rows={}\n",
            r.next() % 28 + 1,
            r.next() % 24,
            r.next() % 60,
            r.next() % 60,
            r.next() % 1000,
            r.pick(WORDS),
            r.pick(WORDS),
            r.pick(WORDS),
            r.pick(WORDS),
            r.pick(WORDS),
            r.next() % 100000,
            r.pick(&["200", "201", "404", "500"]),
            r.next() % 5000,
            r.next() % 1000,
        ));
    }
    s
}

pub fn clean_prose() -> String {
    let mut r = Lcg(11);
    let mut s = String::with_capacity(MIB + 64);
    while s.len() < MIB {
        s.push_str(r.pick(WORDS));
        s.push_str(if r.next().is_multiple_of(12) {
            ".\n"
        } else {
            " "
        });
    }
    s
}

pub fn dense() -> String {
    let mut r = Lcg(3);
    let mut s = String::with_capacity(MIB + 256);
    let hits = [
        "4111 1111 1111 1111",
        "jane.doe@example.com",
        "(415) 555-2671",
        "10.1.2.3",
        "123-45-6789",
        "AKIAIOSFODNN7EXAMPLE",
        "DE89 3704 0044 0532 0130 00",
        "2001:db8::1",
    ];
    while s.len() < MIB {
        s.push_str(r.pick(WORDS));
        s.push(' ');
        s.push_str(r.pick(WORDS));
        s.push(' ');
        s.push_str(r.pick(&hits));
        s.push_str(" and then some more words here for padding the line out, ");
        s.push_str(r.pick(WORDS));
        s.push('\n');
    }
    s
}
