//! A Dockerfile parser that reads a Dockerfile the way BuildKit's Dockerfile frontend does
//! (moby/buildkit `frontend/dockerfile/parser` and `frontend/dockerfile/instructions`), so that
//! the linter sees the instructions, flags, arguments and heredocs the builder will see:
//!
//! - parser directives (`# syntax=`, `# escape=`, `# check=`) only at the very top, each once;
//!   `# escape=` switches the escape and line-continuation character between `\` and `` ` ``;
//! - comment lines dropped, also inside a continued instruction; a line ending in the escape
//!   character continues on the next line (joined without inserting anything);
//! - the keyword is split off at the first run of ASCII whitespace; leading words starting with
//!   `--` are the flags (quotes removed, `--` alone ends them), the rest are the arguments;
//! - `RUN`, `CMD`, `ENTRYPOINT`, `SHELL`, `ADD`, `COPY`, `VOLUME` and `HEALTHCHECK CMD` are in
//!   JSON (exec) form only if the arguments parse as a JSON array of strings; anything else,
//!   such as `CMD [“./app”]` with curly quotes, is shell form (or a word list);
//! - `RUN`, `COPY` and `ADD` (also under `ONBUILD`) in shell form may open heredocs
//!   (`<<EOF`, `<<-EOF`, `<<"EOF"`, several on one line), whose bodies are the following lines
//!   up to each terminator and never instructions of their own.
//!
//! Where BuildKit would reject a Dockerfile, the parser records a [`SyntaxError`] and goes on,
//! so one mistake does not hide the others; [`Instruction::problems`] gives the checks BuildKit
//! makes per instruction (argument counts, flags, JSON arrays).

use std::fmt;

/// A parsed Dockerfile.
#[derive(Debug, Clone)]
pub struct Dockerfile {
    /// The escape and line-continuation character (`\\`, or `` ` `` by `# escape=`).
    pub escape: char,
    /// The instructions in file order.
    pub instructions: Vec<Instruction>,
    /// What BuildKit's parser rejects outside any single instruction's arguments (bad parser
    /// directives, unterminated heredocs, a file without instructions).
    pub errors: Vec<SyntaxError>,
}

/// A parse failure BuildKit would stop the build with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    /// 1-based line.
    pub line: usize,
    pub message: String,
}

/// One heredoc body attached to a `RUN`, `COPY` or `ADD`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    /// The delimiter word, quotes removed (`EOF` for `<<"EOF"`).
    pub name: String,
    /// `<<-`: leading tabs are stripped from the body and the terminator.
    pub chomp: bool,
    /// Unquoted delimiter: variables in the body are expanded.
    pub expand: bool,
    /// The body, lines with their newlines, terminator excluded.
    pub content: String,
    /// 1-based line of the body's first line.
    pub first_line: usize,
}

/// One instruction as BuildKit's parser produces it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instruction {
    /// 1-based line the instruction starts on.
    pub line: usize,
    /// 1-based line it ends on (after continuations and heredoc bodies).
    pub end_line: usize,
    /// The keyword upper-cased (`COPY`), whatever its case in the file.
    pub keyword: String,
    /// The flags (`--from=build`), quotes removed, in order.
    pub flags: Vec<String>,
    /// The text after the keyword and the flags, trimmed.
    pub rest: String,
    /// The arguments as BuildKit's line parser splits them: the JSON array's strings, the
    /// whitespace-separated words (`FROM`, `COPY`, `ADD`, `VOLUME`, `EXPOSE`), the whole text
    /// (shell-form `RUN`/`CMD`/`ENTRYPOINT`, `USER`, `WORKDIR`), key/value/separator triples
    /// (`ENV`, `LABEL`), quoted words (`ARG`), or nothing for an unknown instruction.
    pub args: Vec<String>,
    /// The arguments were a JSON array of strings (exec form).
    pub json: bool,
    /// Heredoc bodies opened on this instruction's line, in order.
    pub heredocs: Vec<Heredoc>,
    /// What the line parser rejected (non-string JSON array, `ENV` without `=`...).
    pub parse_error: Option<String>,
    /// For `ONBUILD`: the trigger instruction.
    pub trigger: Option<Box<Instruction>>,
}

/// What BuildKit rejects in one instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// Not a Dockerfile instruction.
    UnknownInstruction,
    /// Wrong number or form of arguments.
    Malformed(String),
    /// A flag the instruction does not take, without its value, or given twice; for an unknown
    /// flag, the known one it is closest to.
    Flag(String, Option<&'static str>),
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::UnknownInstruction => f.write_str("unknown instruction"),
            Problem::Malformed(m) | Problem::Flag(m, _) => f.write_str(m),
        }
    }
}

/// Every instruction BuildKit knows.
pub const INSTRUCTIONS: [&str; 18] = [
    "ADD",
    "ARG",
    "CMD",
    "COPY",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "FROM",
    "HEALTHCHECK",
    "LABEL",
    "MAINTAINER",
    "ONBUILD",
    "RUN",
    "SHELL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FlagKind {
    Bool,
    String,
    /// May be given more than once.
    Strings,
}

