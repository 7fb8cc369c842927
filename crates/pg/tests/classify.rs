//! Security tests of the SQL classifier, against the real PostgreSQL parser (no mocks).
//! Each access is written as its Display form: `select on table public.t`, `ddl`, ...
//! A bypass test asserts that the dangerous access is reported; a precision test asserts
//! the exact set, so a plain read is not over-denied either.

use warden_core::Action;
use warden_pg::classify::{
    classify, classify_with_prepares, sql_prepare_names, ClassifyError, SqlPrepareRef,
};

/// The accesses of a one-statement command, as strings.
fn accesses(sql: &str) -> Vec<String> {
    let c = classify(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    assert_eq!(c.statements.len(), 1, "{sql}: {c:?}");
    c.statements[0]
        .accesses
        .iter()
        .map(|a| a.to_string())
        .collect()
}

#[track_caller]
fn exactly(sql: &str, expected: &[&str]) {
    let mut e: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
    e.sort();
    let mut got = accesses(sql);
    got.sort();
    assert_eq!(got, e, "{sql}");
}

#[track_caller]
fn reports(sql: &str, expected: &[&str]) {
    let got = accesses(sql);
    for e in expected {
        assert!(
            got.iter().any(|g| g == e),
            "{sql}: expected {e:?} in {got:?}"
        );
    }
}

#[track_caller]
fn not_reports(sql: &str, unexpected: &str) {
    let got = accesses(sql);
    assert!(
        !got.iter().any(|g| g == unexpected),
        "{sql}: did not expect {unexpected:?} in {got:?}"
    );
}

// ---- statement boundaries -------------------------------------------------------------

#[test]
fn multi_statement_drop_after_select_is_its_own_statement() {
    let c = classify("SELECT 1; DROP TABLE x").unwrap();
    assert_eq!(c.statements.len(), 2);
    assert_eq!(c.statements[0].text, "SELECT 1");
    assert_eq!(c.statements[1].text, "DROP TABLE x");
    assert_eq!(
        c.statements[1]
            .accesses
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>(),
        ["ddl on table public.x"]
    );
    assert!(c.is_write());
}

#[test]
fn empty_comment_only_and_semicolon_only_have_no_statements() {
    for sql in ["", "   ", "-- hi", "/* x */", ";", ";;", " ; -- c\n;"] {
        assert_eq!(classify(sql).unwrap().statements.len(), 0, "{sql:?}");
    }
}

#[test]
fn statement_texts_are_cut_at_parser_boundaries_not_at_semicolons_in_strings() {
    let c = classify("SELECT ';DROP TABLE t;' ;  DELETE FROM t ").unwrap();
    assert_eq!(c.statements.len(), 2);
    assert_eq!(c.statements[0].text, "SELECT ';DROP TABLE t;'");
    assert_eq!(c.statements[1].text, "DELETE FROM t");
    assert_eq!(c.actions(), [Action::Select, Action::Delete]);
}

// ---- case, comments, quoting ----------------------------------------------------------

#[test]
fn mixed_case_and_inline_comment_delete_is_a_delete() {
    exactly("DeLeTe/**/FROM t", &["delete on table public.t"]);
    exactly(
        "/* SELECT */ delete --x\n from T where a = 1",
        &["delete on table public.t", "select on table public.t"],
    );
}

#[test]
fn quoted_identifiers_keep_their_case_and_catalog_is_dropped() {
    exactly(
        r#"SELECT * FROM "Sales"."Orders""#,
        &["select on table Sales.Orders"],
    );
    exactly("SELECT * FROM mydb.s.t", &["select on table s.t"]);
    exactly(
        "SELECT * FROM pg_class",
        &["select on table pg_catalog.pg_class"],
    );
}

#[test]
fn dollar_quoted_do_block_is_execute_code() {
    exactly(
        "DO $$ BEGIN EXECUTE 'DROP TABLE t'; END $$",
        &["execute_code"],
    );
    exactly(
        "DO $x$ BEGIN PERFORM 1; END $x$ LANGUAGE plpgsql",
        &["execute_code"],
    );
}

// ---- CTEs -----------------------------------------------------------------------------

#[test]
fn data_modifying_ctes_report_their_writes() {
    reports(
        "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d",
        &["delete on table public.t"],
    );
    reports(
        "WITH i AS (INSERT INTO t VALUES (1) RETURNING *) SELECT 1",
        &["insert on table public.t"],
    );
    reports(
        "WITH u AS (UPDATE t SET a = 1 RETURNING a) SELECT * FROM u",
        &["update on table public.t"],
    );
    not_reports(
        "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d",
        "select on table public.d",
    );
}

#[test]
fn cte_names_are_not_tables_but_shadowed_tables_are_still_read() {
    exactly(
        "WITH x AS (SELECT * FROM t) SELECT * FROM x",
        &["select on table public.t"],
    );
    // A non-recursive CTE body cannot see its own name: this reads the real table.
    exactly(
        "WITH secrets AS (SELECT * FROM secrets) SELECT * FROM secrets",
        &["select on table public.secrets"],
    );
    // A CTE name is scoped to its query: the outer `secrets` is the real table.
    reports(
        "SELECT * FROM (WITH secrets AS (SELECT 1) SELECT * FROM secrets) s, secrets",
        &["select on table public.secrets"],
    );
    // A schema-qualified name never refers to a CTE.
    reports(
        "WITH t AS (SELECT 1) SELECT * FROM public.t",
        &["select on table public.t"],
    );
    exactly(
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 3) SELECT * FROM r",
        &["select"],
    );
}

