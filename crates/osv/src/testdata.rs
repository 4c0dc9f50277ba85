//! The project's shared test data (feature `test-support`).

use std::path::{Path, PathBuf};

/// Records in [`go_snapshot`].
pub const GO_SNAPSHOT_RECORDS: usize = 4291;

/// The Go vulnerability database snapshot (CC-BY-4.0, attribution in the NOTICES beside it):
/// `shared/testdata/vulndb/osv-go-all.zip`, `shared/` lying beside the checkout or beside a
/// folder above it (worktrees). Panics when it is not there.
pub fn go_snapshot() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|dir| dir.join("shared/testdata/vulndb/osv-go-all.zip"))
        .find(|path| path.is_file())
        .expect("shared/testdata/vulndb/osv-go-all.zip beside the checkout")
}

/// Writes the records of an OSV source (e.g. [`go_snapshot`]; anything
/// [`crate::source::open`] reads) under `dir` in the Go vulnerability database's legacy file
/// layout, the one golang.org/x/vuln's client read until mid-2023 (client/client.go at
/// 4c848ed, which Debian's `govulncheck` 0.0~git20230201.4c848ed reads from
/// `GOVULNDB=file:///DIR`):
///
/// - `index.json`: every module path → the latest `modified` of its records (RFC 3339);
/// - `<escaped module path>.json`: the array of records with an `affected` entry for that
///   module, the path escaped as golang.org/x/mod's `module.EscapePath` does (`!` and the lower
///   case for an upper-case letter; the pseudo-modules `stdlib` and `toolchain`, which the
///   client never escapes, are all lower case anyway);
/// - `ID/index.json`: the array of every ID; `ID/<ID>.json`: each record;
/// - `aliases.json`: every alias → the IDs of the records that name it.
///
/// Records are written as the source holds them (withdrawn ones too: the client filters
/// those). Errors: the source cannot be read or holds a malformed record (`InvalidData`), or
/// writing under `dir` failed.
pub fn write_legacy_govulndb(source: &Path, dir: &Path) -> std::io::Result<()> {
    use std::collections::BTreeMap;
    use std::io::{Error, ErrorKind};

    let invalid = |e: String| Error::new(ErrorKind::InvalidData, e);
    let mut by_module: BTreeMap<String, Vec<serde_json::Value>> = BTreeMap::new();
    let mut modified: BTreeMap<String, String> = BTreeMap::new();
    let mut aliases: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut ids = Vec::new();
    std::fs::create_dir_all(dir.join("ID"))?;
    for item in crate::source::open(source).map_err(|e| invalid(e.to_string()))? {
        let record = match item.map_err(|e| invalid(e.to_string()))? {
            crate::Item::Record(record) => record,
            crate::Item::Malformed(m) => return Err(invalid(format!("{}: {}", m.file, m.error))),
        };
        let json: serde_json::Value =
            serde_json::from_str(&record.json).map_err(|e| invalid(e.to_string()))?;
        let id = &record.advisory.id;
        let record_modified = json["modified"].as_str().unwrap_or_default();
        let mut modules: Vec<&str> = json["affected"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a["package"]["name"].as_str())
            .collect();
        modules.sort_unstable();
        modules.dedup();
        for module in modules {
            let latest = modified.entry(module.to_string()).or_default();
            // RFC 3339 UTC times of one shape order as strings.
            if record_modified > latest.as_str() {
                *latest = record_modified.to_string();
            }
            by_module
                .entry(module.to_string())
                .or_default()
                .push(json.clone());
        }
        for alias in json["aliases"].as_array().into_iter().flatten() {
            if let Some(alias) = alias.as_str() {
                aliases
                    .entry(alias.to_string())
                    .or_default()
                    .push(id.clone());
            }
        }
        std::fs::write(dir.join("ID").join(format!("{id}.json")), &record.json)?;
        ids.push(id.clone());
    }
    fn to_json(value: &impl serde::Serialize) -> Vec<u8> {
        serde_json::to_vec(value).expect("maps and arrays of JSON values serialize")
    }
    for (module, records) in &by_module {
        let path = dir.join(format!("{}.json", escape_module_path(module)));
        std::fs::create_dir_all(path.parent().expect("a module file has a parent"))?;
        std::fs::write(path, to_json(records))?;
    }
    std::fs::write(dir.join("index.json"), to_json(&modified))?;
    std::fs::write(dir.join("ID/index.json"), to_json(&ids))?;
    std::fs::write(dir.join("aliases.json"), to_json(&aliases))
}

/// golang.org/x/mod's `module.EscapePath` for a valid path: `!` and the lower case for each
/// upper-case letter, so that paths differing in case get different files on
/// case-insensitive file systems.
fn escape_module_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        if c.is_ascii_uppercase() {
            out.push('!');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_paths_escape_upper_case_as_the_go_module_proxy_does() {
        assert_eq!(
            escape_module_path("github.com/BeeGo/beego"),
            "github.com/!bee!go/beego"
        );
        assert_eq!(escape_module_path("stdlib"), "stdlib");
    }

    #[test]
    fn the_legacy_layout_indexes_every_record_by_module_id_and_alias() {
        let dir = tempfile::tempdir().unwrap();
        write_legacy_govulndb(&go_snapshot(), dir.path()).unwrap();
        let read = |path: &str| -> serde_json::Value {
            serde_json::from_slice(&std::fs::read(dir.path().join(path)).unwrap()).unwrap()
        };
        let ids = read("ID/index.json");
        assert_eq!(ids.as_array().unwrap().len(), GO_SNAPSHOT_RECORDS);
        assert_eq!(read("ID/GO-2021-0113.json")["id"], "GO-2021-0113");
        let text = read("golang.org/x/text.json");
        assert!(text
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["id"] == "GO-2021-0113"));
        assert!(read("index.json")["stdlib"].is_string());
        assert!(read("stdlib.json").as_array().unwrap().len() > 100);
        assert_eq!(
            read("aliases.json")["CVE-2021-38561"],
            serde_json::json!(["GO-2021-0113"])
        );
    }
}
