//! PostgreSQL: the wire codec, the SQL classifier and the proxy session.
//! The codec and the session know nothing of policy or audit: they call a [`gate::Gatekeeper`].

pub mod classify;
pub mod catalog;
pub mod codec;
pub mod gate;
pub mod masking;
pub mod views;
pub mod server;
pub mod session;
pub mod startup;
pub mod stream;
pub mod tls;
pub mod upstream;
