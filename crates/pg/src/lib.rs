//! PostgreSQL: the wire codec, the SQL classifier and the proxy session.

pub mod classify;
