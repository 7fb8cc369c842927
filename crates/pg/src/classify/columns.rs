//! How a statement uses columns, for column-masking rules (`customers.card_number`, `*.ssn`).
//!
//! The gateway masks a protected column by the table OID / attribute number that
//! PostgreSQL's RowDescription gives each output column. That is only sound when the
//! protected value reaches the client *as a plain column* of the top-level SELECT: anything
//! else (an expression, an aggregate, a whole-row value, a subquery, a set operation, a
//! predicate, a copy into another table, ...) derives new values whose origin the
//! RowDescription does not name, and the gateway must then deny the statement, naming the
//! column. [`column_uses`] reports every column reference of a statement with the facts that
//! decision needs: the candidate source tables, the column, whether the reference is itself
//! a direct output column of the top-level SELECT, and whether it goes through a derived
//! relation (subquery, CTE, function) whose source is unknown here.
//!
//! Like the rest of the classifier it walks the whole parse tree with the generated visitor
//! ([`super::visit`]), so a column reference cannot hide in a clause this file forgot; the
//! hand-written part only resolves names against FROM scopes.
//!
//! Direction of errors: over-reporting is safe (a possibly annoying denial), under-reporting
//! is a bypass. So:
//! - an unqualified column lists *every* table in scope, outer (correlated) scopes included;
//! - a single name that is both a possible column and a FROM alias is reported both ways
//!   (a column, and a whole-row reference), since PostgreSQL picks by the table's columns,
//!   which are not known here;
//! - a qualifier that resolves to nothing (trigger `NEW`/`OLD`, a composite field access
//!   `(a).b` written as `a.b`, a typo PostgreSQL will reject) reports every name part as a
//!   candidate column, over every table in scope, with `via_derived` set;
//! - `direct_output` is true only in the one structural position where it is sound (see
//!   [`ColumnUse::direct_output`]); `SELECT INTO`, `EXPLAIN`, `PREPARE`, `DECLARE CURSOR`,
//!   `CREATE ... AS`, views and DML never have direct outputs;
//! - a column merged by `JOIN ... USING` / `NATURAL JOIN` (unqualified or through the join
//!   alias) is a COALESCE or a coerced value, never a plain column: not direct (a star over
//!   such a join reports each USING column as a non-direct use; over a NATURAL join the
//!   star itself is not direct);
//! - a name from an alias column list (`FROM customers c(x)`) may stand for any column of
//!   the table, so it is also reported as a whole-row (`column: None`) use;
//! - `COPY table TO` reports every column of the table (a star, or each listed column);
//!   columns written (INSERT/UPDATE targets, `COPY FROM` column lists) are not reported as
//!   uses, but every expression that reads a column is.

use std::collections::{HashMap, HashSet};

use pg_query::protobuf::{self, Node};
use pg_query::NodeEnum;

use super::visit::{self, Visit};
use super::{client_message, table_name, ClassifyError, MAX_DEPTH};

/// One reference to a column (or to all columns: a star or a whole-row value) in a statement.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ColumnUse {
    /// Candidate source tables, schema-qualified as the classifier names tables
    /// (`public.customers`): the table the qualifier resolves to, or, for an unqualified
    /// column, every table in scope of that SELECT and of the SELECTs around it. Empty when
    /// the qualifier resolves to a subquery / CTE / function alias (then `via_derived` is
    /// true), or when no table is in scope at all (an expression in DDL).
    pub tables: Vec<String>,
    /// The column name as PostgreSQL sees it (lower-cased unless it was quoted); `None` for
    /// `*`, `t.*` and whole-row references (`SELECT c FROM t c`, `row_to_json(c)`), which
    /// carry every column of their tables.
    pub column: Option<String>,
    /// True only for a plain column reference or star that is itself an output column of the
    /// top-level SELECT of its statement (optionally aliased: `SELECT c.card_number AS x`):
    /// its value reaches the client unchanged and the RowDescription names its origin.
    /// False everywhere else: inside any expression or function call (casts, concatenation,
    /// string functions, aggregates), in WHERE / JOIN ON / GROUP BY / HAVING / ORDER BY /
    /// LIMIT, in subqueries and CTE bodies, in set-operation branches (even their top-level
    /// target lists), in `SELECT INTO`, DML (RETURNING included), VALUES, COPY, and for
    /// whole-row references. When it is true together with `via_derived`, the value comes
    /// from a derived relation whose own uses are reported (never direct) separately.
    pub direct_output: bool,
    /// For a direct output: its position in the top-level target list (0-based), which is
    /// the result column it becomes when the target list has no star before it. A view's
    /// definition as `pg_get_viewdef` prints it has none, so this maps a view column to its
    /// source. `None` for every use that is not direct.
    pub output: Option<usize>,
    /// The reference goes through a subquery, CTE, function or other derived relation (or a
    /// qualifier that could not be resolved), so the underlying table is not known here.
    pub via_derived: bool,
}

