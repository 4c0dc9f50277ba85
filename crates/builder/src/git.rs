//! What the source's git checkout says: the commit, its time (the default build time, for
//! reproducibility) and the tags the convention (v1.2.0, commit-abc123, dev-latest) derives from it.

use std::path::Path;
use std::process::Command;

fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
}

/// The checked-out commit, if `dir` is in a git repository.
pub fn revision(dir: &Path) -> Option<String> {
    git(dir, &["rev-parse", "HEAD"])
}

/// Where the source lives: the `origin` remote's URL, without credentials in its authority.
pub fn origin_url(dir: &Path) -> Option<String> {
    Some(without_credentials(&git(
        dir,
        &["remote", "get-url", "origin"],
    )?))
}

fn without_credentials(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string(); // scp-like git@host:path has a user, not a secret
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
        None => url.to_string(),
    }
}

/// The commit time (Unix seconds) of HEAD.
pub fn commit_time(dir: &Path) -> Option<u64> {
    git(dir, &["log", "-1", "--format=%ct"])?.parse().ok()
}

/// Whether `tag` is a release tag: `v` and three dot-separated numbers (`v1.2.0`).
pub fn is_release(tag: &str) -> bool {
    let Some(numbers) = tag.strip_prefix('v') else {
        return false;
    };
    let parts: Vec<&str> = numbers.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
}

/// Branches whose builds are releases-in-waiting rather than development builds.
fn is_release_branch(branch: &str) -> bool {
    matches!(branch, "main" | "master")
        || branch.starts_with("release/")
        || branch.starts_with("release-")
}

/// The tag convention (v1.2.0, commit-abc123, dev-latest) from what git says: a release tag at HEAD gives itself; every
/// commit gives `commit-<short sha>`; a build on a non-release branch also gives `dev-latest`.
/// `latest` is never produced.
pub fn auto_tags(release_tag: Option<&str>, short_sha: &str, branch: Option<&str>) -> Vec<String> {
    let mut tags = Vec::new();
    if let Some(tag) = release_tag.filter(|t| is_release(t)) {
        tags.push(tag.to_string());
    }
    tags.push(format!("commit-{short_sha}"));
    let on_release = !tags.is_empty() && release_tag.is_some_and(is_release);
    if !on_release && branch.is_some_and(|b| b != "HEAD" && !is_release_branch(b)) {
        tags.push("dev-latest".to_string());
    }
    tags
}

/// `auto_tags` for the checkout at `dir`; `None` when it is not a git repository.
pub fn tags_for(dir: &Path) -> Option<Vec<String>> {
    let short = git(dir, &["rev-parse", "--short=12", "HEAD"])?;
    let release = git(dir, &["tag", "--points-at", "HEAD"]).and_then(|tags| {
        tags.lines()
            .filter(|t| is_release(t))
            .max_by_key(|t| t.to_string())
            .map(str::to_string)
    });
    let branch = git(dir, &["rev-parse", "--abbrev-ref", "HEAD"]);
    Some(auto_tags(release.as_deref(), &short, branch.as_deref()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_cut_from_remote_urls() {
        assert_eq!(
            without_credentials("https://ci:tok@git.example.com/a/b.git"),
            "https://git.example.com/a/b.git"
        );
        assert_eq!(
            without_credentials("https://git.example.com/a@b.git"),
            "https://git.example.com/a@b.git"
        );
        assert_eq!(
            without_credentials("git@github.com:a/b.git"),
            "git@github.com:a/b.git"
        );
    }

    #[test]
    fn the_seed_convention() {
        assert_eq!(
            auto_tags(Some("v1.2.0"), "abc123", Some("main")),
            ["v1.2.0", "commit-abc123"]
        );
        assert_eq!(auto_tags(None, "abc123", Some("main")), ["commit-abc123"]);
        assert_eq!(
            auto_tags(None, "abc123", Some("feature/login")),
            ["commit-abc123", "dev-latest"]
        );
        // A non-release tag is not a version; detached HEAD is no branch.
        assert_eq!(
            auto_tags(Some("nightly"), "abc123", Some("HEAD")),
            ["commit-abc123"]
        );
        assert_eq!(
            auto_tags(Some("v2.0.1"), "abc123", Some("feature/x")),
            ["v2.0.1", "commit-abc123"]
        );
        for good in ["v1.2.0", "v0.0.1", "v10.20.30"] {
            assert!(is_release(good), "{good}");
        }
        for bad in ["1.2.0", "v1.2", "v1.2.0-rc1", "v1..0", "latest"] {
            assert!(!is_release(bad), "{bad}");
        }
    }
}
