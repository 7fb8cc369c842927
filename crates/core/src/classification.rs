//! What a command does, as the protocol classifiers report it: every action it takes and
//! every object it touches. Policy is evaluated over each [`Access`]; a command is allowed
//! only if every access is.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The classes of things a command can do. The names are the Cedar action ids
/// (`Warden::Action::"select"` ...) and the strings written to the audit log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Reading a table or view (SELECT, and the read side of any other statement).
    Select,
    Insert,
    Update,
    Delete,
    /// MERGE is classified as insert+update+delete on its target; kept for completeness.
    Truncate,
    /// CREATE / ALTER / DROP / COMMENT / GRANT / REVOKE and other schema changes.
    Ddl,
    /// Calling a function that is not on the built-in safe list.
    CallFunction,
    /// COPY ... TO STDOUT (export).
    CopyTo,
    /// COPY ... FROM STDIN (import).
    CopyFrom,
    /// COPY ... TO/FROM PROGRAM or a server-side file.
    CopyProgram,
    /// SET / RESET / SHOW of ordinary settings.
    Set,
    /// SET ROLE, SET SESSION AUTHORIZATION, and set_config of the same.
    SetRole,
    /// BEGIN / COMMIT / ROLLBACK / SAVEPOINT ...
    Transaction,
    Listen,
    Notify,
    Lock,
    /// DO blocks and CALL of procedures: arbitrary server-side code.
    ExecuteCode,
    /// PREPARE / EXECUTE / DEALLOCATE at the SQL level (the inner statement is classified too).
    Prepare,
    /// VACUUM, ANALYZE, CLUSTER, REINDEX, CHECKPOINT, REFRESH MATERIALIZED VIEW ...
    Maintenance,
    /// DECLARE / FETCH / CLOSE / MOVE of cursors.
    Cursor,
    /// Statements that exist but fall in no class above (LOAD, DISCARD, ...). Deny unless
    /// a policy names them explicitly.
    Other,
    /// Seeing masked values in clear, for a whole session on a target. Never produced by a
    /// classifier: the gateway asks for it once per session when masking is configured.
    Unmask,
}

impl Action {
    pub const ALL: [Action; 22] = [
        Action::Select,
        Action::Insert,
        Action::Update,
        Action::Delete,
        Action::Truncate,
        Action::Ddl,
        Action::CallFunction,
        Action::CopyTo,
        Action::CopyFrom,
        Action::CopyProgram,
        Action::Set,
        Action::SetRole,
        Action::Transaction,
        Action::Listen,
        Action::Notify,
        Action::Lock,
        Action::ExecuteCode,
        Action::Prepare,
        Action::Maintenance,
        Action::Cursor,
        Action::Other,
        Action::Unmask,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Select => "select",
            Action::Insert => "insert",
            Action::Update => "update",
            Action::Delete => "delete",
            Action::Truncate => "truncate",
            Action::Ddl => "ddl",
            Action::CallFunction => "call_function",
            Action::CopyTo => "copy_to",
            Action::CopyFrom => "copy_from",
            Action::CopyProgram => "copy_program",
            Action::Set => "set",
            Action::SetRole => "set_role",
            Action::Transaction => "transaction",
            Action::Listen => "listen",
            Action::Notify => "notify",
            Action::Lock => "lock",
            Action::ExecuteCode => "execute_code",
            Action::Prepare => "prepare",
            Action::Maintenance => "maintenance",
            Action::Cursor => "cursor",
            Action::Other => "other",
            Action::Unmask => "unmask",
        }
    }

    /// Whether the action changes data or state, so its audit event must be durable
    /// before the result reaches the agent.
    pub fn is_write(self) -> bool {
        !matches!(
            self,
            Action::Select | Action::Transaction | Action::Set | Action::Cursor | Action::Prepare | Action::Unmask
        )
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The object an access touches, if any.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", content = "name", rename_all = "snake_case")]
pub enum ObjectRef {
    /// A relation, schema-qualified and lower-cased as PostgreSQL folds it
    /// (`public.customers`, `pg_catalog.pg_class`). Unqualified names are resolved against
    /// the default search path: `pg_catalog` for `pg_*` catalog names, else `public`.
    Table(String),
    /// A function, schema-qualified when written so, otherwise its bare lower-cased name.
    Function(String),
    /// A notification channel (LISTEN / NOTIFY).
    Channel(String),
    /// A setting name (SET / RESET / set_config).
    Setting(String),
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ObjectRef::Table(n) => write!(f, "table {n}"),
            ObjectRef::Function(n) => write!(f, "function {n}"),
            ObjectRef::Channel(n) => write!(f, "channel {n}"),
            ObjectRef::Setting(n) => write!(f, "setting {n}"),
        }
    }
}

/// One action on one object (or on the target as a whole when `object` is `None`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Access {
    pub action: Action,
    pub object: Option<ObjectRef>,
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.object {
            Some(o) => write!(f, "{} on {o}", self.action),
            None => write!(f, "{}", self.action),
        }
    }
}

/// One statement of a (possibly multi-statement) command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatementClass {
    /// The statement's own text, cut from the command at the parser's statement boundaries.
    pub text: String,
    /// Deduplicated, sorted.
    pub accesses: Vec<Access>,
}

/// Everything one command string does, statement by statement.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Classification {
    pub statements: Vec<StatementClass>,
}

impl Classification {
    /// Every access of every statement, deduplicated and sorted.
    pub fn accesses(&self) -> Vec<Access> {
        let mut all: Vec<Access> = self.statements.iter().flat_map(|s| s.accesses.iter().cloned()).collect();
        all.sort();
        all.dedup();
        all
    }

    pub fn actions(&self) -> Vec<Action> {
        let mut a: Vec<Action> = self.statements.iter().flat_map(|s| s.accesses.iter().map(|x| x.action)).collect();
        a.sort();
        a.dedup();
        a
    }

    pub fn tables(&self) -> Vec<String> {
        let mut t: Vec<String> = self
            .statements
            .iter()
            .flat_map(|s| s.accesses.iter())
            .filter_map(|a| match &a.object {
                Some(ObjectRef::Table(n)) => Some(n.clone()),
                _ => None,
            })
            .collect();
        t.sort();
        t.dedup();
        t
    }

    pub fn is_write(&self) -> bool {
        self.statements.iter().flat_map(|s| s.accesses.iter()).any(|a| a.action.is_write())
    }
}
