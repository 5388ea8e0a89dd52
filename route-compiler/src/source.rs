//! Route files: reading them, splitting them into documents, and pointing
//! diagnostics back at them.
//!
//! A route set is one or more files or directories; a directory stands for
//! every `*.yaml`/`*.yml` file below it, in path order, so that the same
//! directory always loads the same way.

use std::path::{Path, PathBuf};

use crate::diag::{Diagnostic, Severity};
use crate::ir::Origin;
use crate::yaml::{self, Document, Seg, Span};

/// One loaded file.
#[derive(Debug)]
pub struct SourceFile {
    /// The path as given (or found under a given directory).
    pub path: PathBuf,
    /// Its parsed documents (empty ones skipped).
    pub documents: Vec<Document>,
}

impl SourceFile {
    /// The path as diagnostics print it.
    pub fn display(&self) -> String {
        self.path.display().to_string()
    }
}

/// Every file of a route set.
#[derive(Debug, Default)]
pub struct Sources {
    /// The files, in load order.
    pub files: Vec<SourceFile>,
}

impl Sources {
    /// Reads `paths` (files or directories). Files that cannot be read or
    /// parsed become error diagnostics; the others are kept so that every
    /// problem is reported in one run.
    pub fn load(paths: &[PathBuf]) -> (Sources, Vec<Diagnostic>) {
        let mut sources = Sources::default();
        let mut diagnostics = Vec::new();
        let mut files = Vec::new();
        for path in paths {
            if path.is_dir() {
                match yaml_files_under(path) {
                    Ok(found) if found.is_empty() => diagnostics.push(
                        Diagnostic::new(
                            Severity::Error,
                            "no-input",
                            path.display().to_string(),
                            Span { line: 1, column: 1 },
                            "directory holds no .yaml or .yml file",
                        )
                        .help("point at the route files, or at a directory that holds them"),
                    ),
                    Ok(found) => files.extend(found),
                    Err(e) => diagnostics.push(io_error(path, &e)),
                }
            } else {
                files.push(path.clone());
            }
        }
        for path in files {
            match std::fs::read_to_string(&path) {
                Ok(text) => {
                    let (file, diagnostic) = SourceFile::parse(path, &text);
                    diagnostics.extend(diagnostic);
                    sources.files.push(file);
                }
                Err(e) => diagnostics.push(io_error(&path, &e)),
            }
        }
        (sources, diagnostics)
    }

    /// Adds a file from text already in memory (tests, `routec new`).
    pub fn add(&mut self, path: impl Into<PathBuf>, text: &str) -> Option<Diagnostic> {
        let (file, diagnostic) = SourceFile::parse(path.into(), text);
        self.files.push(file);
        diagnostic
    }

    /// The display path of an origin's file.
    pub fn file_name(&self, origin: Origin) -> String {
        self.files
            .get(origin.file)
            .map(SourceFile::display)
            .unwrap_or_default()
    }

    /// The document an origin points at.
    pub fn document(&self, origin: Origin) -> Option<&Document> {
        self.files.get(origin.file)?.documents.get(origin.document)
    }

    /// Where `path` is within the origin's document (the deepest part of it
    /// that exists).
    pub fn locate(&self, origin: Origin, path: &[Seg]) -> Span {
        self.document(origin)
            .map(|d| d.locate(path))
            .unwrap_or(Span { line: 1, column: 1 })
    }

    /// A diagnostic at `path` in the origin's document.
    pub fn diagnostic(
        &self,
        severity: Severity,
        code: &'static str,
        origin: Origin,
        path: &[Seg],
        message: impl Into<String>,
    ) -> Diagnostic {
        Diagnostic::new(
            severity,
            code,
            self.file_name(origin),
            self.locate(origin, path),
            message,
        )
    }
}

impl SourceFile {
    fn parse(path: PathBuf, text: &str) -> (SourceFile, Option<Diagnostic>) {
        match yaml::parse_stream(text) {
            Ok(documents) => (SourceFile { path, documents }, None),
            Err(e) => {
                let diagnostic = Diagnostic::new(
                    Severity::Error,
                    "yaml",
                    path.display().to_string(),
                    e.span,
                    format!("not valid YAML: {}", e.message),
                )
                .help("fix the YAML syntax at this position; nothing of this file was loaded");
                (
                    SourceFile {
                        path,
                        documents: Vec::new(),
                    },
                    Some(diagnostic),
                )
            }
        }
    }
}

fn io_error(path: &Path, e: &std::io::Error) -> Diagnostic {
    Diagnostic::new(
        Severity::Error,
        "io",
        path.display().to_string(),
        Span { line: 1, column: 1 },
        format!("cannot read: {e}"),
    )
    .help("check that the path exists and is readable")
}

fn yaml_files_under(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.is_dir() {
                pending.push(path);
            } else if matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("yaml" | "yml")
            ) {
                found.push(path);
            }
        }
    }
    found.sort();
    Ok(found)
}

/// Builds a document path: `path!["spec", "rules", 0, "matches"]`.
#[macro_export]
#[doc(hidden)]
macro_rules! path {
    ($($seg:expr),* $(,)?) => {
        vec![$($crate::yaml::Seg::from($seg)),*]
    };
}

impl From<&str> for Seg {
    fn from(key: &str) -> Seg {
        Seg::Key(key.to_string())
    }
}

impl From<usize> for Seg {
    fn from(index: usize) -> Seg {
        Seg::Index(index)
    }
}
