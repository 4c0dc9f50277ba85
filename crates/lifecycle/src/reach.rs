//! What a kept artifact reaches, and so keeps with it: the children of an index (at any
//! depth) and the referrers (signatures, SBOMs) of a kept subject, and what those reach in
//! turn. Every lifecycle feature that deletes (retention, archive, and any later one) asks
//! this one closure what it must not take, so no selector can remove part of an artifact
//! that stays. Garbage collection has the same rule as one recursive SQL query over the
//! store (`gantry_meta`), since it looks at every repository at once.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;

use crate::retention::Artifact;

/// A manifest of one repository: (repository, digest).
pub type Key<'a> = (&'a str, &'a str);

/// How a manifest was reached from the roots of a closure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reached<'a> {
    /// It is one of the roots.
    Root,
    /// It is an entry of index `parent`, which stays.
    ChildOf(&'a str),
    /// Its `subject` is this manifest, which stays.
    ReferrerOf(&'a str),
}

impl fmt::Display for Reached<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reached::Root => write!(f, "kept itself"),
            Reached::ChildOf(parent) => write!(f, "child of index {parent}, which stays"),
            Reached::ReferrerOf(subject) => write!(f, "refers to {subject}, which stays"),
        }
    }
}

/// The edges between a project's manifests: index → child, subject → referrer (both within
/// a repository, as the store keeps them).
pub struct Graph<'a> {
    edges: HashMap<Key<'a>, Vec<(Key<'a>, Reached<'a>)>>,
}