// ---- reads everywhere -----------------------------------------------------------------

#[test]
fn plain_select_with_joins_reports_exactly_the_tables_read() {
    exactly(
        "SELECT a.x, b.y FROM a JOIN s.b ON a.id = b.id LEFT JOIN c USING (id) WHERE a.z > 1 ORDER BY 1",
        &["select on table public.a", "select on table s.b", "select on table public.c"],
    );
}

#[test]
fn subqueries_lateral_and_set_operations_are_read() {
    exactly(
        "SELECT * FROM a, LATERAL (SELECT * FROM b WHERE b.id = a.id) l WHERE EXISTS (SELECT 1 FROM c) \
         UNION SELECT * FROM d EXCEPT SELECT * FROM e",
        &[
            "select on table public.a",
            "select on table public.b",
            "select on table public.c",
            "select on table public.d",
            "select on table public.e",
        ],
    );
    exactly(
        "SELECT (SELECT max(x) FROM hidden) AS m",
        &["select on table public.hidden"],
    );
}

#[test]
fn table_and_values_statements() {
    exactly("TABLE t", &["select on table public.t"]);
    exactly("VALUES (1), (2)", &["select"]);
    exactly("SELECT 1", &["select"]);
    exactly("SELECT lower('A'), now(), count(*)", &["select"]);
}

#[test]
fn functions_in_where_order_by_join_on_and_args_are_checked() {
    reports(
        "SELECT * FROM t WHERE f(a) > 0",
        &["call_function on function f"],
    );
    reports(
        "SELECT * FROM t ORDER BY g(a)",
        &["call_function on function g"],
    );
    reports(
        "SELECT * FROM t JOIN u ON h(t.a) = u.a",
        &["call_function on function h"],
    );
    reports(
        "SELECT * FROM t GROUP BY a HAVING k(a)",
        &["call_function on function k"],
    );
    reports("SELECT * FROM srf(1)", &["call_function on function srf"]);
}

#[test]
fn subquery_inside_function_arguments_is_read() {
    exactly(
        "SELECT lower((SELECT secret FROM vault LIMIT 1))",
        &["select on table public.vault"],
    );
    reports(
        "SELECT coalesce((SELECT x FROM v), 1)",
        &["select on table public.v"],
    );
}

// ---- writes ---------------------------------------------------------------------------

#[test]
fn update_without_where_is_update_only_and_with_where_also_reads() {
    exactly("UPDATE t SET a = 1", &["update on table public.t"]);
    exactly(
        "UPDATE t SET a = 1 WHERE id = 2",
        &["update on table public.t", "select on table public.t"],
    );
    exactly(
        "UPDATE t SET a = b",
        &["update on table public.t", "select on table public.t"],
    );
    exactly(
        "UPDATE t SET a = 1 FROM u WHERE u.id = t.id",
        &[
            "update on table public.t",
            "select on table public.t",
            "select on table public.u",
        ],
    );
}

#[test]
fn delete_with_returning_reads_its_target() {
    exactly("DELETE FROM t", &["delete on table public.t"]);
    exactly(
        "DELETE FROM t RETURNING *",
        &["delete on table public.t", "select on table public.t"],
    );
    exactly(
        "DELETE FROM pg_class",
        &["delete on table pg_catalog.pg_class"],
    );
    exactly(
        "DELETE FROM t USING u WHERE t.id = u.id",
        &[
            "delete on table public.t",
            "select on table public.t",
            "select on table public.u",
        ],
    );
}

