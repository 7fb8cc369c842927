//! One policy decision over ~50 policies (DESIGN.md "classification cost": the budget is a
//! few tens of µs per uncached statement, next to pgbouncer's ~19 µs per statement).

use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use warden_core::policy::{PolicyEngine, RequestContext};
use warden_core::{Access, Action, Classification, ObjectRef, SessionIdentity, StatementClass};

const QUICKSTART: &str = include_str!("../../../examples/quickstart/policy.cedar");

/// 45 agent-scoped policies (15 agents × 3 nodes) next to the 5 global quickstart ones.
fn scoped_policies() -> String {
    let mut s = String::new();
    for a in 0..15 {
        for n in 0..3 {
            s.push_str(&format!(
                "@id(\"bot{a}-node{n}\")\npermit(principal == Warden::Node::\"bot{a}/node{n}\", \
                 action in [Warden::Action::\"select\", Warden::Action::\"update\"], \
                 resource is Warden::Table in Warden::Target::\"test\") when {{ resource.schema == \"app{n}\" }};\n"
            ));
        }
    }
    s
}

/// 45 global policies, each a `when` on context: the shape slicing cannot help with.
fn global_policies() -> String {
    let mut s = String::new();
    for i in 0..45 {
        s.push_str(&format!(
            "@id(\"global{i}\")\npermit(principal, action == Warden::Action::\"select\", resource in Warden::Target::\"test\") \
             when {{ context.node == \"node{i}\" && context.agent like \"bot*\" }};\n"
        ));
    }
    s
}

fn who(agent: &str, node: &str) -> SessionIdentity {
    SessionIdentity {
        agent: agent.into(),
        owner: "alice@example.com".into(),
        node: Some(node.into()),
        run: Some("run-1".into()),
        thread: None,
        graph_version: None,
        target: "test".into(),
    }
}

fn command(accesses: &[(Action, &str)]) -> Classification {
    Classification {
        statements: vec![StatementClass {
            text: String::new(),
            accesses: accesses
                .iter()
                .map(|(a, t)| Access {
                    action: *a,
                    object: Some(ObjectRef::Table((*t).to_string())),
                })
                .collect(),
        }],
    }
}

fn bench(c: &mut Criterion) {
    let ctx = RequestContext::default();
    let one = command(&[(Action::Select, "public.customers")]);
    let three = command(&[
        (Action::Select, "app1.orders"),
        (Action::Select, "app1.customers"),
        (Action::Update, "app1.orders"),
    ]);
    let engines = [("scoped", scoped_policies()), ("global", global_policies())];
    for (name, extra) in engines {
        let e = PolicyEngine::from_sources(&[
            ("quickstart".to_string(), QUICKSTART.to_string()),
            (name.to_string(), extra),
        ])
        .expect("bench policies load");
        assert_eq!(e.policy_ids().len(), 50);
        let reader = who("bot7", "reader");
        let node1 = who("bot7", "node1");
        assert!(e.decide(&reader, &one, &ctx).allowed());
        c.bench_function(&format!("decide/{name}50/select_1_table_allow"), |b| {
            b.iter(|| e.decide(black_box(&reader), black_box(&one), &ctx))
        });
        c.bench_function(&format!("decide/{name}50/3_accesses"), |b| {
            b.iter(|| e.decide(black_box(&node1), black_box(&three), &ctx))
        });
        c.bench_function(&format!("decide/{name}50/delete_default_deny"), |b| {
            let del = command(&[(Action::Delete, "public.customers")]);
            b.iter(|| e.decide(black_box(&reader), black_box(&del), &ctx))
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
