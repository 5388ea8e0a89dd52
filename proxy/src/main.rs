//! `sluice FILES…`: compile the route files and run the proxy.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use route_compiler::{Build, Options};
use sluice::runtime::{self, Config};
use sluice::snapshot::Shared;

/// Sluice: an HTTP/1.1 reverse proxy for Gateway API routes.
#[derive(Debug, Parser)]
#[command(name = "sluice", version)]
struct Args {
    /// Route files or directories (Gateway, HTTPRoute, EndpointSlice, …).
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Address every listener binds.
    #[arg(long, default_value = "0.0.0.0")]
    bind: IpAddr,
    /// Worker threads (default: available parallelism).
    #[arg(long)]
    workers: Option<usize>,
    /// Print one access-log line per request on stderr.
    #[arg(long)]
    access_log: bool,
    /// Seconds a client may take to send a request head (also the
    /// keep-alive idle timeout).
    #[arg(long, default_value_t = runtime::DEFAULT_HEADER_TIMEOUT.as_secs())]
    header_timeout: u64,
    /// Read buffer per connection, in bytes; also the largest request head
    /// (larger → 431).
    #[arg(long, default_value_t = sluice::io::DEFAULT_BUFFER_SIZE)]
    buffer_size: usize,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let build = match Build::from_paths(&args.files, Options::default()) {
        Ok(build) => build,
        Err(diagnostics) => {
            for d in &diagnostics {
                eprintln!("{d}");
            }
            return ExitCode::FAILURE;
        }
    };
    for d in &build.diagnostics {
        eprintln!("{d}");
    }
    let mut config = Config {
        bind: args.bind,
        access_log: args.access_log,
        header_timeout: std::time::Duration::from_secs(args.header_timeout),
        buffer_size: args.buffer_size.max(1024),
        ..Config::default()
    };
    if let Some(workers) = args.workers {
        config.workers = workers.max(1);
    }
    match runtime::run(Arc::new(Shared::new(Arc::new(build.table))), config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sluice: {e}");
            ExitCode::FAILURE
        }
    }
}