/// Every column use of a (possibly multi-statement) command, statement by statement, in
/// parse-tree order. Parse errors are errors, and the caller must deny.
pub fn column_uses(sql: &str) -> Result<Vec<ColumnUse>, ClassifyError> {
    let parsed = pg_query::parse(sql, 0).map_err(|e| match e {
        pg_query::Error::Parse(m) => ClassifyError::Syntax(client_message(&m)),
        pg_query::Error::Conversion(_) => ClassifyError::NulByte,
        pg_query::Error::Decode(_) => ClassifyError::TooComplex,
        other => ClassifyError::Internal(other.to_string()),
    })?;
    let mut w = Walker::default();
    for raw in &parsed.protobuf.stmts {
        let Some(stmt) = raw.stmt.as_deref() else {
            continue;
        };
        w.root = match &stmt.node {
            Some(NodeEnum::SelectStmt(s)) => addr::<protobuf::SelectStmt>(s),
            _ => 0,
        };
        w.visit_node(stmt);
        if w.too_deep {
            return Err(ClassifyError::TooComplex);
        }
    }
    Ok(w.uses)
}

/// One name a FROM clause (or DML target) puts in scope.
#[derive(Clone, Debug, Default)]
struct Entry {
    /// The reference name: the alias, else the relation (or function) name.
    name: Option<String>,
    /// `schema.table` this entry can also be named by (only an unaliased table).
    qualified: Option<String>,
    /// Real tables under this name (several for an aliased join).
    tables: Vec<String>,
    /// A subquery, CTE, function or other relation whose source is not known here.
    derived: bool,
    /// Expanded by an unqualified `*` (false for join aliases, join markers and
    /// `excluded`/`old`/`new`, which name relations already in the list).
    star: bool,
    /// Column names given by an alias column list (`customers c(a, b)`): `a` is whatever the
    /// first column is, so a reference to it may be any column of the table.
    renamed: Vec<String>,
    /// Columns merged by `JOIN ... USING (...)` under this entry: unqualified (or through
    /// the join alias) they are a COALESCE or a coerced value, not a plain column.
    using: Vec<String>,
    /// A NATURAL join under this entry: any column may be merged.
    natural: bool,
}

impl Entry {
    fn merges(&self, col: &str) -> bool {
        self.natural || self.using.iter().any(|u| u == col)
    }
}

#[derive(Default)]
struct Walker {
    uses: Vec<ColumnUse>,
    /// FROM scopes, innermost last.
    scopes: Vec<Vec<Entry>>,
    /// CTE names visible at this point, innermost last.
    ctes: Vec<Vec<String>>,
    /// WITH clauses already walked with their scoping, by address.
    handled: HashSet<usize>,
    /// Column references that are direct output columns of the top-level SELECT, with
    /// their target-list positions.
    direct: HashMap<usize, usize>,
    /// The position of the direct output column being resolved.
    output: Option<usize>,
    /// Address of the current statement's top-level SelectStmt (0 if it is not a SELECT).
    root: usize,
    depth: usize,
    too_deep: bool,
}

fn addr<T>(x: &T) -> usize {
    x as *const T as usize
}

fn alias_name(a: Option<&protobuf::Alias>) -> Option<String> {
    a.map(|a| a.aliasname.clone()).filter(|n| !n.is_empty())
}

fn alias_columns(a: &protobuf::Alias) -> Vec<String> {
    a.colnames
        .iter()
        .filter_map(|n| match &n.node {
            Some(NodeEnum::String(s)) => Some(s.sval.clone()),
            _ => None,
        })
        .collect()
}

fn derived(name: Option<String>) -> Entry {
    Entry {
        name,
        derived: true,
        star: true,
        ..Entry::default()
    }
}

impl Walker {
    fn is_cte(&self, r: &protobuf::RangeVar) -> bool {
        r.schemaname.is_empty()
            && r.catalogname.is_empty()
            && self.ctes.iter().any(|s| s.contains(&r.relname))
    }

