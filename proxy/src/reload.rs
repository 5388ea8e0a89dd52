//! Route inputs and reloads.
//!
//! The proxy's input is either route files (YAML files or directories of
//! them, compiled at start and at every reload) or one compiled table file
//! (`routec compile … -o routes.tbl`, recognised by its first bytes,
//! [`route_compiler::format::MAGIC`]). A reload ([`Reloader::reload`], on
//! SIGHUP or when [`watch`] sees a change) rebuilds the table from the same
//! inputs on the calling thread, never on a worker. A route set with errors
//! is reported — every diagnostic on stderr, `sluice_reloads_total{result="error"}`
//! — and the table in use keeps serving; a good one is made current with
//! [`Shared::store`], and requests already in flight finish on the table
//! they started with.
//!
//! Listening ports are bound once, at start: a reloaded table that names
//! other ports is served on the ports already bound (a warning says so).

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use route_compiler::table::Table;
use route_compiler::{Build, Options};

use crate::metrics::Registry;
use crate::snapshot::Shared;

/// How often [`watch`] looks at the inputs' modification times.
pub const DEFAULT_WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// How long the inputs must stay unchanged after a change before [`watch`]
/// reloads (so a file being written is not read half-way).
pub const DEFAULT_SETTLE: Duration = Duration::from_millis(200);

/// Directory depth [`Inputs::fingerprint`] descends to.
const MAX_DEPTH: usize = 8;

/// What the proxy was started on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inputs {
    /// Route files and directories, compiled on every (re)load.
    Files(Vec<PathBuf>),
    /// One compiled table file.
    Table(PathBuf),
}

/// A table loaded from [`Inputs`], with the warnings its build produced.
#[derive(Debug)]
pub struct Loaded {
    /// The table.
    pub table: Table,
    /// Lints and other non-fatal diagnostics, rendered.
    pub warnings: Vec<String>,
}

/// Whether `path` is a file that starts with the table file magic.
fn is_table_file(path: &Path) -> bool {
    let Ok(mut file) = File::open(path) else {
        return false;
    };
    let mut magic = [0u8; 8];
    let mut read = 0;
    while read < magic.len() {
        match file.read(&mut magic[read..]) {
            Ok(0) | Err(_) => return false,
            Ok(n) => read += n,
        }
    }
    magic == route_compiler::format::MAGIC
}

impl Inputs {
    /// Classifies the command line's paths: one table file, or route files.
    ///
    /// # Errors
    ///
    /// A table file given together with other inputs.
    pub fn new(paths: Vec<PathBuf>) -> Result<Inputs, String> {
        let tables: Vec<&PathBuf> = paths.iter().filter(|p| is_table_file(p)).collect();
        match (tables.as_slice(), paths.len()) {
            ([], _) => Ok(Inputs::Files(paths)),
            ([table], 1) => Ok(Inputs::Table((*table).clone())),
            ([table, ..], _) => Err(format!(
                "{} is a compiled route table: it must be the only input",
                table.display()
            )),
        }
    }

    /// Builds (or loads) the table.
    ///
    /// # Errors
    ///
    /// Every diagnostic (errors and warnings) of a route set that does not
    /// build, or the table file's load error, rendered.
    pub fn load(&self) -> Result<Loaded, Vec<String>> {
        match self {
            Inputs::Files(paths) => match Build::from_paths(paths, Options::default()) {
                Ok(build) => Ok(Loaded {
                    table: build.table,
                    warnings: build.diagnostics.iter().map(ToString::to_string).collect(),
                }),
                Err(diagnostics) => Err(diagnostics.iter().map(ToString::to_string).collect()),
            },
            Inputs::Table(path) => match Table::load(path) {
                Ok(table) => Ok(Loaded {
                    table,
                    warnings: Vec::new(),
                }),
                Err(e) => Err(vec![format!("{}: {e}", path.display())]),
            },
        }
    }

    /// The paths named on the command line.
    pub fn paths(&self) -> &[PathBuf] {
        match self {
            Inputs::Files(paths) => paths,
            Inputs::Table(path) => std::slice::from_ref(path),
        }
    }

    /// Every input file (directories walked) with its modification time
    /// and length; `None` for a path that cannot be read.
    pub fn fingerprint(&self) -> Vec<(PathBuf, Option<(SystemTime, u64)>)> {
        let mut out = Vec::new();
        for path in self.paths() {
            walk(path, 0, &mut out);
        }
        out
    }
}

