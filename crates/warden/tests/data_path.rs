//! The PostgreSQL data path end to end against the real PostgreSQL on 127.0.0.1:5432:
//! reads, bypass denials, session state after a denial, the extended protocol, per-node
//! rights and psql.

mod common;

use common::*;
use tokio_postgres::error::SqlState;
use tokio_postgres::SimpleQueryMessage;

fn simple_rows(msgs: &[SimpleQueryMessage]) -> Vec<(i32, String)> {
    msgs.iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some((
                r.get(0).unwrap().parse().unwrap(),
                r.get(1).unwrap().to_string(),
            )),
            _ => None,
        })
        .collect()
}

fn assert_denied(r: Result<impl std::fmt::Debug, tokio_postgres::Error>, what: &str) {
    match r {
        Ok(v) => panic!("{what}: expected 42501, got success {v:?}"),
        Err(e) => {
            assert_eq!(
                e.code(),
                Some(&SqlState::INSUFFICIENT_PRIVILEGE),
                "{what}: expected 42501, got {}",
                error_text(&e)
            );
            assert!(
                e.as_db_error().unwrap().message().contains("denied"),
                "{what}: message should say it was denied: {}",
                error_text(&e)
            );
        }
    }
}

#[tokio::test]
async fn allowed_reads_return_the_real_rows_in_simple_and_extended_protocol() {
    let t = Table::new("reads").await;
    let gw = Gateway::start();
    let token = gw.agent_with_token("bot");
    let c = gw.connect("bot", &token, Some("reader")).await.unwrap();

    let sql = format!("SELECT id, name FROM {} ORDER BY id", t.name);
    let simple = c.simple_query(&sql).await.unwrap();
    assert_eq!(simple_rows(&simple), original_rows());

    let extended: Vec<(i32, String)> = c
        .query(&sql, &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(extended, original_rows());

    let one = c
        .query_one(
            &format!("SELECT name FROM {} WHERE id = $1", t.name),
            &[&2i32],
        )
        .await
        .unwrap();
    assert_eq!(one.get::<_, String>(0), "bob");
}

/// Every bypass form of issue 2 point 6, for a read-only node, through both protocols.
#[tokio::test]
async fn every_bypass_form_is_denied_for_a_reader_and_nothing_changes() {
    let t = Table::new("bypass").await;
    let gw = Gateway::start();
    let token = gw.agent_with_token("bot");
    let c = gw.connect("bot", &token, Some("reader")).await.unwrap();
    let n = &t.name;
    let forms = [
        format!("DELETE FROM {n}"),
        format!("SELECT 1; DELETE FROM {n}"),
        format!("SELECT * FROM {n}; DELETE FROM {n} WHERE id = 1"),
        format!("WITH d AS (DELETE FROM {n} RETURNING *) SELECT * FROM d"),
        format!("DO $$ BEGIN DELETE FROM {n}; END $$"),
        "COPY (SELECT 1) TO PROGRAM 'true'".to_string(),
        "SET ROLE postgres".to_string(),
        "SET SESSION AUTHORIZATION postgres".to_string(),
        "SELECT set_config('role','postgres',false)".to_string(),
        "LISTEN c".to_string(),
        "NOTIFY c".to_string(),
        "SELECT pg_terminate_backend(1)".to_string(),
        format!("PREPARE p AS DELETE FROM {n}"),
        "SELEC * FROM nowhere WHERE".to_string(),
    ];
    for sql in &forms {
        assert_denied(c.simple_query(sql).await, &format!("simple {sql:?}"));
        assert_denied(
            c.execute(sql.as_str(), &[]).await,
            &format!("extended {sql:?}"),
        );
    }
    // A statement prepared under a name with PREPARE was never created, so EXECUTE has
    // nothing to run; and EXECUTE itself is classified too.
    assert!(c.simple_query("EXECUTE p").await.is_err());

    // Nothing reached the database: rows intact, no role switch, no listener.
    assert_eq!(t.rows().await, original_rows());
    let row = c
        .query_one("SELECT current_user::text, session_user::text", &[])
        .await
        .unwrap();
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, String>(1)),
        ("postgres".into(), "postgres".into())
    );
    // The session is still usable after all of that.
    assert_eq!(
        simple_rows(
            &c.simple_query(&format!("SELECT id, name FROM {n} ORDER BY id"))
                .await
                .unwrap()
        ),
        original_rows()
    );
}

