//! TOML quoting for values that come from someone else's file.
//!
//! Owns: the one way the importer writes a string. Must never: let a quote, backslash or control
//! character through unescaped.

use std::fmt::Write as _;

/// A TOML basic string.
pub fn q(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn strings_come_back_as_written() {
        for s in [
            "plain",
            "a\"b",
            "back\\slash",
            "new\nline",
            "tab\t",
            "\u{7f}",
            "ünï",
        ] {
            let text = format!("v = {}", super::q(s));
            let v: toml::Value = toml::from_str(&text).unwrap();
            assert_eq!(v["v"].as_str(), Some(s), "{text}");
        }
    }
}
