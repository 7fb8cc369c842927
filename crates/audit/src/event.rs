use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

/// One audited fact: a statement decided and run, a session opened or closed, an admin
/// change. Serialized once to JSON by the writer; that exact string is stored and hashed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// RFC3339 UTC with exactly 6 fractional digits (microseconds).
    #[serde(with = "rfc3339_micros")]
    pub time: OffsetDateTime,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub graph_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// "statement", "session_start", "session_end", "admin", ...
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statement: Option<String>,
    /// [`params_digest`] of the bind parameters. Parameter values themselves are never
    /// audited: they are where card numbers and secrets travel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params_digest: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tables: Vec<String>,
    /// "allow", "deny", "hold", ...
    pub decision: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policy_ids: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_us: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Fields of later features. Keys must not collide with the named fields above (the
    /// writer refuses such events: duplicate JSON keys would be read back ambiguously).
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

pub(crate) const NAMED_FIELDS: &[&str] = &[
    "time",
    "session_id",
    "agent",
    "owner",
    "node",
    "run",
    "thread",
    "graph_version",
    "target",
    "kind",
    "statement",
    "params_digest",
    "actions",
    "tables",
    "decision",
    "policy_ids",
    "reason",
    "rows",
    "duration_us",
    "error",
];

impl AuditEvent {
    /// An event stamped now (truncated to microseconds, the stored precision), every
    /// optional field empty.
    pub fn new(kind: impl Into<String>, decision: impl Into<String>) -> Self {
        AuditEvent {
            time: now_micros(),
            session_id: None,
            agent: None,
            owner: None,
            node: None,
            run: None,
            thread: None,
            graph_version: None,
            target: None,
            kind: kind.into(),
            statement: None,
            params_digest: None,
            actions: Vec::new(),
            tables: Vec::new(),
            decision: decision.into(),
            policy_ids: Vec::new(),
            reason: None,
            rows: None,
            duration_us: None,
            error: None,
            extra: serde_json::Map::new(),
        }
    }

    /// Unix microseconds, as stored in the indexed `ts` column.
    pub fn unix_micros(&self) -> i64 {
        (self.time.unix_timestamp_nanos().div_euclid(1000)) as i64
    }
}

pub fn now_micros() -> OffsetDateTime {
    let t = OffsetDateTime::now_utc();
    t.replace_nanosecond(t.nanosecond() / 1000 * 1000)
        .unwrap_or(t)
}

/// SHA-256 (lowercase hex) of bind parameters, so an auditor can tell whether two
/// executions used the same values without the log holding them. Each parameter is
/// tagged and length-prefixed, so `["ab"]`, `["a","b"]`, `[NULL]` and `[""]` all differ.
pub fn params_digest(params: &[Option<&[u8]>]) -> String {
    let mut h = Sha256::new();
    h.update(b"warden-params-v1\0");
    h.update((params.len() as u64).to_be_bytes());
    for p in params {
        match p {
            None => h.update([0u8]),
            Some(v) => {
                h.update([1u8]);
                h.update((v.len() as u64).to_be_bytes());
                h.update(v);
            }
        }
    }
    hex::encode(h.finalize())
}

mod rfc3339_micros {
    use serde::{Deserialize, Deserializer, Serializer};
    use time::format_description::well_known::Rfc3339;
    use time::macros::format_description;
    use time::{OffsetDateTime, UtcOffset};

    pub fn serialize<S: Serializer>(t: &OffsetDateTime, s: S) -> Result<S::Ok, S::Error> {
        let fmt = format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
        );
        let out = t
            .to_offset(UtcOffset::UTC)
            .format(&fmt)
            .map_err(serde::ser::Error::custom)?;
        s.serialize_str(&out)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<OffsetDateTime, D::Error> {
        let s = String::deserialize(d)?;
        OffsetDateTime::parse(&s, &Rfc3339).map_err(serde::de::Error::custom)
    }
}
