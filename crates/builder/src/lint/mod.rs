//! A Dockerfile linter for multi-stage Go builds: the mistakes that make Go images big, slow to
//! patch or unsafe, and what would break or silently change the build, each with a rule id, the
//! line, and what to do instead.
//!
//! The Dockerfile is read the way BuildKit reads it ([`dockerfile`]: directives, continuations,
//! flags, JSON or shell form, heredocs), `FROM` lines are resolved with the `ARG` defaults
//! declared before the first `FROM` ([`expand`]), and base images are matched against a small
//! table of known images ([`images::KNOWN_BASES`]). The rules are [`RULES`].

pub mod dockerfile;
pub mod expand;
pub mod images;

use std::collections::BTreeMap;

use serde::Serialize;

use dockerfile::{Instruction, Problem};
use images::ImageRef;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// One thing the linter found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The rule id, `GL001`...
    pub rule: &'static str,
    pub severity: Severity,
    /// 1-based line of the instruction.
    pub line: usize,
    pub message: String,
    /// What to do instead.
    pub hint: String,
}

/// A lint rule: its id, severity, and a one-line summary (what `gantry lint --help` lists).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub id: &'static str,
    pub severity: Severity,
    pub summary: &'static str,
}

const fn rule(id: &'static str, severity: Severity, summary: &'static str) -> Rule {
    Rule {
        id,
        severity,
        summary,
    }
}

/// Every rule.
pub const RULES: [Rule; 14] = [
    rule("GL001", Severity::Error, "base image without a tag, or tagged latest (after ARG defaults)"),
    rule("GL002", Severity::Warning, "runtime stage not minimal"),
    rule("GL003", Severity::Error, "CGO not disabled (heredocs included) for a runtime without glibc: scratch, distroless/static, alpine"),
    rule("GL004", Severity::Error, "final stage runs as root (no USER, on a base not known to run as non-root as distroless :nonroot does)"),
    rule("GL005", Severity::Warning, "scratch runtime without CA certificates"),
    rule("GL006", Severity::Error, "Go toolchain or sources in the final stage"),
    rule("GL007", Severity::Warning, "ADD where COPY would do"),
    rule("GL008", Severity::Warning, "CMD or ENTRYPOINT in shell form (anything that is not a JSON array of strings)"),
    rule("GL009", Severity::Error, "unknown instruction: BuildKit stops the build"),
    rule("GL010", Severity::Error, "instruction BuildKit rejects: argument count, non-string JSON array, ENV without =, stage name, unterminated heredoc, parser directive, anything but ARG before FROM"),
    rule("GL011", Severity::Error, "look-alike Unicode punctuation (en dash for --, curly quotes in JSON, no-break space) BuildKit misreads"),
    rule("GL012", Severity::Error, "flag BuildKit rejects or misreads: unknown, no value, repeated; COPY --from with a variable, a bad index, its own stage, or no such stage"),
    rule("GL013", Severity::Warning, "FROM or --platform using an undeclared ARG, or empty or invalid once resolved with the ARG defaults"),
    rule("GL014", Severity::Error, "wrong-platform cross-build: go build on $BUILDPLATFORM without GOARCH, or $TARGETARCH without ARG"),
];

fn severity_of(id: &str) -> Severity {
    RULES
        .iter()
        .find(|r| r.id == id)
        .map(|r| r.severity)
        .expect("a known rule")
}

/// What a stage is built on, after ARG substitution.
#[derive(Debug, Clone)]
enum Base {
    Scratch,
    /// An earlier stage, by index.
    Stage(usize),
    Image(ImageRef),
    /// Empty or not an image reference: reported, then ignored.
    Unresolved,
}

#[derive(Debug)]
struct Stage<'a> {
    from: &'a Instruction,
    /// The base as written (`golang:${GO_VERSION}`) and resolved (`golang:1.22`).
    written: String,
    resolved: String,
    /// Lower-cased `AS` name.
    name: Option<String>,
    base: Base,
    instructions: Vec<&'a Instruction>,
}

/// The platform ARGs BuildKit predefines, with the values used to resolve `FROM` lines.
const PLATFORM_ARGS: [(&str, &str); 10] = [
    ("BUILDPLATFORM", "linux/amd64"),
    ("BUILDOS", "linux"),
    ("BUILDARCH", "amd64"),
    ("BUILDVARIANT", ""),
    ("TARGETPLATFORM", "linux/amd64"),
    ("TARGETOS", "linux"),
    ("TARGETARCH", "amd64"),
    ("TARGETVARIANT", ""),
    ("BUILDOSVERSION", ""),
    ("TARGETOSVERSION", ""),
];

struct Linter<'a> {
    stages: Vec<Stage<'a>>,
    findings: Vec<Finding>,
}

impl Linter<'_> {
    fn report(
        &mut self,
        rule: &'static str,
        line: usize,
        message: String,
        hint: impl Into<String>,
    ) {
        self.findings.push(Finding {
            rule,
            severity: severity_of(rule),
            line,
            message,
            hint: hint.into(),
        });
    }

    /// Stage `index` and the stages it is built on, nearest first.
    fn chain(&self, index: usize) -> Vec<usize> {
        let mut chain = vec![index];
        while let Base::Stage(parent) = self.stages[*chain.last().expect("non-empty")].base {
            chain.push(parent);
        }
        chain
    }

    /// The base at the root of stage `index`'s chain.
    fn root(&self, index: usize) -> &Base {
        let root = *self.chain(index).last().expect("non-empty");
        &self.stages[root].base
    }

    /// The instructions of stage `index` and of the stages it is built on.
    fn chain_instructions(&self, index: usize) -> impl Iterator<Item = &Instruction> + '_ {
        self.chain(index)
            .into_iter()
            .flat_map(move |i| self.stages[i].instructions.iter().copied())
    }
}

/// Lints a Dockerfile's text.
pub fn lint(text: &str) -> Vec<Finding> {
    let parsed = dockerfile::parse(text);
    let mut linter = Linter {
        stages: Vec::new(),
        findings: Vec::new(),
    };
    for error in &parsed.errors {
        linter.report(
            "GL010",
            error.line,
            format!("BuildKit cannot parse this: {}", error.message),
            "fix the syntax; `gantry init dockerfile` prints a Dockerfile that parses",
        );
    }
    for ins in &parsed.instructions {
        check_instruction(&mut linter, ins);
        look_alike_punctuation(&mut linter, ins);
    }
    build_stages(&mut linter, &parsed);
    check_copy_from(&mut linter);
    check_bases(&mut linter);
    check_runtime(&mut linter);
    check_cross_builds(&mut linter);
    for stage in 0..linter.stages.len() {
        let instructions = linter.stages[stage].instructions.clone();
        for ins in instructions {
            check_add(&mut linter, ins);
            if (ins.keyword == "CMD" || ins.keyword == "ENTRYPOINT")
                && !ins.json
                && !ins.args.is_empty()
            {
                linter.report(
                    "GL008",
                    ins.line,
                    format!("{} {} is in shell form: it needs /bin/sh and the process does not get signals", ins.keyword, ins.rest),
                    "use the JSON form, e.g. ENTRYPOINT [\"/app\"]",
                );
            }
        }
    }
    let mut findings = linter.findings;
    findings.sort_by(|a, b| (a.line, a.rule).cmp(&(b.line, b.rule)));
    findings.dedup();
    findings
}