    fn range_var(&self, r: &protobuf::RangeVar) -> Entry {
        let alias = alias_name(r.alias.as_ref());
        if self.is_cte(r) {
            return derived(Some(alias.unwrap_or_else(|| r.relname.clone())));
        }
        let t = table_name(&r.schemaname, &r.relname);
        Entry {
            qualified: alias.is_none().then(|| t.clone()),
            name: Some(alias.unwrap_or_else(|| r.relname.clone())),
            tables: vec![t],
            star: true,
            renamed: r.alias.as_ref().map(alias_columns).unwrap_or_default(),
            ..Entry::default()
        }
    }

    /// The names one FROM item puts in scope.
    fn add_from_item(&mut self, n: &Node, out: &mut Vec<Entry>, depth: usize) {
        if depth > MAX_DEPTH {
            self.too_deep = true;
            return;
        }
        let Some(e) = &n.node else { return };
        match e {
            NodeEnum::RangeVar(r) => out.push(self.range_var(r)),
            NodeEnum::RangeSubselect(s) => out.push(derived(alias_name(s.alias.as_ref()))),
            NodeEnum::RangeFunction(f) => {
                let name = alias_name(f.alias.as_ref()).or_else(|| function_name(f));
                out.push(derived(name));
            }
            NodeEnum::RangeTableFunc(f) => out.push(derived(alias_name(f.alias.as_ref()))),
            NodeEnum::JsonTable(f) => out.push(derived(alias_name(f.alias.as_ref()))),
            NodeEnum::RangeTableSample(s) => match &s.relation {
                Some(r) => self.add_from_item(r, out, depth + 1),
                None => out.push(derived(None)),
            },
            NodeEnum::JoinExpr(j) => {
                let start = out.len();
                for side in [&j.larg, &j.rarg].into_iter().flatten() {
                    self.add_from_item(side, out, depth + 1);
                }
                // `(a JOIN b) AS j` and `JOIN ... USING (x) AS j` name the joined tables.
                let mut tables: Vec<String> = Vec::new();
                for t in out[start..].iter().flat_map(|e| e.tables.iter()) {
                    if !tables.contains(t) {
                        tables.push(t.clone());
                    }
                }
                let any_derived = out[start..].iter().any(|e| e.derived);
                let using: Vec<String> = j
                    .using_clause
                    .iter()
                    .filter_map(|n| match &n.node {
                        Some(NodeEnum::String(s)) => Some(s.sval.clone()),
                        _ => None,
                    })
                    .collect();
                // Merged columns belong to the join, not to either side (a marker entry).
                if j.is_natural || !j.using_clause.is_empty() {
                    out.push(Entry {
                        tables: tables.clone(),
                        derived: any_derived,
                        using: using.clone(),
                        // A USING list this code cannot read merges unknown columns.
                        natural: j.is_natural || using.len() != j.using_clause.len(),
                        ..Entry::default()
                    });
                }
                for a in [&j.alias, &j.join_using_alias].into_iter().flatten() {
                    out.push(Entry {
                        name: alias_name(Some(a)),
                        tables: tables.clone(),
                        derived: any_derived,
                        renamed: alias_columns(a),
                        using: using.clone(),
                        natural: j.is_natural || using.len() != j.using_clause.len(),
                        ..Entry::default()
                    });
                }
            }
            // A FROM item this version does not know: its source is unknown.
            _ => out.push(derived(None)),
        }
    }

    /// A DML target (with the pseudo-relations that name it), plus further FROM items.
    fn dml_scope(
        &mut self,
        target: Option<&protobuf::RangeVar>,
        extra_names: &[&str],
        from: &[&Node],
    ) -> Vec<Entry> {
        let mut out = Vec::new();
        if let Some(r) = target {
            let t = self.range_var(r);
            for n in extra_names {
                out.push(Entry {
                    name: Some((*n).to_string()),
                    qualified: None,
                    star: false,
                    ..t.clone()
                });
            }
            out.insert(0, t);
        }
        for n in from {
            self.add_from_item(n, &mut out, 0);
        }
        out
    }

