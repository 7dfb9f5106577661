//! Terminal output helpers: the only place the binary writes to stdout and stderr.

use std::io::Write;

use vllm_sr_config::{Diagnostic, Severity};

/// Writes a line to stdout. A closed pipe (`vllm-sr ... | head`) is not an error.
pub(crate) fn out(line: &str) {
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

/// Writes a line to stderr.
pub(crate) fn err(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// Prints a fatal error with its cause chain.
pub(crate) fn error(e: &anyhow::Error) {
    err(&format!("error: {e:#}"));
}

/// Formats one diagnostic the way compilers do: `file:line:col: error: path: message`.
pub(crate) fn diagnostic(file: &str, d: &Diagnostic) -> String {
    let level = match d.severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
    };
    let loc = match (d.line, d.column) {
        (Some(l), Some(c)) => format!("{file}:{l}:{c}"),
        _ => file.to_string(),
    };
    if d.path.is_empty() {
        format!("{loc}: {level}: {}", d.message)
    } else {
        format!("{loc}: {level}: {}: {}", d.path, d.message)
    }
}
