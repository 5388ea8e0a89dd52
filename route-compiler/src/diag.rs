//! Diagnostics: what is wrong, where, and what to do about it.
//!
//! Every diagnostic names the file, line and column, the object
//! (`kind namespace/name`) when there is one, says what is wrong and, in
//! `help`, what to do. They render like compiler messages:
//!
//! ```text
//! routes.yaml:14:5: warning[zero-weights]: HTTPRoute task-api/drained: every backend of rules[0] has weight 0
//!   = help: requests matched by this rule get 503; give at least one backend a weight above 0
//! ```
//!
//! An error means the route set is not loaded (nothing is half-applied); a
//! warning means it loads, and says how what it does may not be what was
//! meant.

use std::fmt;

use serde::Serialize;

use crate::yaml::Span;

/// How serious a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The route set is rejected.
    Error,
    /// The route set loads, but probably does not do what was meant.
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// One finding about the input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// A stable short name of the check, e.g. `shadowed-match`.
    pub code: &'static str,
    /// The file, as given on the command line.
    pub file: String,
    /// Where in the file.
    pub line: u32,
    /// Where in the line (1-based).
    pub column: u32,
    /// `Kind namespace/name` of the object concerned, if any.
    pub object: Option<String>,
    /// What is wrong.
    pub message: String,
    /// What to do about it.
    pub help: Option<String>,
}

impl Diagnostic {
    /// A diagnostic at `file:span`.
    pub fn new(
        severity: Severity,
        code: &'static str,
        file: impl Into<String>,
        span: Span,
        message: impl Into<String>,
    ) -> Diagnostic {
        Diagnostic {
            severity,
            code,
            file: file.into(),
            line: span.line,
            column: span.column,
            object: None,
            message: message.into(),
            help: None,
        }
    }

    /// Names the object concerned.
    pub fn object(mut self, object: impl Into<String>) -> Diagnostic {
        self.object = Some(object.into());
        self
    }

    /// Says what to do.
    pub fn help(mut self, help: impl Into<String>) -> Diagnostic {
        self.help = Some(help.into());
        self
    }

    /// Whether this is an error.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}[{}]: ",
            self.file, self.line, self.column, self.severity, self.code
        )?;
        if let Some(object) = &self.object {
            write!(f, "{object}: ")?;
        }
        f.write_str(&self.message)?;
        if let Some(help) = &self.help {
            write!(f, "\n  = help: {help}")?;
        }
        Ok(())
    }
}

/// Sorts diagnostics by file and position, errors first on the same line,
/// and drops exact duplicates.
pub fn sort(diagnostics: &mut Vec<Diagnostic>) {
    diagnostics.sort_by(|a, b| {
        (&a.file, a.line, a.column, a.severity, &a.message)
            .cmp(&(&b.file, b.line, b.column, b.severity, &b.message))
    });
    diagnostics.dedup();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_like_a_compiler() {
        let d = Diagnostic::new(
            Severity::Warning,
            "zero-weights",
            "r.yaml",
            Span {
                line: 14,
                column: 5,
            },
            "every backend has weight 0",
        )
        .object("HTTPRoute ns/r")
        .help("give one a weight");
        assert_eq!(
            d.to_string(),
            "r.yaml:14:5: warning[zero-weights]: HTTPRoute ns/r: every backend has weight 0\n  = help: give one a weight"
        );
    }
}