/// The flags each instruction accepts (BuildKit's `instructions/parse.go`); an instruction not
/// listed takes none. `ARG`, `STOPSIGNAL` and `HEALTHCHECK NONE` never look at their flags.
const FLAGS: [(&str, &[(&str, FlagKind)]); 5] = [
    (
        "ADD",
        &[
            ("chown", FlagKind::String),
            ("chmod", FlagKind::String),
            ("link", FlagKind::Bool),
            ("keep-git-dir", FlagKind::Bool),
            ("checksum", FlagKind::String),
            ("unpack", FlagKind::Bool),
            ("exclude", FlagKind::Strings),
        ],
    ),
    (
        "COPY",
        &[
            ("chown", FlagKind::String),
            ("from", FlagKind::String),
            ("chmod", FlagKind::String),
            ("link", FlagKind::Bool),
            ("exclude", FlagKind::Strings),
            ("parents", FlagKind::Bool),
        ],
    ),
    ("FROM", &[("platform", FlagKind::String)]),
    (
        "RUN",
        &[
            ("mount", FlagKind::Strings),
            ("network", FlagKind::String),
            ("security", FlagKind::String),
            ("device", FlagKind::Strings),
        ],
    ),
    (
        "HEALTHCHECK",
        &[
            ("interval", FlagKind::String),
            ("timeout", FlagKind::String),
            ("start-period", FlagKind::String),
            ("start-interval", FlagKind::String),
            ("retries", FlagKind::String),
        ],
    ),
];

/// The flag names `keyword` accepts.
pub fn known_flags(keyword: &str) -> impl Iterator<Item = &'static str> + '_ {
    FLAGS
        .iter()
        .filter(move |(k, _)| *k == keyword)
        .flat_map(|(_, flags)| flags.iter().map(|(name, _)| *name))
}

impl Instruction {
    /// The value of flag `--name` (the last one given), if present with a value.
    pub fn flag(&self, name: &str) -> Option<&str> {
        self.flags.iter().rev().find_map(|f| {
            let (flag, value) = f.split_once('=')?;
            (flag.strip_prefix("--") == Some(name)).then_some(value)
        })
    }

    /// Whether the instruction's sources are heredocs rather than paths (`COPY <<EOF /x`).
    pub fn is_heredoc_word(word: &str) -> bool {
        heredoc_from_word(word).is_some()
    }

    /// The shell text the instruction runs: the command and its heredoc bodies.
    pub fn script(&self) -> String {
        let mut text = if self.json {
            self.args.join(" ")
        } else {
            self.rest.clone()
        };
        for doc in &self.heredocs {
            text.push('\n');
            text.push_str(&doc.content);
        }
        text
    }

    /// What BuildKit's `instructions.ParseInstruction` rejects, first problem only (as the
    /// build stops there). `ONBUILD` triggers are checked when an image is built on this one,
    /// so only the trigger's keyword is.
    pub fn problems(&self) -> Option<Problem> {
        if let Some(error) = &self.parse_error {
            return Some(Problem::Malformed(error.clone()));
        }
        let kw = self.keyword.as_str();
        let n = self.args.len();
        let malformed = |m: String| Some(Problem::Malformed(m));
        let at_least_one = || format!("{kw} requires at least one argument");
        let exactly_one = || format!("{kw} requires exactly one argument");
        let check_flags = || self.flag_problem();
        match kw {
            "ENV" | "LABEL" => check_flags().or_else(|| self.key_value_problem()),
            "MAINTAINER" | "WORKDIR" | "USER" => {
                if n != 1 {
                    malformed(exactly_one())
                } else {
                    check_flags()
                }
            }
            "STOPSIGNAL" => (n != 1).then(|| Problem::Malformed(exactly_one())),
            "ADD" | "COPY" => {
                if n < 2 {
                    return malformed(format!("{kw} requires at least two arguments (sources and a destination), but only {n} was given"));
                }
                check_flags().or_else(|| {
                    Instruction::is_heredoc_word(&self.args[n - 1]).then(|| {
                        Problem::Malformed(format!("{kw} cannot take a heredoc as its destination"))
                    })
                })
            }
            "FROM" => {
                let named = n == 3 && self.args[1].eq_ignore_ascii_case("as");
                if named {
                    let name = self.args[2].to_ascii_lowercase();
                    if !valid_stage_name(&name) {
                        return malformed(format!(
                            "invalid name for build stage: {:?}, name can't start with a number or contain symbols",
                            self.args[2]
                        ));
                    }
                } else if n != 1 {
                    return malformed(
                        "FROM requires either one argument (the base) or three (base AS name)"
                            .into(),
                    );
                }
                check_flags()
            }
            "ONBUILD" => {
                if n == 0 {
                    return malformed(at_least_one());
                }
                check_flags().or_else(|| {
                    let trigger = self.args[0].to_ascii_uppercase();
                    match trigger.as_str() {
                        "ONBUILD" => {
                            malformed("chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed".into())
                        }
                        "MAINTAINER" | "FROM" => {
                            malformed(format!("{trigger} isn't allowed as an ONBUILD trigger"))
                        }
                        _ if !INSTRUCTIONS.contains(&trigger.as_str()) => {
                            Some(Problem::UnknownInstruction)
                        }
                        _ => None,
                    }
                })
            }
            "RUN" | "CMD" | "ENTRYPOINT" => check_flags(),
            "HEALTHCHECK" => {
                if n == 0 {
                    return malformed(at_least_one());
                }
                let kind = self.args[0].to_ascii_uppercase();
                if kind == "NONE" {
                    return (n != 1)
                        .then(|| Problem::Malformed("HEALTHCHECK NONE takes no arguments".into()));
                }
                check_flags().or_else(|| match kind.as_str() {
                    "CMD" if n == 1 => malformed("missing command after HEALTHCHECK CMD".into()),
                    "CMD" => None,
                    other => malformed(format!("unknown type {other:?} in HEALTHCHECK (try CMD)")),
                })
            }
            "EXPOSE" => {
                if n == 0 {
                    malformed(at_least_one())
                } else {
                    check_flags()
                }
            }
            "VOLUME" => {
                if n == 0 {
                    return malformed(at_least_one());
                }
                check_flags().or_else(|| {
                    self.args.iter().any(|v| v.trim().is_empty()).then(|| {
                        Problem::Malformed("VOLUME specified can not be an empty string".into())
                    })
                })
            }
            "ARG" => {
                if n == 0 {
                    malformed(at_least_one())
                } else if self.args.iter().any(|a| a.starts_with('=')) {
                    malformed("ARG names can not be blank".into())
                } else {
                    None
                }
            }
            "SHELL" => check_flags().or_else(|| {
                if !self.json && n > 0 {
                    malformed("SHELL requires the arguments to be in JSON form".into())
                } else if n == 0 {
                    malformed(at_least_one())
                } else {
                    None
                }
            }),
            _ => Some(Problem::UnknownInstruction),
        }
    }

