use std::sync::Arc;

use warden_store::*;

fn open(dir: &tempfile::TempDir) -> SqliteStore {
    SqliteStore::open(dir.path().join("nested/dir/warden.db")).unwrap()
}

#[test]
fn open_creates_parent_dir_and_uses_wal() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    assert!(dir.path().join("nested/dir/warden.db").exists());
    assert_eq!(s.epoch().unwrap(), 0);
    drop(s);
    let c = rusqlite::Connection::open(dir.path().join("nested/dir/warden.db")).unwrap();
    let mode: String = c
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let v: i64 = c
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(v, SqliteStore::SCHEMA_VERSION);
}

#[test]
fn reopen_is_idempotent_and_refuses_newer_schema() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.db");
    SqliteStore::open(&path)
        .unwrap()
        .create_agent("a1", "o@x.io")
        .unwrap();
    let s = SqliteStore::open(&path).unwrap();
    assert!(s.agent("a1").unwrap().is_some());
    drop(s);
    rusqlite::Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", 99)
        .unwrap();
    let err = SqliteStore::open(&path).unwrap_err();
    assert!(
        matches!(err, StoreError::SchemaTooNew { found: 99, .. }),
        "{err}"
    );
}

#[test]
fn create_agent_and_owner() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    let a = s
        .create_agent("billing-bot_2", "Alice@Example.com")
        .unwrap();
    assert_eq!(a.owner, "alice@example.com");
    assert!(a.enrollment_secret.starts_with("wdn_es_"));
    assert_eq!(a.enrollment_secret.len(), "wdn_es_".len() + 43);
    assert!(!format!("{a:?}").contains(&a.enrollment_secret));
    let rec = s.agent("billing-bot_2").unwrap().unwrap();
    assert_eq!(rec.status, AgentStatus::Active);
    assert_eq!(rec.owner_status, HumanStatus::Active);
    assert!(rec.may_act());
    let humans = s.list_humans().unwrap();
    assert_eq!(humans.len(), 1);
    assert_eq!(humans[0].email, "alice@example.com");
    assert!(s.agent("nope").unwrap().is_none());

    // Two secrets differ; the secret is not stored anywhere in clear.
    let b = s.create_agent("other", "alice@example.com").unwrap();
    assert_ne!(a.enrollment_secret, b.enrollment_secret);
    assert_eq!(s.list_agents().unwrap().len(), 2);
    assert_eq!(s.list_humans().unwrap().len(), 1);
}

#[test]
fn duplicate_agent_name_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    s.create_agent("dup", "a@x.io").unwrap();
    let err = s.create_agent("dup", "b@x.io").unwrap_err();
    assert!(
        matches!(err, StoreError::AgentExists(ref n) if n == "dup"),
        "{err}"
    );
    assert_eq!(err.to_string(), "agent \"dup\" already exists");
    // The failed create did not leave its owner behind either (one transaction).
    assert_eq!(s.list_humans().unwrap().len(), 1);
}

#[test]
fn invalid_names_name_the_rule() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    let long = "a".repeat(64);
    for (name, rule) in [
        ("", "1-63 characters"),
        (long.as_str(), "1-63 characters"),
        ("1abc", "start with a lowercase letter"),
        ("-abc", "start with a lowercase letter"),
        ("Abc", "start with a lowercase letter"),
        ("ab c", "only lowercase letters"),
        ("abC", "only lowercase letters"),
        ("ab.c", "only lowercase letters"),
        ("agé", "only lowercase letters"),
    ] {
        let err = s.create_agent(name, "o@x.io").unwrap_err();
        assert!(
            matches!(err, StoreError::InvalidAgentName { .. }) && err.to_string().contains(rule),
            "{name:?}: {err}"
        );
    }
    s.create_agent(&"a".repeat(63), "o@x.io").unwrap();
    s.create_agent("a", "o@x.io").unwrap();
    assert!(matches!(
        s.create_agent("ok", "not-an-email").unwrap_err(),
        StoreError::InvalidEmail(_)
    ));
}

