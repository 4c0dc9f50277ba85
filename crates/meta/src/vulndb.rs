//! The vulnerability database: OSV records from named sources, indexed by (ecosystem,
//! package), merged by aliases across sources (see `gantry_osv::merge`).
//!
//! An import replaces one source's records in one write transaction, so a reader sees the
//! source before or after, never half of it, and importing the same data again leaves the
//! same rows. Every import bumps a generation counter, which the scanner watches to rescan
//! stored artifacts.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use gantry_osv::{merge_by_aliases, Advisory, AliasRecord, Record, Severity};
use sqlx::{Any, Row, Transaction};

use crate::{MetaError, MetaStore, Result};

/// A source's last import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VulnDbSource {
    /// The name the import gave (`go`, `debian`, `mirror`…).
    pub name: String,
    /// The file, directory or URL imported from.
    pub location: String,
    /// Unix milliseconds.
    pub imported_at_ms: i64,
    pub records: u64,
    /// Records skipped because they did not parse.
    pub malformed: u64,
    /// The newest record's `modified` (RFC 3339); `None` without records. Some sources write
    /// placeholders (the Go database: `0001-01-01T00:00:00Z`).
    pub newest_modified: Option<String>,
}

/// What the vulnerability database holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VulnDbStatus {
    /// Bumped by every import (0: never imported).
    pub generation: i64,
    /// By name.
    pub sources: Vec<VulnDbSource>,
}

/// A record as the scanner gets it: parsed, with its group's aliases and severity.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredAdvisory {
    pub source: String,
    pub advisory: Advisory,
    /// Every other ID of the vulnerability (its own aliases and those of records merged
    /// with it), sorted.
    pub aliases: Vec<String>,
    /// The record's own severity, else its group's highest, else UNKNOWN.
    pub severity: Severity,
    /// The ID of the record the severity comes from.
    pub severity_from: Option<String>,
}

/// One record's merging inputs and outputs, as stored.
struct MergeRow {
    source: String,
    id: String,
    aliases: Vec<String>,
    severity: Severity,
    merged: (String, Option<String>, String),
}

/// An import under way: records go in one by one ([`VulnDbImport::add`]), and nothing is
/// visible until [`VulnDbImport::commit`]. Dropping it abandons the import (the source keeps
/// its previous records).
pub struct VulnDbImport {
    tx: Transaction<'static, Any>,
    source: String,
    location: String,
    malformed: u64,
    newest_modified: Option<String>,
    /// Per record ID: its aliases and own severity, for merging at the end.
    records: HashMap<String, (Vec<String>, Severity)>,
}

/// Packages per query of [`MetaStore::advisories_for`] (each is one bound parameter).
const PACKAGES_PER_QUERY: usize = 500;

fn json_strings(values: &[String]) -> String {
    serde_json::to_string(values).expect("strings serialize")
}

fn parse_strings(text: &str, what: &str) -> Result<Vec<String>> {
    serde_json::from_str(text).map_err(|e| MetaError::Corrupt(format!("advisory {what}: {e}")))
}

fn parse_severity(text: &str) -> Result<Severity> {
    text.parse()
        .map_err(|e| MetaError::Corrupt(format!("advisory severity: {e}")))
}

impl MetaStore {
    /// Starts replacing the records of source `name` (imported from `location`): its
    /// previous records are removed in the same transaction the new ones go in.
    pub async fn begin_vulndb_import(&self, name: &str, location: &str) -> Result<VulnDbImport> {
        let mut tx = self.begin_write().await?;
        for table in ["advisory_packages", "advisories"] {
            sqlx::query(&format!("DELETE FROM {table} WHERE source = $1"))
                .bind(name)
                .execute(&mut *tx)
                .await?;
        }
        Ok(VulnDbImport {
            tx,
            source: name.to_string(),
            location: location.to_string(),
            malformed: 0,
            newest_modified: None,
            records: HashMap::new(),
        })
    }

