//! `classify` (pg_query parse + walk) on typical statements: the per-statement cost the
//! gateway pays on a classification-cache miss. Run: `cargo bench -p warden-pg --bench classify`.

use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use warden_pg::classify::classify;

const CASES: &[(&str, &str)] = &[
    ("pgbench_select", "SELECT abalance FROM pgbench_accounts WHERE aid = $1;"),
    (
        "join",
        "SELECT c.id, c.name, sum(o.total) AS spent FROM customers c \
         JOIN orders o ON o.customer_id = c.id \
         LEFT JOIN refunds r ON r.order_id = o.id \
         WHERE o.created_at > now() - interval '30 days' AND r.id IS NULL \
         GROUP BY c.id, c.name ORDER BY spent DESC LIMIT 20",
    ),
    (
        "cte_with_write",
        "WITH moved AS (DELETE FROM queue WHERE created_at < $1 RETURNING *), \
         archived AS (INSERT INTO queue_archive SELECT * FROM moved RETURNING id) \
         SELECT count(*) FROM archived",
    ),
];

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("classify");
    for (name, sql) in CASES {
        let cls = classify(sql).expect("classifies");
        assert_eq!(cls.statements.len(), 1);
        g.bench_function(*name, |b| b.iter(|| classify(black_box(sql)).unwrap()));
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