    /// `ENV`/`LABEL` arguments: at least one pair, no blank names (`parseKvps`).
    fn key_value_problem(&self) -> Option<Problem> {
        if self.args.is_empty() {
            return Some(Problem::Malformed(format!(
                "{} requires at least one argument",
                self.keyword
            )));
        }
        self.args
            .chunks(3)
            .any(|kv| kv[0].is_empty())
            .then(|| Problem::Malformed(format!("{} names can not be blank", self.keyword)))
    }

    /// BuildKit's `BFlags.Parse` against the flags this instruction accepts.
    fn flag_problem(&self) -> Option<Problem> {
        let accepted: Vec<(&str, FlagKind)> = FLAGS
            .iter()
            .filter(|(k, _)| *k == self.keyword)
            .flat_map(|(_, flags)| flags.iter().copied())
            .collect();
        let mut used: Vec<&str> = Vec::new();
        for word in &self.flags {
            if word == "--" {
                return None;
            }
            let Some(flag) = word.strip_prefix("--") else {
                return Some(Problem::Flag(
                    format!("arg should start with -- : {word}"),
                    None,
                ));
            };
            let (name, value) = match flag.split_once('=') {
                Some((name, value)) => (name, Some(value)),
                None => (flag, None),
            };
            let Some(&(_, kind)) = accepted.iter().find(|(n, _)| *n == name) else {
                let suggestion = closest(name, accepted.iter().map(|(n, _)| *n));
                let takes = if accepted.is_empty() {
                    format!("{} takes no flags", self.keyword)
                } else {
                    let names: Vec<String> =
                        accepted.iter().map(|(n, _)| format!("--{n}")).collect();
                    format!("{} takes {}", self.keyword, names.join(", "))
                };
                return Some(Problem::Flag(
                    format!("unknown flag --{name}: {takes}"),
                    suggestion,
                ));
            };
            if used.contains(&name) && kind != FlagKind::Strings {
                return Some(Problem::Flag(
                    format!("duplicate flag specified: --{name}"),
                    None,
                ));
            }
            used.push(name);
            match (kind, value) {
                (FlagKind::Bool, Some("")) | (FlagKind::String | FlagKind::Strings, None) => {
                    return Some(Problem::Flag(
                        format!("missing a value on flag --{name}: write --{name}=VALUE"),
                        None,
                    ));
                }
                (FlagKind::Bool, Some(v))
                    if !matches!(v.to_ascii_lowercase().as_str(), "true" | "false") =>
                {
                    return Some(Problem::Flag(
                        format!("expecting boolean value for flag --{name}, not: {v}"),
                        None,
                    ));
                }
                _ => {}
            }
        }
        None
    }
}

/// `^[a-z][a-z0-9-_.]*$`: what BuildKit accepts as a stage name (after lower-casing).
pub fn valid_stage_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c))
}

