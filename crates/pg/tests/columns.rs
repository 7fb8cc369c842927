//! Column uses against the real PostgreSQL grammar (pg_query): which references to a
//! protected column may reach the client as a plain, maskable output column, and which
//! derive values the gateway cannot follow.

use warden_pg::classify::{column_uses, ClassifyError, ColumnUse};

const CUSTOMERS: &str = "public.customers";

fn uses(sql: &str) -> Vec<ColumnUse> {
    column_uses(sql).unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// Every use of `column` (`None`: star / whole-row) that may come from `table`.
fn of<'a>(u: &'a [ColumnUse], table: &str, column: Option<&str>) -> Vec<&'a ColumnUse> {
    u.iter()
        .filter(|c| c.column.as_deref() == column && c.tables.iter().any(|t| t == table))
        .collect()
}

/// The statement reports `customers.card_number` (or a star/whole row of customers) and
/// every such use is direct.
fn direct(sql: &str, column: Option<&str>) {
    let u = uses(sql);
    let found = of(&u, CUSTOMERS, column);
    assert!(!found.is_empty(), "{sql}: no use of {column:?}: {u:?}");
    assert!(found.iter().all(|c| c.direct_output), "{sql}: {u:?}");
}

/// The statement reports a use of `column` (or a star/whole row) on customers that is not
/// direct (the gateway denies such a use of a protected column).
fn not_direct(sql: &str, column: Option<&str>) {
    let u = uses(sql);
    let found = of(&u, CUSTOMERS, column);
    assert!(
        found.iter().any(|c| !c.direct_output),
        "{sql}: expected a non-direct use of {column:?}: {u:?}"
    );
}

/// Fail-closed property the gateway relies on: a card number of customers can reach the
/// client only through direct uses, so for every protected-column query we check that some
/// use of card_number or of the whole row is non-direct.
fn card_is_derived(sql: &str) {
    let u = uses(sql);
    let derived = u.iter().any(|c| {
        !c.direct_output
            && c.tables.iter().any(|t| t == CUSTOMERS)
            && (c.column.as_deref() == Some("card_number") || c.column.is_none())
    });
    assert!(derived, "{sql}: card_number could escape: {u:?}");
}

#[test]
fn plain_column_is_direct() {
    let u = uses("SELECT card_number FROM customers");
    assert_eq!(
        u,
        vec![ColumnUse {
            tables: vec![CUSTOMERS.into()],
            column: Some("card_number".into()),
            direct_output: true,
            output: Some(0),
            via_derived: false,
        }]
    );
}

#[test]
fn aliased_qualified_column_is_direct_on_the_aliased_table() {
    let u = uses("SELECT c.card_number AS x FROM customers c");
    assert_eq!(
        u,
        vec![ColumnUse {
            tables: vec![CUSTOMERS.into()],
            column: Some("card_number".into()),
            direct_output: true,
            output: Some(0),
            via_derived: false,
        }]
    );
    direct(
        "SELECT public.customers.card_number FROM public.customers",
        Some("card_number"),
    );
    direct(
        "SELECT customers.card_number FROM customers",
        Some("card_number"),
    );
    direct(
        "SELECT DISTINCT card_number FROM customers",
        Some("card_number"),
    );
}

#[test]
fn direct_outputs_carry_their_target_list_position() {
    let u = uses("SELECT id, c.card_number AS cn, reverse(card_number) AS r FROM customers c");
    let direct: Vec<(Option<&str>, Option<usize>)> = u
        .iter()
        .filter(|c| c.direct_output)
        .map(|c| (c.column.as_deref(), c.output))
        .collect();
    assert_eq!(direct, [(Some("id"), Some(0)), (Some("card_number"), Some(1))], "{u:?}");
    assert!(u.iter().filter(|c| !c.direct_output).all(|c| c.output.is_none()), "{u:?}");
}

