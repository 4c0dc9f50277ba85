//! A Go program vendoring many stand-in modules at vulnerable versions: the benchmarks' large
//! binary (bench/scan.sh) and the govulncheck oracle's many-module case.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::offline_env;

/// A stand-in module for [`write_many_modules_program`]: one package at `package` (inside
/// `module`) defining `symbol`, which `main` calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StandIn {
    /// The module path (`github.com/gin-gonic/gin`).
    pub module: String,
    /// Its version as build info will list it (`v1.6.0`).
    pub version: String,
    /// The package's import path, `module` or below it.
    pub package: String,
    /// An exported function (`Parse`) or method on an exported type (`Tokenizer.Next`), as OSV
    /// names symbols.
    pub symbol: String,
}

/// Writes under `root` a Go main module (`example.com/many-modules`, go 1.19) whose `main`
/// calls `symbol` of every stand-in, each vendored as this crate's fixture is (`vendor/` with
/// `vendor/modules.txt`, each function `//go:noinline`), so that `go build` with
/// [`offline_env`] makes a binary listing every module in its build info, offline. Modules
/// must be distinct and none a prefix directory of another; symbols `Name` or `Type.Name`.
/// Errors: writing under `root`.
pub fn write_many_modules_program(root: &Path, stand_ins: &[StandIn]) -> std::io::Result<()> {
    let mut go_mod = String::from("module example.com/many-modules\n\ngo 1.19\n\nrequire (\n");
    let mut modules_txt = String::new();
    let mut imports = String::new();
    let mut calls = String::new();
    for (i, s) in stand_ins.iter().enumerate() {
        go_mod += &format!("\t{} {}\n", s.module, s.version);
        modules_txt += &format!(
            "# {} {}\n## explicit; go 1.19\n{}\n",
            s.module, s.version, s.package
        );
        imports += &format!("\tm{i} \"{}\"\n", s.package);
        let source = match s.symbol.split_once('.') {
            Some((ty, method)) => {
                calls += &format!("\tm{i}.{ty}{{}}.{method}()\n");
                format!("type {ty} struct{{}}\n\n//go:noinline\nfunc ({ty}) {method}() {{ println(\"{}\") }}\n", s.package)
            }
            None => {
                calls += &format!("\tm{i}.{}()\n", s.symbol);
                format!(
                    "//go:noinline\nfunc {}() {{ println(\"{}\") }}\n",
                    s.symbol, s.package
                )
            }
        };
        let dir = root.join("vendor").join(&s.package);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(
            dir.join("standin.go"),
            format!(
                "// Package p stands in for {} {}.\npackage p\n\n{source}",
                s.package, s.version
            ),
        )?;
    }
    go_mod += ")\n";
    std::fs::write(root.join("go.mod"), go_mod)?;
    std::fs::write(root.join("vendor/modules.txt"), modules_txt)?;
    std::fs::write(
        root.join("main.go"),
        format!("package main\n\nimport (\n{imports})\n\nfunc main() {{\n{calls}}}\n"),
    )
}

/// Up to `count` stand-ins picked from OSV records (the Go database's JSON): per module, the
/// first record with a usable version and symbol: an `introduced` release (else, for a record
/// affecting every version, a pseudo-version before the module's first release), the first
/// importable package of its `ecosystem_specific.imports` (not `internal`, not `vendor`) and
/// its first exported symbol. Modules in path order; none inside another's directory.
pub fn vulnerable_stand_ins<'a>(
    records: impl IntoIterator<Item = &'a Value>,
    count: usize,
) -> Vec<StandIn> {
    let mut by_module: std::collections::BTreeMap<String, StandIn> = Default::default();
    for record in records {
        for affected in record["affected"].as_array().into_iter().flatten() {
            if let Some(s) = stand_in(affected) {
                by_module.entry(s.module.clone()).or_insert(s);
            }
        }
    }
    let modules: Vec<String> = by_module.keys().cloned().collect();
    let inside = |a: &str, b: &str| a.starts_with(&format!("{b}/"));
    by_module
        .into_values()
        .filter(|s| {
            !modules
                .iter()
                .any(|m| inside(&s.module, m) || inside(m, &s.module))
        })
        .take(count)
        .collect()
}

/// Builds the program [`write_many_modules_program`] wrote under `src` with `go`, offline,
/// not stripped, to `out`. Panics with go's output when the build fails.
pub fn build_many_modules_program(go: &Path, src: &Path, out: &Path) {
    crate::run_go_build(
        Command::new(go)
            .current_dir(src)
            .args(["build", "-o"])
            .arg(out)
            .arg(".")
            .envs(offline_env())
            .env("CGO_ENABLED", "0"),
        "the many-modules program",
    );
}

/// An exported Go identifier.
fn exported(name: &str) -> bool {
    name.chars().next().is_some_and(|c| c.is_ascii_uppercase())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Whether `version` is a semantic version `module` may have (its major version suffix
/// `/vN` or `.vN` matched, none meaning v0 or v1).
fn fits_major(module: &str, version: &str) -> bool {
    let major = version
        .trim_start_matches('v')
        .split('.')
        .next()
        .unwrap_or_default();
    match major_suffix(module) {
        Some(n) => major == n,
        None => (major == "0" || major == "1") && !module.starts_with("gopkg.in/"),
    }
}

/// The major version a module path's suffix (`/v2`, `.v3`) names.
fn major_suffix(module: &str) -> Option<&str> {
    module
        .rsplit_once("/v")
        .or_else(|| module.rsplit_once(".v"))
        .map(|(_, n)| n)
        .filter(|n| n.chars().all(|c| c.is_ascii_digit()) && !n.is_empty())
}

/// A stand-in for each module of `affected` with a usable introduced version and symbol.
fn stand_in(affected: &Value) -> Option<StandIn> {
    let module = affected["package"]["name"].as_str()?;
    if module == "stdlib" || module == "toolchain" || !module.contains('.') {
        return None;
    }
    let introduced: Vec<&str> = affected["ranges"]
        .as_array()?
        .iter()
        .flat_map(|r| r["events"].as_array().into_iter().flatten())
        .filter_map(|e| e["introduced"].as_str())
        .filter(|v| !v.contains('+'))
        .collect();
    // A release that introduced it; else, affected from the beginning, a pseudo-version
    // before every release of the module's major version.
    let version = match introduced.iter().find(|v| **v != "0") {
        Some(v) => format!("v{v}"),
        None if introduced.contains(&"0") => format!(
            "v{}.0.0-20200101000000-000000000000",
            major_suffix(module).unwrap_or("0")
        ),
        None => return None,
    };
    if !fits_major(module, &version) {
        return None;
    }
    // A package main may import: inside the module, not internal.
    let (package, symbol) = affected["ecosystem_specific"]["imports"]
        .as_array()?
        .iter()
        .find_map(|import| {
            let package = import["path"].as_str()?;
            let inside = package == module || package.starts_with(&format!("{module}/"));
            if !inside
                || package
                    .split('/')
                    .any(|part| part == "internal" || part == "vendor")
            {
                return None;
            }
            let symbol = import["symbols"]
                .as_array()?
                .iter()
                .filter_map(Value::as_str)
                .find(|s| s.split('.').count() <= 2 && s.split('.').all(exported))?;
            Some((package, symbol))
        })?;
    Some(StandIn {
        module: module.to_string(),
        version,
        package: package.to_string(),
        symbol: symbol.to_string(),
    })
}
