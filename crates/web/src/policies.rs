//! A project's policies as forms: tag rules, the retention policy and its rules, the signing
//! policy, the vulnerability policy and its allowlist (the system-wide allowlist shares that
//! form). Each view is read from the API's document; each form asks the API to replace the
//! document with the form's fields put into the one read just before, so fields the form does
//! not show are kept. The API checks every value.

use std::sync::Arc;

use axum::extract::{Path, State};
use chrono::{NaiveDate, NaiveTime};
use http::Method;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::api::{self, encode};
use crate::error::PageError;
use crate::extract::PageForm;
use crate::notice::{self, Done};
use crate::pages::{joined, text, Page};
use crate::session::Viewer;
use crate::Web;

/// A list of globs or names as a form field: comma-separated.
pub(crate) fn listed(field: &str) -> Vec<String> {
    field
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::to_string)
        .collect()
}

fn checked(field: &Option<String>) -> bool {
    field.is_some()
}

/// The tag rules as their form shows them.
pub(crate) struct TagRulesView {
    pub immutable: String,
    pub allowed: String,
    pub refuse_latest: bool,
}

impl TagRulesView {
    pub(crate) fn of(document: &Value) -> TagRulesView {
        TagRulesView {
            immutable: joined(&document["immutable"]),
            allowed: joined(&document["allowed"]),
            refuse_latest: document["refuse_latest"].as_bool().unwrap_or(false),
        }
    }
}

/// The signing policy as its form shows it.
pub(crate) struct SigningView {
    /// The trusted PEM keys, one after another.
    pub keys: String,
    pub enforce: bool,
    pub index_covers_children: bool,
}

impl SigningView {
    pub(crate) fn of(document: &Value) -> SigningView {
        let keys: Vec<&str> = document["keys"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::trim)
            .collect();
        SigningView {
            keys: keys.join("\n"),
            enforce: document["enforce"].as_bool().unwrap_or(false),
            index_covers_children: document["index_covers_children"].as_bool().unwrap_or(true),
        }
    }
}

/// An allowlist entry as its table shows it.
pub(crate) struct AllowedRow {
    pub id: String,
    /// `YYYY-MM-DD`, or `never`.
    pub expires: String,
    pub reason: String,
}

/// A document's `allowlist` as its table and forms show it.
pub(crate) struct AllowlistView {
    pub rows: Vec<AllowedRow>,
    /// Where its forms post.
    pub action: String,
    /// Whether the viewer may change it (otherwise no form is offered).
    pub editable: bool,
}

impl AllowlistView {
    pub(crate) fn of(document: &Value, action: String, editable: bool) -> AllowlistView {
        let rows = document["allowlist"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|entry| AllowedRow {
                id: text(&entry["id"]),
                expires: entry["expires_at"]
                    .as_i64()
                    .and_then(|secs| chrono::DateTime::from_timestamp(secs, 0))
                    .map(|t| {
                        let day = t.format("%Y-%m-%d");
                        if t < chrono::Utc::now() {
                            format!("{day} (expired: no longer applies)")
                        } else {
                            day.to_string()
                        }
                    })
                    .unwrap_or_else(|| "never".into()),
                reason: text(&entry["reason"]),
            })
            .collect();
        AllowlistView {
            rows,
            action,
            editable,
        }
    }
}

/// The vulnerability policy (the pull gate) as its form shows it.
pub(crate) struct VulnerabilityView {
    pub scan_on_push: bool,
    pub sbom_on_push: bool,
    /// `CRITICAL` … `UNKNOWN`, or empty: the gate is off.
    pub block_severity: String,
    pub reachable_only: bool,
    /// `wait` or `refuse`.
    pub unscanned: String,
    pub wait_secs: u64,
}

impl VulnerabilityView {
    pub(crate) fn of(document: &Value) -> VulnerabilityView {
        VulnerabilityView {
            scan_on_push: document["scan_on_push"].as_bool().unwrap_or(true),
            sbom_on_push: document["sbom_on_push"].as_bool().unwrap_or(false),
            block_severity: text(&document["block_severity"]),
            reachable_only: document["reachable_only"].as_bool().unwrap_or(false),
            unscanned: text(&document["unscanned"]),
            wait_secs: document["wait_secs"].as_u64().unwrap_or(60),
        }
    }
}

/// The severities a gate may block at, strongest first.
pub(crate) const SEVERITIES: [&str; 5] = ["CRITICAL", "HIGH", "MEDIUM", "LOW", "UNKNOWN"];