/// How each instruction is written, for hints on malformed ones.
const USAGE: [(&str, &str); 8] = [
    ("FROM", "FROM [--platform=PLATFORM] IMAGE[:TAG] [AS name]"),
    ("COPY", "COPY [--from=stage] SOURCE... DEST"),
    ("ADD", "ADD SOURCE... DEST"),
    ("ENV", "ENV NAME=value [NAME2=value2...]"),
    ("LABEL", "LABEL key=value [key2=value2...]"),
    ("ARG", "ARG NAME[=default]"),
    ("SHELL", "SHELL [\"/bin/sh\", \"-c\"]"),
    (
        "HEALTHCHECK",
        "HEALTHCHECK [--interval=30s] CMD [\"/app\", \"health\"] (or HEALTHCHECK NONE)",
    ),
];

/// BuildKit's per-instruction checks: GL009, GL010, GL012.
fn check_instruction(linter: &mut Linter, ins: &Instruction) {
    let Some(problem) = ins.problems() else {
        return;
    };
    let keyword = match (&ins.trigger, ins.keyword.as_str()) {
        (Some(trigger), "ONBUILD") => trigger.keyword.as_str(),
        _ => ins.keyword.as_str(),
    };
    match problem {
        Problem::UnknownInstruction => {
            if glued_keyword(keyword).is_some() {
                return; // GL011 says what is wrong
            }
            let hint = match dockerfile::closest(keyword, dockerfile::INSTRUCTIONS.into_iter()) {
                Some(known) => format!("did you mean {known}?"),
                None => format!(
                    "the instructions are {}",
                    dockerfile::INSTRUCTIONS.join(", ")
                ),
            };
            linter.report(
                "GL009",
                ins.line,
                format!("{keyword} is not a Dockerfile instruction: BuildKit stops with \"unknown instruction: {keyword}\""),
                hint,
            );
        }
        Problem::Malformed(message) => {
            let hint = USAGE
                .iter()
                .find(|(k, _)| *k == keyword)
                .map(|(_, usage)| format!("write it as {usage}"))
                .unwrap_or_else(|| format!("see {keyword} in the Dockerfile reference"));
            linter.report(
                "GL010",
                ins.line,
                format!("BuildKit rejects this {keyword}: {message}"),
                hint,
            );
        }
        Problem::Flag(message, suggestion) => {
            let known: Vec<String> = dockerfile::known_flags(keyword)
                .map(|f| format!("--{f}"))
                .collect();
            let hint = match suggestion {
                Some(flag) => format!("did you mean --{flag}?"),
                None if known.is_empty() => format!("{keyword} takes no flags: remove it"),
                None => format!("{keyword} takes {}", known.join(", ")),
            };
            linter.report(
                "GL012",
                ins.line,
                format!("BuildKit rejects this {keyword}: {message}"),
                hint,
            );
        }
    }
}

/// Dashes that are not `-`.
fn is_dash_like(c: char) -> bool {
    matches!(
        c,
        '\u{2010}'..='\u{2015}' | '\u{2212}' | '\u{fe58}' | '\u{fe63}' | '\u{ff0d}'
    )
}

/// Spaces that are not ASCII whitespace, so BuildKit does not split on them.
fn is_space_like(c: char) -> bool {
    matches!(
        c,
        '\u{a0}' | '\u{2000}'..='\u{200b}' | '\u{202f}' | '\u{205f}' | '\u{3000}' | '\u{feff}'
    )
}

/// The ASCII character a look-alike stands for inside a JSON array (`'` included: JSON strings
/// take double quotes only).
fn json_ascii(c: char) -> Option<char> {
    match c {
        '\u{201c}' | '\u{201d}' | '\u{201e}' | '\u{201f}' | '\u{2033}' | '\u{ff02}' | '\u{ab}'
        | '\u{bb}' | '\u{2018}' | '\u{2019}' | '\u{201b}' | '\u{2032}' | '\u{ff07}' | '\'' => {
            Some('"')
        }
        '\u{ff3b}' => Some('['),
        '\u{ff3d}' => Some(']'),
        '\u{ff0c}' | '\u{201a}' => Some(','),
        c if is_space_like(c) => Some(' '),
        _ => None,
    }
}

/// `U+2013 EN DASH`: how a message names a character.
fn char_name(c: char) -> String {
    let name = match c {
        '\u{2010}' => "HYPHEN",
        '\u{2011}' => "NON-BREAKING HYPHEN",
        '\u{2012}' => "FIGURE DASH",
        '\u{2013}' => "EN DASH",
        '\u{2014}' => "EM DASH",
        '\u{2015}' => "HORIZONTAL BAR",
        '\u{2212}' => "MINUS SIGN",
        '\u{201c}' => "LEFT DOUBLE QUOTATION MARK",
        '\u{201d}' => "RIGHT DOUBLE QUOTATION MARK",
        '\u{201e}' => "DOUBLE LOW-9 QUOTATION MARK",
        '\u{2018}' => "LEFT SINGLE QUOTATION MARK",
        '\u{2019}' => "RIGHT SINGLE QUOTATION MARK",
        '\u{ab}' | '\u{bb}' => "GUILLEMET",
        '\'' => "APOSTROPHE (JSON strings take \")",
        '\u{a0}' => "NO-BREAK SPACE",
        '\u{ff3b}' | '\u{ff3d}' => "FULLWIDTH SQUARE BRACKET",
        '\u{ff0c}' => "FULLWIDTH COMMA",
        _ => "",
    };
    if name.is_empty() {
        format!("U+{:04X}", c as u32)
    } else {
        format!("U+{:04X} {name}", c as u32)
    }
}

/// A keyword glued to what follows by a look-alike space (`COPY\u{a0}--from=...`): the
/// instruction it starts with and the space.
fn glued_keyword(keyword: &str) -> Option<(&'static str, char)> {
    let (at, space) = keyword.char_indices().find(|(_, c)| is_space_like(*c))?;
    let head = keyword[..at].to_ascii_uppercase();
    dockerfile::INSTRUCTIONS
        .into_iter()
        .find(|k| *k == head)
        .map(|k| (k, space))
}

