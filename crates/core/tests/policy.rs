//! Policy evaluation against real Cedar: the rules of the model, the quickstart policy and
//! the load errors `warden policy check` prints.

use warden_core::policy::{PolicyEngine, RequestContext};
use warden_core::{
    Access, Action, Classification, Effect, ObjectRef, SessionIdentity, StatementClass,
};

fn who(agent: &str, node: Option<&str>) -> SessionIdentity {
    SessionIdentity {
        agent: agent.to_string(),
        owner: "alice@example.com".to_string(),
        node: node.map(str::to_string),
        run: Some("run-1".to_string()),
        thread: None,
        graph_version: Some("sha256:abc".to_string()),
        target: "test".to_string(),
    }
}

fn table(name: &str) -> Option<ObjectRef> {
    Some(ObjectRef::Table(name.to_string()))
}

fn setting(name: &str) -> Option<ObjectRef> {
    Some(ObjectRef::Setting(name.to_string()))
}

/// One statement per access, so the order given is the order the command wrote them.
fn command(accesses: &[(Action, Option<ObjectRef>)]) -> Classification {
    Classification {
        statements: accesses
            .iter()
            .map(|(action, object)| StatementClass {
                text: format!("-- {action}"),
                accesses: vec![Access {
                    action: *action,
                    object: object.clone(),
                }],
            })
            .collect(),
    }
}

fn engine(text: &str) -> PolicyEngine {
    PolicyEngine::from_sources(&[("test.cedar".to_string(), text.to_string())])
        .unwrap_or_else(|e| panic!("policies should load:\n{e}"))
}

fn load_err(text: &str) -> String {
    match PolicyEngine::from_sources(&[("bad.cedar".to_string(), text.to_string())]) {
        Ok(_) => panic!("policy should be rejected:\n{text}"),
        Err(e) => e.to_string(),
    }
}

fn ctx() -> RequestContext {
    RequestContext::default()
}

const READER: &str = r#"
@id("reader-select")
permit(principal, action == Warden::Action::"select", resource in Warden::Target::"test")
when { context.node == "reader" };
"#;

#[test]
fn schema_declares_every_action() {
    let schema = PolicyEngine::schema_text();
    for a in Action::ALL {
        assert!(
            schema.contains(&format!("\"{}\"", a.as_str())),
            "schema lacks action {a}"
        );
    }
}

#[test]
fn default_deny() {
    let e = engine("");
    let d = e.decide(
        &who("bot", Some("reader")),
        &command(&[(Action::Select, table("public.t"))]),
        &ctx(),
    );
    assert_eq!(d.effect, Effect::Deny);
    assert!(d.policy_ids.is_empty());
    assert!(d.reason.contains("default deny"), "{}", d.reason);
}

#[test]
fn empty_command_is_allowed_without_policies() {
    let e = engine("");
    let d = e.decide(&who("bot", None), &Classification::default(), &ctx());
    assert_eq!(d.effect, Effect::Allow);
    assert!(d.policy_ids.is_empty());
    assert!(d.denied_access.is_none());
}

#[test]
fn reader_select_allowed() {
    let e = engine(READER);
    let d = e.decide(
        &who("bot", Some("reader")),
        &command(&[(Action::Select, table("public.customers"))]),
        &ctx(),
    );
    assert_eq!(d.effect, Effect::Allow, "{}", d.reason);
    assert_eq!(d.policy_ids, vec!["reader-select".to_string()]);
    assert!(d.denied_access.is_none());
}

#[test]
fn reader_delete_denied_with_actionable_reason() {
    let e = engine(READER);
    let cmd = command(&[(Action::Delete, table("pg_catalog.pg_class"))]);
    let d = e.decide(&who("billing-bot", Some("reader")), &cmd, &ctx());
    assert_eq!(d.effect, Effect::Deny);
    assert_eq!(
        d.denied_access,
        Some(Access {
            action: Action::Delete,
            object: table("pg_catalog.pg_class")
        })
    );
    assert!(
        d.policy_ids.is_empty(),
        "default deny names no policy: {:?}",
        d.policy_ids
    );
    assert_eq!(
        d.reason,
        "warden: delete on table pg_catalog.pg_class denied for agent \"billing-bot\" node \"reader\" on target \
         \"test\": no policy permits it (default deny). Request access with: warden grant request --agent \
         billing-bot --node reader --target test --action delete --tables pg_catalog.pg_class --for 15m --reason \
         \"...\""
    );
}