#[test]
fn star_is_direct_and_star_over_several_tables_names_each() {
    let u = uses("SELECT * FROM customers");
    assert_eq!(
        u,
        vec![ColumnUse {
            tables: vec![CUSTOMERS.into()],
            column: None,
            direct_output: true,
            output: Some(0),
            via_derived: false,
        }]
    );
    direct("SELECT c.* FROM customers c", None);
    direct("TABLE customers", None);
    let u = uses("SELECT * FROM customers c JOIN orders o ON o.customer_id = c.id");
    let stars: Vec<&ColumnUse> = u.iter().filter(|c| c.column.is_none()).collect();
    assert_eq!(stars.len(), 2, "{u:?}");
    assert!(stars.iter().all(|c| c.direct_output && c.tables.len() == 1));
    assert_eq!(stars[0].tables, vec![CUSTOMERS.to_string()]);
    assert_eq!(stars[1].tables, vec!["public.orders".to_string()]);
}

#[test]
fn functions_casts_and_concatenation_are_not_direct() {
    for sql in [
        "SELECT upper(card_number) FROM customers",
        "SELECT card_number || '' FROM customers",
        "SELECT card_number::text FROM customers",
        "SELECT CAST(card_number AS text) FROM customers",
        "SELECT string_agg(card_number, ',') FROM customers",
        "SELECT array_agg(card_number) FROM customers",
        "SELECT substr(c.card_number, 1, 6) AS bin FROM customers c",
        "SELECT coalesce(card_number, '') FROM customers",
        "SELECT CASE WHEN true THEN card_number END FROM customers",
        "SELECT card_number COLLATE \"C\" FROM customers",
        "SELECT ARRAY[card_number] FROM customers",
        "SELECT (card_number) || 'x' FROM customers",
    ] {
        not_direct(sql, Some("card_number"));
        card_is_derived(sql);
        let u = uses(sql);
        assert!(u.iter().all(|c| !c.direct_output), "{sql}: {u:?}");
    }
}

#[test]
fn whole_row_references_are_record_values_not_direct() {
    for sql in [
        "SELECT json_agg(c) FROM customers c",
        "SELECT row_to_json(c) FROM customers c",
        "SELECT c FROM customers c",
        "SELECT row_to_json(c.*) FROM customers c",
        "SELECT to_jsonb(customers) FROM customers",
        "SELECT (c).card_number FROM customers c",
    ] {
        let u = uses(sql);
        let whole = of(&u, CUSTOMERS, None);
        assert!(!whole.is_empty(), "{sql}: {u:?}");
        assert!(whole.iter().all(|c| !c.direct_output), "{sql}: {u:?}");
        card_is_derived(sql);
    }
}

#[test]
fn subquery_columns_are_derived() {
    let sql = "SELECT x FROM (SELECT card_number AS x FROM customers) s";
    let u = uses(sql);
    let inner = of(&u, CUSTOMERS, Some("card_number"));
    assert_eq!(inner.len(), 1, "{u:?}");
    assert!(!inner[0].direct_output && !inner[0].via_derived);
    let outer: Vec<&ColumnUse> = u
        .iter()
        .filter(|c| c.column.as_deref() == Some("x"))
        .collect();
    assert_eq!(outer.len(), 1, "{u:?}");
    assert!(outer[0].via_derived && outer[0].tables.is_empty());

    // A qualified reference through the subquery alias.
    let u = uses("SELECT s.x FROM (SELECT card_number AS x FROM customers) s");
    let x = u.iter().find(|c| c.column.as_deref() == Some("x")).unwrap();
    assert!(x.via_derived && x.tables.is_empty(), "{u:?}");
    card_is_derived("SELECT s.x FROM (SELECT card_number AS x FROM customers) s");
}

