//! A Dockerfile linter for multi-stage Go builds: the mistakes that make Go images big, slow to
//! patch or unsafe, each with a rule id, the line, and what to do instead.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub rule: &'static str,
    pub severity: Severity,
    /// 1-based line of the instruction.
    pub line: usize,
    pub message: String,
    pub hint: &'static str,
}

/// Every rule: id, severity, what it checks.
pub const RULES: [(&str, Severity, &str); 8] = [
    (
        "GL001",
        Severity::Error,
        "base image without a tag, or tagged latest",
    ),
    ("GL002", Severity::Warning, "runtime stage not minimal"),
    (
        "GL003",
        Severity::Error,
        "CGO not disabled for a scratch, distroless or alpine runtime",
    ),
    ("GL004", Severity::Error, "final stage runs as root"),
    (
        "GL005",
        Severity::Warning,
        "scratch runtime without CA certificates",
    ),
    (
        "GL006",
        Severity::Error,
        "Go toolchain or sources in the final stage",
    ),
    ("GL007", Severity::Warning, "ADD where COPY would do"),
    (
        "GL008",
        Severity::Warning,
        "CMD or ENTRYPOINT in shell form",
    ),
];

#[derive(Debug, Clone)]
struct Instruction {
    line: usize,
    keyword: String,
    args: String,
}

impl Instruction {
    fn new(line: usize, text: &str) -> Instruction {
        let (keyword, args) = text.split_once(char::is_whitespace).unwrap_or((text, ""));
        Instruction {
            line,
            keyword: keyword.to_ascii_uppercase(),
            args: args.trim().to_string(),
        }
    }
}

#[derive(Debug, Clone, Default)]
struct Stage {
    line: usize,
    base: String,
    name: Option<String>,
    instructions: Vec<Instruction>,
}

/// Splits a Dockerfile into instructions: comments and blank lines dropped, `\` continuations
/// joined, each instruction with the line it starts on.
fn instructions(text: &str) -> Vec<Instruction> {
    let mut out = Vec::new();
    let mut pending: Option<(usize, String)> = None;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if pending.is_none() && (line.is_empty() || line.starts_with('#')) {
            continue;
        }
        if pending.is_some() && line.starts_with('#') {
            continue; // comments inside a continued instruction
        }
        let (start, mut joined) = pending.take().unwrap_or((i + 1, String::new()));
        if let Some(head) = line.strip_suffix('\\') {
            joined.push_str(head);
            joined.push(' ');
            pending = Some((start, joined));
            continue;
        }
        joined.push_str(line);
        out.push(Instruction::new(start, &joined));
    }
    if let Some((start, joined)) = pending {
        out.push(Instruction::new(start, &joined));
    }
    out
}

fn stages(instructions: Vec<Instruction>) -> Vec<Stage> {
    let mut stages: Vec<Stage> = Vec::new();
    for ins in instructions {
        if ins.keyword == "FROM" {
            let words: Vec<&str> = ins
                .args
                .split_whitespace()
                .filter(|w| !w.starts_with("--"))
                .collect();
            let name = match words.as_slice() {
                [_, as_kw, name, ..] if as_kw.eq_ignore_ascii_case("as") => Some(name.to_string()),
                _ => None,
            };
            stages.push(Stage {
                line: ins.line,
                base: words.first().copied().unwrap_or_default().to_string(),
                name,
                instructions: Vec::new(),
            });
        } else if let Some(stage) = stages.last_mut() {
            stage.instructions.push(ins);
        }
    }
    stages
}

/// The image name without registry and tag: `gcr.io/distroless/static:nonroot` → `distroless/static`.
fn image_name(base: &str) -> &str {
    let without_digest = base.split('@').next().unwrap_or(base);
    let last_slash = without_digest.rfind('/').map_or(0, |i| i + 1);
    let without_tag = match without_digest[last_slash..].find(':') {
        Some(i) => &without_digest[..last_slash + i],
        None => without_digest,
    };
    match without_tag.split_once('/') {
        Some((host, rest)) if host.contains('.') || host.contains(':') || host == "localhost" => {
            rest
        }
        _ => without_tag,
    }
}

fn tag_of(base: &str) -> Option<&str> {
    if base.contains('@') {
        return Some("@digest");
    }
    let last = base.rsplit('/').next().unwrap_or(base);
    last.split_once(':').map(|(_, tag)| tag)
}