/// The candidate closest to `word` by edit distance, if close enough to be a typo.
pub fn closest<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let word = word.to_ascii_lowercase();
    candidates
        .map(|c| (strsim::levenshtein(&word, &c.to_ascii_lowercase()), c))
        .filter(|(d, c)| *d > 0 && *d <= 2.max(c.len() / 4) && *d < c.len())
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Parser state from the directives at the top of the file.
struct Directives {
    escape: char,
    done: bool,
    seen: Vec<String>,
}

impl Directives {
    /// BuildKit's `DirectiveParser.ParseLine`: directives are `# key=value` lines before
    /// anything else; the first other line ends them.
    fn parse_line(&mut self, line: &str) -> Result<bool, String> {
        if self.done {
            return Ok(false);
        }
        let Some(after_hash) = line.strip_prefix('#') else {
            self.done = true;
            return Ok(false);
        };
        let body = after_hash.trim_start();
        let Some((key, value)) = body.split_once('=') else {
            self.done = true;
            return Ok(false);
        };
        let key = key.trim_end();
        let value = value.trim();
        let key_ok = key.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            && key.chars().all(|c| c.is_ascii_alphanumeric());
        let key = key.to_ascii_lowercase();
        if !key_ok || value.is_empty() || !["syntax", "escape", "check"].contains(&key.as_str()) {
            self.done = true;
            return Ok(false);
        }
        if self.seen.contains(&key) {
            return Err(format!("only one {key} parser directive can be used"));
        }
        self.seen.push(key.clone());
        if key == "escape" {
            match value {
                "\\" => self.escape = '\\',
                "`" => self.escape = '`',
                other => {
                    return Err(format!(
                        "invalid escape token '{other}' does not match ` or \\"
                    ))
                }
            }
        }
        Ok(true)
    }
}

/// Go's `unicode.IsSpace` for the ASCII and Latin-1 range BuildKit's byte-wise flag scanner
/// sees (it reads each byte as a rune).
fn byte_is_space(b: u8) -> bool {
    matches!(b, b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | b' ' | 0x85 | 0xa0)
}

/// `[\t\v\f\r ]`: where BuildKit splits a keyword from its arguments and whitespace-delimited
/// arguments from each other.
fn is_split_space(c: char) -> bool {
    matches!(c, '\t' | '\x0b' | '\x0c' | '\r' | ' ')
}