#[test]
fn cte_bodies_are_not_direct_and_cte_names_are_derived() {
    let sql = "WITH s AS (SELECT * FROM customers) SELECT * FROM s";
    let u = uses(sql);
    let inner = of(&u, CUSTOMERS, None);
    assert_eq!(inner.len(), 1, "{u:?}");
    assert!(!inner[0].direct_output);
    let outer: Vec<&ColumnUse> = u.iter().filter(|c| c.via_derived).collect();
    assert_eq!(outer.len(), 1, "{u:?}");
    assert!(outer[0].tables.is_empty() && outer[0].column.is_none());

    // A CTE shadowing the table reads the real table in its own body.
    let sql = "WITH customers AS (SELECT * FROM customers) SELECT card_number FROM customers";
    let u = uses(sql);
    assert!(of(&u, CUSTOMERS, None).iter().all(|c| !c.direct_output));
    assert!(!of(&u, CUSTOMERS, None).is_empty(), "{u:?}");
    let outer = u
        .iter()
        .find(|c| c.column.as_deref() == Some("card_number"))
        .unwrap();
    assert!(outer.via_derived && outer.tables.is_empty(), "{u:?}");
}

#[test]
fn set_operations_are_never_direct() {
    for sql in [
        "SELECT card_number FROM customers UNION SELECT '1'",
        "SELECT '1' UNION ALL SELECT card_number FROM customers",
        "SELECT card_number FROM customers INTERSECT SELECT card_number FROM customers",
        "SELECT card_number FROM customers EXCEPT SELECT '1' ORDER BY 1",
        "(SELECT card_number FROM customers) UNION (SELECT '1') ORDER BY card_number",
    ] {
        let u = uses(sql);
        assert!(u.iter().all(|c| !c.direct_output), "{sql}: {u:?}");
        card_is_derived(sql);
    }
}

#[test]
fn predicates_and_clauses_are_not_direct() {
    for sql in [
        "SELECT id FROM customers WHERE card_number LIKE '4%'",
        "SELECT count(*) FROM customers GROUP BY card_number",
        "SELECT id FROM customers ORDER BY card_number",
        "SELECT id FROM customers GROUP BY id HAVING max(card_number) > '4'",
        "SELECT DISTINCT ON (card_number) id FROM customers",
        "SELECT id FROM customers LIMIT length(card_number)",
        "SELECT row_number() OVER (ORDER BY card_number) FROM customers",
    ] {
        let u = uses(sql);
        let card = of(&u, CUSTOMERS, Some("card_number"));
        assert!(!card.is_empty(), "{sql}: {u:?}");
        assert!(card.iter().all(|c| !c.direct_output), "{sql}: {u:?}");
    }
    // The output column stays direct next to a predicate on the same column.
    let u = uses("SELECT card_number FROM customers WHERE card_number LIKE '4%'");
    let card = of(&u, CUSTOMERS, Some("card_number"));
    assert_eq!(card.len(), 2);
    assert!(card[0].direct_output && !card[1].direct_output, "{u:?}");
}

#[test]
fn unqualified_column_with_two_tables_names_both() {
    let u = uses("SELECT card_number FROM customers, orders");
    assert_eq!(u.len(), 1, "{u:?}");
    assert_eq!(
        u[0].tables,
        vec![CUSTOMERS.to_string(), "public.orders".to_string()]
    );
    assert!(u[0].direct_output && !u[0].via_derived);
    // With a subquery in FROM, the column may come from it.
    let u = uses("SELECT card_number FROM customers, (SELECT 1 AS y) s");
    assert!(u[0].via_derived && u[0].tables == vec![CUSTOMERS.to_string()]);
}