fn is_minimal(base: &str) -> bool {
    let name = image_name(base);
    name == "scratch"
        || name.starts_with("distroless/")
        || name.starts_with("chainguard/static")
        || name == "static"
        || name == "alpine"
        || name.ends_with("/alpine")
        || name == "busybox"
}

/// Runtimes without a C library a cgo binary could use (alpine has musl, not glibc).
fn needs_static_binary(base: &str) -> bool {
    let name = image_name(base);
    name == "scratch"
        || name.starts_with("distroless/static")
        || name.starts_with("chainguard/static")
        || name == "alpine"
        || name.ends_with("/alpine")
}

fn is_go_toolchain(base: &str) -> bool {
    let name = image_name(base);
    name == "golang" || name.ends_with("/golang")
}

fn sets_cgo_off(text: &str) -> bool {
    let compact: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    compact.contains("CGO_ENABLED=0")
        || compact.contains("CGO_ENABLED=\"0\"")
        || compact.contains("CGO_ENABLED 0")
}

/// Lints a Dockerfile's text.
pub fn lint(text: &str) -> Vec<Finding> {
    let stages = stages(instructions(text));
    let mut findings = Vec::new();
    let mut finding = |rule: &'static str, line: usize, message: String, hint: &'static str| {
        let severity = RULES
            .iter()
            .find(|(id, _, _)| *id == rule)
            .map(|r| r.1)
            .expect("a known rule");
        findings.push(Finding {
            rule,
            severity,
            line,
            message,
            hint,
        });
    };
    let names: Vec<String> = stages
        .iter()
        .filter_map(|s| s.name.as_ref().map(|n| n.to_ascii_lowercase()))
        .collect();
    for stage in &stages {
        let base = stage.base.as_str();
        let is_stage_ref = names.iter().any(|n| n.eq_ignore_ascii_case(base));
        if base != "scratch" && !is_stage_ref && !base.contains('$') {
            match tag_of(base) {
                None => finding(
                    "GL001",
                    stage.line,
                    format!(
                        "base image {base} has no tag, so every build may get a different image"
                    ),
                    "pin a version tag (golang:1.22-alpine, alpine:3.20) or a digest",
                ),
                Some("latest") => finding(
                    "GL001",
                    stage.line,
                    format!("base image {base} is tagged latest, which moves"),
                    "pin a version tag (golang:1.22-alpine, alpine:3.20) or a digest",
                ),
                Some(_) => {}
            }
        }
        for ins in &stage.instructions {
            if ins.keyword == "ADD" {
                let sources: Vec<&str> = ins
                    .args
                    .split_whitespace()
                    .filter(|w| !w.starts_with("--"))
                    .collect();
                let sources = &sources[..sources.len().saturating_sub(1)];
                let legit = sources.iter().any(|s| {
                    s.starts_with("http://")
                        || s.starts_with("https://")
                        || s.starts_with("git@")
                        || [".tar", ".tar.gz", ".tgz", ".tar.xz", ".tar.bz2", ".tar.zst"]
                            .iter()
                            .any(|ext| s.ends_with(ext))
                });
                if !legit {
                    finding(
                        "GL007",
                        ins.line,
                        format!("ADD {} copies local files; ADD also unpacks archives and fetches URLs, which surprises", ins.args),
                        "use COPY for files and directories",
                    );
                }
            }
        }
    }
    let Some(last) = stages.last() else {
        return findings;
    };
    let final_base = last.base.as_str();
    let final_is_stage = names.iter().any(|n| n.eq_ignore_ascii_case(final_base));
    if !final_is_stage && !is_minimal(final_base) {
        finding(
            "GL002",
            last.line,
            format!("the runtime stage is based on {final_base}, which ships a shell, a package manager and more to patch"),
            "run on scratch (with CA certificates copied in), distroless/static or alpine",
        );
    }
    if is_go_toolchain(final_base) {
        finding(
            "GL006",
            last.line,
            format!("the final stage is the Go toolchain image {final_base}"),
            "build in a first stage, then COPY --from=build only the binary into a minimal stage",
        );
    }
    if needs_static_binary(final_base) {
        for stage in &stages[..stages.len() - 1] {
            let stage_cgo_off = stage
                .instructions
                .iter()
                .any(|i| (i.keyword == "ENV" || i.keyword == "ARG") && sets_cgo_off(&i.args));
            for ins in &stage.instructions {
                if ins.keyword == "RUN"
                    && ins.args.contains("go build")
                    && !stage_cgo_off
                    && !sets_cgo_off(&ins.args)
                {
                    finding(
                        "GL003",
                        ins.line,
                        format!("go build runs without CGO_ENABLED=0 but the runtime {final_base} has no glibc: the binary may not start"),
                        "set ENV CGO_ENABLED=0 in the build stage (or prefix the command with CGO_ENABLED=0)",
                    );
                }
            }
        }
    }
    let user = last.instructions.iter().rev().find(|i| i.keyword == "USER");
    match user {
        None => finding(
            "GL004",
            last.line,
            "the final stage sets no USER, so the service runs as root".into(),
            "add USER 65532:65532 (a numeric non-root user works on scratch)",
        ),
        Some(u) if matches!(u.args.split(':').next().map(str::trim), Some("root" | "0")) => {
            finding(
                "GL004",
                u.line,
                format!("USER {} runs the service as root", u.args),
                "use USER 65532:65532",
            )
        }
        Some(_) => {}
    }
    if image_name(final_base) == "scratch" {
        let has_certs = last.instructions.iter().any(|i| {
            (i.keyword == "COPY" || i.keyword == "ADD")
                && (i.args.contains("ca-certificates") || i.args.contains("/etc/ssl/certs"))
        });
        if !has_certs {
            finding(
                "GL005",
                last.line,
                "the scratch runtime has no CA certificates: any outgoing TLS call will fail to verify".into(),
                "COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/",
            );
        }
    }
    for ins in &last.instructions {
        if ins.keyword != "COPY" && ins.keyword != "ADD" {
            continue;
        }
        let words: Vec<&str> = ins.args.split_whitespace().collect();
        let from_stage = words.iter().any(|w| w.starts_with("--from="));
        let sources: Vec<&str> = words
            .iter()
            .filter(|w| !w.starts_with("--"))
            .copied()
            .collect();
        let sources = &sources[..sources.len().saturating_sub(1)];
        let copies_sources = !from_stage
            && sources
                .iter()
                .any(|s| *s == "." || *s == "./" || s.ends_with(".go"));
        let copies_toolchain = sources.iter().any(|s| {
            s.starts_with("/usr/local/go")
                || s.starts_with("/go/pkg")
                || s.starts_with("/root/go")
                || s.ends_with(".go")
        });
        if copies_sources || copies_toolchain {
            finding(
                "GL006",
                ins.line,
                format!(
                    "{} {} puts Go sources or the toolchain into the final image",
                    ins.keyword, ins.args
                ),
                "copy only the built binary (and CA certificates) into the final stage",
            );
        }
    }
    for stage in &stages {
        for ins in &stage.instructions {
            if (ins.keyword == "CMD" || ins.keyword == "ENTRYPOINT") && !ins.args.starts_with('[') {
                finding(
                    "GL008",
                    ins.line,
                    format!("{} {} is in shell form: it needs /bin/sh and the process does not get signals", ins.keyword, ins.args),
                    "use the JSON form, e.g. ENTRYPOINT [\"/app\"]",
                );
            }
        }
    }
    findings.sort_by_key(|f| (f.line, f.rule));
    findings
}

/// A Dockerfile that passes every rule: what `gantry build` makes, for teams that keep a
/// Dockerfile.
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
        assert!(rules(&GOOD.replace("golang:1.22-alpine", "golang@sha256:abcd")).is_empty());
        assert!(
            rules(&GOOD.replace("golang:1.22-alpine", "localhost:5000/golang:1.22")).is_empty()
        );
        assert!(rules(&GOOD.replace("golang:1.22-alpine", "golang:${GO}")).is_empty());
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
        assert!(lint("").is_empty());
    }

    proptest::proptest! {
        #[test]
        fn never_panics(text in "(FROM|RUN|COPY|ADD|USER|CMD|ENTRYPOINT|ENV|#| |\\\\|\n|[a-z:/.=$@-]){0,200}") {
            let _ = lint(&text);
        }
    }
}