#[test]
fn enrollment_verification() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    let a = s.create_agent("bot", "o@x.io").unwrap();
    assert!(s.verify_enrollment("bot", &a.enrollment_secret).unwrap());
    assert!(!s.verify_enrollment("bot", "wdn_es_wrong").unwrap());
    assert!(!s.verify_enrollment("bot", "").unwrap());
    let mut flipped = a.enrollment_secret.clone().into_bytes();
    let last = flipped.len() - 1;
    flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
    assert!(!s
        .verify_enrollment("bot", std::str::from_utf8(&flipped).unwrap())
        .unwrap());
    assert!(!s.verify_enrollment("ghost", &a.enrollment_secret).unwrap());
    // Right secret, revoked agent: no.
    s.suspend_agent("bot").unwrap();
    assert!(!s.verify_enrollment("bot", &a.enrollment_secret).unwrap());
    s.resume_agent("bot").unwrap();
    assert!(s.verify_enrollment("bot", &a.enrollment_secret).unwrap());
    s.deactivate_human("o@x.io").unwrap();
    assert!(!s.verify_enrollment("bot", &a.enrollment_secret).unwrap());

    // Only the digest is stored.
    let c = rusqlite::Connection::open(s.path()).unwrap();
    let stored: Vec<u8> = c
        .query_row(
            "SELECT secret_sha256 FROM agents WHERE name = 'bot'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(stored.len(), 32);
}

#[test]
fn suspend_resume_and_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    s.create_agent("bot", "o@x.io").unwrap();
    let e0 = s.epoch().unwrap();
    s.suspend_agent("bot").unwrap();
    let e1 = s.epoch().unwrap();
    assert!(e1 > e0);
    assert_eq!(
        s.agent("bot").unwrap().unwrap().status,
        AgentStatus::Suspended
    );
    s.suspend_agent("bot").unwrap(); // idempotent, nothing changed
    assert_eq!(s.epoch().unwrap(), e1);
    s.resume_agent("bot").unwrap();
    assert_eq!(s.agent("bot").unwrap().unwrap().status, AgentStatus::Active);
    assert!(matches!(
        s.suspend_agent("ghost").unwrap_err(),
        StoreError::AgentNotFound(_)
    ));
    assert!(matches!(
        s.resume_agent("ghost").unwrap_err(),
        StoreError::AgentNotFound(_)
    ));
}

#[test]
fn deactivate_cascades_in_one_step_and_bumps_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    s.create_agent("b1", "leaver@x.io").unwrap();
    s.create_agent("b2", "leaver@x.io").unwrap();
    s.create_agent("b3", "leaver@x.io").unwrap();
    s.create_agent("keep", "stayer@x.io").unwrap();
    s.suspend_agent("b3").unwrap();
    let e0 = s.epoch().unwrap();

    let suspended = s.deactivate_human("Leaver@X.io").unwrap();
    assert_eq!(suspended, vec!["b1".to_string(), "b2".to_string()]);
    assert!(s.epoch().unwrap() > e0);
    for n in ["b1", "b2", "b3"] {
        let a = s.agent(n).unwrap().unwrap();
        assert_eq!(a.status, AgentStatus::Suspended);
        assert_eq!(a.owner_status, HumanStatus::Deactivated);
        assert!(!a.may_act());
    }
    assert!(s.agent("keep").unwrap().unwrap().may_act());

    // Resume refused while the owner is gone; new agents for them too.
    let err = s.resume_agent("b1").unwrap_err();
    assert!(matches!(err, StoreError::OwnerDeactivated { .. }), "{err}");
    assert!(matches!(
        s.create_agent("b4", "leaver@x.io").unwrap_err(),
        StoreError::OwnerDeactivated { .. }
    ));
    // Again: nothing left to suspend, epoch unchanged.
    let e1 = s.epoch().unwrap();
    assert!(s.deactivate_human("leaver@x.io").unwrap().is_empty());
    assert_eq!(s.epoch().unwrap(), e1);
    assert!(matches!(
        s.deactivate_human("nobody@x.io").unwrap_err(),
        StoreError::HumanNotFound(_)
    ));
}

#[test]
fn activate_does_not_resume_agents() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    s.create_agent("b1", "o@x.io").unwrap();
    s.deactivate_human("o@x.io").unwrap();
    s.activate_human("o@x.io").unwrap();
    let a = s.agent("b1").unwrap().unwrap();
    assert_eq!(a.owner_status, HumanStatus::Active);
    assert_eq!(a.status, AgentStatus::Suspended);
    assert!(!a.may_act());
    s.resume_agent("b1").unwrap();
    assert!(s.agent("b1").unwrap().unwrap().may_act());
    // activate_human on an unknown email provisions them.
    s.activate_human("new@x.io").unwrap();
    assert_eq!(
        s.human("new@x.io").unwrap().unwrap().status,
        HumanStatus::Active
    );
}