#[test]
fn join_output_is_direct_and_join_condition_is_not() {
    let u =
        uses("SELECT o.id, c.card_number FROM orders o JOIN customers c ON c.id = o.customer_id");
    let get = |table: &str, col: &str| -> Vec<&ColumnUse> { of(&u, table, Some(col)) };
    let card = get(CUSTOMERS, "card_number");
    assert_eq!(card.len(), 1);
    assert!(card[0].direct_output);
    assert_eq!(card[0].tables, vec![CUSTOMERS.to_string()]);
    let o_id = get("public.orders", "id");
    assert_eq!(o_id.len(), 1);
    assert!(o_id[0].direct_output);
    let c_id = get(CUSTOMERS, "id");
    assert_eq!(c_id.len(), 1);
    assert!(!c_id[0].direct_output);
    let fk = get("public.orders", "customer_id");
    assert_eq!(fk.len(), 1);
    assert!(!fk[0].direct_output);
    assert_eq!(u.len(), 4, "{u:?}");

    // An aliased join names the tables under it.
    let u = uses("SELECT j.card_number FROM (customers c JOIN orders o ON true) j");
    assert!(u[0].tables.contains(&CUSTOMERS.to_string()), "{u:?}");
    assert!(u[0].direct_output);
}

#[test]
fn correlated_subquery_sees_outer_scope() {
    let sql = "SELECT o.id FROM orders o WHERE EXISTS \
               (SELECT 1 FROM customers c WHERE c.id = o.customer_id AND c.card_number LIKE '4%')";
    let u = uses(sql);
    let fk = of(&u, "public.orders", Some("customer_id"));
    assert_eq!(fk.len(), 1, "{u:?}");
    assert!(!fk[0].direct_output && !fk[0].via_derived);
    not_direct(sql, Some("card_number"));

    // Unqualified inside a FROM-less subquery: the outer table is a candidate.
    let sql = "SELECT (SELECT card_number LIMIT 1) FROM customers";
    let u = uses(sql);
    let card = of(&u, CUSTOMERS, Some("card_number"));
    assert_eq!(card.len(), 1, "{u:?}");
    assert!(!card[0].direct_output);

    // Lateral reference to an outer alias.
    let sql = "SELECT s.x FROM customers c, LATERAL (SELECT c.card_number AS x) s";
    card_is_derived(sql);
}

#[test]
fn scalar_subquery_in_target_list_is_not_direct() {
    let sql = "SELECT (SELECT card_number FROM customers LIMIT 1)";
    let u = uses(sql);
    assert_eq!(u.len(), 1, "{u:?}");
    assert!(!u[0].direct_output);
    assert_eq!(u[0].tables, vec![CUSTOMERS.to_string()]);
    card_is_derived("SELECT id, (SELECT card_number FROM customers LIMIT 1) FROM orders");
    card_is_derived("SELECT ARRAY(SELECT card_number FROM customers)");
}

#[test]
fn dml_returning_is_never_direct() {
    for sql in [
        "UPDATE customers SET name = 'x' WHERE id = 1 RETURNING card_number",
        "DELETE FROM customers RETURNING *",
        "INSERT INTO customers (id) VALUES (1) RETURNING card_number",
        "INSERT INTO customers (id) VALUES (1) ON CONFLICT (id) DO UPDATE \
         SET name = excluded.name RETURNING customers.card_number",
        "UPDATE customers c SET name = o.note FROM orders o WHERE o.customer_id = c.id \
         RETURNING c.card_number",
        "UPDATE customers SET name = 'x' RETURNING old.card_number",
        "MERGE INTO customers c USING orders o ON o.customer_id = c.id \
         WHEN MATCHED THEN UPDATE SET name = 'x' RETURNING c.card_number",
        "INSERT INTO archive SELECT card_number FROM customers",
    ] {
        let u = uses(sql);
        assert!(u.iter().all(|c| !c.direct_output), "{sql}: {u:?}");
        card_is_derived(sql);
    }
    // The CTE's output is a derived star; the RETURNING inside it is not direct.
    let sql = "WITH d AS (DELETE FROM customers RETURNING card_number) SELECT * FROM d";
    card_is_derived(sql);
    let u = uses(sql);
    assert!(u.iter().all(|c| !c.direct_output || c.via_derived), "{u:?}");
    // Columns written are not uses; columns read by SET expressions are.
    let u = uses("UPDATE customers SET card_number = upper(name)");
    assert!(of(&u, CUSTOMERS, Some("card_number")).is_empty(), "{u:?}");
    assert_eq!(of(&u, CUSTOMERS, Some("name")).len(), 1);
}

