//! Sluice's proxy: an HTTP/1.1 reverse proxy on io_uring that executes a
//! route table compiled by [`route_compiler`].
//!
//! # Contents
//!
//! | module | concern |
//! | --- | --- |
//! | [`runtime`] | workers: one io_uring runtime per core, SO_REUSEPORT listeners |
//! | [`snapshot`] | the shared route table and how reloads reach workers |
//! | [`proto`] | connection loops (HTTP/1.1, HTTP/2) and bodies between them |
//! | [`codec`] | wire formats, pure: head parsing in place, body framing |
//! | [`phase`] | request phases (`request_filter`, `route`, `upstream_request_filter`, `response_filter`, `logging`), shared by both protocols; chart in `docs/phases.md` |
//! | [`filter`] | Gateway API filters: header modifiers, rewrite, redirect |
//! | [`mirror`] | RequestMirror: bounded, never-blocking copies of requests |
//! | [`upstream`] | backend choice, the per-worker keep-alive pool, HTTP/1.1 answers, h2c connections |
//! | [`io`] | buffered io_uring connections, buffer pool |
//! | [`clock`] | the coarse clock and lazy timer of the request path |
//! | [`subtasks`] | futures run by the task that owns them (an h2 connection's streams) |
//! | [`error`] | errors that say whose fault they are |
//! | [`metrics`] | per-worker counters, aggregated and encoded at scrape time |
//! | [`admin`] | the admin listener: `/metrics`, `/routes`, `/healthz` |
//! | [`bpf`] | the eBPF loader (`--ebpf`): loopback bypass, kernel counters |
//! | [`reload`] | route inputs, reloads (SIGHUP, `--watch`) |
#![deny(unsafe_code)]

pub mod admin;
pub mod bpf;
pub mod clock;
pub mod codec;
pub mod demo;
pub mod error;
pub mod filter;
pub mod io;
pub mod metrics;
pub mod mirror;
pub mod phase;
pub mod proto;
pub mod reload;
pub mod runtime;
pub mod snapshot;
pub mod subtasks;
pub mod upstream;