/// What a retention rule keeps, by the API's name, with the form's words for it.
pub(crate) const KEEPS: [(&str, &str); 6] = [
    ("most_recently_pushed", "the N most recently pushed"),
    ("most_recently_pulled", "the N most recently pulled"),
    ("pushed_within_days", "those pushed within N days"),
    ("pulled_within_days", "those pulled within N days"),
    (
        "newest_per_version_line",
        "the newest N of each vMAJOR.MINOR line",
    ),
    ("always", "everything it selects"),
];

/// One retention rule as its form shows it.
pub(crate) struct RetentionRuleView {
    /// Its place in the policy's rules, which the form posts back.
    pub index: usize,
    /// The rule's JSON as read, which the form posts back: a rule changed meanwhile is not
    /// touched.
    pub was: String,
    pub repositories: String,
    pub exclude_repositories: String,
    pub tags: String,
    pub exclude_tags: String,
    pub untagged: bool,
    pub buildkit_cache: bool,
    /// A name of [`KEEPS`].
    pub keep: String,
    /// N of the `keep`; empty for `always`.
    pub count: String,
}

impl RetentionRuleView {
    /// What the rule keeps, in the form's words with its N.
    pub(crate) fn keeps(&self) -> String {
        KEEPS
            .iter()
            .find(|(name, _)| *name == self.keep)
            .map(|(_, words)| words.replace(" N ", &format!(" {} ", self.count)))
            .unwrap_or_else(|| self.keep.clone())
    }
}

/// The retention policy as its forms show it.
pub(crate) struct RetentionView {
    pub schedule: String,
    pub rules: Vec<RetentionRuleView>,
}

impl RetentionView {
    pub(crate) fn of(document: &Value) -> RetentionView {
        let rules = document["rules"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
            .map(|(index, rule)| {
                let (keep, count) = match &rule["keep"] {
                    Value::Object(form) => form
                        .iter()
                        .next()
                        .map(|(name, n)| (name.clone(), n.to_string()))
                        .unwrap_or_default(),
                    other => (text(other), String::new()),
                };
                RetentionRuleView {
                    index,
                    was: rule.to_string(),
                    repositories: joined(&rule["repositories"]["include"]),
                    exclude_repositories: joined(&rule["repositories"]["exclude"]),
                    tags: joined(&rule["tags"]["include"]),
                    exclude_tags: joined(&rule["tags"]["exclude"]),
                    untagged: rule["untagged"].as_bool().unwrap_or(false),
                    buildkit_cache: rule["buildkit_cache"].as_bool().unwrap_or(false),
                    keep,
                    count,
                }
            })
            .collect();
        RetentionView {
            schedule: text(&document["schedule"]),
            rules,
        }
    }
}

/// Reads the document at API `path`, lets `change` put the form's fields into it, and
/// writes it back.
async fn amend(
    web: &Web,
    viewer: &Viewer,
    path: &str,
    change: impl FnOnce(&mut Value) -> Result<(), PageError>,
) -> Result<(), PageError> {
    let mut document: Value = api::get(&web.api, &viewer.actor, path).await?;
    change(&mut document)?;
    api::call(&web.api, &viewer.actor, Method::PUT, path, Some(&document)).await?;
    Ok(())
}

/// Amends project document `document` and returns to the settings page.
async fn amend_project(
    web: &Web,
    viewer: &Viewer,
    project: &str,
    document: &str,
    change: impl FnOnce(&mut Value) -> Result<(), PageError>,
) -> Page {
    let project = encode(project);
    amend(
        web,
        viewer,
        &format!("/api/v1/projects/{project}/{document}"),
        change,
    )
    .await?;
    notice::redirect(&format!("/projects/{project}/settings"), Done::Saved)
}

/// A form that changes one project document.
pub(crate) trait PolicyForm: DeserializeOwned + Send {
    /// The document's API path under the project.
    const DOCUMENT: &'static str;

    /// The session's CSRF token, as the form posted it.
    fn csrf(&self) -> Option<&str>;