    /// Every stored record that names one of `packages` (`(ecosystem, package)`, as OSV
    /// writes them: `("Go", "golang.org/x/text")`, `("Debian:12", "openssl")`), each once,
    /// by source and ID. A few queries for any number of packages.
    pub async fn advisories_for(&self, packages: &[(&str, &str)]) -> Result<Vec<StoredAdvisory>> {
        let mut by_ecosystem: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for (ecosystem, package) in packages {
            by_ecosystem.entry(ecosystem).or_default().insert(package);
        }
        let mut found = BTreeMap::new();
        for (ecosystem, names) in by_ecosystem {
            let names: Vec<&str> = names.into_iter().collect();
            for chunk in names.chunks(PACKAGES_PER_QUERY) {
                let placeholders: Vec<String> =
                    (0..chunk.len()).map(|i| format!("${}", i + 2)).collect();
                let sql = format!(
                    // Driven from the package index: a correlated EXISTS per advisory made
                    // SQLite seek every asked name for each of the thousands of records.
                    "SELECT a.source, a.id, a.record, a.merged_aliases, a.merged_severity, \
                     a.severity_from FROM (SELECT DISTINCT source, id FROM advisory_packages \
                     WHERE ecosystem = $1 AND package IN ({})) p \
                     JOIN advisories a ON a.source = p.source AND a.id = p.id",
                    placeholders.join(", ")
                );
                let mut query = sqlx::query(&sql).bind(ecosystem);
                for name in chunk {
                    query = query.bind(*name);
                }
                for row in query.fetch_all(&self.readers).await? {
                    let (source, id): (String, String) = (row.get(0), row.get(1));
                    if found.contains_key(&(source.clone(), id.clone())) {
                        continue;
                    }
                    let record: String = row.get(2);
                    let advisory: Advisory = serde_json::from_str(&record)
                        .map_err(|e| MetaError::Corrupt(format!("advisory {id}: {e}")))?;
                    let stored = StoredAdvisory {
                        source: source.clone(),
                        advisory,
                        aliases: parse_strings(&row.get::<String, _>(3), "aliases")?,
                        severity: parse_severity(&row.get::<String, _>(4))?,
                        severity_from: row.get(5),
                    };
                    found.insert((source, id), stored);
                }
            }
        }
        Ok(found.into_values().collect())
    }

    /// The sources loaded and the generation.
    pub async fn vulndb_status(&self) -> Result<VulnDbStatus> {
        let generation: i64 = sqlx::query_scalar("SELECT generation FROM vulndb_generation")
            .fetch_one(&self.readers)
            .await?;
        let rows = sqlx::query(
            "SELECT name, location, imported_at_ms, records, malformed, newest_modified \
             FROM vulndb_sources ORDER BY name",
        )
        .fetch_all(&self.readers)
        .await?;
        let sources = rows
            .iter()
            .map(|row| VulnDbSource {
                name: row.get(0),
                location: row.get(1),
                imported_at_ms: row.get(2),
                records: row.get::<i64, _>(3) as u64,
                malformed: row.get::<i64, _>(4) as u64,
                newest_modified: row.get(5),
            })
            .collect();
        Ok(VulnDbStatus {
            generation,
            sources,
        })
    }

    /// The generation: bumped by every import (0: nothing imported yet).
    pub async fn vulndb_generation(&self) -> Result<i64> {
        Ok(
            sqlx::query_scalar("SELECT generation FROM vulndb_generation")
                .fetch_one(&self.readers)
                .await?,
        )
    }
}

