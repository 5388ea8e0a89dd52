//! Backends: choosing one ([`select`]) and keeping connections to them
//! ([`pool`]).

pub mod h2;
pub mod pool;

use std::net::SocketAddr;

use rand::Rng;
use route_compiler::route::Rule;

/// Why no endpoint could be chosen: the status the proxy answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoEndpoint(pub u16);

/// Chooses a backend of `rule` by weight, then one of its ready endpoints
/// uniformly, both with the worker's own generator.
///
/// # Errors
///
/// [`NoEndpoint`] with 500 when the chosen backend does not resolve, 503 when
/// every weight is zero or the chosen backend has no ready endpoint.
pub fn select(rule: &Rule, rng: &mut impl Rng) -> Result<SocketAddr, NoEndpoint> {
    if rule.total_weight == 0 {
        return Err(NoEndpoint(503));
    }
    let backend = rule
        .pick(rng.random_range(0..rule.total_weight))
        .ok_or(NoEndpoint(503))?;
    if !backend.is_resolved() {
        return Err(NoEndpoint(500));
    }
    match backend.endpoints.len() {
        0 => Err(NoEndpoint(503)),
        1 => Ok(backend.endpoints[0]),
        n => Ok(backend.endpoints[rng.random_range(0..n)]),
    }
}
