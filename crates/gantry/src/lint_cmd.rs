//! `gantry lint` and `gantry init dockerfile`.

use std::path::PathBuf;

use anyhow::{bail, Context};
use gantry_build::lint::{self, Severity};

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