fn walk(path: &Path, depth: usize, out: &mut Vec<(PathBuf, Option<(SystemTime, u64)>)>) {
    let meta = std::fs::metadata(path).ok();
    let stamp = meta
        .as_ref()
        .and_then(|m| Some((m.modified().ok()?, m.len())));
    out.push((path.to_path_buf(), stamp));
    if depth < MAX_DEPTH && meta.is_some_and(|m| m.is_dir()) {
        let Ok(entries) = std::fs::read_dir(path) else {
            return;
        };
        let mut children: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        children.sort();
        for child in children {
            walk(&child, depth + 1, out);
        }
    }
}

// === impl Reloader ===

/// Rebuilds the table from the inputs and makes it current.
#[derive(Debug)]
pub struct Reloader {
    inputs: Inputs,
    shared: Arc<Shared>,
    registry: Arc<Registry>,
    ports: Vec<u16>,
}

impl Reloader {
    /// A reloader of `inputs` into `shared`; `ports` are the ones bound.
    pub fn new(
        inputs: Inputs,
        shared: Arc<Shared>,
        registry: Arc<Registry>,
        ports: Vec<u16>,
    ) -> Reloader {
        Reloader {
            inputs,
            shared,
            registry,
            ports,
        }
    }

    /// Reloads (`cause` says why, for the log); whether the new table is
    /// now current. Diagnostics go to stderr.
    pub fn reload(&self, cause: &str) -> bool {
        match self.inputs.load() {
            Ok(loaded) => {
                for warning in &loaded.warnings {
                    eprintln!("{warning}");
                }
                let ports = loaded.table.ports();
                if ports != self.ports {
                    tracing::warn!(
                        "the reloaded route table names ports {ports:?}; only {:?} are bound until restart",
                        self.ports
                    );
                }
                let generation = self.shared.store(Arc::new(loaded.table));
                self.registry.reloaded(true);
                tracing::info!(cause, generation, "route table reloaded");
                true
            }
            Err(diagnostics) => {
                for d in &diagnostics {
                    eprintln!("{d}");
                }
                self.registry.reloaded(false);
                tracing::error!(
                    cause,
                    errors = diagnostics.len(),
                    generation = self.shared.generation(),
                    "reload failed: the route table in use keeps serving"
                );
                false
            }
        }
    }
}

/// Starts a thread that polls the inputs' modification times every
/// `interval` and calls `changed` once they changed and settled; the thread
/// ends when `changed` returns false.
///
/// # Errors
///
/// The thread spawn error.
pub fn watch(
    inputs: Inputs,
    interval: Duration,
    changed: impl Fn() -> bool + Send + 'static,
) -> io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("sluice-watch".into())
        .spawn(move || {
            let mut last = inputs.fingerprint();
            loop {
                std::thread::sleep(interval);
                let mut now = inputs.fingerprint();
                if now == last {
                    continue;
                }
                for _ in 0..25 {
                    std::thread::sleep(DEFAULT_SETTLE);
                    let again = inputs.fingerprint();
                    if again == now {
                        break;
                    }
                    now = again;
                }
                last = now;
                if !changed() {
                    return;
                }
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_file_must_be_alone() {
        let dir = std::env::temp_dir().join(format!("sluice-reload-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let table = dir.join("routes.tbl");
        let mut bytes = route_compiler::format::MAGIC.to_vec();
        bytes.extend_from_slice(&[0; 8]);
        assert!(std::fs::write(&table, &bytes).is_ok());
        let yaml = dir.join("routes.yaml");
        assert!(std::fs::write(&yaml, "SLUICE").is_ok());
        assert_eq!(
            Inputs::new(vec![table.clone()]),
            Ok(Inputs::Table(table.clone()))
        );
        assert_eq!(
            Inputs::new(vec![yaml.clone()]),
            Ok(Inputs::Files(vec![yaml.clone()]))
        );
        assert!(Inputs::new(vec![yaml, table]).is_err());
        // A corrupt table is reported, not a panic.
        assert!(Inputs::new(vec![dir.join("routes.tbl")]).is_ok_and(|i| i.load().is_err()));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
