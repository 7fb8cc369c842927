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
}

pub struct Catalog {
    upstream: UpstreamConfig,
    cache: Mutex<HashMap<u32, (Instant, Arc<TableColumns>)>>,
    conn: tokio::sync::Mutex<Option<UpstreamConnection>>,
}

impl Catalog {
    pub fn new(upstream: UpstreamConfig) -> Arc<Self> {
        Arc::new(Catalog { upstream, cache: Mutex::new(HashMap::new()), conn: tokio::sync::Mutex::new(None) })
    }

    /// The table with this OID, or an error when the catalog cannot be read (the caller
    /// must then fail closed).
    pub async fn table(&self, oid: u32) -> Result<Arc<TableColumns>, String> {
        if let Some((at, t)) = self.cache.lock().unwrap().get(&oid) {
            if at.elapsed() < TTL {
                return Ok(t.clone());
            }
        }
        let mut guard = self.conn.lock().await;
        if guard.is_none() {
            *guard = Some(upstream::connect(&self.upstream, &[]).await.map_err(|e| e.to_string())?);
        }
        let result = query_table(guard.as_mut().expect("connected above"), oid).await;
        if result.is_err() {
            // The connection may be in any state after an error: start afresh next time.
            *guard = None;
        }
        let t = Arc::new(result?);
        self.cache.lock().unwrap().insert(oid, (Instant::now(), t.clone()));
        Ok(t)
    }
}

async fn query_table(conn: &mut UpstreamConnection, oid: u32) -> Result<TableColumns, String> {
    // The OID is an integer we format ourselves: no injection surface.
    let sql = format!(
        "SELECT n.nspname, c.relname, a.attnum::text, a.attname FROM pg_catalog.pg_class c \
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid \
         WHERE c.oid = {oid} AND a.attnum > 0 AND NOT a.attisdropped"
    );
    let mut out = BytesMut::new();
    frontend::query(&sql).encode(&mut out);
    conn.stream.write_all(&out).await.map_err(|e| e.to_string())?;
    let mut table = None;
    let mut columns = HashMap::new();
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
            b'D' => {
                let values = data_row_text(&frame.body).ok_or("malformed catalog row")?;
                if let [Some(schema), Some(rel), Some(num), Some(name)] = &values[..] {
                    table = Some(format!("{schema}.{rel}"));
                    if let Ok(n) = num.parse::<i16>() {
                        columns.insert(n, name.clone());
                    }
                }
            }
            b'E' => error = Some(ErrorFields::decode(&frame.body).message),
            b'Z' => break,
            _ => {}
        }
    }
    if let Some(e) = error {
        return Err(e);
    }
    Ok(TableColumns { table: table.ok_or_else(|| format!("no relation with OID {oid}"))?, columns })
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
