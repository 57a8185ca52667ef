//! Reading an Apache httpd configuration as httpd does: lines (a trailing `\` continues one),
//! `#` comments, directives with their arguments (double- or single-quoted, a backslash escaping
//! the quote, or bare words), `<Section args>` … `</Section>` nesting, and `Include` /
//! `IncludeOptional` followed (relative to `ServerRoot`, or the first file's directory; a
//! wildcard in the file name part), each directive kept with its file and line.
//!
//! Owns: the syntax. Must never: interpret a directive (that is `apache_map`), follow an include
//! loop, or give up on the whole tree for one bad line or missing file (it becomes a problem,
//! which the importer lists); only a section never closed ends the reading.

use std::path::{Path, PathBuf};

/// One directive, or a section with what it holds.
#[derive(Debug, Clone)]
pub struct Directive {
    pub name: String,
    pub args: Vec<String>,
    pub file: String,
    pub line: usize,
    /// `Some` for a `<Section>`.
    pub children: Option<Vec<Directive>>,
}

impl Directive {
    /// The name, lower-cased (directive names are case-insensitive).
    pub fn is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name)
    }

    /// `file:line`, for notes.
    pub fn at(&self) -> String {
        format!("{}:{}", self.file, self.line)
    }
}

/// Something the reader could not take (a file it could not open, a line it could not split).
#[derive(Debug, Clone)]
pub struct Problem {
    pub at: String,
    pub why: String,
}

/// Reads `path` and everything it includes.
pub fn read(path: &Path) -> Result<(Vec<Directive>, Vec<Problem>), String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let root = path
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let mut r = Reader {
        root,
        seen: vec![path.to_path_buf()],
        problems: Vec::new(),
        follow: true,
    };
    let list = r.parse(&text, &path.display().to_string())?;
    Ok((list, r.problems))
}

/// Reads `text` alone: its `Include`s are kept as directives, not followed (the fuzz target's
/// entry: no file is opened).
pub fn read_text(text: &str) -> Result<(Vec<Directive>, Vec<Problem>), String> {
    let mut r = Reader {
        root: PathBuf::new(),
        seen: Vec::new(),
        problems: Vec::new(),
        follow: false,
    };
    let list = r.parse(text, "text")?;
    Ok((list, r.problems))
}

struct Reader {
    /// `ServerRoot`: where relative includes are found.
    root: PathBuf,
    /// The files being read, outermost first (an include loop stops where it closes).
    seen: Vec<PathBuf>,
    problems: Vec<Problem>,
    /// Whether `Include` reads files.
    follow: bool,
}

/// Open sections while a file is read: the directive and what it holds so far.
type Open = Vec<(Directive, Vec<Directive>)>;

impl Reader {
    fn parse(&mut self, text: &str, file: &str) -> Result<Vec<Directive>, String> {
        let mut top = Vec::new();
        let mut open: Open = Vec::new();
        for (line, content) in logical_lines(text) {
            let at = format!("{file}:{line}");
            let trimmed = content.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            if let Some(name) = trimmed.strip_prefix("</") {
                let name = name.trim_end_matches('>').trim();
                match open.pop() {
                    Some((mut d, kids)) if d.is(name) => {
                        d.children = Some(kids);
                        push(&mut top, &mut open, d);
                    }
                    other => {
                        open.extend(other);
                        let why = format!("</{name}> closes no open <{name}>: ignored");
                        self.problems.push(Problem { at, why });
                    }
                }
                continue;
            }
            let section = trimmed.starts_with('<');
            let inner = match section {
                true => trimmed[1..].trim_end_matches('>'),
                false => trimmed,
            };
            let words = match split_words(inner) {
                Ok(w) if !w.is_empty() => w,
                Ok(_) => continue,
                Err(why) => {
                    self.problems.push(Problem { at, why });
                    continue;
                }
            };
            let d = Directive {
                name: words[0].clone(),
                args: words[1..].to_vec(),
                file: file.to_string(),
                line,
                children: None,
            };
            if section {
                open.push((d, Vec::new()));
            } else if d.is("ServerRoot") && d.args.len() == 1 {
                self.root = PathBuf::from(&d.args[0]);
                push(&mut top, &mut open, d);
            } else if self.follow && (d.is("Include") || d.is("IncludeOptional")) {
                for included in self.include(&d)? {
                    push(&mut top, &mut open, included);
                }
            } else {
                push(&mut top, &mut open, d);
            }
        }
        if let Some((d, _)) = open.last() {
            return Err(format!("{}: <{}> is never closed", d.at(), d.name));
        }
        Ok(top)
    }