    /// Runs `f` with the WITH clause's CTEs walked (each body seeing only the CTEs before
    /// it, unless RECURSIVE) and their names in scope.
    fn with_ctes(&mut self, with: Option<&protobuf::WithClause>, f: impl FnOnce(&mut Self)) {
        let Some(w) = with else {
            f(self);
            return;
        };
        self.handled.insert(addr(w));
        let names: Vec<String> = w
            .ctes
            .iter()
            .filter_map(|c| match &c.node {
                Some(NodeEnum::CommonTableExpr(c)) => Some(c.ctename.clone()),
                _ => None,
            })
            .collect();
        self.ctes.push(if w.recursive {
            names.clone()
        } else {
            Vec::new()
        });
        for (i, cte) in w.ctes.iter().enumerate() {
            if !w.recursive {
                if let Some(scope) = self.ctes.last_mut() {
                    *scope = names[..i.min(names.len())].to_vec();
                }
            }
            self.visit_node(cte);
        }
        if let Some(scope) = self.ctes.last_mut() {
            *scope = names;
        }
        f(self);
        self.ctes.pop();
    }

    fn in_scope(&mut self, entries: Vec<Entry>, f: impl FnOnce(&mut Self)) {
        self.scopes.push(entries);
        f(self);
        self.scopes.pop();
    }

    /// Every entry of every scope, innermost first.
    fn all_entries(&self) -> Vec<Entry> {
        self.scopes.iter().rev().flatten().cloned().collect()
    }

    /// Every real table in every scope, innermost first.
    fn all_tables(&self) -> Vec<String> {
        let mut tables: Vec<String> = Vec::new();
        for t in self
            .scopes
            .iter()
            .rev()
            .flatten()
            .flat_map(|e| e.tables.iter())
        {
            if !tables.contains(t) {
                tables.push(t.clone());
            }
        }
        tables
    }

    /// The entries of the innermost scope that has one matching `pred` (PostgreSQL resolves
    /// a qualifier in the nearest scope that names it).
    fn lookup(&self, pred: impl Fn(&Entry) -> bool) -> Vec<&Entry> {
        for scope in self.scopes.iter().rev() {
            let found: Vec<&Entry> = scope.iter().filter(|e| pred(e)).collect();
            if !found.is_empty() {
                return found;
            }
        }
        Vec::new()
    }

    /// Entries a qualifier of `k` name parts (`alias`, `schema.table`,
    /// `catalog.schema.table`) resolves to.
    fn qualifier(&self, parts: &[&str]) -> Vec<&Entry> {
        match parts {
            [a] => self.lookup(|e| e.name.as_deref() == Some(*a)),
            [s, t] | [_, s, t] => {
                let q = table_name(s, t);
                self.lookup(|e| e.qualified.as_deref() == Some(q.as_str()))
            }
            _ => Vec::new(),
        }
    }

    fn push(&mut self, entries: &[&Entry], column: Option<&str>, direct: bool) {
        let mut tables: Vec<String> = Vec::new();
        let mut via_derived = false;
        for e in entries {
            via_derived |= e.derived;
            for t in &e.tables {
                if !tables.contains(t) {
                    tables.push(t.clone());
                }
            }
        }
        self.uses.push(ColumnUse {
            tables,
            column: column.map(str::to_string),
            direct_output: direct,
            output: if direct { self.output } else { None },
            via_derived,
        });
    }

    /// A named column resolved to `entries`. It is direct only if no join merges it, and a
    /// name an alias column list gave may stand for any column of the table.
    fn push_column(&mut self, entries: &[&Entry], col: &str, direct: bool) {
        let direct = direct && !entries.iter().any(|e| e.merges(col));
        self.push(entries, Some(col), direct);
        let renamed: Vec<&Entry> = entries
            .iter()
            .copied()
            .filter(|e| e.renamed.iter().any(|r| r == col))
            .collect();
        if !renamed.is_empty() {
            self.push(&renamed, None, direct);
        }
    }

    /// A star over `entries` (already those a `*` or `t.*` expands). Columns merged by a
    /// join are not plain columns: each is reported as a non-direct use, and a NATURAL join
    /// (unknown merged names) makes the whole star non-direct.
    fn push_star(&mut self, entries: &[&Entry], markers: &[&Entry], direct: bool) {
        let direct = direct && !markers.iter().any(|e| e.natural);
        for e in entries {
            self.push(&[e], None, direct);
        }
        for m in markers {
            for u in &m.using {
                self.push(&[m], Some(u), false);
            }
        }
    }