    /// Puts the form's fields into `document`, as read just before.
    fn apply(&self, document: &mut Value) -> Result<(), PageError>;
}

/// Saves form `F` into its project document and returns to the settings page.
pub(crate) async fn save<F: PolicyForm>(
    State(web): State<Arc<Web>>,
    viewer: Viewer,
    Path(project): Path<String>,
    PageForm(form): PageForm<F>,
) -> Page {
    viewer.check_csrf(form.csrf())?;
    amend_project(&web, &viewer, &project, F::DOCUMENT, |document| {
        form.apply(document)
    })
    .await
}

#[derive(Deserialize)]
pub(crate) struct TagRulesForm {
    csrf: Option<String>,
    #[serde(default)]
    immutable: String,
    #[serde(default)]
    allowed: String,
    refuse_latest: Option<String>,
}

impl PolicyForm for TagRulesForm {
    const DOCUMENT: &'static str = "tag-rules";

    fn csrf(&self) -> Option<&str> {
        self.csrf.as_deref()
    }

    fn apply(&self, rules: &mut Value) -> Result<(), PageError> {
        rules["immutable"] = json!(listed(&self.immutable));
        rules["allowed"] = json!(listed(&self.allowed));
        rules["refuse_latest"] = json!(checked(&self.refuse_latest));
        Ok(())
    }
}

#[derive(Deserialize)]
pub(crate) struct SigningForm {
    csrf: Option<String>,
    /// PEM public keys, one after another.
    #[serde(default)]
    keys: String,
    enforce: Option<String>,
    index_covers_children: Option<String>,
}

/// The PEM blocks of `text`, each ending at its `END` line.
fn pem_blocks(text: &str) -> Vec<String> {
    text.split_inclusive("-----END PUBLIC KEY-----")
        .map(str::trim)
        .filter(|block| !block.is_empty())
        .map(|block| format!("{block}\n"))
        .collect()
}

impl PolicyForm for SigningForm {
    const DOCUMENT: &'static str = "signing-policy";

    fn csrf(&self) -> Option<&str> {
        self.csrf.as_deref()
    }

    fn apply(&self, policy: &mut Value) -> Result<(), PageError> {
        policy["keys"] = json!(pem_blocks(&self.keys));
        policy["enforce"] = json!(checked(&self.enforce));
        policy["index_covers_children"] = json!(checked(&self.index_covers_children));
        Ok(())
    }
}

#[derive(Deserialize)]
pub(crate) struct VulnerabilityForm {
    csrf: Option<String>,
    scan_on_push: Option<String>,
    sbom_on_push: Option<String>,
    /// A severity, or empty: the gate is off.
    #[serde(default)]
    block_severity: String,
    reachable_only: Option<String>,
    unscanned: String,
    wait_secs: String,
}

impl PolicyForm for VulnerabilityForm {
    const DOCUMENT: &'static str = "vulnerability-policy";

    fn csrf(&self) -> Option<&str> {
        self.csrf.as_deref()
    }

    fn apply(&self, policy: &mut Value) -> Result<(), PageError> {
        let wait_secs: u64 = self.wait_secs.trim().parse().map_err(|_| {
            PageError::BadRequest(format!(
                "the wait {:?} is not a whole number of seconds",
                self.wait_secs
            ))
        })?;
        policy["scan_on_push"] = json!(checked(&self.scan_on_push));
        policy["sbom_on_push"] = json!(checked(&self.sbom_on_push));
        policy["block_severity"] = match self.block_severity.trim() {
            "" => Value::Null,
            severity => json!(severity),
        };
        policy["reachable_only"] = json!(checked(&self.reachable_only));
        policy["unscanned"] = json!(self.unscanned);
        policy["wait_secs"] = json!(wait_secs);
        Ok(())
    }
}

#[derive(Deserialize)]
pub(crate) struct AllowlistForm {
    csrf: Option<String>,
    /// `add` or `remove`.
    action: String,
    id: String,
    /// `YYYY-MM-DD` (UTC): the entry applies through that day; empty: never expires.
    expires: Option<String>,
    reason: Option<String>,
}

/// Adds or removes an entry of a project's vulnerability allowlist (the system-wide one
/// is the same form, see [`system_allowlist`]).
impl PolicyForm for AllowlistForm {
    const DOCUMENT: &'static str = "vulnerability-policy";

    fn csrf(&self) -> Option<&str> {
        self.csrf.as_deref()
    }