fn split_whitespace_delimited(rest: &str) -> Vec<String> {
    if rest.is_empty() {
        return Vec::new();
    }
    rest.split(is_split_space)
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

fn is_comment(line: &str) -> bool {
    line.trim_start().starts_with('#')
}

fn trim_newline(line: &str) -> &str {
    line.trim_end_matches(['\r', '\n'])
}

/// If the line ends in the escape character (not itself escaped), the line without it and
/// `false` (not the end of the instruction).
fn trim_continuation(line: &str, escape: char) -> (&str, bool) {
    let trimmed = line.trim_end_matches([' ', '\t']);
    if let Some(before) = trimmed.strip_suffix(escape) {
        if before.is_empty() || !before.ends_with(escape) {
            return (before, false);
        }
    }
    (line, true)
}

/// BuildKit's `processLine`: the line without its newline (and leading blanks on an
/// instruction's first line), offered to the directive parser, emptied if a comment.
fn process_line(
    directives: &mut Directives,
    raw: &str,
    strip: bool,
    line: usize,
) -> (String, Option<SyntaxError>) {
    let mut token = trim_newline(raw);
    if strip {
        token = token.trim_start();
    }
    let directive = directives.parse_line(token);
    let token = if is_comment(token) { "" } else { token };
    (
        token.to_string(),
        directive.err().map(|message| SyntaxError { line, message }),
    )
}

/// Parses a Dockerfile's text as BuildKit does.
pub fn parse(text: &str) -> Dockerfile {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let mut directives = Directives {
        escape: '\\',
        done: false,
        seen: Vec::new(),
    };
    let mut out = Dockerfile {
        escape: '\\',
        instructions: Vec::new(),
        errors: Vec::new(),
    };
    let mut next = 0;
    let mut current_line = 0;
    while next < lines.len() {
        let (first, error) = process_line(&mut directives, lines[next], true, current_line + 1);
        next += 1;
        current_line += 1;
        out.errors.extend(error);
        let start = current_line;
        let escape = directives.escape;
        let (head, mut end) = trim_continuation(&first, escape);
        if end && head.is_empty() {
            continue;
        }
        let mut joined = head.to_string();
        while !end && next < lines.len() {
            let raw = lines[next];
            let (token, error) = process_line(&mut directives, raw, false, current_line + 1);
            next += 1;
            current_line += 1;
            out.errors.extend(error);
            if is_comment(raw) || token.trim_start().is_empty() {
                continue;
            }
            let (head, is_end) = trim_continuation(&token, escape);
            joined.push_str(head);
            end = is_end;
        }
        let mut instruction = parse_line(&joined, escape);
        instruction.line = start;
        if instruction.can_contain_heredoc() && joined.contains("<<") {
            for (name, chomp, expand) in heredocs_in_line(&joined) {
                let first_line = current_line + 1;
                let mut content = String::new();
                let mut terminated = false;
                while next < lines.len() {
                    let raw = lines[next];
                    next += 1;
                    current_line += 1;
                    let mut candidate = trim_newline(raw);
                    if chomp {
                        candidate = candidate.trim_start_matches('\t');
                    }
                    if candidate == name {
                        terminated = true;
                        break;
                    }
                    content.push_str(raw);
                }
                if !terminated {
                    out.errors.push(SyntaxError {
                        line: start,
                        message: format!(
                            "unterminated heredoc: no line {name} closes the <<{name} opened here"
                        ),
                    });
                }
                instruction.heredocs.push(Heredoc {
                    name,
                    chomp,
                    expand,
                    content,
                    first_line,
                });
            }
        }
        instruction.end_line = current_line;
        out.instructions.push(instruction);
    }
    out.escape = directives.escape;
    if out.instructions.is_empty() {
        out.errors.push(SyntaxError {
            line: current_line.max(1),
            message: "file with no instructions".into(),
        });
    }
    out
}

impl Instruction {
    /// `RUN`, `COPY` and `ADD` (also as an `ONBUILD` trigger) in shell form may open heredocs.
    fn can_contain_heredoc(&self) -> bool {
        let node = match &self.trigger {
            Some(trigger) if self.keyword == "ONBUILD" => trigger,
            _ => self,
        };
        matches!(node.keyword.as_str(), "RUN" | "COPY" | "ADD") && !node.json
    }
}

/// BuildKit's `newNodeFromLine`: keyword, flags, and the arguments as the keyword's line parser
/// splits them.
fn parse_line(line: &str, escape: char) -> Instruction {
    let trimmed = line.trim();
    let (keyword, after) = match trimmed.find(is_split_space) {
        Some(i) => (
            &trimmed[..i],
            Some(trimmed[i..].trim_start_matches(is_split_space)),
        ),
        None => (trimmed, None),
    };
    let (rest, flags) = match after {
        Some(after) => extract_builder_flags(after, escape),
        None => (String::new(), Vec::new()),
    };
    let rest = rest.trim().to_string();
    let mut instruction = Instruction {
        line: 0,
        end_line: 0,
        keyword: keyword.to_uppercase(),
        flags,
        rest: rest.clone(),
        args: Vec::new(),
        json: false,
        heredocs: Vec::new(),
        parse_error: None,
        trigger: None,
    };
    let result = match instruction.keyword.as_str() {
        "ADD" | "COPY" | "VOLUME" => maybe_json_to_list(&rest),
        "CMD" | "ENTRYPOINT" | "RUN" | "SHELL" => maybe_json(&rest),
        "ARG" => Ok((parse_words(&rest, escape), false)),
        "ENV" | "LABEL" => parse_name_val(&rest, &instruction.keyword, escape).map(|a| (a, false)),
        "EXPOSE" | "FROM" => Ok((split_whitespace_delimited(&rest), false)),
        "MAINTAINER" | "STOPSIGNAL" | "USER" | "WORKDIR" => Ok((
            if rest.is_empty() {
                Vec::new()
            } else {
                vec![rest.clone()]
            },
            false,
        )),
        "HEALTHCHECK" => {
            let split = rest.find(|c: char| c.is_whitespace()).unwrap_or(rest.len());
            if split == 0 {
                Ok((Vec::new(), false))
            } else {
                let kind = rest[..split].to_string();
                maybe_json(rest[split..].trim_start()).map(|(mut args, json)| {
                    args.insert(0, kind);
                    (args, json)
                })
            }
        }
        "ONBUILD" => {
            if !rest.is_empty() {
                let trigger = parse_line(&rest, escape);
                let mut args = vec![trigger.keyword.clone()];
                args.extend(trigger.args.iter().cloned());
                let json = trigger.json;
                instruction.trigger = Some(Box::new(trigger));
                Ok((args, json))
            } else {
                Ok((Vec::new(), false))
            }
        }
        _ => Ok((Vec::new(), false)),
    };
    match result {
        Ok((args, json)) => {
            instruction.args = args;
            instruction.json = json && instruction.keyword != "ONBUILD";
        }
        Err(error) => instruction.parse_error = Some(error),
    }
    instruction
}

/// BuildKit's `extractBuilderFlags`: leading `--words` are flags. It scans bytes, reading each
/// as a rune, and so does this (a non-ASCII flag comes out as Latin-1 mojibake, as there).
fn extract_builder_flags(line: &str, escape: char) -> (String, Vec<String>) {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote,
    }
    let bytes = line.as_bytes();
    let escape = escape as u8;
    let mut words = Vec::new();
    let mut phase = Phase::Spaces;
    let mut word = String::new();
    let mut quote = 0u8;
    let mut blank_ok = false;
    let rest_from = |pos: usize| String::from_utf8_lossy(&bytes[pos..]).into_owned();
    let mut pos = 0;
    while pos <= bytes.len() {
        let ch = bytes.get(pos).copied().unwrap_or(0);
        if phase == Phase::Spaces {
            if pos == bytes.len() {
                break;
            }
            if byte_is_space(ch) {
                pos += 1;
                continue;
            }
            if ch != b'-' || bytes.get(pos + 1) != Some(&b'-') {
                return (rest_from(pos), words);
            }
            phase = Phase::Word;
        }
        if pos == bytes.len() {
            if word != "--" && (blank_ok || !word.is_empty()) {
                words.push(word);
            }
            break;
        }
        if phase == Phase::Word {
            if byte_is_space(ch) {
                phase = Phase::Spaces;
                if word == "--" {
                    return (rest_from(pos), words);
                }
                if blank_ok || !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
                word.clear();
                blank_ok = false;
                pos += 1;
                continue;
            }
            if ch == b'\'' || ch == b'"' {
                quote = ch;
                blank_ok = true;
                phase = Phase::Quote;
                pos += 1;
                continue;
            }
            let mut c = ch;
            if ch == escape {
                if pos + 1 == bytes.len() {
                    pos += 1;
                    continue;
                }
                pos += 1;
                c = bytes[pos];
            }
            word.push(char::from(c));
            pos += 1;
            continue;
        }
        // Phase::Quote
        if ch == quote {
            phase = Phase::Word;
            pos += 1;
            continue;
        }
        let mut c = ch;
        if ch == escape {
            if pos + 1 == bytes.len() {
                phase = Phase::Word;
                pos += 1;
                continue;
            }
            pos += 1;
            c = bytes[pos];
        }
        word.push(char::from(c));
        pos += 1;
    }
    (String::new(), words)
}