    fn column_ref(&mut self, c: &protobuf::ColumnRef) {
        self.output = self.direct.get(&addr(c)).copied();
        let direct = self.output.is_some();
        let mut parts: Vec<&str> = Vec::with_capacity(c.fields.len());
        let mut star = false;
        for (i, f) in c.fields.iter().enumerate() {
            match &f.node {
                Some(NodeEnum::String(s)) => parts.push(s.sval.as_str()),
                Some(NodeEnum::AStar(_)) if i + 1 == c.fields.len() => star = true,
                // The grammar never builds anything else; if it did, do not guess.
                _ => return self.unresolved(&parts, star),
            }
        }
        if star {
            if parts.is_empty() {
                let scope: Vec<Entry> = self.scopes.last().cloned().unwrap_or_default();
                let stars: Vec<&Entry> = scope.iter().filter(|e| e.star).collect();
                let markers: Vec<&Entry> = scope.iter().filter(|e| e.name.is_none()).collect();
                return self.push_star(&stars, &markers, direct);
            }
            let found: Vec<Entry> = self.qualifier(&parts).into_iter().cloned().collect();
            if found.is_empty() {
                return self.unresolved(&parts, true);
            }
            let refs: Vec<&Entry> = found.iter().collect();
            // `t.*` is a star as an output column, a whole-row value anywhere else.
            return self.push_star(&refs, &refs, direct);
        }
        if let [col] = parts.as_slice() {
            let all = self.all_entries();
            let refs: Vec<&Entry> = all.iter().collect();
            self.push_column(&refs, col, direct);
            // `SELECT c FROM customers c`: a whole-row value unless the table has a column c.
            let whole: Vec<Entry> = self.qualifier(&parts).into_iter().cloned().collect();
            if !whole.is_empty() {
                let refs: Vec<&Entry> = whole.iter().collect();
                self.push(&refs, None, false);
            }
            return;
        }
        // `a.b`, `s.t.c`, `cat.s.t.c`; longer forms also read fields of a composite column.
        // Every interpretation that resolves is reported.
        let mut resolved = false;
        for k in 1..=3.min(parts.len() - 1) {
            let found: Vec<Entry> = self.qualifier(&parts[..k]).into_iter().cloned().collect();
            if !found.is_empty() {
                resolved = true;
                let refs: Vec<&Entry> = found.iter().collect();
                // A field of the column is an expression over it.
                self.push_column(&refs, parts[k], direct && k + 1 == parts.len());
            }
        }
        if !resolved {
            self.unresolved(&parts, false);
        }
    }

    /// A qualifier that names nothing in scope: every part may be a column of any table.
    fn unresolved(&mut self, parts: &[&str], star: bool) {
        let tables = self.all_tables();
        let mut names: Vec<Option<String>> = parts.iter().map(|p| Some(p.to_string())).collect();
        if star || names.is_empty() {
            names.push(None);
        }
        for column in names {
            self.uses.push(ColumnUse {
                tables: tables.clone(),
                column,
                direct_output: false,
                output: None,
                via_derived: true,
            });
        }
    }
}

/// The name an unaliased function in FROM is referred to by.
fn function_name(f: &protobuf::RangeFunction) -> Option<String> {
    let first = f.functions.first()?;
    let Some(NodeEnum::List(l)) = &first.node else {
        return None;
    };
    let Some(NodeEnum::FuncCall(c)) = l.items.first().and_then(|n| n.node.as_ref()) else {
        return None;
    };
    match c.funcname.last().and_then(|n| n.node.as_ref()) {
        Some(NodeEnum::String(s)) => Some(s.sval.clone()),
        _ => None,
    }
}

fn is_set_operation(s: &protobuf::SelectStmt) -> bool {
    s.larg.is_some()
        || s.rarg.is_some()
        || !matches!(
            protobuf::SetOperation::try_from(s.op),
            Ok(protobuf::SetOperation::Undefined | protobuf::SetOperation::SetopNone)
        )
}

/// Names RETURNING may use for the target besides its own (`old`, `new`, and their
/// `RETURNING WITH (OLD AS o)` aliases).
fn returning_names(r: Option<&protobuf::ReturningClause>) -> Vec<String> {
    let mut names = vec!["old".to_string(), "new".to_string()];
    for o in r.map(|r| r.options.as_slice()).unwrap_or_default() {
        if let Some(NodeEnum::ReturningOption(o)) = &o.node {
            if !o.value.is_empty() {
                names.push(o.value.clone());
            }
        }
    }
    names
}