#[test]
fn nodes_of_one_agent_get_different_rights() {
    let e = engine(
        r#"
        @id("lookup-reads-customers")
        permit(principal == Warden::Node::"billing-bot/lookup_customer",
               action == Warden::Action::"select", resource == Warden::Table::"public.customers");
        @id("refund-updates-payments")
        permit(principal == Warden::Node::"billing-bot/refund",
               action == Warden::Action::"update", resource == Warden::Table::"public.payments");
        "#,
    );
    let read = command(&[(Action::Select, table("public.customers"))]);
    let write = command(&[(Action::Update, table("public.payments"))]);
    let lookup = who("billing-bot", Some("lookup_customer"));
    let refund = who("billing-bot", Some("refund"));
    assert!(e.decide(&lookup, &read, &ctx()).allowed());
    assert!(!e.decide(&lookup, &write, &ctx()).allowed());
    assert!(e.decide(&refund, &write, &ctx()).allowed());
    assert!(!e.decide(&refund, &read, &ctx()).allowed());
    // Same node name under another agent: a different principal.
    assert!(!e
        .decide(&who("other-bot", Some("lookup_customer")), &read, &ctx())
        .allowed());
    // The agent without a node is not any of its nodes.
    assert!(!e.decide(&who("billing-bot", None), &read, &ctx()).allowed());
}

#[test]
fn forbid_overrides_permit() {
    let e = engine(
        r#"
        @id("all-on-test")
        permit(principal, action, resource in Warden::Target::"test");
        @id("no-deletes")
        forbid(principal, action == Warden::Action::"delete", resource);
        "#,
    );
    let d = e.decide(
        &who("bot", Some("reader")),
        &command(&[(Action::Delete, table("public.t"))]),
        &ctx(),
    );
    assert_eq!(d.effect, Effect::Deny);
    assert_eq!(d.policy_ids, vec!["no-deletes".to_string()]);
    assert!(
        d.reason
            .contains("denied by policy \"no-deletes\" (forbid)"),
        "{}",
        d.reason
    );
    assert!(
        !d.reason.contains("grant request"),
        "a grant cannot lift a forbid: {}",
        d.reason
    );
    assert!(e
        .decide(
            &who("bot", Some("reader")),
            &command(&[(Action::Update, table("public.t"))]),
            &ctx()
        )
        .allowed());
}

#[test]
fn agent_wide_permit_applies_to_its_nodes() {
    let e = engine(
        r#"
        @id("bot-reads")
        permit(principal in Warden::Agent::"bot", action == Warden::Action::"select", resource);
        "#,
    );
    let read = command(&[(Action::Select, table("public.t"))]);
    assert!(e
        .decide(&who("bot", Some("any_node")), &read, &ctx())
        .allowed());
    assert!(e.decide(&who("bot", None), &read, &ctx()).allowed());
    assert!(!e
        .decide(&who("other", Some("any_node")), &read, &ctx())
        .allowed());
}

#[test]
fn agent_scoped_forbid_is_not_lost_by_slicing() {
    // The permit is global, the forbid scoped to one agent's node: both must meet in that
    // agent's slice, and other agents must keep the permit.
    let e = engine(
        r#"
        @id("everyone-reads")
        permit(principal, action == Warden::Action::"select", resource);
        @id("bot-reader-not-secrets")
        forbid(principal == Warden::Node::"bot/reader", action, resource == Warden::Table::"public.secrets");
        "#,
    );
    let read = command(&[(Action::Select, table("public.secrets"))]);
    let d = e.decide(&who("bot", Some("reader")), &read, &ctx());
    assert_eq!(d.policy_ids, vec!["bot-reader-not-secrets".to_string()]);
    assert!(e
        .decide(&who("bot", Some("writer")), &read, &ctx())
        .allowed());
    assert!(e
        .decide(&who("other", Some("reader")), &read, &ctx())
        .allowed());
}

#[test]
fn multi_access_command_needs_every_access_allowed() {
    let e = engine(
        r#"
        @id("read")
        permit(principal, action == Warden::Action::"select", resource);
        @id("insert-orders")
        permit(principal, action == Warden::Action::"insert", resource == Warden::Table::"public.orders");
        "#,
    );
    let me = who("bot", Some("n"));
    let ok = command(&[
        (Action::Select, table("public.customers")),
        (Action::Insert, table("public.orders")),
    ]);
    let d = e.decide(&me, &ok, &ctx());
    assert_eq!(d.effect, Effect::Allow, "{}", d.reason);
    assert_eq!(
        d.policy_ids,
        vec!["insert-orders".to_string(), "read".to_string()]
    );

    let bad = command(&[
        (Action::Select, table("public.customers")),
        (Action::Insert, table("public.audit")),
        (Action::Delete, table("public.orders")),
    ]);
    let d = e.decide(&me, &bad, &ctx());
    assert_eq!(d.effect, Effect::Deny);
    assert_eq!(
        d.denied_access,
        Some(Access {
            action: Action::Insert,
            object: table("public.audit")
        })
    );
}