/// Why `rest` is not exec form.
#[derive(Debug, PartialEq, Eq)]
pub enum NotJson {
    /// Not a JSON array at all: shell form.
    NotAnArray,
    /// A JSON array with something other than strings: BuildKit rejects the instruction.
    NotStrings,
}

/// BuildKit's `parseJSON`: the strings of a JSON array, or why not.
pub fn parse_json_array(rest: &str) -> Result<Vec<String>, NotJson> {
    let rest = rest.trim_start();
    if !rest.starts_with('[') {
        return Err(NotJson::NotAnArray);
    }
    let values: Vec<serde_json::Value> =
        serde_json::from_str(rest).map_err(|_| NotJson::NotAnArray)?;
    values
        .into_iter()
        .map(|v| match v {
            serde_json::Value::String(s) => Ok(s),
            _ => Err(NotJson::NotStrings),
        })
        .collect()
}

const NOT_STRINGS: &str = "when using JSON array syntax, arrays must be comprised of strings only";

fn maybe_json(rest: &str) -> Result<(Vec<String>, bool), String> {
    if rest.is_empty() {
        return Ok((Vec::new(), false));
    }
    match parse_json_array(rest) {
        Ok(args) => Ok((args, true)),
        Err(NotJson::NotStrings) => Err(NOT_STRINGS.into()),
        Err(NotJson::NotAnArray) => Ok((vec![rest.to_string()], false)),
    }
}

fn maybe_json_to_list(rest: &str) -> Result<(Vec<String>, bool), String> {
    match parse_json_array(rest) {
        Ok(args) => Ok((args, true)),
        Err(NotJson::NotStrings) => Err(NOT_STRINGS.into()),
        Err(NotJson::NotAnArray) => Ok((split_whitespace_delimited(rest), false)),
    }
}

/// BuildKit's `parseWords`: whitespace-separated words, quotes and escapes kept.
fn parse_words(rest: &str, escape: char) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut blank_ok = false;
    let mut chars = rest.chars().peekable();
    while let Some(ch) = chars.next() {
        if let Some(q) = quote {
            if ch == q {
                quote = None;
            }
            if ch == escape && q != '\'' {
                match chars.next() {
                    None => {
                        quote = None;
                        continue;
                    }
                    Some(next) => {
                        word.push(ch);
                        word.push(next);
                        continue;
                    }
                }
            }
            word.push(ch);
            continue;
        }
        if !in_word {
            if ch.is_whitespace() {
                continue;
            }
            in_word = true;
        }
        if ch.is_whitespace() {
            in_word = false;
            if blank_ok || !word.is_empty() {
                words.push(std::mem::take(&mut word));
            }
            blank_ok = false;
            continue;
        }
        if ch == '\'' || ch == '"' {
            quote = Some(ch);
            blank_ok = true;
        }
        if ch == escape {
            match chars.next() {
                None => continue,
                Some(next) => {
                    word.push(ch);
                    word.push(next);
                    continue;
                }
            }
        }
        word.push(ch);
    }
    if in_word && (blank_ok || !word.is_empty()) {
        words.push(word);
    }
    words
}

