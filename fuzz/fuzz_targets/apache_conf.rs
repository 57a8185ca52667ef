//! `ringlb import-apache`'s reader and translator on any text: no panic; every directive names a
//! line of the text; a section's children lie after it; a line of words written back quoted
//! splits into the same words (words without a backslash: httpd has no way to quote one that
//! ends in `\`); whatever is read, translation does not panic and every note it
//! makes names a place.
//!
//! Input: the text (lossy UTF-8).

#![no_main]

use libfuzzer_sys::fuzz_target;
use ringlb_fuzz::glue::*;

fn check(list: &[Directive], lines: usize, after: usize) {
    for d in list {
        assert!(d.line >= 1 && d.line <= lines.max(1), "line {} of {lines}", d.line);
        assert!(d.line >= after, "a child before its section");
        if let Some(kids) = &d.children {
            check(kids, lines, d.line);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok((list, _)) = apache_read(&text) {
        check(&list, text.lines().count(), 1);
        for n in apache_translate(&list).notes {
            assert!(n.at.starts_with("text:"), "{n:?}");
        }
    }
    // (A word with a backslash has no quoted form in httpd's syntax: `\"` is always an escape.)
    if let Some(words) = split_words(&text).ok().filter(|w| !w.iter().any(|x| x.contains('\\'))) {
        let quoted: Vec<String> = words
            .iter()
            .map(|w| format!("\"{}\"", w.replace('"', "\\\"")))
            .collect();
        assert_eq!(split_words(&quoted.join(" ")).ok(), Some(words));
    }
});