    fn apply(&self, document: &mut Value) -> Result<(), PageError> {
        let id = self.id.trim();
        let mut entries: Vec<Value> = document["allowlist"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|entry| entry["id"] != id)
            .collect();
        match self.action.as_str() {
            "remove" => {}
            "add" => {
                let mut entry = json!({ "id": id });
                if let Some(date) = self
                    .expires
                    .as_deref()
                    .map(str::trim)
                    .filter(|d| !d.is_empty())
                {
                    let day = NaiveDate::parse_from_str(date, "%Y-%m-%d").map_err(|_| {
                        PageError::BadRequest(format!(
                            "the expiry {date:?} is not a date (YYYY-MM-DD)"
                        ))
                    })?;
                    entry["expires_at"] =
                        json!(day.and_time(NaiveTime::MIN).and_utc().timestamp() + 86_399);
                }
                if let Some(reason) = self
                    .reason
                    .as_deref()
                    .map(str::trim)
                    .filter(|r| !r.is_empty())
                {
                    entry["reason"] = json!(reason);
                }
                entries.push(entry);
            }
            other => {
                return Err(PageError::BadRequest(format!(
                    "{other:?} is neither add nor remove"
                )))
            }
        }
        document["allowlist"] = Value::Array(entries);
        Ok(())
    }
}

/// Adds or removes an entry of the system-wide vulnerability allowlist.
pub(crate) async fn system_allowlist(
    State(web): State<Arc<Web>>,
    viewer: Viewer,
    PageForm(form): PageForm<AllowlistForm>,
) -> Page {
    viewer.check_csrf(form.csrf.as_deref())?;
    amend(
        &web,
        &viewer,
        "/api/v1/vulnerability-allowlist",
        |document| form.apply(document),
    )
    .await?;
    notice::redirect("/admin", Done::Saved)
}

#[derive(Deserialize)]
pub(crate) struct ScheduleForm {
    csrf: Option<String>,
    /// A cron pattern (UTC); empty: the policy runs only when asked.
    #[serde(default)]
    schedule: String,
}

impl PolicyForm for ScheduleForm {
    const DOCUMENT: &'static str = "retention";

    fn csrf(&self) -> Option<&str> {
        self.csrf.as_deref()
    }

    fn apply(&self, policy: &mut Value) -> Result<(), PageError> {
        match self.schedule.trim() {
            "" => {
                if let Some(fields) = policy.as_object_mut() {
                    fields.remove("schedule");
                }
            }
            schedule => policy["schedule"] = json!(schedule),
        }
        Ok(())
    }
}

#[derive(Deserialize)]
pub(crate) struct RetentionRuleForm {
    csrf: Option<String>,
    /// The rule's place in the policy; absent: a new rule, added last.
    index: Option<usize>,
    /// With `index`: the rule's JSON as the page showed it.
    was: Option<String>,
    /// `remove` to remove the rule; otherwise it is saved.
    action: Option<String>,
    #[serde(default)]
    repositories: String,
    #[serde(default)]
    exclude_repositories: String,
    #[serde(default)]
    tags: String,
    #[serde(default)]
    exclude_tags: String,
    untagged: Option<String>,
    buildkit_cache: Option<String>,
    #[serde(default)]
    keep: String,
    #[serde(default)]
    count: String,
}

impl RetentionRuleForm {
    /// The rule as the API takes it.
    fn rule(&self) -> Result<Value, PageError> {
        let keep = match self.keep.as_str() {
            "always" => json!("always"),
            name if KEEPS.iter().any(|(known, _)| *known == name) => {
                let count: u64 = self.count.trim().parse().map_err(|_| {
                    PageError::BadRequest(format!(
                        "N of {name} must be a whole number, not {:?}",
                        self.count
                    ))
                })?;
                json!({ name: count })
            }
            other => {
                return Err(PageError::BadRequest(format!(
                    "{other:?} is not something a retention rule keeps"
                )))
            }
        };
        let selector = |include: &str, exclude: &str| json!({ "include": listed(include), "exclude": listed(exclude) });
        Ok(json!({
            "repositories": selector(&self.repositories, &self.exclude_repositories),
            "tags": selector(&self.tags, &self.exclude_tags),
            "untagged": checked(&self.untagged),
            "buildkit_cache": checked(&self.buildkit_cache),
            "keep": keep,
        }))
    }
}

/// Adds, changes or removes one rule of the retention policy.
impl PolicyForm for RetentionRuleForm {
    const DOCUMENT: &'static str = "retention";

    fn csrf(&self) -> Option<&str> {
        self.csrf.as_deref()
    }

