//! `gantry lint` and `gantry init dockerfile`.

use std::fmt::Write;
use std::path::PathBuf;

use anyhow::{bail, Context};
use gantry_builder::lint::{self, Severity};

/// `gantry lint --help`: what the linter reads and every rule of [`lint::RULES`], one a line.
pub fn long_about() -> String {
    let mut text = String::from(
        "Check a Dockerfile for the mistakes of multi-stage Go builds, and for what would break or\n\
         silently change the build. The Dockerfile is read as BuildKit reads it: parser directives\n\
         (# escape=), continuations, flags, JSON (exec) form only for a JSON array of strings,\n\
         heredocs (RUN <<EOF), FROM resolved with the ARG defaults declared before it.\n\n\
         Rules:\n",
    );
    for rule in lint::RULES {
        let severity = match rule.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        // Summaries wrap at 100 columns, continuation lines under the summary's start.
        let mut line = format!("  {} {severity:<7} ", rule.id);
        let indent = line.len();
        for word in rule.summary.split(' ') {
            if line.len() + 1 + word.len() > 100 && line.len() > indent {
                let _ = writeln!(text, "{line}");
                line = " ".repeat(indent);
            }
            line.push(' ');
            line.push_str(word);
        }
        let _ = writeln!(text, "{line}");
    }
    text.push_str(
        "\nExits 1 on errors. `gantry init dockerfile` prints a Dockerfile that passes.\n\n\
         Examples:\n    gantry lint\n    gantry lint build/Dockerfile --json",
    );
    text
}

pub fn lint(path: &PathBuf, json: bool) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read {}: give the Dockerfile's path", path.display()))?;
    let findings = lint::lint(&text);
    if json {
        println!("{}", serde_json::to_string_pretty(&findings)?);
    } else {
        for f in &findings {
            let severity = match f.severity {
                Severity::Error => "error",
                Severity::Warning => "warning",
            };
            println!(
                "{}:{}: {severity} {}: {}\n  hint: {}",
                path.display(),
                f.line,
                f.rule,
                f.message,
                f.hint
            );
        }
    }
    let errors = findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .count();
    if errors > 0 {
        bail!(
            "{} has {errors} error(s) and {} warning(s); `gantry init dockerfile` prints one that passes",
            path.display(),
            findings.len() - errors
        );
    }
    if !json {
        eprintln!(
            "{}: no errors, {} warning(s)",
            path.display(),
            findings.len()
        );
    }
    Ok(())
}

pub fn init_dockerfile(package: &str, go_version: &str) {
    print!("{}", lint::recommended_dockerfile(package, go_version));
}