#[test]
fn insert_select_reads_its_source() {
    exactly("INSERT INTO t VALUES (1)", &["insert on table public.t"]);
    exactly(
        "INSERT INTO t SELECT * FROM secrets",
        &["insert on table public.t", "select on table public.secrets"],
    );
}

#[test]
fn insert_on_conflict_do_update_is_insert_and_update() {
    reports(
        "INSERT INTO t (id, a) VALUES (1, 2) ON CONFLICT (id) DO UPDATE SET a = excluded.a",
        &["insert on table public.t", "update on table public.t"],
    );
    exactly(
        "INSERT INTO t VALUES (1) ON CONFLICT DO NOTHING",
        &["insert on table public.t"],
    );
}

#[test]
fn merge_is_insert_update_delete_on_target() {
    exactly(
        "MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN UPDATE SET a = s.a \
         WHEN NOT MATCHED THEN INSERT VALUES (s.id, s.a)",
        &[
            "insert on table public.t",
            "update on table public.t",
            "delete on table public.t",
            "select on table public.t",
            "select on table public.s",
        ],
    );
}

#[test]
fn select_for_update_is_a_row_lock() {
    exactly(
        "SELECT * FROM t FOR UPDATE",
        &["select on table public.t", "lock on table public.t"],
    );
    reports(
        "SELECT * FROM t JOIN u ON true FOR SHARE OF t",
        &["lock on table public.t"],
    );
}

#[test]
fn select_into_creates_a_table() {
    exactly(
        "SELECT * INTO newtable FROM t",
        &["ddl on table public.newtable", "select on table public.t"],
    );
}

// ---- DDL ------------------------------------------------------------------------------

#[test]
fn create_table_as_reads_its_query() {
    exactly(
        "CREATE TABLE x AS SELECT * FROM secrets",
        &["ddl on table public.x", "select on table public.secrets"],
    );
    reports(
        "CREATE MATERIALIZED VIEW mv AS SELECT * FROM secrets",
        &["select on table public.secrets"],
    );
    reports(
        "CREATE VIEW v AS SELECT * FROM secrets",
        &["ddl on table public.v", "select on table public.secrets"],
    );
}

#[test]
fn drop_of_several_tables_names_each() {
    exactly(
        "DROP TABLE a, s.b",
        &["ddl on table public.a", "ddl on table s.b"],
    );
    exactly("DROP FUNCTION f(int)", &["ddl"]);
}

#[test]
fn ddl_statements_are_never_silent() {
    for sql in [
        "CREATE ROLE r",
        "ALTER ROLE r SUPERUSER",
        "DROP ROLE r",
        "GRANT ALL ON t TO r",
        "GRANT admin TO r",
        "CREATE EXTENSION dblink",
        "CREATE SCHEMA s",
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'",
        "ALTER SYSTEM SET log_statement = 'none'",
        "CREATE TRIGGER tr BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION f()",
        "COMMENT ON TABLE t IS 'x'",
        "ALTER TABLE t OWNER TO r",
        "CREATE PUBLICATION p FOR ALL TABLES",
        "CREATE DATABASE d",
    ] {
        let got = accesses(sql);
        assert!(got.iter().any(|a| a.starts_with("ddl")), "{sql}: {got:?}");
    }
    exactly(
        "CREATE TABLE t (a int DEFAULT nextval('s'))",
        &["ddl on table public.t", "call_function on function nextval"],
    );
    exactly("CREATE INDEX i ON t (a)", &["ddl on table public.t"]);
    exactly("ALTER TABLE t ADD COLUMN b int", &["ddl on table public.t"]);
    reports(
        "GRANT SELECT ON secrets TO agent",
        &["ddl on table public.secrets"],
    );
    // A rule's actions are classified as if they ran.
    reports(
        "CREATE RULE r AS ON INSERT TO t DO INSTEAD DELETE FROM u",
        &["ddl on table public.t", "delete on table public.u"],
    );
}

