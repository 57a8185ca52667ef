//! Prometheus text-format helpers shared by the exposition's writers (`metrics`, `tls_report`):
//! a family's HELP/TYPE lines, a family of one unlabelled sample, and label-value escaping.
//!
//! Owns: those rules of the format. Must never: know about the board or a family's samples.

use std::fmt::Write;

/// A label value, escaped as the text format requires.
pub fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The HELP and TYPE lines that open a family.
pub fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// A family of one unlabelled sample: its HELP and TYPE lines, then `name value`.
pub fn scalar(out: &mut String, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
    family(out, name, kind, help);
    let _ = writeln!(out, "{name} {value}");
}