#[test]
fn context_and_attributes_are_visible_to_policies() {
    let e = engine(
        r#"
        @id("owner-and-graph")
        permit(principal, action == Warden::Action::"select", resource is Warden::Table)
        when { principal in Warden::Agent::"bot" && context.owner == "alice@example.com"
               && context.graph_version == "sha256:abc" && context.run == "run-1"
               && context.agent == "bot" && context.target == "test" && resource.schema == "sales"
               && resource.name == "orders" };
        @id("node-name")
        permit(principal is Warden::Node, action == Warden::Action::"transaction", resource == Warden::Target::"test")
        when { principal.name == "n" };
        "#,
    );
    assert!(e
        .decide(
            &who("bot", Some("n")),
            &command(&[(Action::Select, table("sales.orders"))]),
            &ctx()
        )
        .allowed());
    assert!(!e
        .decide(
            &who("bot", Some("n")),
            &command(&[(Action::Select, table("public.orders"))]),
            &ctx()
        )
        .allowed());
    assert!(e
        .decide(
            &who("bot", Some("n")),
            &command(&[(Action::Transaction, None)]),
            &ctx()
        )
        .allowed());
    assert!(!e
        .decide(
            &who("bot", None),
            &command(&[(Action::Transaction, None)]),
            &ctx()
        )
        .allowed());
}

// ---- the quickstart policy --------------------------------------------------------

fn quickstart() -> PolicyEngine {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/quickstart/policy.cedar"
    );
    let text = std::fs::read_to_string(path).expect("read examples/quickstart/policy.cedar");
    PolicyEngine::from_sources(&[("examples/quickstart/policy.cedar".to_string(), text)])
        .unwrap_or_else(|e| panic!("quickstart policy must validate:\n{e}"))
}

#[test]
fn quickstart_policy_validates_with_ids_and_no_warnings() {
    let e = quickstart();
    let ids = e.policy_ids();
    assert!(
        ids.iter().all(|id| id.starts_with("quickstart-")),
        "every policy has an @id: {ids:?}"
    );
    assert!(e.warnings().is_empty(), "{:?}", e.warnings());
}

#[test]
fn quickstart_reader() {
    let e = quickstart();
    for agent in ["billing-bot", "any-agent"] {
        let me = who(agent, Some("reader"));
        let allowed = [
            (Action::Select, table("public.customers")),
            (Action::Select, table("pg_catalog.pg_class")),
            (Action::Select, None),
            (Action::Transaction, None),
            (Action::Set, setting("application_name")),
            (Action::Set, setting("statement_timeout")),
        ];
        for (action, object) in allowed {
            let d = e.decide(&me, &command(&[(action, object.clone())]), &ctx());
            assert!(
                d.allowed(),
                "reader should be allowed {action} {object:?}: {}",
                d.reason
            );
        }
        let denied = [
            (Action::Delete, table("public.customers")),
            (Action::Update, table("public.customers")),
            (Action::Insert, table("public.customers")),
            (Action::Ddl, table("public.customers")),
            (Action::Truncate, table("public.customers")),
            (Action::CopyProgram, None),
            (Action::SetRole, setting("role")),
            (Action::Set, setting("search_path")),
            (Action::ExecuteCode, None),
        ];
        for (action, object) in denied {
            let d = e.decide(&me, &command(&[(action, object.clone())]), &ctx());
            assert!(!d.allowed(), "reader should be denied {action} {object:?}");
        }
    }
}

#[test]
fn quickstart_writer_and_others() {
    let e = quickstart();
    let writer = who("etl-bot", Some("writer"));
    for (action, object, allowed) in [
        (Action::Select, table("public.orders"), true),
        (Action::Insert, table("public.orders"), true),
        (Action::Update, table("public.orders"), true),
        (Action::Delete, table("public.orders"), false),
        (Action::Insert, table("private.orders"), false),
        (Action::Update, table("pg_catalog.pg_class"), false),
        (Action::Ddl, table("public.orders"), false),
        (Action::Transaction, None, true),
    ] {
        let d = e.decide(&writer, &command(&[(action, object.clone())]), &ctx());
        assert_eq!(
            d.allowed(),
            allowed,
            "writer {action} {object:?}: {}",
            d.reason
        );
    }
    let d = e.decide(&writer, &command(&[(Action::CopyProgram, None)]), &ctx());
    assert_eq!(d.policy_ids, vec!["quickstart-never-escape".to_string()]);

    // No node, another node, or another target: nothing.
    let read = command(&[(Action::Select, table("public.orders"))]);
    assert!(!e.decide(&who("etl-bot", None), &read, &ctx()).allowed());
    assert!(!e
        .decide(&who("etl-bot", Some("planner")), &read, &ctx())
        .allowed());
    let mut elsewhere = who("etl-bot", Some("reader"));
    elsewhere.target = "prod".to_string();
    assert!(!e.decide(&elsewhere, &read, &ctx()).allowed());
}