#[test]
fn copy_select_into_views_and_prepared_queries_are_not_direct() {
    for sql in [
        "COPY (SELECT card_number FROM customers) TO STDOUT",
        "COPY customers TO STDOUT",
        "COPY customers (id, card_number) TO STDOUT",
        "SELECT card_number INTO stolen FROM customers",
        "CREATE TABLE stolen AS SELECT card_number FROM customers",
        "CREATE VIEW v AS SELECT card_number FROM customers",
        "EXPLAIN ANALYZE SELECT card_number FROM customers",
        "PREPARE p AS SELECT card_number FROM customers",
        "DECLARE cur CURSOR FOR SELECT card_number FROM customers",
    ] {
        let u = uses(sql);
        assert!(u.iter().all(|c| !c.direct_output), "{sql}: {u:?}");
        card_is_derived(sql);
    }
    // COPY FROM writes; it reads nothing out.
    assert!(uses("COPY customers FROM STDIN").is_empty());
}

#[test]
fn values_and_no_column_statements() {
    assert!(uses("SELECT 1").is_empty());
    assert!(uses("VALUES (1, 'a')").is_empty());
    assert!(uses("BEGIN; COMMIT").is_empty());
    assert!(uses("").is_empty());
    assert!(uses("SELECT count(*) FROM customers").is_empty());
}

#[test]
fn multi_statement_reports_every_statement() {
    let u = uses("SELECT card_number FROM customers; SELECT upper(card_number) FROM customers");
    let card = of(&u, CUSTOMERS, Some("card_number"));
    assert_eq!(card.len(), 2, "{u:?}");
    assert!(card[0].direct_output);
    assert!(!card[1].direct_output);
    // The second statement is itself a top-level SELECT.
    let u = uses("SELECT 1; SELECT c.card_number FROM customers c");
    assert!(u[0].direct_output, "{u:?}");
}

#[test]
fn quoted_names_keep_their_case() {
    let u = uses(r#"SELECT "Card_Number", CARD_NUMBER FROM "Customers""#);
    assert_eq!(u[0].column.as_deref(), Some("Card_Number"));
    assert_eq!(u[1].column.as_deref(), Some("card_number"));
    assert_eq!(u[0].tables, vec!["public.Customers".to_string()]);
}

#[test]
fn unresolved_qualifiers_fail_closed() {
    // Not in scope (PostgreSQL would reject it, or it is a composite field access).
    let u = uses("SELECT x.card_number FROM customers c");
    assert!(u.iter().all(|c| !c.direct_output && c.via_derived), "{u:?}");
    assert!(u
        .iter()
        .any(|c| c.column.as_deref() == Some("card_number")
            && c.tables == vec![CUSTOMERS.to_string()]));
    // The alias hides the table name.
    let u = uses("SELECT customers.card_number FROM customers c");
    assert!(u.iter().all(|c| !c.direct_output), "{u:?}");
    // `c.card_number.x` is a field of the column: an expression over it.
    let u = uses("SELECT c.card_number.x FROM customers c");
    not_direct(
        "SELECT c.card_number.x FROM customers c",
        Some("card_number"),
    );
    assert!(u.iter().all(|c| !c.direct_output), "{u:?}");
}

#[test]
fn parse_errors_are_errors() {
    assert!(matches!(
        column_uses("SELECT FROM WHERE ("),
        Err(ClassifyError::Syntax(_))
    ));
    assert!(column_uses("SELECT 1\0").is_err());
}

#[test]
fn deep_nesting_never_panics() {
    let n = 512 * 1024;
    let sql = format!("SELECT {}card_number{}", "(".repeat(n), ")".repeat(n));
    let _ = column_uses(&sql);
    let sql = format!(
        "{}SELECT card_number FROM customers{}",
        "SELECT * FROM (".repeat(200),
        ") x".repeat(200)
    );
    match column_uses(&sql) {
        Ok(u) => assert!(u
            .iter()
            .any(|c| !c.direct_output && c.tables == vec![CUSTOMERS])),
        Err(e) => assert!(
            matches!(e, ClassifyError::TooComplex | ClassifyError::Syntax(_)),
            "{e:?}"
        ),
    }
}

/// The classifier's token-soup stand-in for fuzzing, plus column-shaped tokens: every input
/// gives uses or a clean error, never a panic.
#[test]
fn token_soup_never_panics() {
    const TOKENS: &[&str] = &[
        "SELECT",
        "*",
        "FROM",
        "t",
        "s.t",
        "c",
        "c.*",
        "c.a",
        "a",
        "s.t.a",
        "x.y.z.w",
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
        "USING",
        "f(",
        "row_to_json(",
        "COPY",
        "TO",
        "STDOUT",
        "PREPARE",
        "p",
        "EXPLAIN",
        "DECLARE",
        "CURSOR",
        "FOR",
        "TABLE",
        "CREATE",
        "MERGE",
        "WHEN",
        "MATCHED",
        "THEN",
        "LATERAL",
        "::text",
        "||",
        "ORDER",
        "BY",
        "GROUP",
        "RECURSIVE",
        "excluded.a",
        "old.a",
        "ROWS FROM(",
        "EXISTS",
        "CONFLICT",
        "DO",
        "NOTHING",
    ];
    let mut seed: u64 = 0xc01;
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
        if column_uses(&sql.join(" ")).is_ok() {
            accepted += 1;
        }
    }
    assert!(accepted > 0);
}

