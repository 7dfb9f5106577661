//! Diagnostics: one problem found in a recipe, with its YAML path and source position.
//!
//! Every stage of loading appends to one [`Diagnostics`] list instead of failing fast, so the
//! user sees every problem in one run. Only `load` decides whether the list is fatal.

use std::fmt;

/// How serious a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// Loading continues; `--strict` turns these into errors.
    Warning,
    /// The recipe is rejected.
    Error,
}

/// One problem found in a recipe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// Where in the document, e.g. `routing.decisions[3].rules.conditions[1]`.
    pub path: String,
    /// 1-based line of the closest node that exists in the source, when known.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub column: Option<usize>,
    /// What is wrong and, where possible, what to write instead.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)?;
        } else {
            write!(f, "{}: {}", self.path, self.message)?;
        }
        if let (Some(line), Some(column)) = (self.line, self.column) {
            write!(f, " (line {line}:{column})")?;
        }
        Ok(())
    }
}

/// An ordered list of diagnostics collected while loading one document.
#[derive(Debug, Default, Clone)]
pub struct Diagnostics {
    items: Vec<Diagnostic>,
}

impl Diagnostics {
    pub(crate) fn push(&mut self, d: Diagnostic) {
        if !self.items.contains(&d) {
            self.items.push(d);
        }
    }

    /// Every error, in the order found.
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.items.iter().filter(|d| d.severity == Severity::Error)
    }

    /// Every warning, in the order found.
    pub fn warnings(&self) -> impl Iterator<Item = &Diagnostic> {
        self.items
            .iter()
            .filter(|d| d.severity == Severity::Warning)
    }

    /// True when at least one error was recorded.
    pub fn has_errors(&self) -> bool {
        self.errors().next().is_some()
    }

    /// All diagnostics in the order found.
    pub fn all(&self) -> &[Diagnostic] {
        &self.items
    }

    /// Turns every warning into an error (`--strict`).
    pub(crate) fn escalate_warnings(&mut self) {
        for d in &mut self.items {
            d.severity = Severity::Error;
        }
    }

    pub(crate) fn sort_by_position(&mut self) {
        self.items
            .sort_by_key(|d| (d.line.unwrap_or(usize::MAX), d.column.unwrap_or(0)));
    }
}
