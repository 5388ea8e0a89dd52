//! A minimal Pingora reverse proxy used by `bench/run.sh`.
//!
//! `pingora-bench-proxy LISTEN UPSTREAM [--threads N] [--paths FILE]`:
//! forwards every request (HTTP/1.1, or h2c with prior knowledge on the same
//! port) to one HTTP/1.1 upstream over Pingora's keep-alive connection pool.
//! With `--paths`, only the exact paths listed in FILE (one a line) are
//! forwarded and any other path gets 404: the route-heavy case's "route
//! table", a `HashSet` lookup, which is what a Pingora user would write.
//! Pingora is a library, not a configured proxy: this is roughly the
//! smallest program a user would write, as in its own `load_balancer`
//! example, minus TLS.

use async_trait::async_trait;
use pingora::apps::HttpServerOptions;
use pingora::prelude::*;
use pingora::server::configuration::ServerConf;
use std::collections::HashSet;

struct Fwd {
    upstream: String,
    paths: Option<HashSet<String>>,
}

#[async_trait]
impl ProxyHttp for Fwd {
    type CTX = ();
    fn new_ctx(&self) -> Self::CTX {}

    async fn request_filter(&self, s: &mut Session, _c: &mut ()) -> Result<bool> {
        if let Some(paths) = &self.paths {
            if !paths.contains(s.req_header().uri.path()) {
                s.respond_error(404).await?;
                return Ok(true);
            }
        }
        Ok(false)
    }

    async fn upstream_peer(&self, _s: &mut Session, _c: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(self.upstream.as_str(), false, String::new())))
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: {} LISTEN UPSTREAM [--threads N]", args[0]);
        std::process::exit(2);
    }
    let threads = args
        .iter()
        .position(|a| a == "--threads")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let paths = args
        .iter()
        .position(|a| a == "--paths")
        .and_then(|i| args.get(i + 1))
        .map(|f| {
            std::fs::read_to_string(f)
                .unwrap_or_else(|e| panic!("{f}: {e}"))
                .lines()
                .filter(|l| !l.is_empty())
                .map(String::from)
                .collect::<HashSet<_>>()
        });
    let conf = ServerConf {
        threads,
        work_stealing: false,
        upstream_keepalive_pool_size: 256,
        ..Default::default()
    };
    let mut server = Server::new_with_opt_and_conf(Opt::default(), conf);
    server.bootstrap();
    let mut svc = http_proxy_service(
        &server.configuration,
        Fwd { upstream: args[2].clone(), paths },
    );
    if let Some(app) = svc.app_logic_mut() {
        let mut opts = HttpServerOptions::default();
        opts.h2c = true;
        app.server_options = Some(opts);
    }
    svc.add_tcp(&args[1]);
    server.add_service(svc);
    server.run_forever();
}