/// A word meant as a flag but starting with a look-alike dash (`–from=builder`): the
/// offending character and the word as BuildKit needs it (`--from=builder`).
fn dash_flag_fix(word: &str) -> Option<(char, String)> {
    let lead_len: usize = word
        .chars()
        .take_while(|c| *c == '-' || is_dash_like(*c))
        .map(char::len_utf8)
        .sum();
    let lead = &word[..lead_len];
    let offending = lead.chars().find(|c| is_dash_like(*c))?;
    let tail = &word[lead_len..];
    tail.chars()
        .next()
        .filter(char::is_ascii_alphabetic)
        .map(|_| (offending, format!("--{tail}")))
}

/// GL011: look-alike punctuation where BuildKit needs ASCII.
fn look_alike_punctuation(linter: &mut Linter, ins: &Instruction) {
    if let Some((keyword, space)) = glued_keyword(&ins.keyword) {
        linter.report(
            "GL011",
            ins.line,
            format!(
                "{keyword} is followed by {} instead of a space: BuildKit reads the whole `{}` as one unknown instruction",
                char_name(space),
                ins.keyword
            ),
            format!("replace the {} after {keyword} with an ordinary space", char_name(space)),
        );
        return;
    }
    let read_as = match ins.keyword.as_str() {
        "COPY" | "ADD" => {
            "a source path, so the build fails to find it (or copies the wrong thing)"
        }
        "FROM" => "the image name",
        "RUN" | "CMD" | "ENTRYPOINT" => "part of the command",
        _ => "an argument",
    };
    for word in ins.rest.split_whitespace() {
        let Some((dash, fixed)) = dash_flag_fix(word) else {
            break;
        };
        linter.report(
            "GL011",
            ins.line,
            format!(
                "`{word}` starts with {} where a flag needs `--`: BuildKit does not read it as a flag but as {read_as}",
                char_name(dash)
            ),
            format!("write {fixed}"),
        );
    }
    let json_capable = matches!(
        ins.keyword.as_str(),
        "RUN" | "CMD" | "ENTRYPOINT" | "SHELL" | "ADD" | "COPY" | "VOLUME" | "HEALTHCHECK"
    );
    if !json_capable || ins.json {
        return;
    }
    let candidate = if ins.keyword == "HEALTHCHECK" {
        ins.rest
            .split_once(char::is_whitespace)
            .map_or("", |(_, rest)| rest)
            .trim()
    } else {
        ins.rest.trim()
    };
    if !candidate.starts_with(['[', '\u{ff3b}']) {
        return;
    }
    let mut offending: Vec<char> = Vec::new();
    let fixed: String = candidate
        .chars()
        .map(|c| match json_ascii(c) {
            Some(ascii) => {
                if !offending.contains(&c) {
                    offending.push(c);
                }
                ascii
            }
            None => c,
        })
        .collect();
    if offending.is_empty() || dockerfile::parse_json_array(&fixed).is_err() {
        return;
    }
    let names: Vec<String> = offending.into_iter().map(char_name).collect();
    let prefix = if ins.keyword == "HEALTHCHECK" {
        ins.rest
            .split_whitespace()
            .next()
            .map(|k| format!("{k} "))
            .unwrap_or_default()
    } else {
        String::new()
    };
    linter.report(
        "GL011",
        ins.line,
        format!(
            "{} {candidate} is not a JSON array ({}), so BuildKit reads it in shell form: the command runs through /bin/sh with those characters in it",
            ins.keyword,
            names.join(", ")
        ),
        format!("write {} {prefix}{fixed}", ins.keyword),
    );
}

/// Expands a `FROM` word with the global ARGs; GL013 for an error or an undeclared ARG.
fn resolve_from_word(
    linter: &mut Linter,
    ins: &Instruction,
    word: &str,
    global_args: &BTreeMap<String, String>,
    declared: &[String],
    escape: char,
) -> Option<String> {
    match expand::expand(word, global_args, escape) {
        Err(error) => {
            linter.report(
                "GL013",
                ins.line,
                format!("FROM cannot expand {word}: {error}"),
                "write ${NAME} or ${NAME:-default} with NAME declared by an ARG before the first FROM",
            );
            None
        }
        Ok(expansion) => {
            for name in expansion.unset.iter().filter(|n| !declared.contains(n)) {
                linter.report(
                    "GL013",
                    ins.line,
                    format!("FROM uses ${name}, but no ARG before the first FROM declares {name}: it expands to an empty string"),
                    format!("declare ARG {name}=<default> before the first FROM"),
                );
            }
            Some(expansion.value)
        }
    }
}

/// Splits the instructions into stages, resolving each `FROM` with the ARG defaults declared
/// before the first one (and BuildKit's platform ARGs).
fn build_stages<'a>(linter: &mut Linter<'a>, parsed: &'a dockerfile::Dockerfile) {
    let mut global_args: BTreeMap<String, String> = PLATFORM_ARGS
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let mut declared: Vec<String> = PLATFORM_ARGS.iter().map(|(k, _)| k.to_string()).collect();
    for ins in &parsed.instructions {
        if ins.keyword == "FROM" {
            let written = ins.args.first().cloned().unwrap_or_default();
            let name = (ins.args.len() == 3 && ins.args[1].eq_ignore_ascii_case("as"))
                .then(|| ins.args[2].to_ascii_lowercase());
            let reported_before = linter.findings.len();
            let resolved = resolve_from_word(
                linter,
                ins,
                &written,
                &global_args,
                &declared,
                parsed.escape,
            );
            let undeclared_reported = linter.findings.len() > reported_before;
            if let Some(platform) = ins.flag("platform") {
                let value = resolve_from_word(
                    linter,
                    ins,
                    platform,
                    &global_args,
                    &declared,
                    parsed.escape,
                );
                if value.as_deref() == Some("") {
                    linter.report(
                        "GL013",
                        ins.line,
                        format!("--platform={platform} expands to an empty platform with the ARG defaults: BuildKit stops"),
                        "use --platform=$BUILDPLATFORM, or give the ARG a default before the first FROM",
                    );
                }
            }
            let resolved = resolved.unwrap_or_default();
            let base = resolve_base(linter, ins, &written, &resolved, undeclared_reported);
            linter.stages.push(Stage {
                from: ins,
                name,
                written,
                resolved,
                base,
                instructions: Vec::new(),
            });
            continue;
        }
        if let Some(stage) = linter.stages.last_mut() {
            stage.instructions.push(ins);
            continue;
        }
        if ins.keyword == "ARG" {
            for word in &ins.args {
                let (key, value) = match word.split_once('=') {
                    Some((key, value)) => (key, Some(value)),
                    None => (word.as_str(), None),
                };
                declared.push(key.to_string());
                if let Some(value) = value {
                    if let Ok(expanded) = expand::expand(value, &global_args, parsed.escape) {
                        global_args.insert(key.to_string(), expanded.value);
                    }
                }
            }
        } else if ins.problems() != Some(Problem::UnknownInstruction) {
            linter.report(
                "GL010",
                ins.line,
                format!("{} before the first FROM: BuildKit stops with \"no build stage in current context\"", ins.keyword),
                "only ARG may come before the first FROM",
            );
        }
    }
}