impl<'a> Graph<'a> {
    pub fn new(artifacts: &'a [Artifact]) -> Graph<'a> {
        let mut edges: HashMap<Key<'a>, Vec<(Key<'a>, Reached<'a>)>> = HashMap::new();
        for a in artifacts {
            let repo = a.repository.as_str();
            for child in &a.children {
                edges
                    .entry((repo, a.digest.as_str()))
                    .or_default()
                    .push(((repo, child.as_str()), Reached::ChildOf(a.digest.as_str())));
            }
            if let Some(subject) = &a.subject {
                edges.entry((repo, subject.as_str())).or_default().push((
                    (repo, a.digest.as_str()),
                    Reached::ReferrerOf(subject.as_str()),
                ));
            }
        }
        // Stable output whatever the order of the artifacts.
        for targets in edges.values_mut() {
            targets.sort();
        }
        Graph { edges }
    }

    /// Everything `roots` reach (the roots included), each with how it was first reached
    /// (breadth first, so the shortest way). Children and referrers that are not among the
    /// artifacts the graph was built from are included as they are named.
    pub fn closure(
        &self,
        roots: impl IntoIterator<Item = Key<'a>>,
    ) -> BTreeMap<Key<'a>, Reached<'a>> {
        let mut reached: BTreeMap<Key<'a>, Reached<'a>> = BTreeMap::new();
        let mut queue: VecDeque<Key<'a>> = VecDeque::new();
        let mut roots: Vec<Key<'a>> = roots.into_iter().collect();
        roots.sort();
        for root in roots {
            if reached.insert(root, Reached::Root).is_none() {
                queue.push_back(root);
            }
        }
        while let Some(key) = queue.pop_front() {
            for (target, how) in self.edges.get(&key).into_iter().flatten() {
                if !reached.contains_key(target) {
                    reached.insert(*target, *how);
                    queue.push_back(*target);
                }
            }
        }
        reached
    }

    /// `keys` ordered so that an index comes before its children and a referrer before its
    /// subject: deleting in this order never leaves a manifest naming one already gone.
    pub fn parents_first(&self, keys: &[Key<'a>]) -> Vec<Key<'a>> {
        let wanted: std::collections::BTreeSet<Key<'a>> = keys.iter().copied().collect();
        // Edges point parent → child and subject → referrer; the order wanted is parents
        // before children and referrers before subjects.
        let mut before: HashMap<Key<'a>, Vec<Key<'a>>> = HashMap::new();
        for (from, targets) in &self.edges {
            for (to, how) in targets {
                if !(wanted.contains(from) && wanted.contains(to)) {
                    continue;
                }
                match how {
                    // `to` (a child) must come after `from` (its index).
                    Reached::ChildOf(_) => before.entry(*to).or_default().push(*from),
                    // `to` (a referrer) must come before `from` (its subject).
                    Reached::ReferrerOf(_) => before.entry(*from).or_default().push(*to),
                    Reached::Root => {}
                }
            }
        }
        let mut order = Vec::with_capacity(wanted.len());
        let mut placed = std::collections::BTreeSet::new();
        fn place<'a>(
            key: Key<'a>,
            before: &HashMap<Key<'a>, Vec<Key<'a>>>,
            placed: &mut std::collections::BTreeSet<Key<'a>>,
            order: &mut Vec<Key<'a>>,
        ) {
            if !placed.insert(key) {
                return;
            }
            let mut first = before.get(&key).cloned().unwrap_or_default();
            first.sort();
            for earlier in first {
                place(earlier, before, placed, order);
            }
            order.push(key);
        }
        for key in &wanted {
            place(*key, &before, &mut placed, &mut order);
        }
        order
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn artifact(digest: &str, children: &[&str], subject: Option<&str>) -> Artifact {
        Artifact {
            repository: "team/app".into(),
            digest: digest.into(),
            pushed_at_us: 0,
            last_pulled_at: None,
            tags: vec![],
            subject: subject.map(str::to_string),
            children: children.iter().map(|c| c.to_string()).collect(),
            size: 1,
            blobs: vec![],
            buildkit_cache: false,
        }
    }

    /// An index of indexes: outer → inner → {amd64, arm64}; a signature of arm64 and an
    /// SBOM of the outer index; an unrelated manifest.
    fn nested() -> Vec<Artifact> {
        vec![
            artifact("outer", &["inner"], None),
            artifact("inner", &["amd64", "arm64"], None),
            artifact("amd64", &[], None),
            artifact("arm64", &[], None),
            artifact("sig-arm64", &[], Some("arm64")),
            artifact("sbom-outer", &[], Some("outer")),
            artifact("other", &[], None),
        ]
    }

    #[test]
    fn a_kept_index_reaches_its_children_at_any_depth_and_their_referrers() {
        let artifacts = nested();
        let graph = Graph::new(&artifacts);
        let reached = graph.closure([("team/app", "outer")]);
        let digests: Vec<&str> = reached.keys().map(|(_, d)| *d).collect();
        assert_eq!(
            digests,
            [
                "amd64",
                "arm64",
                "inner",
                "outer",
                "sbom-outer",
                "sig-arm64"
            ]
        );
        assert_eq!(reached[&("team/app", "outer")], Reached::Root);
        assert_eq!(
            reached[&("team/app", "arm64")].to_string(),
            "child of index inner, which stays"
        );
        assert_eq!(
            reached[&("team/app", "sig-arm64")].to_string(),
            "refers to arm64, which stays"
        );
        // Nothing reaches upwards: a kept child keeps neither its index nor its siblings.
        let reached = graph.closure([("team/app", "amd64")]);
        assert_eq!(reached.len(), 1);
        // Repositories do not mix.
        assert_eq!(graph.closure([("team/other", "outer")]).len(), 1);
    }

    #[test]
    fn deletion_order_puts_indexes_before_children_and_referrers_before_subjects() {
        let artifacts = nested();
        let graph = Graph::new(&artifacts);
        let keys: Vec<Key> = artifacts
            .iter()
            .rev()
            .map(|a| (a.repository.as_str(), a.digest.as_str()))
            .collect();
        let order: Vec<&str> = graph.parents_first(&keys).iter().map(|(_, d)| *d).collect();
        let at = |d: &str| order.iter().position(|x| *x == d).unwrap();
        assert!(at("outer") < at("inner"));
        assert!(at("inner") < at("amd64") && at("inner") < at("arm64"));
        assert!(at("sig-arm64") < at("arm64"));
        assert!(at("sbom-outer") < at("outer"));
        assert_eq!(order.len(), keys.len());
    }
}