#[tokio::test]
async fn session_stays_usable_after_a_denial_and_a_denial_aborts_the_transaction() {
    let t = Table::new("txn").await;
    let gw = Gateway::start();
    let token = gw.agent_with_token("bot");
    let c = gw.connect("bot", &token, Some("reader")).await.unwrap();
    let n = &t.name;

    // Outside a transaction: the next statement simply works.
    assert_denied(c.simple_query(&format!("DELETE FROM {n}")).await, "delete");
    assert_eq!(
        c.query_one(&format!("SELECT count(*) FROM {n}"), &[])
            .await
            .unwrap()
            .get::<_, i64>(0),
        3
    );
    assert_denied(
        c.execute(format!("DELETE FROM {n}").as_str(), &[]).await,
        "extended delete",
    );
    assert_eq!(
        simple_rows(
            &c.simple_query(&format!("SELECT id, name FROM {n} ORDER BY id"))
                .await
                .unwrap()
        ),
        original_rows()
    );

    // Inside a transaction block: aborted until ROLLBACK, as PostgreSQL does (simple).
    c.simple_query("BEGIN").await.unwrap();
    c.simple_query(&format!("SELECT * FROM {n}")).await.unwrap();
    assert_denied(
        c.simple_query(&format!("DELETE FROM {n}")).await,
        "delete in txn",
    );
    let e = c.simple_query("SELECT 1").await.unwrap_err();
    assert_eq!(
        e.code(),
        Some(&SqlState::IN_FAILED_SQL_TRANSACTION),
        "{}",
        error_text(&e)
    );
    let e = c.query("SELECT 1", &[]).await.unwrap_err();
    assert_eq!(
        e.code(),
        Some(&SqlState::IN_FAILED_SQL_TRANSACTION),
        "{}",
        error_text(&e)
    );
    c.simple_query("ROLLBACK").await.unwrap();
    assert_eq!(
        c.query_one("SELECT 41 + 1", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        42
    );

    // The same with the denial coming through the extended protocol.
    c.simple_query("BEGIN").await.unwrap();
    assert_denied(
        c.execute(format!("DELETE FROM {n} WHERE id = $1").as_str(), &[&1i32])
            .await,
        "extended delete in txn",
    );
    let e = c.query("SELECT 1", &[]).await.unwrap_err();
    assert_eq!(
        e.code(),
        Some(&SqlState::IN_FAILED_SQL_TRANSACTION),
        "{}",
        error_text(&e)
    );
    c.simple_query("ROLLBACK").await.unwrap();
    assert_eq!(
        c.query_one("SELECT 1", &[]).await.unwrap().get::<_, i32>(0),
        1
    );
    assert_eq!(t.rows().await, original_rows());
}

#[tokio::test]
async fn prepared_statements_are_reused_and_pipelined_denials_keep_their_place() {
    let t = Table::new("ext").await;
    let gw = Gateway::start();
    let token = gw.agent_with_token("bot");
    let c = gw.connect("bot", &token, Some("reader")).await.unwrap();
    let n = &t.name;

    let by_id = c
        .prepare(&format!("SELECT name FROM {n} WHERE id = $1"))
        .await
        .unwrap();
    for (id, name) in original_rows().into_iter().chain(original_rows()) {
        assert_eq!(
            c.query_one(&by_id, &[&id])
                .await
                .unwrap()
                .get::<_, String>(0),
            name
        );
    }
    assert!(c.query_opt(&by_id, &[&99i32]).await.unwrap().is_none());

    // Pipelined: all of these are written before any answer is read.
    let count = c
        .prepare(&format!("SELECT count(*) FROM {n} WHERE id <= $1"))
        .await
        .unwrap();
    let delete = format!("DELETE FROM {n} WHERE id = $1");
    let delete_all = format!("DELETE FROM {n}");
    let (a, b, d, e, f) = tokio::join!(
        c.query_one(&by_id, &[&1i32]),
        c.execute(delete.as_str(), &[&1i32]),
        c.query_one(&count, &[&2i32]),
        c.simple_query(&delete_all),
        c.query_one(&by_id, &[&3i32]),
    );
    assert_eq!(a.unwrap().get::<_, String>(0), "alice");
    assert_denied(b, "pipelined extended delete");
    assert_eq!(d.unwrap().get::<_, i64>(0), 2);
    assert_denied(e, "pipelined simple delete");
    assert_eq!(f.unwrap().get::<_, String>(0), "carol");

    // The prepared statement still works after the pipeline, and nothing was deleted.
    assert_eq!(
        c.query_one(&by_id, &[&2i32])
            .await
            .unwrap()
            .get::<_, String>(0),
        "bob"
    );
    assert_eq!(t.rows().await, original_rows());
}

#[tokio::test]
async fn writer_node_may_insert_where_reader_node_of_the_same_agent_may_not() {
    let t = Table::new("nodes").await;
    let gw = Gateway::start();
    let token = gw.agent_with_token("bot");
    let reader = gw.connect("bot", &token, Some("reader")).await.unwrap();
    let writer = gw.connect("bot", &token, Some("writer")).await.unwrap();
    let n = &t.name;

    assert_denied(
        reader
            .execute(
                format!("INSERT INTO {n} VALUES ($1, $2)").as_str(),
                &[&4i32, &"dave"],
            )
            .await,
        "reader insert",
    );
    assert_denied(
        reader
            .simple_query(&format!("INSERT INTO {n} VALUES (4, 'dave')"))
            .await,
        "reader simple insert",
    );
    assert_eq!(
        writer
            .execute(
                format!("INSERT INTO {n} VALUES ($1, $2)").as_str(),
                &[&4i32, &"dave"]
            )
            .await
            .unwrap(),
        1
    );
    writer
        .simple_query(&format!("UPDATE {n} SET name = 'erin' WHERE id = 4"))
        .await
        .unwrap();
    // Neither node may delete.
    assert_denied(
        writer
            .simple_query(&format!("DELETE FROM {n} WHERE id = 4"))
            .await,
        "writer delete",
    );

    let mut expected = original_rows();
    expected.push((4, "erin".into()));
    assert_eq!(t.rows().await, expected);
    // An agent without a declared node gets nothing.
    let nobody = gw.connect("bot", &token, None).await.unwrap();
    assert_denied(
        nobody.simple_query(&format!("SELECT * FROM {n}")).await,
        "no node select",
    );
}

#[tokio::test]
async fn psql_works_end_to_end_and_shows_the_denial() {
    let t = Table::new("psql").await;
    let gw = Gateway::start();
    let token = gw.agent_with_token("bot");

    let out = gw.psql(
        "bot",
        &token,
        "reader",
        "",
        &format!("SELECT name FROM {} WHERE id = 3", t.name),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "psql select failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("carol"), "{stdout}");
    assert!(gw
        .psql("bot", &token, "reader", "", "select 1")
        .status
        .success());

    let out = gw.psql(
        "bot",
        &token,
        "reader",
        "",
        &format!("DELETE FROM {}", t.name),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("42501") && stderr.contains("denied"),
        "psql should show the 42501 denial: {stderr}"
    );
    assert_eq!(t.rows().await, original_rows());
}

/// Beyond issue 2's list: other ways a read-only node could change state or escape.
#[tokio::test]
async fn other_writes_and_escapes_hidden_in_reads_are_denied_for_a_reader() {
    let t = Table::new("bypass2").await;
    let gw = Gateway::start();
    let token = gw.agent_with_token("bot");
    let c = gw.connect("bot", &token, Some("reader")).await.unwrap();
    let n = &t.name;
    let forms = [
        format!("dElEtE /* comment */ FROM \"public\".\"{n}\""),
        format!("EXPLAIN ANALYZE DELETE FROM {n}"),
        format!("SELECT * INTO {n}_copy FROM {n}"),
        format!("CREATE TABLE {n}_new AS SELECT * FROM {n}"),
        format!("TRUNCATE {n}"),
        format!("DROP TABLE {n}"),
        format!("ALTER TABLE {n} ADD COLUMN x int"),
        format!("LOCK TABLE {n} IN ACCESS EXCLUSIVE MODE"),
        format!("SELECT * FROM {n} FOR UPDATE"),
        format!("COPY {n} TO '/tmp/{n}.out'"),
        format!("GRANT ALL ON {n} TO PUBLIC"),
        "SELECT pg_read_file('/etc/passwd')".to_string(),
        "SELECT lo_import('/etc/passwd')".to_string(),
        "SELECT pg_reload_conf()".to_string(),
        "SELECT nextval('pg_catalog.pg_class_oid_seq')".to_string(),
        "SELECT * FROM dblink('dbname=test', 'DELETE FROM x') AS t(a int)".to_string(),
        "ALTER SYSTEM SET work_mem = '1MB'".to_string(),
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'".to_string(),
        "SET search_path = evil, public".to_string(),
        "RESET ROLE".to_string(),
        "DISCARD ALL".to_string(),
        "CALL some_procedure()".to_string(),
        format!("DECLARE cur CURSOR WITH HOLD FOR SELECT * FROM {n} FOR UPDATE"),
        format!("WITH x AS (SELECT 1) UPDATE {n} SET name = 'x'"),
        format!("SELECT 1 UNION ALL SELECT count(*) FROM (DELETE FROM {n} RETURNING 1) d"),
        format!(
            "MERGE INTO {n} USING (SELECT 1 AS id) s ON {n}.id = s.id WHEN MATCHED THEN DELETE"
        ),
    ];
    for sql in &forms {
        assert_denied(c.simple_query(sql).await, &format!("simple {sql:?}"));
        assert_denied(
            c.execute(sql.as_str(), &[]).await,
            &format!("extended {sql:?}"),
        );
    }
    assert_eq!(t.rows().await, original_rows());
    // Harmless settings the quickstart allows still work.
    c.simple_query("SET statement_timeout = '5s'")
        .await
        .unwrap();
    c.simple_query("SET application_name = 'warden-test'")
        .await
        .unwrap();
}

#[tokio::test]
async fn named_portals_fetch_in_batches_and_a_denied_statement_cannot_be_bound() {
    let t = Table::new("portal").await;
    let gw = Gateway::start();
    let token = gw.agent_with_token("bot");
    let mut c = gw.connect("bot", &token, Some("reader")).await.unwrap();
    let n = t.name.clone();

    let tx = c.client.transaction().await.unwrap();
    let stmt = tx
        .prepare(&format!("SELECT id FROM {n} WHERE id >= $1 ORDER BY id"))
        .await
        .unwrap();
    let portal = tx.bind(&stmt, &[&1i32]).await.unwrap();
    let mut seen = Vec::new();
    loop {
        let batch = tx.query_portal(&portal, 2).await.unwrap();
        if batch.is_empty() {
            break;
        }
        assert!(batch.len() <= 2);
        seen.extend(batch.iter().map(|r| r.get::<_, i32>(0)));
    }
    assert_eq!(seen, [1, 2, 3]);
    // A second portal on the same statement, different parameter.
    let portal2 = tx.bind(&stmt, &[&3i32]).await.unwrap();
    assert_eq!(tx.query_portal(&portal2, 10).await.unwrap().len(), 1);
    // The denied statement never becomes a statement that can be bound.
    let e = tx
        .prepare(&format!("DELETE FROM {n} WHERE id >= $1"))
        .await
        .unwrap_err();
    assert_eq!(
        e.code(),
        Some(&SqlState::INSUFFICIENT_PRIVILEGE),
        "{}",
        error_text(&e)
    );
    tx.rollback().await.unwrap();
    c.simple_query("SELECT 1").await.unwrap();
    assert_eq!(t.rows().await, original_rows());
}