#[test]
fn join_merged_columns_are_not_plain_columns() {
    // FULL JOIN USING outputs COALESCE(a.x, b.x): PostgreSQL names no origin for it.
    let sql = "SELECT card_number FROM customers FULL JOIN archive USING (card_number)";
    let u = uses(sql);
    assert!(u.iter().all(|c| !c.direct_output), "{u:?}");
    card_is_derived(sql);
    // A star over it reports the merged column as a non-direct use; other columns stay
    // direct (masked by their origin).
    let u = uses("SELECT * FROM customers JOIN archive USING (card_number)");
    card_is_derived("SELECT * FROM customers JOIN archive USING (card_number)");
    assert!(
        u.iter().any(|c| c.column.is_none() && c.direct_output),
        "{u:?}"
    );
    // A side's own column, qualified, is still plain.
    direct(
        "SELECT c.card_number FROM customers c JOIN archive a USING (id)",
        Some("card_number"),
    );
    // Through the join alias, the merged column is not plain.
    card_is_derived("SELECT j.card_number FROM (customers JOIN archive USING (card_number)) j");
    // NATURAL: any column may be merged.
    for sql in [
        "SELECT * FROM customers NATURAL FULL JOIN archive",
        "SELECT card_number FROM customers NATURAL JOIN archive",
    ] {
        let u = uses(sql);
        assert!(
            of(&u, CUSTOMERS, None)
                .iter()
                .chain(of(&u, CUSTOMERS, Some("card_number")).iter())
                .all(|c| !c.direct_output)
                && !u.is_empty(),
            "{sql}: {u:?}"
        );
    }
}

#[test]
fn alias_column_lists_may_rename_any_column() {
    // `x` is whatever customers' first column is, so it may be card_number.
    let sql = "SELECT upper(x) FROM customers c(x)";
    card_is_derived(sql);
    // As a plain output it stays direct: the origin names the real column.
    let u = uses("SELECT x FROM customers c(x)");
    assert!(
        of(&u, CUSTOMERS, None).iter().all(|c| c.direct_output),
        "{u:?}"
    );
    assert!(!of(&u, CUSTOMERS, None).is_empty(), "{u:?}");
    card_is_derived("SELECT upper(j.x) FROM (customers JOIN orders ON true) AS j(x)");
}