#[test]
fn truncate_lock_and_maintenance_name_each_table() {
    exactly(
        "TRUNCATE a, b",
        &["truncate on table public.a", "truncate on table public.b"],
    );
    exactly(
        "LOCK TABLE t IN ACCESS EXCLUSIVE MODE",
        &["lock on table public.t"],
    );
    exactly("VACUUM t", &["maintenance on table public.t"]);
    exactly("VACUUM", &["maintenance"]);
    exactly("CHECKPOINT", &["maintenance"]);
    exactly(
        "REFRESH MATERIALIZED VIEW mv",
        &["maintenance on table public.mv"],
    );
    exactly("CLUSTER t USING i", &["maintenance on table public.t"]);
    exactly("REINDEX TABLE t", &["maintenance on table public.t"]);
}

// ---- COPY -----------------------------------------------------------------------------

#[test]
fn copy_to_program_is_copy_program() {
    exactly(
        "COPY (SELECT 1) TO PROGRAM 'true'",
        &["copy_to", "copy_program"],
    );
    reports(
        "COPY (SELECT * FROM secrets) TO STDOUT",
        &["copy_to", "select on table public.secrets"],
    );
    not_reports("COPY (SELECT * FROM secrets) TO STDOUT", "copy_program");
}

#[test]
fn copy_from_server_file_is_copy_program() {
    exactly(
        "COPY t FROM '/etc/passwd'",
        &[
            "copy_from on table public.t",
            "insert on table public.t",
            "copy_program",
        ],
    );
    exactly(
        "COPY t FROM STDIN",
        &["copy_from on table public.t", "insert on table public.t"],
    );
    exactly(
        "COPY t TO STDOUT",
        &["copy_to on table public.t", "select on table public.t"],
    );
    reports("COPY t TO '/tmp/x'", &["copy_program"]);
}

// ---- settings and roles ---------------------------------------------------------------

#[test]
fn set_role_and_session_authorization_are_set_role() {
    for sql in [
        "SET ROLE postgres",
        "SET LOCAL ROLE postgres",
        "RESET ROLE",
        "SET SESSION AUTHORIZATION postgres",
        "RESET SESSION AUTHORIZATION",
        "SET role = 'postgres'",
    ] {
        exactly(sql, &["set_role"]);
    }
}

#[test]
fn set_config_of_role_is_set_role() {
    reports(
        "SELECT set_config('role','postgres',false)",
        &["set_role", "call_function on function set_config"],
    );
    reports(
        "SELECT set_config('ROLE'::text, 'postgres', false)",
        &["set_role"],
    );
    // A computed setting name could be the role.
    reports(
        "SELECT set_config(name, 'x', false) FROM t",
        &["set_role", "set on setting *"],
    );
    exactly(
        "SELECT set_config('search_path', 'evil', false)",
        &[
            "set on setting search_path",
            "call_function on function set_config",
        ],
    );
}

#[test]
fn set_show_reset_name_their_setting() {
    exactly(
        "SET search_path = evil, public",
        &["set on setting search_path"],
    );
    exactly(
        "SET statement_timeout TO 0",
        &["set on setting statement_timeout"],
    );
    exactly("RESET work_mem", &["set on setting work_mem"]);
    exactly("RESET ALL", &["set on setting *"]);
    exactly("SHOW work_mem", &["set on setting work_mem"]);
    exactly(
        "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE",
        &["transaction"],
    );
    exactly(
        "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY",
        &["transaction"],
    );
    exactly("DISCARD ALL", &["other"]);
}

#[test]
fn transaction_control() {
    for sql in [
        "BEGIN",
        "START TRANSACTION",
        "COMMIT",
        "ROLLBACK",
        "SAVEPOINT s",
        "RELEASE s",
        "PREPARE TRANSACTION 'g'",
        "COMMIT PREPARED 'g'",
    ] {
        exactly(sql, &["transaction"]);
    }
}

// ---- functions ------------------------------------------------------------------------

#[test]
fn dangerous_builtins_are_not_safe() {
    exactly(
        "SELECT pg_terminate_backend(1)",
        &["call_function on function pg_terminate_backend"],
    );
    exactly(
        "SELECT dblink_exec('x','y')",
        &["call_function on function dblink_exec"],
    );
    exactly(
        "SELECT nextval('s')",
        &["call_function on function nextval"],
    );
    exactly(
        "SELECT lo_import('/etc/passwd')",
        &["call_function on function lo_import"],
    );
    exactly(
        "SELECT pg_read_file('/etc/passwd')",
        &["call_function on function pg_read_file"],
    );
    exactly(
        "SELECT pg_catalog.pg_sleep(10)",
        &["call_function on function pg_catalog.pg_sleep"],
    );
    exactly(
        "SELECT current_setting('x')",
        &["call_function on function current_setting"],
    );
}