impl VulnDbImport {
    /// Adds one record (a record whose ID came before in this import replaces it).
    pub async fn add(&mut self, record: &Record) -> Result<()> {
        let advisory = &record.advisory;
        let severity = advisory.severity();
        let mut aliases = advisory.aliases.clone();
        aliases.sort();
        aliases.dedup();
        aliases.retain(|alias| *alias != advisory.id);
        let aliases_json = json_strings(&aliases);
        sqlx::query(
            "INSERT INTO advisories (source, id, modified, severity, aliases, merged_severity, \
             severity_from, merged_aliases, record) VALUES ($1, $2, $3, $4, $5, $4, NULL, $5, $6) \
             ON CONFLICT (source, id) DO UPDATE SET modified = excluded.modified, \
             severity = excluded.severity, aliases = excluded.aliases, \
             merged_severity = excluded.merged_severity, severity_from = NULL, \
             merged_aliases = excluded.merged_aliases, record = excluded.record",
        )
        .bind(&self.source)
        .bind(&advisory.id)
        .bind(&advisory.modified)
        .bind(severity.as_str())
        .bind(&aliases_json)
        .bind(&record.json)
        .execute(&mut *self.tx)
        .await?;
        if self.records.contains_key(&advisory.id) {
            sqlx::query("DELETE FROM advisory_packages WHERE source = $1 AND id = $2")
                .bind(&self.source)
                .bind(&advisory.id)
                .execute(&mut *self.tx)
                .await?;
        }
        let packages: BTreeSet<(&str, &str)> = advisory
            .affected
            .iter()
            .filter_map(|affected| affected.package.as_ref())
            .map(|package| (package.ecosystem.as_str(), package.name.as_str()))
            .collect();
        for (ecosystem, package) in packages {
            sqlx::query(
                "INSERT INTO advisory_packages (ecosystem, package, source, id) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            )
            .bind(ecosystem)
            .bind(package)
            .bind(&self.source)
            .bind(&advisory.id)
            .execute(&mut *self.tx)
            .await?;
        }
        if self
            .newest_modified
            .as_ref()
            .is_none_or(|newest| advisory.modified > *newest)
        {
            self.newest_modified = Some(advisory.modified.clone());
        }
        self.records
            .insert(advisory.id.clone(), (aliases, severity));
        Ok(())
    }

    /// Counts a record that was skipped because it did not parse.
    pub fn skip_malformed(&mut self) {
        self.malformed += 1;
    }

    /// Records merged so far (distinct IDs).
    pub fn records(&self) -> u64 {
        self.records.len() as u64
    }

    /// Merges every source's records by aliases again (this source's changed the groups),
    /// records the source, bumps the generation and commits. Returns the source as stored.
    pub async fn commit(mut self) -> Result<VulnDbSource> {
        self.merge().await?;
        let imported = VulnDbSource {
            name: self.source.clone(),
            location: self.location.clone(),
            imported_at_ms: crate::now_ms(),
            records: self.records(),
            malformed: self.malformed,
            newest_modified: self.newest_modified.clone(),
        };
        sqlx::query(
            "INSERT INTO vulndb_sources (name, location, imported_at_ms, records, malformed, \
             newest_modified) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (name) DO UPDATE SET \
             location = excluded.location, imported_at_ms = excluded.imported_at_ms, \
             records = excluded.records, malformed = excluded.malformed, \
             newest_modified = excluded.newest_modified",
        )
        .bind(&imported.name)
        .bind(&imported.location)
        .bind(imported.imported_at_ms)
        .bind(imported.records as i64)
        .bind(imported.malformed as i64)
        .bind(&imported.newest_modified)
        .execute(&mut *self.tx)
        .await?;
        sqlx::query("UPDATE vulndb_generation SET generation = generation + 1")
            .execute(&mut *self.tx)
            .await?;
        self.tx.commit().await?;
        Ok(imported)
    }

    /// Recomputes every record's merged aliases and severity, writing the rows that change.
    async fn merge(&mut self) -> Result<()> {
        let rows = sqlx::query(
            "SELECT source, id, aliases, severity, merged_aliases, severity_from, \
             merged_severity FROM advisories",
        )
        .fetch_all(&mut *self.tx)
        .await?;
        let rows = rows
            .iter()
            .map(|row| {
                Ok(MergeRow {
                    source: row.get(0),
                    id: row.get(1),
                    aliases: parse_strings(&row.get::<String, _>(2), "aliases")?,
                    severity: parse_severity(&row.get::<String, _>(3))?,
                    merged: (row.get(4), row.get(5), row.get(6)),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let inputs: Vec<AliasRecord<'_>> = rows
            .iter()
            .map(|row| AliasRecord {
                id: &row.id,
                aliases: &row.aliases,
                severity: row.severity,
            })
            .collect();
        let merged = merge_by_aliases(&inputs);
        for (row, merged) in rows.iter().zip(merged) {
            let now = (
                json_strings(&merged.aliases),
                merged.severity_from,
                merged.severity.as_str().to_string(),
            );
            if now == row.merged {
                continue;
            }
            sqlx::query(
                "UPDATE advisories SET merged_aliases = $1, severity_from = $2, \
                 merged_severity = $3 WHERE source = $4 AND id = $5",
            )
            .bind(&now.0)
            .bind(&now.1)
            .bind(&now.2)
            .bind(&row.source)
            .bind(&row.id)
            .execute(&mut *self.tx)
            .await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use gantry_osv::source::{parse_record, Item};

    use super::*;

    fn record(json: serde_json::Value) -> Record {
        match parse_record("test.json", &json.to_string()) {
            Item::Record(record) => *record,
            Item::Malformed(m) => panic!("{m:?}"),
        }
    }

    fn go_record(id: &str, package: &str, aliases: &[&str]) -> Record {
        record(serde_json::json!({
            "id": id, "modified": "2024-01-02T00:00:00Z", "aliases": aliases,
            "affected": [{"package": {"ecosystem": "Go", "name": package},
                          "ranges": [{"type": "SEMVER", "events": [{"introduced": "0"}, {"fixed": "1.0.0"}]}]}]
        }))
    }

    async fn import(store: &MetaStore, source: &str, records: &[Record]) -> VulnDbSource {
        let mut import = store.begin_vulndb_import(source, "test").await.unwrap();
        for record in records {
            import.add(record).await.unwrap();
        }
        import.commit().await.unwrap()
    }

    #[tokio::test]
    async fn an_import_replaces_its_source_whole_and_bumps_the_generation() {
        let (_dir, store) = crate::tests::store().await;
        assert_eq!(store.vulndb_status().await.unwrap().generation, 0);
        let both = [
            go_record("GO-1", "example.com/a", &["CVE-1"]),
            go_record("GO-2", "example.com/b", &[]),
        ];
        let first = import(&store, "go", &both).await;
        assert_eq!((first.records, first.malformed), (2, 0));
        assert_eq!(
            first.newest_modified.as_deref(),
            Some("2024-01-02T00:00:00Z")
        );
        let again = import(&store, "go", &both).await;
        assert_eq!(again.records, 2);
        let found = store
            .advisories_for(&[("Go", "example.com/a"), ("Go", "example.com/b")])
            .await
            .unwrap();
        assert_eq!(found.len(), 2, "a re-import adds nothing");
        // A smaller snapshot removes what it no longer has.
        import(&store, "go", &both[..1]).await;
        let status = store.vulndb_status().await.unwrap();
        assert_eq!(status.generation, 3);
        assert_eq!(status.sources.len(), 1);
        assert_eq!(status.sources[0].records, 1);
        assert!(store
            .advisories_for(&[("Go", "example.com/b")])
            .await
            .unwrap()
            .is_empty());
    }

    #[tokio::test]
    async fn advisories_of_other_sources_lend_their_severity_through_aliases() {
        let (_dir, store) = crate::tests::store().await;
        import(
            &store,
            "go",
            &[go_record("GO-1", "example.com/a", &["CVE-1", "GHSA-1"])],
        )
        .await;
        let ghsa = record(serde_json::json!({
            "id": "GHSA-1", "modified": "2024-03-01T00:00:00Z", "aliases": ["CVE-1"],
            "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}],
            "affected": [{"package": {"ecosystem": "Go", "name": "example.com/a"}}]
        }));
        import(&store, "ghsa", &[ghsa]).await;
        let found = store
            .advisories_for(&[("Go", "example.com/a")])
            .await
            .unwrap();
        let go = found.iter().find(|a| a.advisory.id == "GO-1").unwrap();
        assert_eq!(go.source, "go");
        assert_eq!(go.severity, Severity::Critical);
        assert_eq!(go.severity_from.as_deref(), Some("GHSA-1"));
        assert_eq!(go.aliases, ["CVE-1", "GHSA-1"]);
        assert_eq!(found.len(), 2);
        // Other ecosystems and packages are not returned.
        assert!(store
            .advisories_for(&[("Debian:12", "example.com/a"), ("Go", "example.com/z")])
            .await
            .unwrap()
            .is_empty());
    }
}
