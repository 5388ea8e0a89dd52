//! Connection drivers: one per protocol, each running the
//! [`crate::phase`]s for every request of a connection.

pub mod h1;
