//! `routec`: check, compile and explain Gateway API route sets for Sluice.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use route_compiler::explain::{self, CliRequest};
use route_compiler::table::Table;
use route_compiler::template::{self, Names, Pattern};
use route_compiler::{Build, Diagnostic, Options};

/// Exit code: success (a route matched, or no errors).
const OK: u8 = 0;
/// Exit code: the input has errors (check/compile), or no route matched
/// (explain).
const FOUND: u8 = 1;
/// Exit code: usage or I/O problem.
const TROUBLE: u8 = 2;

#[derive(Parser)]
#[command(
    name = "routec",
    version,
    about = "Compile Kubernetes Gateway API routes into Sluice's DFA route table",
    long_about = "Compile Kubernetes Gateway API routes (Gateway, HTTPRoute, GRPCRoute, \
EndpointSlice, ReferenceGrant, Namespace) into Sluice's route table: one precompiled \
DFA per listener and hostname, following Gateway API precedence exactly.\n\n\
FILES may be YAML files or directories of them (every *.yaml/*.yml below, in path order).\n\n\
Exit codes: 0 ok; 1 errors in the input (check, compile) or no route matched (explain); \
2 usage or I/O trouble.",
    after_help = "Examples:\n  \
routec check routes/\n  \
routec compile gateway.yaml routes/ -o routes.tbl\n  \
routec explain routes.tbl 'GET http://api.example.com/api/v1/tasks?debug=true' -H 'x-version: 2'\n  \
routec new canary > canary.yaml"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate and lint route files; print every problem with file:line:column.
    ///
    /// Errors (the set would be rejected) exit 1; warnings (it loads, but
    /// probably does not do what was meant: shadowed matches, glob-looking
    /// regexes, zero weights, routes or listeners that attach to nothing)
    /// exit 0.
    Check {
        /// Route files or directories.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Print diagnostics as JSON lines.
        #[arg(long)]
        json: bool,
        /// Treat warnings as errors (exit 1).
        #[arg(long)]
        deny_warnings: bool,
    },
    /// Compile route files into a table file.
    Compile {
        /// Route files or directories.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Where to write the table.
        #[arg(short, long)]
        output: PathBuf,
        /// Size cap of one dense DFA in MiB; larger automata run as lazy DFAs.
        #[arg(long, default_value_t = 48)]
        dfa_limit: usize,
    },
    /// Print, as JSON, what a request gets: listener, route, rule, match,
    /// backends, filters and the status the proxy answers itself.
    Explain {
        /// Route files/directories (or one compiled table), then the request:
        /// 'METHOD http://host[:port]/path[?query]' (port defaults to 80).
        #[arg(required = true, num_args = 1.., action = clap::ArgAction::Append, value_name = "FILES... REQUEST")]
        args: Vec<String>,
        /// A request header, 'name: value' (repeatable).
        #[arg(short = 'H', long = "header")]
        headers: Vec<String>,
        /// Send it as a gRPC call (adds content-type: application/grpc).
        #[arg(long)]
        grpc: bool,
    },
    /// Print a ready route set for a common pattern (passes `check` as printed).
    New {
        /// Which pattern.
        pattern: PatternArg,
        /// Name of the route.
        #[arg(long, default_value = "example")]
        name: String,
        /// Namespace of every object.
        #[arg(long, default_value = "default")]
        namespace: String,
        /// Name of the Gateway.
        #[arg(long, default_value = "sluice")]
        gateway: String,
        /// Listener port.
        #[arg(long, default_value_t = 8080)]
        port: u16,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum PatternArg {
    /// Path-based service routing (PathPrefix per service).
    Path,
    /// Header-based version routing.
    Header,
    /// Weighted canary split (90/10).
    Canary,
    /// GRPCRoute by service and method.
    Grpc,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    ExitCode::from(match cli.command {
        Command::Check {
            files,
            json,
            deny_warnings,
        } => check(&files, json, deny_warnings),
        Command::Compile {
            files,
            output,
            dfa_limit,
        } => compile(&files, &output, dfa_limit),
        Command::Explain {
            mut args,
            mut headers,
            grpc,
        } => {
            if grpc {
                headers.push("content-type: application/grpc".to_string());
            }
            let request = args.pop().unwrap_or_default();
            if args.is_empty() {
                eprintln!("routec: explain needs route files (or a table) and then a request");
                return ExitCode::from(TROUBLE);
            }
            let files: Vec<PathBuf> = args.into_iter().map(PathBuf::from).collect();
            explain_cmd(&files, &request, &headers)
        }
        Command::New {
            pattern,
            name,
            namespace,
            gateway,
            port,
        } => {
            let pattern = match pattern {
                PatternArg::Path => Pattern::Path,
                PatternArg::Header => Pattern::Header,
                PatternArg::Canary => Pattern::Canary,
                PatternArg::Grpc => Pattern::Grpc,
            };
            print!(
                "{}",
                template::render(
                    pattern,
                    &Names {
                        name,
                        namespace,
                        gateway,
                        port,
                    }
                )
            );
            OK
        }
    })
}

fn print_diagnostics(diagnostics: &[Diagnostic], json: bool) {
    for d in diagnostics {
        if json {
            match serde_json::to_string(d) {
                Ok(line) => println!("{line}"),
                Err(e) => eprintln!("routec: cannot encode diagnostic: {e}"),
            }
        } else {
            println!("{d}");
        }
    }
}

fn summary(diagnostics: &[Diagnostic]) -> String {
    let errors = diagnostics.iter().filter(|d| d.is_error()).count();
    let warnings = diagnostics.len() - errors;
    format!("{errors} error(s), {warnings} warning(s)")
}

fn check(files: &[PathBuf], json: bool, deny_warnings: bool) -> u8 {
    match Build::from_paths(files, Options::default()) {
        Ok(build) => {
            print_diagnostics(&build.diagnostics, json);
            if !json {
                eprintln!(
                    "routec: {} route(s) on {} listener(s): {}",
                    build.set.routes.len(),
                    build.set.listeners.len(),
                    summary(&build.diagnostics)
                );
            }
            if deny_warnings && !build.diagnostics.is_empty() {
                FOUND
            } else {
                OK
            }
        }
        Err(diagnostics) => {
            print_diagnostics(&diagnostics, json);
            if !json {
                eprintln!("routec: rejected: {}", summary(&diagnostics));
            }
            FOUND
        }
    }
}

fn compile(files: &[PathBuf], output: &Path, dfa_limit: usize) -> u8 {
    let options = Options {
        dense_limit: dfa_limit.saturating_mul(1 << 20),
    };
    let build = match Build::from_paths(files, options) {
        Ok(build) => build,
        Err(diagnostics) => {
            print_diagnostics(&diagnostics, false);
            eprintln!("routec: nothing written: {}", summary(&diagnostics));
            return FOUND;
        }
    };
    print_diagnostics(&build.diagnostics, false);
    // Write to a temporary file and rename, so a reader never sees half a
    // table.
    let tmp = output.with_extension("tbl.tmp");
    if let Err(e) = std::fs::write(&tmp, &build.bytes).and_then(|()| std::fs::rename(&tmp, output))
    {
        eprintln!("routec: cannot write {}: {e}", output.display());
        let _ = std::fs::remove_file(&tmp);
        return TROUBLE;
    }
    eprintln!(
        "routec: wrote {} ({} bytes, {} route(s), {} automata lazy): {}",
        output.display(),
        build.bytes.len(),
        build.set.routes.len(),
        build.report.lazy.len(),
        summary(&build.diagnostics)
    );
    OK
}

/// Whether `path` is a compiled table (by its magic number).
fn is_table(path: &Path) -> bool {
    let mut magic = [0u8; 8];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok_and(|()| magic == route_compiler::format::MAGIC)
}

fn explain_cmd(files: &[PathBuf], request: &str, headers: &[String]) -> u8 {
    let request = match CliRequest::parse(request, headers) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("routec: {e}");
            return TROUBLE;
        }
    };
    let loaded;
    let built;
    let table = match files {
        [single] if is_table(single) => match Table::load(single) {
            Ok(t) => {
                loaded = t;
                &loaded
            }
            Err(e) => {
                eprintln!("routec: {e}");
                return TROUBLE;
            }
        },
        _ => match Build::from_paths(files, Options::default()) {
            Ok(b) => {
                built = b;
                &built.table
            }
            Err(diagnostics) => {
                print_diagnostics(&diagnostics, false);
                eprintln!("routec: cannot explain: {}", summary(&diagnostics));
                return TROUBLE;
            }
        },
    };
    let (json, matched) = explain::explain(table, &request);
    match serde_json::to_string_pretty(&json) {
        Ok(text) => println!("{text}"),
        Err(e) => {
            eprintln!("routec: {e}");
            return TROUBLE;
        }
    }
    if matched { OK } else { FOUND }
}
