//! Backends: choosing one ([`select`]), keeping connections to them
//! ([`pool`], [`h2`]) and reading HTTP/1.1 answers ([`h1`]).

pub mod h1;
pub mod h2;
pub mod pool;

use std::net::SocketAddr;

use rand::Rng;
use route_compiler::route::{Backend, Rule};

/// Why no endpoint could be chosen: the status the proxy answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoEndpoint(pub u16);

/// Chooses a backend of `rule` by weight, then one of its ready endpoints
/// uniformly, both with the worker's own generator. The backend comes back
/// with the endpoint: its [`Backend::protocol`] says how to speak to it.
///
/// # Errors
///
/// [`NoEndpoint`] with 500 when the chosen backend does not resolve, 503 when
/// every weight is zero or the chosen backend has no ready endpoint.
pub fn select<'r>(
    rule: &'r Rule,
    rng: &mut impl Rng,
) -> Result<(&'r Backend, SocketAddr), NoEndpoint> {
    if rule.total_weight == 0 {
        return Err(NoEndpoint(503));
    }
    let backend = rule
        .pick(rng.random_range(0..rule.total_weight))
        .ok_or(NoEndpoint(503))?;
    if !backend.is_resolved() {
        return Err(NoEndpoint(500));
    }
    let addr = endpoint(backend, rng).ok_or(NoEndpoint(503))?;
    Ok((backend, addr))
}

/// One ready endpoint of `backend`, uniformly (`None` when it has none).
pub fn endpoint(backend: &Backend, rng: &mut impl Rng) -> Option<SocketAddr> {
    match backend.endpoints.len() {
        0 => None,
        1 => Some(backend.endpoints[0]),
        n => Some(backend.endpoints[rng.random_range(0..n)]),
    }
}