#[test]
fn schema_qualified_lookalike_of_a_safe_function_is_not_safe() {
    exactly(
        "SELECT public.lower(x) FROM t",
        &[
            "call_function on function public.lower",
            "select on table public.t",
        ],
    );
    exactly(
        "SELECT evil.count(*) FROM t",
        &[
            "call_function on function evil.count",
            "select on table public.t",
        ],
    );
}

#[test]
fn pg_catalog_qualified_safe_function_is_safe() {
    exactly("SELECT pg_catalog.lower('A')", &["select"]);
    exactly(
        "SELECT extract(year FROM now()), substring('abc' FROM 2), trim(' x ')",
        &["select"],
    );
}

#[test]
fn qualified_operator_outside_pg_catalog_is_a_function_call() {
    reports(
        "SELECT 1 OPERATOR(evil.+) 2",
        &["call_function on function evil.+"],
    );
    exactly("SELECT 1 OPERATOR(pg_catalog.+) 2", &["select"]);
}

#[test]
fn call_is_execute_code_and_names_the_procedure() {
    exactly(
        "CALL p(1)",
        &["execute_code", "call_function on function p"],
    );
    // Even with a safe function's name, a procedure runs arbitrary code.
    reports(
        "CALL lower('x')",
        &["execute_code", "call_function on function lower"],
    );
    reports(
        "CALL s.p((SELECT a FROM t))",
        &["call_function on function s.p", "select on table public.t"],
    );
}

// ---- LISTEN / NOTIFY ------------------------------------------------------------------

#[test]
fn listen_and_notify_name_their_channel() {
    exactly("LISTEN c", &["listen on channel c"]);
    exactly("UNLISTEN *", &["listen on channel *"]);
    exactly("NOTIFY c, 'x'", &["notify on channel c"]);
    exactly(
        "SELECT pg_notify('c','x')",
        &["notify on channel c", "call_function on function pg_notify"],
    );
    exactly(
        "SELECT pg_notify(ch, 'x') FROM t",
        &[
            "notify on channel *",
            "call_function on function pg_notify",
            "select on table public.t",
        ],
    );
}

// ---- PREPARE / EXPLAIN / cursors ------------------------------------------------------

