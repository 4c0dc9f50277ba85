//! Variable expansion in a `FROM` line as BuildKit's shell lexer (`frontend/dockerfile/shell`)
//! does it for the base name and `--platform`: quotes removed, escapes applied, `$NAME`,
//! `${NAME}`, `${NAME:-default}`, `${NAME-default}`, `${NAME:+alt}`, `${NAME+alt}`,
//! `${NAME:?msg}`, `${NAME?msg}`, `${NAME#prefix}`, `${NAME%suffix}` (literal patterns) replaced
//! from the ARGs in scope. An unset variable expands to the empty string.

use std::collections::BTreeMap;

/// The expanded word and the variables it referenced that were not set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expansion {
    pub value: String,
    pub unset: Vec<String>,
}

/// Expands `word` with `env`; `escape` is the Dockerfile's escape character. Errors are the
/// lexer's (`bad substitution`, an unclosed quote or brace, `${X?}` on an unset `X`).
pub fn expand(
    word: &str,
    env: &BTreeMap<String, String>,
    escape: char,
) -> Result<Expansion, String> {
    let mut lexer = Lexer {
        chars: word.chars().collect(),
        pos: 0,
        env,
        escape,
        unset: Vec::new(),
    };
    let value = lexer.until(None)?;
    Ok(Expansion {
        value,
        unset: lexer.unset,
    })
}

struct Lexer<'a> {
    chars: Vec<char>,
    pos: usize,
    env: &'a BTreeMap<String, String>,
    escape: char,
    unset: Vec<String>,
}

impl Lexer<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        self.pos += 1;
        c
    }

    fn until(&mut self, stop: Option<char>) -> Result<String, String> {
        let mut out = String::new();
        while let Some(c) = self.peek() {
            if Some(c) == stop {
                self.pos += 1;
                return Ok(out);
            }
            match c {
                '$' => out.push_str(&self.dollar()?),
                '\'' => {
                    self.pos += 1;
                    loop {
                        match self.next() {
                            None => return Err("unexpected end of statement while looking for matching single-quote".into()),
                            Some('\'') => break,
                            Some(ch) => out.push(ch),
                        }
                    }
                }
                '"' => {
                    self.pos += 1;
                    loop {
                        match self.peek() {
                            None => return Err("unexpected end of statement while looking for matching double-quote".into()),
                            Some('"') => {
                                self.pos += 1;
                                break;
                            }
                            Some('$') => out.push_str(&self.dollar()?),
                            Some(ch) => {
                                self.pos += 1;
                                if ch == self.escape {
                                    match self.peek() {
                                        None => continue,
                                        Some(n) if n == '"' || n == '$' || n == self.escape => {
                                            self.pos += 1;
                                            out.push(n);
                                            continue;
                                        }
                                        Some(_) => {}
                                    }
                                }
                                out.push(ch);
                            }
                        }
                    }
                }
                c if c == self.escape => {
                    self.pos += 1;
                    match self.next() {
                        None => break,
                        Some(n) => out.push(n),
                    }
                }
                c => {
                    self.pos += 1;
                    out.push(c);
                }
            }
        }
        match stop {
            Some(s) => Err(format!(
                "unexpected end of statement while looking for matching {s}"
            )),
            None => Ok(out),
        }
    }

    fn name(&mut self) -> String {
        let mut name = String::new();
        if let Some(c) = self.peek() {
            if c.is_ascii_digit() {
                while let Some(d) = self.peek().filter(char::is_ascii_digit) {
                    name.push(d);
                    self.pos += 1;
                }
                return name;
            }
            if "@*#?-$!0".contains(c) {
                self.pos += 1;
                return c.to_string();
            }
        }
        while let Some(c) = self.peek().filter(|c| c.is_alphanumeric() || *c == '_') {
            name.push(c);
            self.pos += 1;
        }
        name
    }

    fn lookup(&mut self, name: &str) -> Option<String> {
        let value = self.env.get(name).cloned();
        if value.is_none() && !self.unset.iter().any(|n| n == name) {
            self.unset.push(name.to_string());
        }
        value
    }

    fn dollar(&mut self) -> Result<String, String> {
        self.pos += 1;
        if self.peek() != Some('{') {
            let name = self.name();
            if name.is_empty() {
                return Ok("$".into());
            }
            return Ok(self.lookup(&name).unwrap_or_default());
        }
        self.pos += 1;
        match self.peek() {
            None => return Err("syntax error: missing '}'".into()),
            Some('{' | '}' | ':') => return Err("syntax error: bad substitution".into()),
            Some(_) => {}
        }
        let name = self.name();
        let mut modifier = match self.next() {
            None => return Err("syntax error: missing '}'".into()),
            Some('}') => return Ok(self.lookup(&name).unwrap_or_default()),
            Some(c) => c,
        };
        let null_is_unset = modifier == ':';
        if null_is_unset {
            modifier = self
                .next()
                .ok_or_else(|| "syntax error: missing '}'".to_string())?;
        }
        if !"+-?#%".contains(modifier) || (null_is_unset && "#%".contains(modifier)) {
            return Err(format!("unsupported modifier ({modifier}) in substitution"));
        }
        let word = self.until(Some('}'))?;
        let value = self.lookup(&name);
        let empty = match &value {
            None => true,
            Some(v) => null_is_unset && v.is_empty(),
        };
        Ok(match modifier {
            '-' if empty => word,
            '-' => value.unwrap_or_default(),
            '+' if empty => String::new(),
            '+' => word,
            '?' if empty => return Err(format!("{name}: is not allowed to be unset or empty")),
            '?' => value.unwrap_or_default(),
            '#' => {
                let value = value.unwrap_or_default();
                let pattern = word.trim_start_matches('#');
                value.strip_prefix(pattern).unwrap_or(&value).to_string()
            }
            _ => {
                let value = value.unwrap_or_default();
                let pattern = word.trim_start_matches('%');
                value.strip_suffix(pattern).unwrap_or(&value).to_string()
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> BTreeMap<String, String> {
        [("GO", "1.22"), ("EMPTY", "")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn value(word: &str) -> String {
        expand(word, &env(), '\\').unwrap().value
    }

    #[test]
    fn expands_as_the_buildkit_lexer() {
        assert_eq!(value("golang:${GO}-alpine"), "golang:1.22-alpine");
        assert_eq!(value("golang:$GO"), "golang:1.22");
        assert_eq!(value("\"golang:${GO}\""), "golang:1.22");
        assert_eq!(value("'golang:${GO}'"), "golang:${GO}");
        assert_eq!(value("x:${NOPE:-1.21}"), "x:1.21");
        assert_eq!(value("x:${EMPTY:-d}"), "x:d");
        assert_eq!(value("x:${EMPTY-d}"), "x:");
        assert_eq!(value("x${GO:+-go}"), "x-go");
        assert_eq!(value("${GO%.22}"), "1");
        let unset = expand("golang:${VERSION}", &env(), '\\').unwrap();
        assert_eq!(
            (unset.value.as_str(), unset.unset.as_slice()),
            ("golang:", &["VERSION".to_string()][..])
        );
        assert!(expand("${", &env(), '\\').is_err());
        assert!(expand("${:x}", &env(), '\\').is_err());
        assert!(expand("\"open", &env(), '\\').is_err());
    }
}