impl Visit for Walker {
    fn visit_node(&mut self, n: &Node) {
        if n.node.is_none() {
            return;
        }
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            self.too_deep = true;
        } else if !self.too_deep {
            visit::walk_node(self, n);
        }
        self.depth -= 1;
    }

    fn visit_with_clause(&mut self, w: &protobuf::WithClause) {
        // Reached only when a parent did not take the clause in hand.
        if !self.handled.contains(&addr(w)) {
            visit::walk_with_clause(self, w);
        }
    }

    fn visit_range_subselect(&mut self, r: &protobuf::RangeSubselect) {
        // Without LATERAL a FROM subquery does not see its sibling FROM items (outer
        // queries' scopes stay visible).
        if r.lateral {
            visit::walk_range_subselect(self, r);
        } else {
            let saved = self.scopes.pop();
            self.in_scope(Vec::new(), |w| visit::walk_range_subselect(w, r));
            self.scopes.extend(saved);
        }
    }

    fn visit_column_ref(&mut self, c: &protobuf::ColumnRef) {
        self.column_ref(c);
    }

    fn visit_select_stmt(&mut self, s: &protobuf::SelectStmt) {
        self.with_ctes(s.with_clause.as_ref(), |w| {
            let mut entries = Vec::new();
            if is_set_operation(s) {
                // ORDER BY of a set operation names its output columns: derived values.
                entries.push(Entry {
                    derived: true,
                    ..Entry::default()
                });
            } else if addr(s) == w.root && s.into_clause.is_none() {
                for (i, t) in s.target_list.iter().enumerate() {
                    if let Some(NodeEnum::ResTarget(r)) = &t.node {
                        if let Some(NodeEnum::ColumnRef(c)) =
                            r.val.as_ref().and_then(|v| v.node.as_ref())
                        {
                            w.direct.insert(addr::<protobuf::ColumnRef>(c), i);
                        }
                    }
                }
            }
            for f in &s.from_clause {
                w.add_from_item(f, &mut entries, 0);
            }
            w.in_scope(entries, |w| visit::walk_select_stmt(w, s));
        });
    }

    fn visit_insert_stmt(&mut self, s: &protobuf::InsertStmt) {
        self.with_ctes(s.with_clause.as_ref(), |w| {
            let mut names = returning_names(s.returning_clause.as_ref());
            names.push("excluded".into());
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            let entries = w.dml_scope(s.relation.as_ref(), &names, &[]);
            w.in_scope(entries, |w| visit::walk_insert_stmt(w, s));
        });
    }

    fn visit_update_stmt(&mut self, s: &protobuf::UpdateStmt) {
        self.with_ctes(s.with_clause.as_ref(), |w| {
            let names = returning_names(s.returning_clause.as_ref());
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            let from: Vec<&Node> = s.from_clause.iter().collect();
            let entries = w.dml_scope(s.relation.as_ref(), &names, &from);
            w.in_scope(entries, |w| visit::walk_update_stmt(w, s));
        });
    }

    fn visit_delete_stmt(&mut self, s: &protobuf::DeleteStmt) {
        self.with_ctes(s.with_clause.as_ref(), |w| {
            let names = returning_names(s.returning_clause.as_ref());
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            let from: Vec<&Node> = s.using_clause.iter().collect();
            let entries = w.dml_scope(s.relation.as_ref(), &names, &from);
            w.in_scope(entries, |w| visit::walk_delete_stmt(w, s));
        });
    }

    fn visit_merge_stmt(&mut self, s: &protobuf::MergeStmt) {
        self.with_ctes(s.with_clause.as_ref(), |w| {
            let names = returning_names(s.returning_clause.as_ref());
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            let from: Vec<&Node> = s.source_relation.as_deref().into_iter().collect();
            let entries = w.dml_scope(s.relation.as_ref(), &names, &from);
            w.in_scope(entries, |w| visit::walk_merge_stmt(w, s));
        });
    }

    fn visit_copy_stmt(&mut self, s: &protobuf::CopyStmt) {
        let entries = self.dml_scope(s.relation.as_ref(), &[], &[]);
        if !s.is_from {
            if let Some(t) = entries.first() {
                // `COPY t TO` sends the listed columns, or all of them.
                let t = t.clone();
                let cols: Vec<&str> = s
                    .attlist
                    .iter()
                    .filter_map(|n| match &n.node {
                        Some(NodeEnum::String(s)) => Some(s.sval.as_str()),
                        _ => None,
                    })
                    .collect();
                if cols.is_empty() {
                    self.push(&[&t], None, false);
                }
                for c in cols {
                    self.push(&[&t], Some(c), false);
                }
            }
        }
        self.in_scope(entries, |w| visit::walk_copy_stmt(w, s));
    }
}