/// What a `FROM` builds on once resolved: scratch, an earlier stage, or an image.
/// `undeclared_reported`: GL013 already says an ARG in this FROM is undeclared, so an empty
/// or invalid result is not reported again.
fn resolve_base(
    linter: &mut Linter,
    ins: &Instruction,
    written: &str,
    resolved: &str,
    undeclared_reported: bool,
) -> Base {
    if written.is_empty() {
        return Base::Unresolved; // GL010 already
    }
    if resolved.is_empty() {
        if undeclared_reported {
            return Base::Unresolved;
        }
        linter.report(
            "GL013",
            ins.line,
            format!("FROM {written} resolves to an empty base name with the ARG defaults: BuildKit stops unless every build passes --build-arg"),
            "give the ARG a default before the first FROM (ARG NAME=value)",
        );
        return Base::Unresolved;
    }
    if resolved == images::SCRATCH {
        return Base::Scratch;
    }
    if let Some(index) = linter
        .stages
        .iter()
        .position(|s| s.name.as_deref() == Some(resolved))
    {
        return Base::Stage(index);
    }
    match images::parse_reference(resolved) {
        Some(reference) => Base::Image(reference),
        None if undeclared_reported => Base::Unresolved,
        None if written.contains('$') => {
            linter.report(
                "GL013",
                ins.line,
                format!("FROM {written} resolves to {resolved} with the ARG defaults, which is not a valid image reference"),
                "give the ARG a default that makes a valid reference (ARG GO_VERSION=1.22)",
            );
            Base::Unresolved
        }
        None => {
            linter.report(
                "GL010",
                ins.line,
                format!("FROM {written}: not a valid image reference (lower-case name, optional :tag or @digest)"),
                "write FROM IMAGE[:TAG] [AS name], e.g. FROM golang:1.22-alpine AS build",
            );
            Base::Unresolved
        }
    }
}

/// GL012 for `COPY --from`: BuildKit does not expand variables there, a number is a stage index,
/// and a name that is no stage is pulled as an image.
fn check_copy_from(linter: &mut Linter) {
    let count = linter.stages.len();
    let names: Vec<Option<String>> = linter.stages.iter().map(|s| s.name.clone()).collect();
    let mut reports = Vec::new();
    for (index, stage) in linter.stages.iter().enumerate() {
        for ins in stage.instructions.iter().filter(|i| i.keyword == "COPY") {
            let Some(from) = ins.flag("from") else {
                continue;
            };
            let own_stage = || {
                (
                    ins.line,
                    format!("COPY --from={from} copies from its own stage: BuildKit stops with a circular dependency"),
                    "copy from an earlier stage".to_string(),
                )
            };
            if from.contains('$') {
                reports.push((
                    ins.line,
                    format!("COPY --from={from}: BuildKit does not expand variables in --from and stops"),
                    "declare the image with a global ARG in a stage (FROM ${IMAGE} AS src) and COPY --from=src".to_string(),
                ));
            } else if !from.is_empty() && from.bytes().all(|b| b.is_ascii_digit()) {
                match from.parse::<usize>() {
                    Ok(i) if i == index => reports.push(own_stage()),
                    Ok(i) if i < count => {}
                    _ => reports.push((
                        ins.line,
                        format!("COPY --from={from}: there is no stage {from}, the stages are numbered 0 to {}", count.saturating_sub(1)),
                        "count the FROM lines from 0, or better, name the stage (FROM ... AS build) and COPY --from=build".to_string(),
                    )),
                }
            } else {
                let lower = from.to_ascii_lowercase();
                match names
                    .iter()
                    .position(|n| n.as_deref() == Some(lower.as_str()))
                {
                    Some(i) if i == index => reports.push(own_stage()),
                    Some(_) => {}
                    None if !from.contains([':', '/', '@']) => {
                        let stage_names = names.iter().flatten().map(String::as_str);
                        let hint = match dockerfile::closest(&lower, stage_names) {
                            Some(name) => format!("did you mean --from={name}?"),
                            None => format!("name a stage FROM ... AS {lower}, or give an image with its tag (--from=image:tag); a named build context (--build-context {lower}=...) is the one exception"),
                        };
                        reports.push((
                            ins.line,
                            format!("COPY --from={from}: no stage is named {from}, so BuildKit pulls the image docker.io/library/{lower} instead"),
                            hint,
                        ));
                    }
                    None => {}
                }
            }
        }
    }
    for (line, message, hint) in reports {
        linter.report("GL012", line, message, hint);
    }
}

/// GL001: bases without a tag or on `latest`, after ARG substitution.
fn check_bases(linter: &mut Linter) {
    let mut reports = Vec::new();
    for stage in &linter.stages {
        let Base::Image(reference) = &stage.base else {
            continue;
        };
        if reference.digest.is_some() {
            continue;
        }
        let shown = if stage.written == stage.resolved {
            stage.written.clone()
        } else {
            format!("{} (resolved from {})", stage.resolved, stage.written)
        };
        let message = match reference.tag.as_deref() {
            None => {
                format!("base image {shown} has no tag, so every build may get a different image")
            }
            Some("latest") => format!("base image {shown} is tagged latest, which moves"),
            Some(_) => continue,
        };
        reports.push((stage.from.line, message));
    }
    for (line, message) in reports {
        linter.report(
            "GL001",
            line,
            message,
            "pin a version tag (golang:1.22-alpine, alpine:3.20) or a digest",
        );
    }
}

