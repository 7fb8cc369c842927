//! Names of result columns' origins. A RowDescription says where a column comes from only as
//! (table OID, attribute number); column-masking rules are written with names. The gateway
//! asks the upstream's catalog on its own connection, never the agent's, and caches answers.

use crate::codec::{self, backend::ErrorFields, frontend};
use crate::upstream::{self, UpstreamConfig, UpstreamConnection};
use bytes::{Buf, BytesMut};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Renames are rare and a stale name only matters for rules written on the new name.
const TTL: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableColumns {
    /// `schema.table`, as the classifier names tables.
    pub table: String,
    pub columns: HashMap<i16, String>,
    /// A view or materialized view: its columns are whatever its definition computes, so a
    /// masking rule on a base column must be followed through it (`crate::views`).
    pub is_view: bool,
}

/// A relation found by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Relation {
    pub oid: u32,
    pub is_view: bool,
}

type Cached<K, V> = Mutex<HashMap<K, (Instant, V)>>;

pub struct Catalog {
    upstream: UpstreamConfig,
    tables: Cached<u32, Arc<TableColumns>>,
    names: Cached<String, Option<Relation>>,
    definitions: Cached<u32, Arc<str>>,
    /// What masking rules mean for a view, by (view OID, masker identity).
    views: Cached<(u32, usize), (Arc<warden_mask::Masker>, crate::views::ViewMasking)>,
    conn: tokio::sync::Mutex<Option<UpstreamConnection>>,
}

fn cached<K: std::hash::Hash + Eq, V: Clone>(cache: &Cached<K, V>, key: &K) -> Option<V> {
    cache.lock().unwrap().get(key).filter(|(at, _)| at.elapsed() < TTL).map(|(_, v)| v.clone())
}

impl Catalog {
    pub fn new(upstream: UpstreamConfig) -> Arc<Self> {
        Arc::new(Catalog { upstream, tables: Mutex::default(), names: Mutex::default(), definitions: Mutex::default(), views: Mutex::default(), conn: tokio::sync::Mutex::new(None) })
    }

    /// The table with this OID, or an error when the catalog cannot be read (the caller
    /// must then fail closed).
    pub async fn table(&self, oid: u32) -> Result<Arc<TableColumns>, String> {
        if let Some(t) = cached(&self.tables, &oid) {
            return Ok(t);
        }
        // The OID is an integer we format ourselves: no injection surface.
        let rows = self
            .rows(&format!(
                "SELECT n.nspname, c.relname, a.attnum::text, a.attname, c.relkind::text FROM pg_catalog.pg_class c \
                 JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                 JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid \
                 WHERE c.oid = {oid} AND a.attnum > 0 AND NOT a.attisdropped"
            ))
            .await?;
        let mut table = None;
        let mut columns = HashMap::new();
        let mut is_view = false;
        for row in rows {
            if let [Some(schema), Some(rel), Some(num), Some(name), Some(kind)] = &row[..] {
                table = Some(format!("{schema}.{rel}"));
                is_view = kind == "v" || kind == "m";
                if let Ok(n) = num.parse::<i16>() {
                    columns.insert(n, name.clone());
                }
            }
        }
        let t = Arc::new(TableColumns { table: table.ok_or_else(|| format!("no relation with OID {oid}"))?, columns, is_view });
        self.tables.lock().unwrap().insert(oid, (Instant::now(), t.clone()));
        Ok(t)
    }

    /// The relation a classifier name (`schema.table`, lower-cased unless quoted) denotes,
    /// if any.
    pub async fn relation(&self, name: &str) -> Result<Option<Relation>, String> {
        if let Some(r) = cached(&self.names, &name.to_string()) {
            return Ok(r);
        }
        let (schema, rel) = name.split_once('.').unwrap_or(("public", name));
        let rows = self
            .rows(&format!(
                "SELECT c.oid::text, c.relkind::text FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = {} AND c.relname = {}",
                literal(schema)?,
                literal(rel)?
            ))
            .await?;
        let r = rows.first().and_then(|row| match &row[..] {
            [Some(oid), Some(kind)] => Some(Relation { oid: oid.parse().ok()?, is_view: kind == "v" || kind == "m" }),
            _ => None,
        });
        self.names.lock().unwrap().insert(name.to_string(), (Instant::now(), r));
        Ok(r)
    }

    /// A view's definition as PostgreSQL prints it: a SELECT whose output columns are listed
    /// one by one (stars are expanded at CREATE VIEW), in attribute order.
    pub async fn view_definition(&self, oid: u32) -> Result<Arc<str>, String> {
        if let Some(d) = cached(&self.definitions, &oid) {
            return Ok(d);
        }
        let rows = self.rows(&format!("SELECT pg_catalog.pg_get_viewdef({oid}::pg_catalog.oid)")).await?;
        let d: Arc<str> = rows.into_iter().next().and_then(|r| r.into_iter().next().flatten()).ok_or_else(|| format!("no view definition for OID {oid}"))?.into();
        self.definitions.lock().unwrap().insert(oid, (Instant::now(), d.clone()));
        Ok(d)
    }