    fn apply(&self, policy: &mut Value) -> Result<(), PageError> {
        let remove = self.action.as_deref() == Some("remove");
        let mut rules = policy["rules"].as_array().cloned().unwrap_or_default();
        let shown: Option<Value> = self
            .was
            .as_deref()
            .and_then(|w| serde_json::from_str(w).ok());
        match self.index {
            None if !remove => rules.push(self.rule()?),
            Some(index) if shown.is_some() && rules.get(index) == shown.as_ref() => {
                if remove {
                    rules.remove(index);
                } else {
                    rules[index] = self.rule()?;
                }
            }
            _ => return Err(PageError::BadRequest(
                "that retention rule changed since the page was shown: reload the settings page"
                    .into(),
            )),
        }
        policy["rules"] = Value::Array(rules);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_blocks_split_concatenated_keys_and_ignore_blank_lines() {
        let one = "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----";
        let two = "-----BEGIN PUBLIC KEY-----\nBBBB\n-----END PUBLIC KEY-----";
        assert_eq!(
            pem_blocks(&format!("\n{one}\n\n{two}\n\n")),
            vec![format!("{one}\n"), format!("{two}\n")]
        );
        assert!(pem_blocks("  \n").is_empty());
    }

    #[test]
    fn an_allowlist_entry_expires_at_the_end_of_its_day_and_replaces_one_of_the_same_id() {
        let mut document = json!({"allowlist": [{"id": "CVE-1"}, {"id": "CVE-2"}]});
        let form = |action: &str, id: &str, expires: &str| AllowlistForm {
            csrf: None,
            action: action.into(),
            id: id.into(),
            expires: Some(expires.into()),
            reason: Some(" accepted risk ".into()),
        };
        form("add", "CVE-1", "2027-01-31")
            .apply(&mut document)
            .unwrap();
        assert_eq!(
            document["allowlist"],
            json!([
                {"id": "CVE-2"},
                {"id": "CVE-1", "expires_at": 1_801_439_999, "reason": "accepted risk"},
            ])
        );
        form("remove", "CVE-2", "").apply(&mut document).unwrap();
        assert_eq!(document["allowlist"].as_array().unwrap().len(), 1);
        assert!(form("add", "CVE-3", "31/01/2027")
            .apply(&mut document)
            .is_err());
    }

    #[test]
    fn a_retention_rule_form_gives_the_apis_rule_and_reads_back_the_same() {
        let form = RetentionRuleForm {
            csrf: None,
            index: None,
            was: None,
            action: None,
            repositories: "team/*, team/web".into(),
            exclude_repositories: String::new(),
            tags: "v*".into(),
            exclude_tags: "v0.*".into(),
            untagged: None,
            buildkit_cache: None,
            keep: "newest_per_version_line".into(),
            count: "3".into(),
        };
        let rule = form.rule().unwrap();
        assert_eq!(rule["keep"], json!({"newest_per_version_line": 3}));
        let view = RetentionView::of(&json!({"rules": [rule], "schedule": "0 3 * * *"}));
        let read = &view.rules[0];
        assert_eq!(
            (
                read.repositories.as_str(),
                read.tags.as_str(),
                read.exclude_tags.as_str()
            ),
            ("team/*, team/web", "v*", "v0.*")
        );
        assert_eq!(
            (read.keep.as_str(), read.count.as_str()),
            ("newest_per_version_line", "3")
        );
        assert_eq!(view.schedule, "0 3 * * *");
        assert_eq!(read.keeps(), "the newest 3 of each vMAJOR.MINOR line");
        let always = RetentionRuleForm {
            keep: "always".into(),
            count: String::new(),
            ..form
        };
        assert_eq!(always.rule().unwrap()["keep"], json!("always"));
        let unknown = RetentionRuleForm {
            keep: "forever".into(),
            ..always
        };
        assert!(unknown.rule().is_err());
    }

    #[test]
    fn a_retention_rule_changed_since_the_page_was_shown_is_not_removed() {
        let first = json!({"keep": "always"});
        let second = json!({"keep": {"most_recently_pushed": 3}});
        let remove = |was: &Value| RetentionRuleForm {
            csrf: None,
            index: Some(0),
            was: Some(was.to_string()),
            action: Some("remove".into()),
            repositories: String::new(),
            exclude_repositories: String::new(),
            tags: String::new(),
            exclude_tags: String::new(),
            untagged: None,
            buildkit_cache: None,
            keep: String::new(),
            count: String::new(),
        };
        // Another administrator removed the first rule: position 0 now holds the second.
        let mut policy = json!({"rules": [second.clone()]});
        assert!(remove(&first).apply(&mut policy).is_err());
        assert_eq!(policy["rules"], json!([second.clone()]));
        remove(&second).apply(&mut policy).unwrap();
        assert_eq!(policy["rules"], json!([]));
    }
}