fn compact(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn sets_cgo_off(text: &str) -> bool {
    let compact = compact(text);
    [
        "CGO_ENABLED=0",
        "CGO_ENABLED=\"0\"",
        "CGO_ENABLED='0'",
        "CGO_ENABLED 0",
    ]
    .iter()
    .any(|s| compact.contains(s))
}

fn runs_go_build(text: &str) -> bool {
    compact(text).contains("go build")
}

/// The sources of a `COPY`/`ADD` (every argument but the destination).
fn sources(ins: &Instruction) -> &[String] {
    &ins.args[..ins.args.len().saturating_sub(1)]
}

/// Rules on the final stage and what it is built on: GL002 to GL006.
fn check_runtime(linter: &mut Linter) {
    let Some(last) = linter.stages.len().checked_sub(1) else {
        return;
    };
    let chain = linter.chain(last);
    let root_stage = &linter.stages[*chain.last().expect("non-empty")];
    let root_name = root_stage.resolved.clone();
    let root = linter.root(last).clone();
    let final_line = linter.stages[last].from.line;
    let known = match &root {
        Base::Image(reference) => reference.known(),
        _ => None,
    };
    if matches!(root, Base::Image(_)) && !known.is_some_and(|k| k.minimal) {
        linter.report(
            "GL002",
            final_line,
            format!("the runtime stage is based on {root_name}, which ships a shell, a package manager and more to patch"),
            "run on scratch (with CA certificates copied in), distroless/static or alpine",
        );
    }
    if known.is_some_and(|k| k.go_toolchain) {
        linter.report(
            "GL006",
            final_line,
            format!("the final stage is the Go toolchain image {root_name}"),
            "build in a first stage, then COPY --from=build only the binary into a minimal stage",
        );
    }
    let static_only = match &root {
        Base::Scratch => true,
        Base::Image(_) => known.is_some_and(|k| k.needs_static_binary),
        _ => false,
    };
    if static_only {
        let mut reports = Vec::new();
        for stage in 0..last {
            let cgo_off = linter
                .chain_instructions(stage)
                .any(|i| (i.keyword == "ENV" || i.keyword == "ARG") && sets_cgo_off(&i.rest));
            for ins in linter.stages[stage]
                .instructions
                .iter()
                .filter(|i| i.keyword == "RUN")
            {
                let script = ins.script();
                if runs_go_build(&script) && !cgo_off && !sets_cgo_off(&script) {
                    reports.push(ins.line);
                }
            }
        }
        for line in reports {
            linter.report(
                "GL003",
                line,
                format!("go build runs without CGO_ENABLED=0 but the runtime {root_name} has no glibc: the binary may not start"),
                "set ENV CGO_ENABLED=0 in the build stage (or prefix the command with CGO_ENABLED=0)",
            );
        }
    }
    let user = chain.iter().find_map(|&s| {
        linter.stages[s]
            .instructions
            .iter()
            .rev()
            .find(|i| i.keyword == "USER")
            .copied()
    });
    let base_user = match &root {
        Base::Image(reference) => reference.default_non_root_user(),
        _ => None,
    };
    let root_known = !matches!(root, Base::Unresolved); // else GL013 or GL010 said why
    match user {
        None if base_user.is_none() && root_known => linter.report(
            "GL004",
            final_line,
            format!("the final stage sets no USER and its base {root_name} runs as root, so the service runs as root"),
            "add USER 65532:65532 (a numeric non-root user works on scratch), or use a base that runs as non-root (distroless :nonroot, chainguard/static)",
        ),
        Some(u) if matches!(u.rest.split(':').next().map(str::trim), Some("root" | "0")) => {
            linter.report(
                "GL004",
                u.line,
                format!("USER {} runs the service as root", u.rest),
                "use USER 65532:65532",
            )
        }
        _ => {}
    }
    if matches!(root, Base::Scratch) {
        let has_certs = linter.chain_instructions(last).any(|i| {
            (i.keyword == "COPY" || i.keyword == "ADD")
                && (i.rest.contains("ca-certificates") || i.rest.contains("/etc/ssl/certs"))
        });
        if !has_certs {
            linter.report(
                "GL005",
                final_line,
                "the scratch runtime has no CA certificates: any outgoing TLS call will fail to verify".into(),
                "COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/",
            );
        }
    }
    let mut copies = Vec::new();
    for ins in &linter.stages[last].instructions {
        if ins.keyword != "COPY" && ins.keyword != "ADD" {
            continue;
        }
        let from_stage = ins.flag("from").is_some();
        let sources = sources(ins);
        let copies_sources = !from_stage
            && sources
                .iter()
                .any(|s| s == "." || s == "./" || s.ends_with(".go"));
        let copies_toolchain = sources.iter().any(|s| {
            s.starts_with("/usr/local/go")
                || s.starts_with("/go/pkg")
                || s.starts_with("/root/go")
                || s.ends_with(".go")
        });
        if copies_sources || copies_toolchain {
            copies.push((
                ins.line,
                format!(
                    "{} {} puts Go sources or the toolchain into the final image",
                    ins.keyword, ins.rest
                ),
            ));
        }
    }
    for (line, message) in copies {
        linter.report(
            "GL006",
            line,
            message,
            "copy only the built binary (and CA certificates) into the final stage",
        );
    }
}

/// GL007: ADD of local files.
fn check_add(linter: &mut Linter, ins: &Instruction) {
    if ins.keyword != "ADD" || ins.args.len() < 2 {
        return;
    }
    let remote_or_archive = sources(ins).iter().any(|s| {
        s.starts_with("http://")
            || s.starts_with("https://")
            || s.starts_with("git@")
            || [".tar", ".tar.gz", ".tgz", ".tar.xz", ".tar.bz2", ".tar.zst"]
                .iter()
                .any(|ext| s.ends_with(ext))
    });
    if !remote_or_archive {
        linter.report(
            "GL007",
            ins.line,
            format!("ADD {} copies local files; ADD also unpacks archives and fetches URLs, which surprises", ins.rest),
            "use COPY for files and directories",
        );
    }
}

/// The names of BuildKit's platform ARGs that `text` references as `$NAME` or `${NAME...}`.
fn platform_arg_refs(text: &str) -> Vec<&'static str> {
    let mut found = Vec::new();
    for (at, _) in text.match_indices('$') {
        let after = text[at + 1..].strip_prefix('{').unwrap_or(&text[at + 1..]);
        let name: String = after
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if let Some((known, _)) = PLATFORM_ARGS.iter().find(|(k, _)| *k == name) {
            if !found.contains(known) {
                found.push(*known);
            }
        }
    }
    found
}

/// GL014: cross-builds that build for the wrong platform.
fn check_cross_builds(linter: &mut Linter) {
    let mut reports = Vec::new();
    for index in 0..linter.stages.len() {
        let chain = linter.chain(index);
        let on_build_platform = chain.iter().any(|&s| {
            linter.stages[s]
                .from
                .flag("platform")
                .is_some_and(|p| p.contains("BUILDPLATFORM"))
        });
        let goarch_in_env = linter
            .chain_instructions(index)
            .any(|i| (i.keyword == "ENV" || i.keyword == "ARG") && i.rest.contains("GOARCH"));
        let mut declared: Vec<String> = Vec::new();
        let mut reported: Vec<&str> = Vec::new();
        for ins in &linter.stages[index].instructions {
            if ins.keyword == "ARG" {
                declared.extend(
                    ins.args
                        .iter()
                        .map(|a| a.split('=').next().unwrap_or_default().to_string()),
                );
                continue;
            }
            let text = if ins.keyword == "RUN" {
                ins.script()
            } else {
                ins.rest.clone()
            };
            for name in platform_arg_refs(&text) {
                if !declared.iter().any(|d| d == name) && !reported.contains(&name) {
                    reported.push(name);
                    reports.push((
                        ins.line,
                        format!("${name} is used in this stage without ARG {name}: BuildKit defines it only for FROM lines, so here it is empty"),
                        format!("add ARG {name} to the stage before this line"),
                    ));
                }
            }
            if on_build_platform
                && ins.keyword == "RUN"
                && runs_go_build(&text)
                && !goarch_in_env
                && !text.contains("GOARCH")
                && !text.contains("xx-go")
            {
                reports.push((
                    ins.line,
                    "go build runs on $BUILDPLATFORM without GOARCH: it builds for the build machine, not the target platform".to_string(),
                    "ARG TARGETOS TARGETARCH in the stage, then RUN GOOS=$TARGETOS GOARCH=$TARGETARCH go build ...".to_string(),
                ));
            }
        }
    }
    for (line, message, hint) in reports {
        linter.report("GL014", line, message, hint);
    }
}