    pub(crate) fn cached_view(&self, key: (u32, usize)) -> Option<crate::views::ViewMasking> {
        cached(&self.views, &key).map(|(_, v)| v)
    }

    pub(crate) fn cache_view(&self, key: (u32, usize), masker: Arc<warden_mask::Masker>, v: crate::views::ViewMasking) {
        self.views.lock().unwrap().insert(key, (Instant::now(), (masker, v)));
    }

    async fn rows(&self, sql: &str) -> Result<Vec<Vec<Option<String>>>, String> {
        let mut guard = self.conn.lock().await;
        if guard.is_none() {
            *guard = Some(upstream::connect(&self.upstream, &[]).await.map_err(|e| e.to_string())?);
        }
        let result = query_rows(guard.as_mut().expect("connected above"), sql).await;
        if result.is_err() {
            // The connection may be in any state after an error: start afresh next time.
            *guard = None;
        }
        result
    }
}

/// A string literal for the catalog connection (standard_conforming_strings is on by
/// default since PostgreSQL 9.1; a name with a backslash or NUL is refused rather than
/// trusted to that setting).
fn literal(s: &str) -> Result<String, String> {
    if s.contains(['\\', '\0']) {
        return Err(format!("relation name {s:?} cannot be looked up safely"));
    }
    Ok(format!("'{}'", s.replace('\'', "''")))
}

async fn query_rows(conn: &mut UpstreamConnection, sql: &str) -> Result<Vec<Vec<Option<String>>>, String> {
    let mut out = BytesMut::new();
    frontend::query(sql).encode(&mut out);
    conn.stream.write_all(&out).await.map_err(|e| e.to_string())?;
    let mut rows = Vec::new();
    let mut error = None;
    loop {
        let frame = loop {
            if let Some(f) = codec::split_frame(&mut conn.leftover, 1 << 24).map_err(|e| e.to_string())? {
                break f;
            }
            if conn.stream.read_buf(&mut conn.leftover).await.map_err(|e| e.to_string())? == 0 {
                return Err("catalog connection closed".into());
            }
        };
        match frame.tag {
            b'D' => rows.push(data_row_text(&frame.body).ok_or("malformed catalog row")?),
            b'E' => error = Some(ErrorFields::decode(&frame.body).message),
            b'Z' => break,
            _ => {}
        }
    }
    match error {
        Some(e) => Err(e),
        None => Ok(rows),
    }
}

fn data_row_text(body: &bytes::Bytes) -> Option<Vec<Option<String>>> {
    let mut b = body.clone();
    if b.remaining() < 2 {
        return None;
    }
    let n = b.get_i16();
    let mut out = Vec::new();
    for _ in 0..n {
        if b.remaining() < 4 {
            return None;
        }
        let len = b.get_i32();
        if len < 0 {
            out.push(None);
            continue;
        }
        let len = len as usize;
        if b.remaining() < len {
            return None;
        }
        out.push(Some(String::from_utf8_lossy(&b.split_to(len)).into_owned()));
    }
    Some(out)
}

/// One field of a RowDescription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub name: String,
    pub table_oid: u32,
    pub attnum: i16,
    pub type_oid: u32,
    pub type_size: i16,
    pub type_modifier: i32,
    pub format: i16,
}

pub fn parse_row_description(body: &bytes::Bytes) -> Option<Vec<Field>> {
    let mut b = body.clone();
    if b.remaining() < 2 {
        return None;
    }
    let n = b.get_i16();
    let mut fields = Vec::with_capacity(n.max(0) as usize);
    for _ in 0..n {
        let end = b.iter().position(|&c| c == 0)?;
        let name = String::from_utf8_lossy(&b[..end]).into_owned();
        b.advance(end + 1);
        if b.remaining() < 18 {
            return None;
        }
        fields.push(Field { name, table_oid: b.get_u32(), attnum: b.get_i16(), type_oid: b.get_u32(), type_size: b.get_i16(), type_modifier: b.get_i32(), format: b.get_i16() });
    }
    b.is_empty().then_some(fields)
}

pub fn encode_row_description(fields: &[Field]) -> bytes::Bytes {
    use bytes::BufMut;
    let mut b = BytesMut::new();
    b.put_i16(fields.len() as i16);
    for f in fields {
        codec::put_cstr(&mut b, &f.name);
        b.put_u32(f.table_oid);
        b.put_i16(f.attnum);
        b.put_u32(f.type_oid);
        b.put_i16(f.type_size);
        b.put_i32(f.type_modifier);
        b.put_i16(f.format);
    }
    b.freeze()
}