#[test]
fn prepare_reports_the_inner_statement() {
    exactly(
        "PREPARE p AS DELETE FROM t",
        &["prepare", "delete on table public.t"],
    );
    let refs = sql_prepare_names("PREPARE p AS DELETE FROM t").unwrap();
    match refs.as_slice() {
        [SqlPrepareRef::Prepare { name, inner }] => {
            assert_eq!(name, "p");
            assert_eq!(
                inner
                    .accesses()
                    .iter()
                    .map(|a| a.to_string())
                    .collect::<Vec<_>>(),
                ["delete on table public.t"]
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn execute_and_deallocate_are_exposed_for_the_session() {
    exactly("EXECUTE p(1)", &["prepare"]);
    reports(
        "EXECUTE p(nextval('s'))",
        &["call_function on function nextval"],
    );
    let (c, refs) = classify_with_prepares(
        "EXECUTE p; EXPLAIN ANALYZE EXECUTE q; DEALLOCATE p; DEALLOCATE ALL",
    )
    .unwrap();
    assert_eq!(c.statements.len(), 4);
    assert_eq!(
        refs,
        [
            SqlPrepareRef::Execute { name: "p".into() },
            SqlPrepareRef::Execute { name: "q".into() },
            SqlPrepareRef::Deallocate {
                name: Some("p".into())
            },
            SqlPrepareRef::Deallocate { name: None },
        ]
    );
}

#[test]
fn explain_analyze_delete_is_a_delete() {
    exactly(
        "EXPLAIN ANALYZE DELETE FROM t",
        &["delete on table public.t"],
    );
    exactly("EXPLAIN SELECT * FROM t", &["select on table public.t"]);
    reports(
        "EXPLAIN (ANALYZE, BUFFERS) CREATE TABLE x AS SELECT * FROM s",
        &["ddl on table public.x", "select on table public.s"],
    );
}

#[test]
fn declare_cursor_reads_its_query() {
    exactly(
        "DECLARE c CURSOR FOR SELECT * FROM t",
        &["cursor", "select on table public.t"],
    );
    exactly("FETCH 10 FROM c", &["cursor"]);
    exactly("CLOSE c", &["cursor"]);
}

#[test]
fn load_is_other() {
    exactly("LOAD 'evil.so'", &["other"]);
}

// ---- fail closed ----------------------------------------------------------------------

#[test]
fn unparseable_text_is_an_error_with_a_client_safe_message() {
    let e = classify("SELEKT * FROM t").unwrap_err();
    assert!(matches!(e, ClassifyError::Syntax(_)));
    assert_eq!(
        e.to_string(),
        "statement could not be parsed: syntax error at or near \"SELEKT\""
    );
    // One bad statement fails the whole command: nothing of it may be forwarded.
    assert!(classify("SELECT 1; DROP TABLE t; garbage").is_err());
    assert!(classify("SELECT 1\0; DROP TABLE t").is_err());
}

#[test]
fn megabyte_of_nested_parens_never_panics() {
    let n = 512 * 1024;
    let sql = format!("SELECT {}1{}", "(".repeat(n), ")".repeat(n));
    match classify(&sql) {
        Ok(c) => assert!(c.statements.iter().all(|s| !s.accesses.is_empty())),
        Err(e) => assert!(!e.to_string().is_empty()),
    }
    // Deep but parseable nesting of subqueries: classified or refused, never a crash.
    let sql = format!(
        "{}SELECT * FROM deep{}",
        "SELECT * FROM (".repeat(200),
        ") x".repeat(200)
    );
    match classify(&sql) {
        Ok(c) => assert!(c.tables().contains(&"public.deep".to_string())),
        Err(e) => assert!(
            matches!(e, ClassifyError::TooComplex | ClassifyError::Syntax(_)),
            "{e:?}"
        ),
    }
}

#[test]
fn every_statement_carries_at_least_one_access() {
    let c =
        classify("SELECT 1; VALUES (1); BEGIN; COMMIT; SELECT now(); EXPLAIN SELECT 1").unwrap();
    assert_eq!(c.statements.len(), 6);
    assert!(c.statements.iter().all(|s| !s.accesses.is_empty()));
}

#[test]
fn accesses_are_sorted_and_deduplicated() {
    let c = classify("SELECT * FROM t a, t b, t c WHERE f(1) = f(2)").unwrap();
    let a = &c.statements[0].accesses;
    let mut sorted = a.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(a, &sorted);
    assert_eq!(a.len(), 2);
}

/// A cheap, deterministic stand-in for the cargo-fuzz target (fuzz/), run on every test
/// pass: random soups of SQL tokens must classify or fail cleanly, never panic, and every
/// accepted statement must carry an access.
#[test]
fn token_soup_never_panics_and_never_yields_an_empty_statement() {
    const TOKENS: &[&str] = &[
        "SELECT",
        "*",
        "FROM",
        "t",
        "s.t",
        "WITH",
        "x",
        "AS",
        "(",
        ")",
        ",",
        ";",
        "DELETE",
        "INSERT",
        "INTO",
        "VALUES",
        "UPDATE",
        "SET",
        "=",
        "1",
        "'a'",
        "WHERE",
        "RETURNING",
        "UNION",
        "ALL",
        "JOIN",
        "ON",
        "f(",
        "pg_catalog.lower(",
        "set_config(",
        "pg_notify(",
        "COPY",
        "TO",
        "PROGRAM",
        "STDOUT",
        "PREPARE",
        "p",
        "EXECUTE",
        "EXPLAIN",
        "ANALYZE",
        "DECLARE",
        "c",
        "CURSOR",
        "FOR",
        "LISTEN",
        "NOTIFY",
        "ROLE",
        "DO",
        "$$x$$",
        "TABLE",
        "CREATE",
        "DROP",
        "MERGE",
        "USING",
        "WHEN",
        "MATCHED",
        "THEN",
        "LATERAL",
        "::text",
        "/* c */",
        "--\n",
        "CALL",
        "LOCK",
        "TRUNCATE",
        "VACUUM",
        "ONLY",
        "OPERATOR(s.+)",
        "RECURSIVE",
    ];
    let mut seed: u64 = 0x5eed;
    let mut next = || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) as usize
    };
    let mut accepted = 0;
    for _ in 0..20_000 {
        let len = 1 + next() % 14;
        let sql: Vec<&str> = (0..len).map(|_| TOKENS[next() % TOKENS.len()]).collect();
        let sql = sql.join(" ");
        if let Ok(c) = classify(&sql) {
            accepted += 1;
            assert!(
                c.statements.iter().all(|s| !s.accesses.is_empty()),
                "{sql}: {c:?}"
            );
        }
    }
    assert!(accepted > 0);
}