/// BuildKit's `parseNameVal` for `ENV` and `LABEL`: `KEY value` (old form) or `K=v K2=v2`,
/// as key, value, separator triples.
fn parse_name_val(rest: &str, keyword: &str, escape: char) -> Result<Vec<String>, String> {
    let words = parse_words(rest, escape);
    let Some(first) = words.first() else {
        return Ok(Vec::new());
    };
    if !first.contains('=') {
        return match rest.split_once(is_split_space) {
            Some((key, value)) => Ok(vec![
                key.to_string(),
                value.trim_start_matches(is_split_space).to_string(),
                String::new(),
            ]),
            None => Err(format!("{keyword} must have two arguments")),
        };
    }
    let mut args = Vec::new();
    for word in &words {
        let Some((key, value)) = word.split_once('=') else {
            return Err(format!(
                "syntax error - can't find = in {word:?}. Must be of the form: name=value"
            ));
        };
        args.extend([key.to_string(), value.to_string(), "=".to_string()]);
    }
    Ok(args)
}

/// The heredocs a line opens, in order: (name, chomp, expand). BuildKit splits the line into
/// shell words (quotes and escapes kept) and takes each word of the form `[n]<<[-]WORD`.
fn heredocs_in_line(line: &str) -> Vec<(String, bool, bool)> {
    raw_shell_words(line)
        .unwrap_or_default()
        .iter()
        .filter_map(|w| heredoc_from_word(w))
        .collect()
}

/// `^(\d*)<<(-?)\s*([^<]*)$` and a single-word delimiter: (name, chomp, expand).
fn heredoc_from_word(word: &str) -> Option<(String, bool, bool)> {
    let after_fd = word.trim_start_matches(|c: char| c.is_ascii_digit());
    let after = after_fd.strip_prefix("<<")?;
    let (chomp, after) = match after.strip_prefix('-') {
        Some(a) => (true, a),
        None => (false, after),
    };
    let delimiter = after.trim_start_matches([' ', '\t', '\n', '\x0c', '\r']);
    if delimiter.is_empty() || delimiter.contains('<') {
        return None;
    }
    let unquoted = unquote_single_word(delimiter)?;
    let quotes = |s: &str| s.matches(['\'', '"']).count();
    let expand = quotes(&unquoted) == quotes(delimiter);
    Some((unquoted, chomp, expand))
}

/// The one shell word `text` makes with quotes and `\` escapes removed, if it is one word.
fn unquote_single_word(text: &str) -> Option<String> {
    let mut word = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => loop {
                match chars.next()? {
                    '\'' => break,
                    other => word.push(other),
                }
            },
            '"' => loop {
                match chars.next()? {
                    '"' => break,
                    '\\' => word.push(chars.next()?),
                    other => word.push(other),
                }
            },
            '\\' => {
                if let Some(next) = chars.next() {
                    word.push(next);
                }
            }
            c if c.is_whitespace() => return None,
            c => word.push(c),
        }
    }
    Some(word)
}

