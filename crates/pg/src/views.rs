//! Column-masking rules followed through views (and materialized views).
//!
//! A RowDescription names a view's own column as the origin of a value selected from the
//! view, and the statement names the view, never the base table. A rule on
//! `customers.card_number` must still hold for `SELECT cn FROM customers_v` where the view
//! says `card_number AS cn`. So the gateway reads the view's definition (`pg_get_viewdef`,
//! which lists output columns one by one) and classifies its column uses as it would a
//! statement's:
//! - a protected column that is a plain output column of the view maps that view column
//!   to the base column: results are masked by the base column's rule, and the statement
//!   may use the view column only as a plain output column too;
//! - a protected column used in any other way (an expression, a predicate, an aggregate, a
//!   subquery, a whole-row value) cannot be followed: statements reading the view are
//!   refused, naming the view and the column.
//!
//! Views over views are followed to a fixed depth; deeper nesting, a definition that does
//! not parse, or a catalog that cannot be read is refused (fail closed).

use crate::catalog::Catalog;
use crate::classify::column_uses;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use warden_mask::Masker;

const MAX_VIEW_DEPTH: usize = 8;

/// What masking rules mean for one view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ViewMasking {
    /// Plain output columns of the view that carry a protected base column, by view column
    /// name: (`schema.table`, column). Empty when no protected column reaches the view.
    Follows(HashMap<String, (String, String)>),
    /// A protected column reaches the view in a way that cannot be followed; names it.
    Opaque(String),
}

type Boxed<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// How the masking rules of `masker` reach through the view with this OID.
pub fn view_masking<'a>(masker: &'a Arc<Masker>, catalog: &'a Catalog, oid: u32, depth: usize) -> Boxed<'a, Result<ViewMasking, String>> {
    Box::pin(async move {
        // Parsing a definition costs more than the statement's own classification: keep
        // the answer as long as the catalog keeps the definition (per masker: the rules
        // decide it; the entry holds the masker, so its address cannot be reused while
        // the entry lives).
        let key = (oid, Arc::as_ptr(masker) as usize);
        if let Some(v) = catalog.cached_view(key) {
            return Ok(v);
        }
        let v = analyse_view(masker, catalog, oid, depth).await?;
        catalog.cache_view(key, masker.clone(), v.clone());
        Ok(v)
    })
}

async fn analyse_view(masker: &Arc<Masker>, catalog: &Catalog, oid: u32, depth: usize) -> Result<ViewMasking, String> {
    {
        let view = catalog.table(oid).await?;
        if depth >= MAX_VIEW_DEPTH {
            return Ok(ViewMasking::Opaque(format!("(views nested deeper than {MAX_VIEW_DEPTH} under {})", view.table)));
        }
        let definition = catalog.view_definition(oid).await?;
        let Ok(uses) = column_uses(&definition) else {
            return Ok(ViewMasking::Opaque(format!("(the definition of {} could not be analysed)", view.table)));
        };
        let mut follows = HashMap::new();
        for u in &uses {
            let candidates: Vec<Option<&str>> = if u.tables.is_empty() { vec![None] } else { u.tables.iter().map(|t| Some(t.as_str())).collect() };
            for table in candidates {
                let Some(base) = protected_source(masker, catalog, table, u.column.as_deref(), depth).await? else {
                    continue;
                };
                let plain = u.direct_output && !u.via_derived && u.tables.len() == 1 && u.column.is_some();
                let view_column = u.output.and_then(|i| view.columns.get(&(i as i16 + 1)));
                match (plain, view_column, base) {
                    (true, Some(name), Source::Column(t, c)) => {
                        follows.insert(name.clone(), (t, c));
                    }
                    (_, _, Source::Opaque(what)) => return Ok(ViewMasking::Opaque(what)),
                    (_, _, Source::Column(t, c)) => return Ok(ViewMasking::Opaque(format!("{t}.{c}"))),
                    (_, _, Source::Relation(t)) => return Ok(ViewMasking::Opaque(format!("a whole-row value of {t}"))),
                }
            }
        }
        Ok(ViewMasking::Follows(follows))
    }
}

/// What a column use in a view definition reads that a rule protects.
enum Source {
    /// A protected base column.
    Column(String, String),
    /// Every column (a whole-row or star use) of a relation with protected columns.
    Relation(String),
    /// Through a nested view that cannot be followed.
    Opaque(String),
}

async fn protected_source(masker: &Arc<Masker>, catalog: &Catalog, table: Option<&str>, column: Option<&str>, depth: usize) -> Result<Option<Source>, String> {
    if let Some(t) = table {
        if let Some(rel) = catalog.relation(t).await? {
            if rel.is_view {
                return Ok(match view_masking(masker, catalog, rel.oid, depth + 1).await? {
                    ViewMasking::Opaque(what) => Some(Source::Opaque(what)),
                    ViewMasking::Follows(map) => match column {
                        Some(c) => map.get(c).map(|(bt, bc)| Source::Column(bt.clone(), bc.clone())),
                        None => (!map.is_empty()).then(|| Source::Relation(t.to_string())),
                    },
                });
            }
        }
    }
    if !masker.rule_covers(table, column) {
        return Ok(None);
    }
    Ok(Some(match (table, column) {
        (Some(t), Some(c)) => Source::Column(t.to_string(), c.to_string()),
        (None, Some(c)) => Source::Column("*".to_string(), c.to_string()),
        (Some(t), None) => Source::Relation(t.to_string()),
        (None, None) => Source::Relation("a derived relation".to_string()),
    }))
}

/// Why a statement reading views may not run on a masked session, if it may not: it reads
/// a view that cannot be followed, or uses a view column that carries a protected base
/// column other than as a plain output column. `tables` are the statement's tables as the
/// classifier names them.
pub async fn view_misuse(masker: &Arc<Masker>, catalog: &Catalog, sql: &str, tables: &[String]) -> Result<Option<String>, String> {
    let mut followed: HashMap<&str, HashMap<String, (String, String)>> = HashMap::new();
    for t in tables {
        let Some(rel) = catalog.relation(t).await? else { continue };
        if !rel.is_view {
            continue;
        }
        match view_masking(masker, catalog, rel.oid, 0).await? {
            ViewMasking::Opaque(what) => {
                return Ok(Some(format!("view {t} derives values from masked column {what} in a way Warden cannot follow, so it cannot be read with masked results")));
            }
            ViewMasking::Follows(map) if map.is_empty() => {}
            ViewMasking::Follows(map) => {
                followed.insert(t.as_str(), map);
            }
        }
    }
    if followed.is_empty() {
        return Ok(None);
    }
    let uses = column_uses(sql).map_err(|e| format!("column use could not be analysed ({e})"))?;
    for u in uses.iter().filter(|u| !u.direct_output) {
        for t in &u.tables {
            let Some(map) = followed.get(t.as_str()) else { continue };
            match &u.column {
                None => return Ok(Some(format!("a whole-row or star use of view {t}, which carries masked columns, may only be a plain output column"))),
                Some(c) => {
                    if let Some((bt, bc)) = map.get(c) {
                        return Ok(Some(format!("column {t}.{c} carries masked column {bt}.{bc}: it may be selected as a plain column (its values arrive masked) but not used in expressions, predicates, aggregates, subqueries or set operations")));
                    }
                }
            }
        }
    }
    Ok(None)
}