#[test]
fn two_stores_on_one_file_see_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.db");
    let gw = SqliteStore::open(&path).unwrap();
    let cli = SqliteStore::open(&path).unwrap();
    let a = cli.create_agent("bot", "o@x.io").unwrap();
    assert!(gw.verify_enrollment("bot", &a.enrollment_secret).unwrap());
    let e = gw.epoch().unwrap();
    cli.deactivate_human("o@x.io").unwrap();
    assert!(gw.epoch().unwrap() > e);
    assert_eq!(
        gw.agent("bot").unwrap().unwrap().status,
        AgentStatus::Suspended
    );
    gw.activate_human("o@x.io").unwrap();
    assert_eq!(
        cli.human("o@x.io").unwrap().unwrap().status,
        HumanStatus::Active
    );
}

#[test]
fn concurrent_writers_from_threads_and_stores() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    let a = Arc::new(SqliteStore::open(&path).unwrap());
    let b = Arc::new(SqliteStore::open(&path).unwrap());
    let handles: Vec<_> = (0..8)
        .map(|i| {
            let s = if i % 2 == 0 { a.clone() } else { b.clone() };
            std::thread::spawn(move || {
                for j in 0..20 {
                    s.create_agent(&format!("a{i}-{j}"), &format!("o{i}@x.io"))
                        .unwrap();
                    s.suspend_agent(&format!("a{i}-{j}")).unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(a.list_agents().unwrap().len(), 160);
    assert_eq!(b.epoch().unwrap(), 160);
}

fn row(seq: i64, prev: &str, hash: &str) -> NewAuditRow {
    NewAuditRow {
        seq,
        ts_us: 1_700_000_000_000_000 + seq,
        agent: Some(format!("agent{}", seq % 2)),
        node: Some("n".into()),
        decision: if seq % 3 == 0 {
            "deny".into()
        } else {
            "allow".into()
        },
        event_json: format!("{{\"n\":{seq}}}"),
        prev_hash: prev.into(),
        hash: hash.into(),
    }
}

#[test]
fn audit_append_links_onto_tail() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    assert_eq!(s.audit_tail().unwrap(), None);
    let z = "0".repeat(64);
    s.append_audit(&[row(1, &z, "h1"), row(2, "h1", "h2"), row(3, "h2", "h3")])
        .unwrap();
    assert_eq!(s.audit_tail().unwrap(), Some((3, "h3".into())));
    // Stale tail: refused, nothing written.
    let err = s.append_audit(&[row(3, "h2", "x3")]).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::AuditTailMoved {
                expected_after: 2,
                found: Some((3, _))
            }
        ),
        "{err}"
    );
    let err = s.append_audit(&[row(4, "wrong", "h4")]).unwrap_err();
    assert!(matches!(err, StoreError::AuditTailMoved { .. }), "{err}");
    assert!(matches!(
        s.append_audit(&[row(4, "h3", "h4"), row(6, "h4", "h6")])
            .unwrap_err(),
        StoreError::InvalidAuditBatch(_)
    ));
    s.append_audit(&[row(4, "h3", "h4"), row(5, "h4", "h5"), row(6, "h5", "h6")])
        .unwrap();

    assert_eq!(s.audit_all().unwrap().len(), 6);
    assert_eq!(
        s.audit_range(4, 10)
            .unwrap()
            .iter()
            .map(|r| r.seq)
            .collect::<Vec<_>>(),
        vec![5, 6]
    );
    let deny = s
        .audit_rows(&AuditFilter {
            decision: Some("deny".into()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(deny.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![6, 3]);
    let a1 = s
        .audit_rows(&AuditFilter {
            agent: Some("agent1".into()),
            limit: Some(2),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(a1.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![5, 3]);
    let since = s
        .audit_rows(&AuditFilter {
            since: Some(1_700_000_000_000_005),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(since.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![6, 5]);
    let page = s
        .audit_rows(&AuditFilter {
            before_seq: Some(3),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(page.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![2, 1]);

    // Accidental mutation is refused by the append-only triggers.
    let c = rusqlite::Connection::open(s.path()).unwrap();
    assert!(c
        .execute(
            "UPDATE audit_events SET decision = 'allow' WHERE seq = 3",
            []
        )
        .is_err());
    assert!(c
        .execute("DELETE FROM audit_events WHERE seq = 3", [])
        .is_err());

    let cp = Checkpoint {
        seq: 6,
        hash: "h6".into(),
        signature: "s".into(),
        public_key: "k".into(),
        created_at: 1,
    };
    s.append_checkpoint(&cp).unwrap();
    s.append_checkpoint(&cp).unwrap();
    assert_eq!(s.checkpoints().unwrap(), vec![cp]);
}

#[test]
fn store_is_send_sync_and_object_safe() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<SqliteStore>();
    let dir = tempfile::tempdir().unwrap();
    let _s: Arc<dyn Store> = Arc::new(open(&dir));
}