/// Shell words of `line` with quotes, escapes and unset variables kept as written, `<<` plus
/// following blanks glued to the next word (BuildKit's lexer with RawQuotes, RawEscapes and
/// SkipUnsetEnv). `None` if a quote or `${` is never closed.
fn raw_shell_words(line: &str) -> Option<Vec<String>> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' | '"' => {
                in_word = true;
                word.push(c);
                loop {
                    let next = chars.next()?;
                    if next == '\\' && c == '"' {
                        word.push(next);
                        if let Some(escaped) = chars.next() {
                            word.push(escaped);
                        }
                        continue;
                    }
                    word.push(next);
                    if next == c {
                        break;
                    }
                }
            }
            '$' if chars.peek() == Some(&'{') => {
                in_word = true;
                word.push(c);
                loop {
                    let next = chars.next()?;
                    word.push(next);
                    if next == '}' {
                        break;
                    }
                }
            }
            '<' if chars.peek() == Some(&'<') => {
                chars.next();
                in_word = true;
                word.push_str("<<");
                while let Some(&blank) = chars.peek() {
                    if blank != ' ' && blank != '\t' {
                        break;
                    }
                    word.push(blank);
                    chars.next();
                }
            }
            '\\' => {
                in_word = true;
                word.push(c);
                if let Some(next) = chars.next() {
                    word.push(next);
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Some(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(text: &str) -> Instruction {
        let parsed = parse(text);
        assert_eq!(parsed.instructions.len(), 1, "{parsed:?}");
        parsed.instructions.into_iter().next().unwrap()
    }

    #[test]
    fn continuations_joined_without_inserting_and_comments_dropped_inside() {
        let parsed = parse("FROM a\nRUN go \\\n# note\n  build \\\n\n  -o x\nUSER 1\n");
        let run = &parsed.instructions[1];
        assert_eq!((run.line, run.end_line), (2, 6));
        assert_eq!(run.rest, "go   build   -o x");
        assert_eq!(parsed.instructions[2].line, 7);
    }

    #[test]
    fn escape_directive_switches_to_backtick() {
        let parsed = parse("# escape=`\nFROM a\nRUN dir c:\\ `\n  /s\n");
        assert_eq!(parsed.instructions[1].rest, "dir c:\\   /s");
        let later = parse("FROM a\n# escape=`\nRUN x `\nUSER 1\n");
        assert_eq!(later.instructions.len(), 3, "a late directive is a comment");
        let twice = parse("# escape=`\n# escape=\\\nFROM a\n");
        assert_eq!(twice.errors.len(), 1);
        assert!(parse("# escape=x\nFROM a\n").errors[0]
            .message
            .contains("invalid escape"));
    }

    #[test]
    fn flags_are_leading_double_dash_words_only() {
        let copy = one("COPY --from=build --chmod=\"0755\" /a /b");
        assert_eq!(copy.flags, ["--from=build", "--chmod=0755"]);
        assert_eq!(copy.args, ["/a", "/b"]);
        assert_eq!(copy.flag("from"), Some("build"));
        let dash = one("COPY \u{2013}from=builder /app/myapp .");
        assert!(dash.flags.is_empty());
        assert_eq!(dash.args, ["\u{2013}from=builder", "/app/myapp", "."]);
        let ended = one("RUN -- --not-a-flag");
        assert_eq!(ended.rest, "--not-a-flag");
    }

    #[test]
    fn json_only_if_an_array_of_strings() {
        let exec = one("CMD [\"./app\", \"-v\"]");
        assert!(exec.json);
        assert_eq!(exec.args, ["./app", "-v"]);
        let curly = one("CMD [\u{201c}./myapp\u{201d}]");
        assert!(!curly.json);
        assert_eq!(curly.args, ["[\u{201c}./myapp\u{201d}]"]);
        let single = one("ENTRYPOINT ['/app']");
        assert!(!single.json);
        let numbers = one("CMD [1, 2]");
        assert!(numbers.problems().is_some());
    }

    #[test]
    fn heredocs_are_bodies_not_instructions() {
        let parsed =
            parse("FROM a\nRUN <<EOF\ngo build -o /x .\nFROM b\nEOF\nCOPY <<-A <<\"B\" /d/\n\tone\n\tA\ntwo\nB\nUSER 1\n");
        let kws: Vec<&str> = parsed
            .instructions
            .iter()
            .map(|i| i.keyword.as_str())
            .collect();
        assert_eq!(kws, ["FROM", "RUN", "COPY", "USER"]);
        let run = &parsed.instructions[1];
        assert_eq!(run.heredocs[0].content, "go build -o /x .\nFROM b\n");
        assert_eq!((run.heredocs[0].first_line, run.end_line), (3, 5));
        let copy = &parsed.instructions[2];
        assert_eq!(copy.heredocs.len(), 2);
        assert!(copy.heredocs[0].chomp && copy.heredocs[0].expand);
        assert!(!copy.heredocs[1].expand);
        assert_eq!(parsed.instructions[3].line, 11);
        let open = parse("FROM a\nRUN <<EOF\necho\n");
        assert!(open.errors[0].message.contains("unterminated heredoc"));
        let json = parse("FROM a\nRUN [\"<<EOF\"]\nUSER 1\n");
        assert_eq!(json.instructions.len(), 3, "exec form opens no heredoc");
    }

    #[test]
    fn argument_counts_and_flags_as_buildkit_checks_them() {
        let problem = |t: &str| one(t).problems();
        assert!(problem("COPY onlyone").is_some());
        assert!(problem("FROM a b").is_some());
        assert!(problem("FROM a AS 1x").is_some());
        assert_eq!(problem("FROM a AS Build"), None);
        assert!(problem("WORKDIR").is_some());
        assert!(problem("ENV A").is_some());
        assert!(problem("ENV A=1 B").is_some());
        assert_eq!(problem("ENV A 1 2"), None);
        assert!(problem("SHELL /bin/sh -c").is_some());
        assert_eq!(problem("FROMM a"), Some(Problem::UnknownInstruction));
        assert!(matches!(
            problem("COPY --form=a b c"),
            Some(Problem::Flag(_, Some("from")))
        ));
        assert!(matches!(
            problem("COPY --from a b"),
            Some(Problem::Flag(..))
        ));
        assert!(matches!(problem("USER --x 1"), Some(Problem::Flag(..))));
        assert_eq!(
            problem("RUN --mount=type=cache,target=/x --mount=type=secret,id=a go"),
            None
        );
        assert_eq!(problem("ARG --whatever A"), None, "ARG never parses flags");
        assert!(parse("").errors[0].message.contains("no instructions"));
    }

    proptest::proptest! {
        /// Whatever the input, instructions come in file order, each within the file, and
        /// heredoc bodies lie between an instruction and the next.
        #[test]
        fn lines_are_ordered_and_within_the_file(text in "(RUN <<-?EOF|COPY <<A <<B /d|EOF|\tEOF|A|B|FROM x|# escape=`|`|\\\\| |\n|[a-z\"'\\[\\]$-]){0,120}") {
            let parsed = parse(&text);
            let line_count = text.lines().count().max(1);
            let mut previous_end = 0;
            for ins in &parsed.instructions {
                proptest::prop_assert!(ins.line > previous_end, "{:?}", parsed);
                proptest::prop_assert!(ins.line <= ins.end_line && ins.end_line <= line_count);
                for doc in &ins.heredocs {
                    proptest::prop_assert!(doc.first_line > ins.line && doc.first_line <= ins.end_line + 1);
                }
                previous_end = ins.end_line;
            }
        }
    }
}