    /// The directives of the files an `Include` names (in name order, as httpd reads them).
    /// The directives of the files an `Include` names (in name order, as httpd reads them; a
    /// directory: every file in it). A file missing or unreadable, or one that includes itself
    /// (through any chain), becomes a problem, not an error.
    fn include(&mut self, d: &Directive) -> Result<Vec<Directive>, String> {
        let optional = d.is("IncludeOptional");
        let Some(pattern) = d.args.first() else {
            self.problem(d, format!("{} names no file", d.name));
            return Ok(Vec::new());
        };
        let full = if Path::new(pattern).is_absolute() {
            PathBuf::from(pattern)
        } else {
            self.root.join(pattern)
        };
        let mut files: Vec<PathBuf> = match glob::glob(&full.to_string_lossy()) {
            Ok(paths) => paths.filter_map(Result::ok).flat_map(files_in).collect(),
            Err(e) => {
                self.problem(d, format!("{}: {e}", full.display()));
                return Ok(Vec::new());
            }
        };
        files.sort();
        let wildcard = pattern.contains(['*', '?', '[']);
        if files.is_empty() && !optional && !wildcard {
            self.problem(
                d,
                format!("Include {}: no such file: skipped", full.display()),
            );
        }
        let mut out = Vec::new();
        for f in files {
            if self.seen.contains(&f) {
                let why = format!(
                    "{} includes itself (through {}): skipped",
                    f.display(),
                    d.file
                );
                self.problem(d, why);
                continue;
            }
            match std::fs::read_to_string(&f) {
                Ok(text) => {
                    self.seen.push(f.clone());
                    let read = self.parse(&text, &f.display().to_string());
                    self.seen.pop();
                    out.extend(read?);
                }
                Err(e) => self.problem(d, format!("cannot read {}: {e}", f.display())),
            }
        }
        Ok(out)
    }

    fn problem(&mut self, d: &Directive, why: String) {
        self.problems.push(Problem { at: d.at(), why });
    }
}

/// `path` if it is a file; the files in it (sorted, at any depth) if it is a directory.
fn files_in(path: PathBuf) -> Vec<PathBuf> {
    if path.is_file() {
        return vec![path];
    }
    let Ok(entries) = std::fs::read_dir(&path) else {
        return Vec::new();
    };
    let mut inside: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    inside.sort();
    inside.into_iter().flat_map(files_in).collect()
}

fn push(top: &mut Vec<Directive>, open: &mut Open, d: Directive) {
    match open.last_mut() {
        Some((_, kids)) => kids.push(d),
        None => top.push(d),
    }
}

/// Lines joined where one ends in `\`, each with the number of its first line.
fn logical_lines(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (i, raw) in text.lines().enumerate() {
        let (n, mut acc) = current.take().unwrap_or((i + 1, String::new()));
        match raw.strip_suffix('\\') {
            Some(head) => {
                acc.push_str(head);
                current = Some((n, acc));
            }
            None => {
                acc.push_str(raw);
                out.push((n, acc));
            }
        }
    }
    out.extend(current);
    out
}

/// A line's words: bare, or quoted (`"…"` or `'…'`, where `\` escapes the quote character).
pub fn split_words(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let Some(&first) = chars.peek() else {
            return Ok(words);
        };
        let mut word = String::new();
        if first == '"' || first == '\'' {
            chars.next();
            loop {
                match chars.next() {
                    // As httpd: a backslash escapes the quote only (`"^\.ht"` keeps its `\`).
                    Some('\\') if chars.peek() == Some(&first) => word.extend(chars.next()),
                    Some(c) if c == first => break,
                    Some(c) => word.push(c),
                    None => return Err(format!("unterminated {first}quote{first}")),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                word.push(c);
            }
        }
        words.push(word);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_quotes_continuations_sections_and_includes() {
        assert_eq!(
            split_words(r#"Header set X "a \"b\" c" 'd e'"#).unwrap(),
            ["Header", "set", "X", "a \"b\" c", "d e"]
        );
        assert_eq!(
            split_words(r#"<FilesMatch "^\.ht""#).unwrap(),
            ["<FilesMatch", r"^\.ht"]
        );
        assert!(split_words("Foo \"open").is_err());
        let dir = std::env::temp_dir().join(format!("ringlb-apache-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sites")).unwrap();
        std::fs::write(
            dir.join("sites/a.conf"),
            "<VirtualHost *:80>\n  ServerName a.example\n  ProxyPass / \\\n    balancer://c/\n</VirtualHost>\n",
        )
        .unwrap();
        std::fs::write(dir.join("sites/b.conf"), "Listen 8080\nInclude main.conf\n").unwrap();
        std::fs::write(
            dir.join("main.conf"),
            "# top\nListen 80\nIncludeOptional sites/*.conf\nIncludeOptional none/*.conf\n",
        )
        .unwrap();
        let (list, problems) = read(&dir.join("main.conf")).unwrap();
        let names: Vec<&str> = list.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["Listen", "VirtualHost", "Listen"]);
        let vhost = list[1].children.as_ref().unwrap();
        assert_eq!(vhost[1].args, ["/", "balancer://c/"]);
        assert_eq!(
            (vhost[1].line, vhost[1].file.ends_with("sites/a.conf")),
            (3, true)
        );
        assert_eq!(
            problems.len(),
            1,
            "the include loop back to main.conf: {problems:?}"
        );
        std::fs::write(dir.join("bad.conf"), "<Proxy x>\nBalancerMember y\n").unwrap();
        let e = read(&dir.join("bad.conf")).unwrap_err();
        assert!(e.contains("bad.conf:1: <Proxy> is never closed"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