pub fn recommended_dockerfile(package: &str, go_version: &str) -> String {
    format!(
        r#"# syntax=docker/dockerfile:1
# Generated by `gantry init dockerfile`: a static Go binary on scratch with CA certificates,
# running as a non-root user (what `gantry build` makes without a Dockerfile).
FROM golang:{go_version}-alpine AS build
WORKDIR /src
COPY go.mod go.sum* ./
RUN go mod download
COPY . .
ENV CGO_ENABLED=0
RUN go build -trimpath -ldflags="-s -w" -o /out/app {package}

FROM scratch
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/app /app
USER 65532:65532
ENTRYPOINT ["/app"]
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(text: &str) -> Vec<&'static str> {
        lint(text).into_iter().map(|f| f.rule).collect()
    }

    const GOOD: &str = "FROM golang:1.22-alpine AS build\nWORKDIR /src\nCOPY . .\n\
        ENV CGO_ENABLED=0\nRUN go build -o /out/app .\n\nFROM scratch\n\
        COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/\n\
        COPY --from=build /out/app /app\nUSER 65532:65532\nENTRYPOINT [\"/app\"]\n";

    #[test]
    fn a_good_multi_stage_build_passes_and_so_does_the_recommended_one() {
        assert_eq!(rules(GOOD), Vec::<&str>::new());
        assert_eq!(lint(&recommended_dockerfile("./cmd/api", "1.22")), []);
    }

    #[test]
    fn gl001_untagged_and_latest_bases() {
        assert_eq!(
            rules(&GOOD.replace("golang:1.22-alpine", "golang")),
            ["GL001"]
        );
        let latest = lint(&GOOD.replace("golang:1.22-alpine", "golang:latest"));
        assert_eq!((latest[0].rule, latest[0].line), ("GL001", 1));
        // Digests, registry ports, stage references and ARG-built names are fine.
        let digest = format!("golang@sha256:{}", "ab".repeat(32));
        assert!(rules(&GOOD.replace("golang:1.22-alpine", &digest)).is_empty());
        assert!(
            rules(&GOOD.replace("golang:1.22-alpine", "localhost:5000/golang:1.22")).is_empty()
        );
        // ARG-built names are resolved with the defaults declared before the first FROM.
        let from_arg = format!(
            "ARG GO=1.22\n{}",
            GOOD.replace("golang:1.22-alpine", "golang:${GO}")
        );
        assert!(rules(&from_arg).is_empty(), "{:?}", lint(&from_arg));
        let latest_arg = from_arg.replace("GO=1.22", "GO=latest");
        let found = lint(&latest_arg);
        assert_eq!(rules(&latest_arg), ["GL001"]);
        assert!(found[0]
            .message
            .contains("golang:latest (resolved from golang:${GO})"));
        let reuse = GOOD.replace("FROM scratch", "FROM build AS dup\nFROM scratch");
        assert!(rules(&reuse).is_empty(), "{:?}", lint(&reuse));
    }

    #[test]
    fn gl002_and_gl006_fat_runtimes_and_toolchains() {
        assert_eq!(
            rules(&GOOD.replace("FROM scratch", "FROM ubuntu:22.04")),
            ["GL002"]
        );
        let toolchain = rules(&GOOD.replace("FROM scratch", "FROM golang:1.22"));
        assert_eq!(toolchain, ["GL002", "GL006"]);
        for minimal in [
            "gcr.io/distroless/static:nonroot",
            "alpine:3.20",
            "cgr.dev/chainguard/static:latest-glibc",
        ] {
            let text = GOOD.replace("FROM scratch", &format!("FROM {minimal}"));
            assert!(!rules(&text).contains(&"GL002"), "{minimal}");
        }
        let sources = rules(&GOOD.replace("COPY --from=build /out/app /app", "COPY . /src"));
        assert_eq!(sources, ["GL006"]);
        let go_root = rules(&GOOD.replace("/out/app /app", "/usr/local/go /usr/local/go"));
        assert_eq!(go_root, ["GL006"]);
    }

    #[test]
    fn gl003_cgo_for_static_runtimes_only() {
        let cgo_on = GOOD.replace("ENV CGO_ENABLED=0\n", "");
        let found = lint(&cgo_on);
        assert_eq!(
            found.iter().map(|f| (f.rule, f.line)).collect::<Vec<_>>(),
            [("GL003", 4)]
        );
        let inline = cgo_on.replace("RUN go build", "RUN CGO_ENABLED=0 go build");
        assert!(rules(&inline).is_empty());
        // A runtime with glibc runs cgo binaries: not this rule's business.
        let debian = cgo_on.replace("FROM scratch", "FROM gcr.io/distroless/base:nonroot");
        assert!(!rules(&debian).contains(&"GL003"));
    }

    #[test]
    fn gl004_root_and_gl005_certificates() {
        assert_eq!(rules(&GOOD.replace("USER 65532:65532\n", "")), ["GL004"]);
        assert_eq!(
            rules(&GOOD.replace("USER 65532:65532", "USER root")),
            ["GL004"]
        );
        assert_eq!(
            rules(&GOOD.replace("USER 65532:65532", "USER 0:0")),
            ["GL004"]
        );
        let no_certs = GOOD.replace(
            "COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/\n",
            "",
        );
        assert_eq!(rules(&no_certs), ["GL005"]);
        let alpine = no_certs.replace("FROM scratch", "FROM alpine:3.20");
        assert!(
            !rules(&alpine).contains(&"GL005"),
            "alpine has its own bundle"
        );
    }

    #[test]
    fn gl007_add_and_gl008_shell_form() {
        assert_eq!(rules(&GOOD.replace("COPY . .", "ADD . .")), ["GL007"]);
        assert!(rules(&GOOD.replace("COPY . .", "ADD https://example.com/x.tgz /x")).is_empty());
        assert!(rules(&GOOD.replace("COPY . .", "ADD vendor.tar.gz /src")).is_empty());
        assert_eq!(
            rules(&GOOD.replace("ENTRYPOINT [\"/app\"]", "ENTRYPOINT /app")),
            ["GL008"]
        );
        assert_eq!(
            rules(&(GOOD.to_string() + "CMD serve --port 80\n")),
            ["GL008"]
        );
    }

    #[test]
    fn continuations_comments_and_lines() {
        let text = "# comment\nFROM golang:1.22 AS build\nRUN go build \\\n  # inside\n  -o /app .\n\nFROM scratch\nCOPY --from=build /app /app\nENTRYPOINT /app\n";
        let found = lint(text);
        let at: Vec<(&str, usize)> = found.iter().map(|f| (f.rule, f.line)).collect();
        assert_eq!(at, [("GL003", 3), ("GL004", 7), ("GL005", 7), ("GL008", 9)]);
        assert!(found[0].message.contains("CGO_ENABLED=0"));
        assert!(!found[0].hint.is_empty());
        // BuildKit refuses a Dockerfile without instructions.
        assert_eq!(rules(""), ["GL010"]);
    }

    fn at(text: &str) -> Vec<(&'static str, usize)> {
        lint(text).into_iter().map(|f| (f.rule, f.line)).collect()
    }

    #[test]
    fn en_dash_flag_is_flagged_as_buildkit_reads_it_as_a_source_path() {
        let text = GOOD.replace(
            "COPY --from=build /out/app /app",
            "COPY \u{2013}from=build /out/app /app",
        );
        let found = lint(&text);
        assert_eq!(at(&text), [("GL011", 9)], "{found:?}");
        assert!(
            found[0].message.contains("U+2013 EN DASH"),
            "{}",
            found[0].message
        );
        assert!(found[0].message.contains("source path"));
        assert_eq!(found[0].hint, "write --from=build");
        assert_eq!(found[0].severity, Severity::Error);
        // An em dash, a minus sign, and a hyphen followed by an en dash are the same fault.
        for dash in ["\u{2014}", "\u{2212}", "-\u{2013}"] {
            let text = GOOD.replace(
                "COPY --from=build /out/app",
                &format!("COPY {dash}from=build /out/app"),
            );
            assert_eq!(rules(&text), ["GL011"], "{dash}");
        }
        let platform = GOOD.replace(
            "FROM golang:1.22-alpine AS build",
            "FROM \u{2013}platform=$BUILDPLATFORM golang:1.22-alpine AS build",
        );
        assert!(rules(&platform).contains(&"GL011"));
    }

    #[test]
    fn curly_quoted_cmd_is_shell_form_gl008() {
        let text = GOOD.replace("ENTRYPOINT [\"/app\"]", "CMD [\u{201c}./myapp\u{201d}]");
        let found = lint(&text);
        assert_eq!(at(&text), [("GL008", 11), ("GL011", 11)], "{found:?}");
        assert_eq!(found[1].hint, "write CMD [\"./myapp\"]");
        assert!(found[1]
            .message
            .contains("U+201C LEFT DOUBLE QUOTATION MARK"));
        // Single quotes are not JSON either; a fullwidth bracket neither.
        let single = GOOD.replace("ENTRYPOINT [\"/app\"]", "ENTRYPOINT ['/app']");
        assert_eq!(rules(&single), ["GL008", "GL011"]);
        let fullwidth = GOOD.replace(
            "ENTRYPOINT [\"/app\"]",
            "ENTRYPOINT \u{ff3b}\"/app\"\u{ff3d}",
        );
        assert_eq!(rules(&fullwidth), ["GL008", "GL011"]);
        // Real JSON stays exec form; a shell command that starts with [ is left alone.
        assert!(rules(GOOD).is_empty());
        let test_cmd = GOOD.replace("RUN go build", "RUN [ -f go.mod ] && go build");
        assert!(rules(&test_cmd).is_empty(), "{:?}", lint(&test_cmd));
    }

    #[test]
    fn go_build_inside_a_heredoc_is_checked_gl003() {
        let text = "FROM golang:1.22-alpine AS build\nWORKDIR /src\nCOPY . .\nRUN <<EOF\nset -e\ngo build -o /out/app .\nEOF\n\nFROM scratch\nCOPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/\nCOPY --from=build /out/app /app\nUSER 65532:65532\nENTRYPOINT [\"/app\"]\n";
        assert_eq!(at(text), [("GL003", 4)], "{:?}", lint(text));
        let exported = text.replace("set -e\n", "export CGO_ENABLED=0\n");
        assert!(rules(&exported).is_empty(), "{:?}", lint(&exported));
        // The heredoc's lines are not instructions: a FROM inside one starts no stage.
        let inside = text.replace(
            "set -e\n",
            "cat > Dockerfile.example <<'X'\nFROM ubuntu\nX\n",
        );
        assert_eq!(rules(&inside), ["GL003"], "{:?}", lint(&inside));
        let chomped = text
            .replace("RUN <<EOF", "RUN <<-EOF")
            .replace("\nEOF\n", "\n\tEOF\n");
        assert_eq!(rules(&chomped), ["GL003"]);
    }

    #[test]
    fn distroless_nonroot_base_needs_no_user_gl004() {
        let text = GOOD
            .replace(
                "FROM scratch",
                "FROM gcr.io/distroless/static-debian12:nonroot",
            )
            .replace("USER 65532:65532\n", "");
        assert!(rules(&text).is_empty(), "{:?}", lint(&text));
        for base in [
            "cgr.dev/chainguard/static:latest",
            "gcr.io/distroless/base-debian12:debug-nonroot",
        ] {
            let text = text.replace("gcr.io/distroless/static-debian12:nonroot", base);
            assert!(!rules(&text).contains(&"GL004"), "{base}");
        }
        // The root tags still need a USER, and an explicit root USER is still root.
        let root_tag = text.replace(":nonroot", ":latest");
        assert_eq!(rules(&root_tag), ["GL001", "GL004"]);
        let back_to_root = format!("{text}USER root\n");
        assert_eq!(rules(&back_to_root), ["GL004"]);
        // A USER in the stage the final one is built on carries over.
        let inherited = GOOD
            .replace(
                "FROM scratch",
                "FROM scratch AS runtime\nUSER 65532\nFROM runtime",
            )
            .replace("USER 65532:65532\n", "");
        assert!(rules(&inherited).is_empty(), "{:?}", lint(&inherited));
    }

    #[test]
    fn unknown_instructions_and_wrong_argument_counts_gl009_gl010() {
        let typo = GOOD.replace("COPY . .", "COPPY . .");
        let found = lint(&typo);
        assert_eq!(at(&typo), [("GL009", 3)]);
        assert_eq!(found[0].hint, "did you mean COPY?");
        for (broken, line) in [
            ("COPY . .", "COPY ."),
            ("WORKDIR /src", "WORKDIR"),
            ("ENV CGO_ENABLED=0", "ENV CGO_ENABLED=0 GOOS"),
            (
                "FROM golang:1.22-alpine AS build",
                "FROM golang:1.22-alpine build",
            ),
            (
                "FROM golang:1.22-alpine AS build",
                "FROM golang:1.22-alpine AS 2build",
            ),
            ("ENTRYPOINT [\"/app\"]", "ENTRYPOINT [\"/app\", 1]"),
        ] {
            let text = GOOD.replace(broken, line);
            assert!(rules(&text).contains(&"GL010"), "{line}: {:?}", lint(&text));
        }
        let before_from = format!("RUN echo hi\n{GOOD}");
        assert_eq!(at(&before_from), [("GL010", 1)]);
        let unterminated = GOOD.replace("RUN go build -o /out/app .", "RUN <<EOF\ngo build");
        assert!(rules(&unterminated).contains(&"GL010"));
        let glued = GOOD.replace(
            "COPY --from=build /out/app",
            "COPY\u{a0}--from=build /out/app",
        );
        assert_eq!(
            rules(&glued),
            ["GL011"],
            "a no-break space, not an unknown instruction"
        );
    }

    #[test]
    fn flags_buildkit_rejects_or_misreads_gl012() {
        let cases = [
            (
                "COPY --from=build /out/app",
                "COPY --form=build /out/app",
                "did you mean --from?",
            ),
            (
                "COPY --from=build /out/app",
                "COPY --from /out/app",
                "COPY takes",
            ),
            (
                "COPY --from=build /out/app",
                "COPY --from=5 /out/app",
                "count the FROM lines",
            ),
            (
                "COPY --from=build /out/app",
                "COPY --from=1 /out/app",
                "copy from an earlier stage",
            ),
            (
                "COPY --from=build /out/app",
                "COPY --from=$STAGE /out/app",
                "FROM ${IMAGE} AS src",
            ),
            (
                "COPY --from=build /out/app",
                "COPY --from=biuld /out/app",
                "did you mean --from=build?",
            ),
            (
                "USER 65532:65532",
                "USER --chown=1 65532:65532",
                "USER takes no flags",
            ),
        ];
        for (good, bad, hint) in cases {
            let found = lint(&GOOD.replace(good, bad));
            let gl012: Vec<&Finding> = found.iter().filter(|f| f.rule == "GL012").collect();
            assert_eq!(gl012.len(), 1, "{bad}: {found:?}");
            assert!(gl012[0].hint.contains(hint), "{bad}: {}", gl012[0].hint);
        }
        // An index or an image reference is fine.
        let index = GOOD.replace("COPY --from=build /out/app", "COPY --from=0 /out/app");
        assert!(rules(&index).is_empty());
        let image = GOOD.replace(
            "COPY --from=build /etc/ssl",
            "COPY --from=alpine:3.20 /etc/ssl",
        );
        assert!(rules(&image).is_empty(), "{:?}", lint(&image));
    }

    #[test]
    fn from_is_resolved_with_arg_defaults_gl013() {
        let runtime = format!(
            "ARG RUNTIME=gcr.io/distroless/static-debian12:nonroot\n{}",
            GOOD.replace("FROM scratch", "FROM ${RUNTIME}")
                .replace("USER 65532:65532\n", "")
        );
        assert!(rules(&runtime).is_empty(), "{:?}", lint(&runtime));
        let builder = format!(
            "ARG BUILDER=build\n{}",
            // A stage named through an ARG is that stage, not an untagged image "build".
            GOOD.replace("FROM scratch", "FROM ${BUILDER} AS tools\nFROM scratch")
        );
        assert!(rules(&builder).is_empty(), "{:?}", lint(&builder));
        let undeclared = GOOD.replace("golang:1.22-alpine", "golang:${GO_VERSION}");
        let found = lint(&undeclared);
        assert_eq!(at(&undeclared), [("GL013", 1)], "{found:?}");
        assert!(found
            .iter()
            .any(|f| f.hint == "declare ARG GO_VERSION=<default> before the first FROM"));
        let no_default = format!("ARG GO_VERSION\n{undeclared}");
        assert_eq!(at(&no_default), [("GL013", 2)]);
        // An unresolved final base is reported once (GL013), not guessed at as root.
        let unknown_runtime = GOOD
            .replace("FROM scratch", "FROM ${RUNTIME}")
            .replace("USER 65532:65532\n", "");
        assert_eq!(rules(&format!("ARG RUNTIME\n{unknown_runtime}")), ["GL013"]);
        let with_default = format!("ARG GO_VERSION=1.22\n{undeclared}");
        assert!(rules(&with_default).is_empty());
        // The final stage named through an ARG is a stage, so its base decides.
        let via_stage = format!(
            "ARG FINAL=runtime\n{}",
            GOOD.replace(
                "FROM scratch",
                "FROM gcr.io/distroless/static:nonroot AS runtime\nFROM ${FINAL}"
            )
            .replace("USER 65532:65532\n", "")
        );
        assert!(rules(&via_stage).is_empty(), "{:?}", lint(&via_stage));
    }

    #[test]
    fn cross_builds_for_the_wrong_platform_gl014() {
        let cross = "FROM --platform=$BUILDPLATFORM golang:1.22-alpine AS build\nARG TARGETOS TARGETARCH\nWORKDIR /src\nCOPY . .\nRUN CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH go build -o /out/app .\n\nFROM gcr.io/distroless/static-debian12:nonroot\nCOPY --from=build /out/app /app\nENTRYPOINT [\"/app\"]\n";
        assert!(rules(cross).is_empty(), "{:?}", lint(cross));
        let host_arch = cross.replace(" GOOS=$TARGETOS GOARCH=$TARGETARCH", "");
        assert_eq!(at(&host_arch), [("GL014", 5)]);
        let undeclared = cross.replace("ARG TARGETOS TARGETARCH\n", "");
        let found = lint(&undeclared);
        assert_eq!(at(&undeclared), [("GL014", 4), ("GL014", 4)], "{found:?}");
        assert!(found[0].hint.contains("ARG TARGET"));
        let env = cross.replace(
            "RUN CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH go",
            "ENV CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH\nRUN go",
        );
        assert!(rules(&env).is_empty(), "{:?}", lint(&env));
    }

    #[test]
    fn escape_directive_continuations_and_lines() {
        let text = "# escape=`\nFROM golang:1.22-alpine AS build\nENV CGO_ENABLED=0\nRUN go build `\n  -o /out/app .\nFROM scratch\nCOPY --from=build /etc/ssl/certs /etc/ssl/certs\nCOPY --from=build /out/app /app\nUSER 65532\nCMD /app\n";
        assert_eq!(at(text), [("GL008", 10)]);
    }

    proptest::proptest! {
        #[test]
        fn never_panics(text in "(FROM|RUN|COPY|ADD|USER|CMD|ENTRYPOINT|ENV|ARG|ONBUILD|HEALTHCHECK|SHELL| AS |--from=|--platform=|<<-?|EOF|\\[|\\]|\"|'|\\$\\{|\\}|:-|#|# escape=`| |`|\\\\|\n|\t|[a-z0-9:/.=$@-]|\u{2013}|\u{201c}|\u{a0}|\u{ff3b}){0,200}") {
            let _ = lint(&text);
        }

        #[test]
        fn never_panics_on_arbitrary_text(text in "\\PC*(\n\\PC*){0,20}") {
            let _ = lint(&text);
        }

        #[test]
        fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..400)) {
            let _ = lint(&String::from_utf8_lossy(&bytes));
        }
    }
}