// ---- load errors ------------------------------------------------------------------

#[test]
fn unknown_action_is_rejected_with_source_and_line() {
    let msg = load_err("// header\n\n@id(\"x\")\npermit(principal, action == Warden::Action::\"delet\", resource);\n");
    assert!(msg.starts_with("bad.cedar:4:"), "{msg}");
    assert!(msg.contains("delet"), "{msg}");
}

#[test]
fn type_error_is_rejected_with_source_and_line() {
    let msg = load_err(
        "@id(\"ok\")\npermit(principal, action, resource);\n@id(\"typo\")\npermit(principal, action, resource)\nwhen { context.node == 3 };\n",
    );
    assert!(msg.starts_with("bad.cedar:5:"), "{msg}");
    assert!(msg.contains("typo"), "names the policy: {msg}");
}

#[test]
fn unknown_attribute_is_rejected() {
    let msg = load_err("permit(principal, action, resource) when { context.nodes == \"x\" };");
    assert!(msg.starts_with("bad.cedar:1:"), "{msg}");
    assert!(msg.contains("nodes"), "{msg}");
}

#[test]
fn syntax_error_is_rejected_with_source_and_line() {
    let msg = load_err(
        "@id(\"a\")\npermit(principal, action, resource);\n\npermit(principal action, resource);\n",
    );
    assert!(msg.starts_with("bad.cedar:4:"), "{msg}");
}

#[test]
fn duplicate_ids_are_rejected() {
    let sources = [
        (
            "a.cedar".to_string(),
            "@id(\"same\")\npermit(principal, action, resource);\n".to_string(),
        ),
        (
            "b.cedar".to_string(),
            "\n\n@id(\"same\")\nforbid(principal, action, resource);\n".to_string(),
        ),
    ];
    let msg = PolicyEngine::from_sources(&sources)
        .unwrap_err()
        .to_string();
    assert!(msg.starts_with("b.cedar:3:"), "{msg}");
    assert!(
        msg.contains("duplicate policy id \"same\" (first defined at a.cedar:1)"),
        "{msg}"
    );
}

#[test]
fn generated_ids_name_source_and_index() {
    let e = PolicyEngine::from_sources(&[(
        "p.cedar".to_string(),
        "permit(principal, action, resource);\n@id(\"named\")\nforbid(principal, action, resource);\npermit(principal, action, resource);\n"
            .to_string(),
    )])
    .unwrap();
    assert_eq!(e.policy_ids(), vec!["p.cedar#0", "named", "p.cedar#2"]);
}

#[test]
fn templates_are_rejected() {
    let msg = load_err("\npermit(principal == ?principal, action, resource);\n");
    assert!(msg.starts_with("bad.cedar:2:"), "{msg}");
    assert!(msg.contains("templates"), "{msg}");
}

#[test]
fn evaluation_error_fails_closed_without_internals() {
    // Overflow passes validation and fails at evaluation; the sibling permit must not win,
    // since an erroring policy could have been the forbid meant to stop the access.
    let e = engine(
        r#"
        @id("allow-all")
        permit(principal, action, resource);
        @id("overflows")
        forbid(principal, action, resource) when { context.node == "x" && 9223372036854775807 + 1 > 0 };
        "#,
    );
    let d = e.decide(
        &who("bot", Some("x")),
        &command(&[(Action::Select, table("public.t"))]),
        &ctx(),
    );
    assert_eq!(d.effect, Effect::Deny);
    assert_eq!(d.policy_ids, vec!["overflows".to_string()]);
    assert!(d.reason.contains("policy evaluation error"), "{}", d.reason);
    assert!(
        !d.reason.contains("overflow"),
        "no internals in client text: {}",
        d.reason
    );
    assert!(e
        .decide(
            &who("bot", Some("y")),
            &command(&[(Action::Select, table("public.t"))]),
            &ctx()
        )
        .allowed());
}

#[test]
fn every_action_maps_to_its_cedar_action() {
    // decide() indexes action uids by `Action as usize`; a reordering of `Action::ALL`
    // would silently swap rights, so pin each action to a policy naming it.
    for a in Action::ALL {
        let e = engine(&format!(
            "@id(\"only\")\npermit(principal, action == Warden::Action::\"{}\", resource);",
            a.as_str()
        ));
        for b in Action::ALL {
            let d = e.decide(&who("bot", None), &command(&[(b, None)]), &ctx());
            assert_eq!(d.allowed(), a == b, "policy for {a}, access {b}");
        }
    }
}
