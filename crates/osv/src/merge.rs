//! Merging records of one vulnerability from several databases by their aliases.
//!
//! The Go database, Debian's, Alpine's and GHSA each describe a vulnerability under their own
//! ID and list the others' IDs (and the CVE) as `aliases`. Records linked by aliases, directly
//! or through a chain (`GO-…` → `CVE-…` ← `DEBIAN-CVE-…`), form one group (union–find over
//! IDs). `related` IDs are different vulnerabilities and never merge.
//!
//! What is shown: each record keeps its own `id` (the database that matched the package is
//! the one whose ranges, fix and symbols apply); the group's other IDs become its aliases.
//! Its severity is its own when it has one, else the highest among the group's records that
//! have one (the Go database has none), else UNKNOWN.

use std::collections::{BTreeSet, HashMap};

use crate::severity::Severity;

/// What merging needs of one record.
#[derive(Debug, Clone, Copy)]
pub struct AliasRecord<'a> {
    pub id: &'a str,
    pub aliases: &'a [String],
    /// The record's own severity ([`crate::Advisory::severity`]).
    pub severity: Severity,
}

/// One record as merging leaves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merged {
    /// Every other ID of the group (records and the aliases they name), sorted, without the
    /// record's own.
    pub aliases: Vec<String>,
    /// The record's own severity, else the highest of its group's, else UNKNOWN.
    pub severity: Severity,
    /// The ID of the record the severity comes from (`None` when UNKNOWN).
    pub severity_from: Option<String>,
}

/// Merges `records` by aliases: one [`Merged`] per record, in the same order.
pub fn merge_by_aliases(records: &[AliasRecord<'_>]) -> Vec<Merged> {
    let mut groups = UnionFind::default();
    for record in records {
        let id = groups.node(record.id);
        for alias in record.aliases {
            let alias = groups.node(alias);
            groups.union(id, alias);
        }
    }
    // Per group: its IDs, and its best severity with the record it comes from.
    let mut members: HashMap<usize, BTreeSet<&str>> = HashMap::new();
    let nodes: Vec<(&str, usize)> = groups.index.iter().map(|(n, i)| (*n, *i)).collect();
    for (name, node) in nodes {
        let root = groups.find(node);
        members.entry(root).or_default().insert(name);
    }
    let mut best: HashMap<usize, (Severity, &str)> = HashMap::new();
    for record in records.iter().filter(|r| r.severity != Severity::Unknown) {
        let root = groups.find(groups.index[record.id]);
        let entry = best.entry(root).or_insert((record.severity, record.id));
        // Highest wins; at a tie the smaller ID, so the answer does not depend on order.
        if (record.severity, std::cmp::Reverse(record.id)) > (entry.0, std::cmp::Reverse(entry.1)) {
            *entry = (record.severity, record.id);
        }
    }
    records
        .iter()
        .map(|record| {
            let root = groups.find(groups.index[record.id]);
            let aliases = members[&root]
                .iter()
                .filter(|name| **name != record.id)
                .map(|name| name.to_string())
                .collect();
            let (severity, severity_from) = if record.severity != Severity::Unknown {
                (record.severity, Some(record.id.to_string()))
            } else {
                match best.get(&root) {
                    Some((severity, from)) => (*severity, Some(from.to_string())),
                    None => (Severity::Unknown, None),
                }
            };
            Merged {
                aliases,
                severity,
                severity_from,
            }
        })
        .collect()
}

/// Disjoint sets over ID strings (path halving, union by size).
#[derive(Default)]
struct UnionFind<'a> {
    index: HashMap<&'a str, usize>,
    parent: Vec<usize>,
    size: Vec<usize>,
}

impl<'a> UnionFind<'a> {
    fn node(&mut self, name: &'a str) -> usize {
        if let Some(&node) = self.index.get(name) {
            return node;
        }
        let node = self.parent.len();
        self.index.insert(name, node);
        self.parent.push(node);
        self.size.push(1);
        node
    }

    fn find(&mut self, mut node: usize) -> usize {
        while self.parent[node] != node {
            self.parent[node] = self.parent[self.parent[node]];
            node = self.parent[node];
        }
        node
    }

    fn union(&mut self, a: usize, b: usize) {
        let (mut a, mut b) = (self.find(a), self.find(b));
        if a == b {
            return;
        }
        if self.size[a] < self.size[b] {
            std::mem::swap(&mut a, &mut b);
        }
        self.parent[b] = a;
        self.size[a] += self.size[b];
    }
}
