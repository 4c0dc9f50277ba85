//! The pages: each reads what it shows from the REST API as the viewer, and turns it into a
//! view (strings formatted here; the templates only place and escape them).

use std::net::SocketAddr;
use std::sync::Arc;

use askama::Template;
use axum::extract::{ConnectInfo, Path, State};
use axum::response::{Html, IntoResponse, Redirect, Response};
use http::{header, HeaderMap, Method, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::api::{self, encode};
use crate::error::PageError;
use crate::extract::{PageForm, PageQuery};
use crate::notice::{self, Done};
use crate::policies::{AllowlistView, RetentionView};
use crate::session::{self, Viewer};
use crate::settings::RobotRow;
use crate::Web;

pub(crate) type Page = Result<Response, PageError>;

pub(crate) fn html(template: &impl Template) -> Page {
    Ok(Html(template.render()?).into_response())
}

/// What every signed-in page shows around its content.
pub(crate) struct Chrome {
    pub(crate) title: String,
    pub(crate) user: String,
    pub(crate) csrf: String,
    pub(crate) admin: bool,
    /// What the form the viewer just sent did.
    pub(crate) notice: Option<&'static str>,
}

impl Chrome {
    pub(crate) fn of(viewer: &Viewer, title: impl Into<String>) -> Chrome {
        Chrome {
            title: title.into(),
            user: viewer.actor.name().to_string(),
            csrf: viewer.csrf.clone(),
            admin: viewer.actor.is_system_admin(),
            notice: viewer.done.map(Done::text),
        }
    }
}

// ---- formatting -------------------------------------------------------------------------

/// `bytes` as people read sizes (binary units).
pub(crate) fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Unix seconds as a UTC time; `—` for none.
pub(crate) fn when(unix_secs: Option<i64>) -> String {
    unix_secs
        .and_then(|secs| chrono::DateTime::from_timestamp(secs, 0))
        .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|| "—".into())
}

/// The API path of artifact `reference` of `repository`, with `rest` after it (`/sbom?…`).
fn artifact_api(repository: &str, reference: &str, rest: &str) -> String {
    format!(
        "/api/v1/repositories/{}/artifacts/{}{rest}",
        encode(repository),
        encode(reference)
    )
}

/// `{lead}platform=P` for an image with a platform (`lead`: `?` or `&`); empty without one.
fn platform_param(platform: Option<&str>, lead: char) -> String {
    platform
        .map(|p| format!("{lead}platform={}", encode(p)))
        .unwrap_or_default()
}

/// A JSON string's text; empty for anything else.
pub(crate) fn text(value: &Value) -> String {
    value.as_str().unwrap_or("").to_string()
}

/// A JSON array of strings as one line: `pull, push`.
pub(crate) fn joined(value: &Value) -> String {
    value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

/// `sha256:0123456789ab…`.
pub(crate) fn short(digest: &str) -> String {
    digest.chars().take(19).collect::<String>() + "…"
}

/// `used` of `limit` in percent, for a bar; `None` without a limit.
fn percent(used: u64, limit: Option<u64>) -> Option<u64> {
    limit.map(|limit| (used.saturating_mul(100) / limit.max(1)).min(100))
}

// ---- sign-in ----------------------------------------------------------------------------

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    next: String,
    error: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct NextParam {
    next: Option<String>,
}

/// `next` when it is a path of this site: where sign-in returns. Only a path's own characters
/// are taken — not `//host`, a backslash, whitespace or control characters (browsers drop
/// tabs and newlines from a Location, which would turn `/<TAB>/host` into `//host`).
fn local_path(next: Option<&str>) -> String {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "/-._~%?&=+:@,;!$*'()".contains(c);
    match next {
        Some(path)
            if path.starts_with('/')
                && !path.starts_with("//")
                && path.len() <= 2048
                && path.chars().all(allowed) =>
        {
            path.to_string()
        }
        _ => "/".to_string(),
    }
}

pub(crate) async fn login_form(PageQuery(params): PageQuery<NextParam>) -> Page {
    html(&LoginPage {
        next: local_path(params.next.as_deref()),
        error: None,
    })
}

#[derive(Deserialize)]
pub(crate) struct LoginForm {
    username: String,
    password: String,
    next: Option<String>,
}

pub(crate) async fn login(
    State(web): State<Arc<Web>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    PageForm(form): PageForm<LoginForm>,
) -> Page {
    let client = (web.client_address)(&peer, &headers);
    let next = local_path(form.next.as_deref());
    match web
        .access
        .sign_in(&form.username, &form.password, &client)
        .await
    {
        Ok(signed_in) => {
            let max_age = gantry_access::WEB_SESSION_TTL.as_secs();
            let cookie = session::session_cookie(&signed_in.secret, max_age, web.secure_cookies);
            Ok(([(header::SET_COOKIE, cookie)], Redirect::to(&next)).into_response())
        }
        Err(e) => {
            let status = match &e {
                gantry_access::AccessError::Throttled { .. } => StatusCode::TOO_MANY_REQUESTS,
                gantry_access::AccessError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            let page = LoginPage {
                next,
                error: Some(e.to_string()),
            };
            Ok((status, Html(page.render()?)).into_response())
        }
    }
}

#[derive(Deserialize)]
pub(crate) struct CsrfForm {
    csrf: Option<String>,
}

pub(crate) async fn logout(
    State(web): State<Arc<Web>>,
    viewer: Viewer,
    PageForm(form): PageForm<CsrfForm>,
) -> Page {
    viewer.check_csrf(form.csrf.as_deref())?;
    web.access
        .sign_out(&viewer.secret)
        .await
        .map_err(|e| PageError::Internal(e.to_string()))?;
    let cookie = session::session_cookie("", 0, web.secure_cookies);
    Ok(([(header::SET_COOKIE, cookie)], Redirect::to("/login")).into_response())
}

// ---- projects ---------------------------------------------------------------------------

#[derive(Deserialize)]
struct ProjectJson {
    name: String,
    #[serde(default)]
    public: bool,
    quota: QuotaJson,
    /// `None` where the viewer may not list the project's repositories.
    repositories: Option<u64>,
    last_pushed_at: Option<i64>,
}

#[derive(Deserialize)]
struct QuotaJson {
    storage: QuotaFigure,
}

#[derive(Deserialize)]
struct QuotaFigure {
    used_bytes: u64,
    limit_bytes: Option<u64>,
}

#[derive(Deserialize)]
struct RepositoryJson {
    name: String,
    #[serde(default)]
    artifacts: u64,
    #[serde(default)]
    size_bytes: u64,
    last_pushed_at: Option<i64>,
    last_pulled_at: Option<i64>,
    #[serde(default)]
    pulls: u64,
}

#[derive(Deserialize)]
struct RepositoryPageJson {
    repositories: Vec<RepositoryJson>,
    next: Option<String>,
}

struct ProjectRow {
    name: String,
    href: String,
    public: bool,
    used: String,
    limit: String,
    percent: Option<u64>,
    repositories: String,
    last_push: String,
}

#[derive(Template)]
#[template(path = "projects.html")]
struct ProjectsPage {
    chrome: Chrome,
    q: String,
    rows: Vec<ProjectRow>,
}

#[derive(Deserialize)]
pub(crate) struct Search {
    q: Option<String>,
}

pub(crate) async fn projects(
    State(web): State<Arc<Web>>,
    viewer: Viewer,
    PageQuery(search): PageQuery<Search>,
) -> Page {
    #[derive(Deserialize)]
    struct Listed {
        projects: Vec<ProjectJson>,
    }
    let q = search.q.unwrap_or_default();
    let listed: Listed = api::get(&web.api, &viewer.actor, "/api/v1/projects").await?;
    let rows = listed
        .projects
        .into_iter()
        .filter(|p| q.is_empty() || p.name.contains(q.as_str()))
        .map(|project| {
            let storage = &project.quota.storage;
            ProjectRow {
                href: format!("/projects/{}", encode(&project.name)),
                public: project.public,
                used: size(storage.used_bytes),
                limit: storage
                    .limit_bytes
                    .map(size)
                    .unwrap_or_else(|| "no limit".into()),
                percent: percent(storage.used_bytes, storage.limit_bytes),
                // What a role may not read (a limited guest lists no repositories) stays blank.
                repositories: project
                    .repositories
                    .map(|n| n.to_string())
                    .unwrap_or_default(),
                last_push: when(project.last_pushed_at),
                name: project.name,
            }
        })
        .collect();
    html(&ProjectsPage {
        chrome: Chrome::of(&viewer, "Projects"),
        q,
        rows,
    })
}

struct RepositoryRow {
    name: String,
    href: String,
    artifacts: u64,
    size: String,
    last_push: String,
    last_pull: String,
    pulls: u64,
}

#[derive(Template)]
#[template(path = "project.html")]
struct ProjectPage {
    chrome: Chrome,
    project: String,
    tabs: Tabs,
    q: String,
    rows: Vec<RepositoryRow>,
    next_href: Option<String>,
    /// The members and their roles, when the viewer may see them.
    members: Vec<(String, String)>,
}

/// A project's tabs, those the viewer's role may use: what the API would refuse is not
/// offered.
pub(crate) struct Tabs {
    pub(crate) href: String,
    /// Project administrators (and system administrators): tokens, audit.
    pub(crate) manage: bool,
    /// Maintainers and above: retention runs.
    pub(crate) maintain: bool,
    /// Developers and above: pushes, and scans asked for.
    pub(crate) push: bool,
}

#[derive(Deserialize)]
struct MemberJson {
    user: String,
    role: String,
}

/// The viewer's tabs in `project`, from its member list (system administrators: all).
pub(crate) async fn project_tabs(
    web: &Web,
    viewer: &Viewer,
    project: &str,
) -> (Tabs, Vec<(String, String)>) {
    #[derive(Deserialize)]
    struct Listed {
        members: Vec<MemberJson>,
    }
    let name = encode(project);
    let members: Vec<(String, String)> = api::get::<Listed>(
        &web.api,
        &viewer.actor,
        &format!("/api/v1/projects/{name}/members"),
    )
    .await
    .map(|l| l.members.into_iter().map(|m| (m.user, m.role)).collect())
    .unwrap_or_default();
    let role = members
        .iter()
        .find(|(user, _)| user == viewer.actor.name())
        .map(|(_, role)| role.as_str());
    let admin = viewer.actor.is_system_admin();
    let tabs = Tabs {
        href: format!("/projects/{name}"),
        manage: admin || role == Some("project-admin"),
        maintain: admin || matches!(role, Some("project-admin" | "maintainer")),
        push: admin || matches!(role, Some("project-admin" | "maintainer" | "developer")),
    };
    (tabs, members)
}

#[derive(Deserialize)]
pub(crate) struct ProjectParams {
    q: Option<String>,
    page: Option<String>,
}

pub(crate) async fn project(
    State(web): State<Arc<Web>>,
    viewer: Viewer,
    Path(project): Path<String>,
    PageQuery(params): PageQuery<ProjectParams>,
) -> Page {
    let name = encode(&project);
    let page = params
        .page
        .as_deref()
        .map(|p| format!("&page={}", encode(p)))
        .unwrap_or_default();
    let listed: RepositoryPageJson = api::get(
        &web.api,
        &viewer.actor,
        &format!("/api/v1/projects/{name}/repositories?sort=name&limit=100{page}"),
    )
    .await?;
    let q = params.q.unwrap_or_default();
    let rows = listed
        .repositories
        .into_iter()
        .filter(|r| q.is_empty() || r.name.contains(q.as_str()))
        .map(|r| RepositoryRow {
            href: format!("/repository?name={}", encode(&r.name)),
            artifacts: r.artifacts,
            size: size(r.size_bytes),
            last_push: when(r.last_pushed_at),
            last_pull: when(r.last_pulled_at),
            pulls: r.pulls,
            name: r.name,
        })
        .collect();
    let (tabs, members) = project_tabs(&web, &viewer, &project).await;
    html(&ProjectPage {
        chrome: Chrome::of(&viewer, project.clone()),
        tabs,
        members,
        next_href: listed
            .next
            .map(|next| format!("/projects/{name}?page={}", encode(&next))),
        project,
        q,
        rows,
    })
}

// ---- repositories and artifacts ---------------------------------------------------------

#[derive(Deserialize)]
struct ArtifactJson {
    digest: String,
    #[serde(default)]
    media_type: String,
    artifact_type: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    size_bytes: u64,
    #[serde(default)]
    platforms: Vec<PlatformJson>,
    pushed_at: Option<i64>,
    last_pulled_at: Option<i64>,
    #[serde(default)]
    pulls: u64,
    #[serde(default)]
    referrers: Vec<ReferrerJson>,
    signature: Option<SignatureJson>,
    vulnerabilities: Option<VulnerabilitiesJson>,
}

/// An artifact's findings by severity, over its scanned images.
#[derive(Deserialize)]
struct VulnerabilitiesJson {
    images: u64,
    scanned: u64,
    critical: u64,
    high: u64,
    medium: u64,
    low: u64,
    unknown: u64,
}

impl VulnerabilitiesJson {
    /// `critical 1 · high 2`, `none found`, `not scanned`, or the counts of the images
    /// scanned so far.
    fn text(&self) -> String {
        if self.scanned == 0 {
            return "not scanned".into();
        }
        let named: Vec<String> = [
            ("critical", self.critical),
            ("high", self.high),
            ("medium", self.medium),
            ("low", self.low),
            ("unknown", self.unknown),
        ]
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(severity, n)| format!("{severity} {n}"))
        .collect();
        let counts = if named.is_empty() {
            "none found".into()
        } else {
            named.join(" · ")
        };
        if self.scanned < self.images {
            format!(
                "{counts} ({} of {} images scanned)",
                self.scanned, self.images
            )
        } else {
            counts
        }
    }
}

#[derive(Deserialize)]
struct PlatformJson {
    os: String,
    architecture: String,
    variant: Option<String>,
}

#[derive(Deserialize)]
struct ReferrerJson {
    digest: String,
    artifact_type: Option<String>,
    #[serde(default)]
    media_type: String,
    tag: Option<String>,
}

#[derive(Deserialize)]
struct SignatureJson {
    state: String,
    key: Option<String>,
}

fn platforms(list: &[PlatformJson]) -> String {
    list.iter()
        .map(|p| match &p.variant {
            Some(variant) => format!("{}/{}/{variant}", p.os, p.architecture),
            None => format!("{}/{}", p.os, p.architecture),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn signed(signature: &Option<SignatureJson>) -> String {
    match signature {
        None => "—".into(),
        Some(s) if s.state == "trusted" => match &s.key {
            Some(key) => format!("signed by {}", short(key)),
            None => "signed".into(),
        },
        Some(s) if s.state == "unsigned" => "unsigned".into(),
        Some(s) if s.state == "other_digest" => "signature names another digest".into(),
        Some(_) => "no trusted signature".into(),
    }
}

struct ArtifactRow {
    digest: String,
    short: String,
    href: String,
    tags: Vec<String>,
    kind: String,
    size: String,
    platforms: String,
    pushed: String,
    pulled: String,
    pulls: u64,
    signed: String,
    vulnerabilities: String,
    /// `host/name:tag` (or `@digest`), for the pull commands.
    image: String,
}

#[derive(Template)]
#[template(path = "repository.html")]
struct RepositoryPage {
    chrome: Chrome,
    repository: String,
    project: String,
    project_href: String,
    rows: Vec<ArtifactRow>,
    next_href: Option<String>,
    /// Whether the viewer's role deletes (maintainers and up): the delete form is offered.
    may_delete: bool,
}

#[derive(Deserialize)]
pub(crate) struct RepositoryParams {
    name: String,
    page: Option<String>,
}

/// How clients name this registry in pull commands.
fn registry_host(web: &Web, headers: &HeaderMap) -> String {
    web.registry_host.clone().unwrap_or_else(|| {
        headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("localhost:5000")
            .to_string()
    })
}

fn kind_of(media_type: &str, artifact_type: Option<&str>) -> String {
    match artifact_type {
        // An image's artifact type is its config's media type.
        Some(
            "application/vnd.oci.image.config.v1+json"
            | "application/vnd.docker.container.image.v1+json",
        ) => "image".into(),
        Some(t) => t.to_string(),
        None if media_type.contains("index") || media_type.contains("list") => "index".into(),
        None => "image".into(),
    }
}

pub(crate) async fn repository(
    State(web): State<Arc<Web>>,
    viewer: Viewer,
    headers: HeaderMap,
    PageQuery(params): PageQuery<RepositoryParams>,
) -> Page {
    #[derive(Deserialize)]
    struct Listed {
        artifacts: Vec<ArtifactJson>,
        next: Option<String>,
    }
    let name = encode(&params.name);
    let page = params
        .page
        .as_deref()
        .map(|p| format!("&page={}", encode(p)))
        .unwrap_or_default();
    let listed: Listed = api::get(
        &web.api,
        &viewer.actor,
        &format!("/api/v1/repositories/{name}/artifacts?sort=pushed&order=desc&limit=50{page}"),
    )
    .await?;
    let host = registry_host(&web, &headers);
    let mut rows = Vec::new();
    for a in listed.artifacts {
        let reference = match a.tags.first() {
            Some(tag) => format!(":{tag}"),
            None => format!("@{}", a.digest),
        };
        rows.push(ArtifactRow {
            short: short(&a.digest),
            href: format!(
                "/artifact?repository={name}&reference={}",
                encode(&a.digest)
            ),
            kind: kind_of(&a.media_type, a.artifact_type.as_deref()),
            size: size(a.size_bytes),
            platforms: platforms(&a.platforms),
            pushed: when(a.pushed_at),
            pulled: when(a.last_pulled_at),
            pulls: a.pulls,
            signed: signed(&a.signature),
            vulnerabilities: a
                .vulnerabilities
                .as_ref()
                .map_or_else(|| "—".into(), VulnerabilitiesJson::text),
            image: format!("{host}/{}{reference}", params.name),
            tags: a.tags,
            digest: a.digest,
        });
    }
    let project = params
        .name
        .split('/')
        .next()
        .unwrap_or_default()
        .to_string();
    let (tabs, _) = project_tabs(&web, &viewer, &project).await;
    html(&RepositoryPage {
        chrome: Chrome::of(&viewer, params.name.clone()),
        may_delete: tabs.maintain,
        project_href: format!("/projects/{}", encode(&project)),
        project,
        next_href: listed
            .next
            .map(|next| format!("/repository?name={name}&page={}", encode(&next))),
        repository: params.name,
        rows,
    })
}

struct VulnerabilityRow {
    id: String,
    package: String,
    version: String,
    fixed: String,
    severity: String,
    reachable: String,
    summary: String,
}

struct ImageScanView {
    platform: String,
    /// `scanned`, `pending`, `not-an-image` or `failed`.
    status: String,
    /// When it was scanned; empty when it was not.
    scanned: String,
    rows: Vec<VulnerabilityRow>,
    binaries: Vec<BinaryRow>,
    /// `&platform=…` for this image's SBOM links (empty for a single image).
    platform_query: String,
}

/// A Go executable of an image, as its build info says.
struct BinaryRow {
    path: String,
    go_version: String,
    main_module: String,
    target: String,
    /// The modules it was built with (`path@version`).
    modules: String,
}

struct LayerRow {
    digest: String,
    size: String,
    created_by: String,
}

struct ImageView {
    platform: String,
    /// `&platform=…` for links about this image (empty for a single image).
    platform_query: String,
    created: String,
    command: String,
    labels: Vec<(String, String)>,
    layers: Vec<LayerRow>,
}

fn image_views(images: &Value) -> Vec<ImageView> {
    let words = |v: &Value| {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|w| w.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    };
    images["images"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|image| ImageView {
            platform: text(&image["platform"]),
            platform_query: platform_param(image["platform"].as_str(), '&'),
            created: text(&image["created"]),
            command: [words(&image["entrypoint"]), words(&image["cmd"])]
                .join(" ")
                .trim()
                .to_string(),
            labels: image["labels"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.clone(), text(v)))
                .collect(),
            layers: image["layers"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|layer| LayerRow {
                    digest: text(&layer["digest"]),
                    size: size(layer["size"].as_u64().unwrap_or(0)),
                    created_by: text(&layer["created_by"]),
                })
                .collect(),
        })
        .collect()
}

struct ReferrerRow {
    digest: String,
    href: String,
    kind: String,
    tag: String,
}

/// The crumbs above a repository's pages: its project's page and its own.
struct Crumbs {
    project: String,
    project_href: String,
    repository_href: String,
}

impl Crumbs {
    fn of(repository: &str) -> Crumbs {
        let project = repository.split('/').next().unwrap_or_default().to_string();
        Crumbs {
            project_href: format!("/projects/{}", encode(&project)),
            project,
            repository_href: format!("/repository?name={}", encode(repository)),
        }
    }
}

#[derive(Template)]
#[template(path = "artifact.html")]
struct ArtifactPage {
    chrome: Chrome,
    repository: String,
    crumbs: Crumbs,
    /// Whether the viewer's role may ask for a scan (developers and up).
    may_scan: bool,
    /// Whether the viewer's role deletes (maintainers and up): the artifact's deletion and
    /// each tag's removal are offered.
    may_delete: bool,
    digest: String,
    tags: Vec<String>,
    kind: String,
    size: String,
    platforms: String,
    pushed: String,
    pulled: String,
    pulls: u64,
    signed: String,
    pull_lines: Vec<String>,
    referrers: Vec<ReferrerRow>,
    images: Vec<ImageView>,
    /// `/artifact/sbom?repository=…&reference=…` (add `&format=`, `&platform=`, `&download=1`).
    sbom_href: String,
    /// `/artifact/analysis?repository=…&reference=…` (add `&platform=`).
    analysis_href: String,
    scans: Vec<ImageScanView>,
    scan_note: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct ArtifactParams {
    repository: String,
    reference: String,
}

#[derive(Deserialize)]
pub(crate) struct SbomParams {
    repository: String,
    reference: String,
    format: Option<String>,
    platform: Option<String>,
    /// Sent as a file to save rather than shown.
    download: Option<String>,
}

/// An image's SBOM (SPDX or CycloneDX, as the API makes it from its scan): shown as JSON, or
/// downloaded.
pub(crate) async fn sbom(
    State(web): State<Arc<Web>>,
    viewer: Viewer,
    PageQuery(params): PageQuery<SbomParams>,
) -> Page {
    let format = match params.format.as_deref() {
        None | Some("spdx") => "spdx",
        Some("cyclonedx") => "cyclonedx",
        Some(other) => {
            return Err(PageError::BadRequest(format!(
                "format {other:?} is neither spdx nor cyclonedx"
            )))
        }
    };
    let platform = platform_param(params.platform.as_deref(), '&');
    let path = artifact_api(
        &params.repository,
        &params.reference,
        &format!("/sbom?format={format}{platform}"),
    );
    let document = api::get::<Value>(&web.api, &viewer.actor, &path).await?;
    let body = serde_json::to_string_pretty(&document).expect("JSON prints");
    let mut response = ([(header::CONTENT_TYPE, "application/json")], body).into_response();
    if params.download.is_some() {
        let file = format!(
            "{}-{}.{format}.json",
            params.repository.replace('/', "_"),
            params.reference.replace(':', "-")
        );
        let disposition = format!("attachment; filename=\"{file}\"")
            .parse()
            .map_err(|_| PageError::BadRequest("the file name is not a header value".into()))?;
        response
            .headers_mut()
            .insert(header::CONTENT_DISPOSITION, disposition);
    }
    Ok(response)
}

pub(crate) async fn artifact(
    State(web): State<Arc<Web>>,
    viewer: Viewer,
    headers: HeaderMap,
    PageQuery(params): PageQuery<ArtifactParams>,
) -> Page {
    let base = artifact_api(&params.repository, &params.reference, "");
    let a: ArtifactJson = api::get(&web.api, &viewer.actor, &base).await?;
    let (scans, scan_note) = match api::get::<Value>(
        &web.api,
        &viewer.actor,
        &format!("{base}/vulnerabilities"),
    )
    .await
    {
        Ok(scan) => (image_scans(&scan), None),
        Err(PageError::Api { message, .. }) => (Vec::new(), Some(message)),
        Err(e) => return Err(e),
    };
    let images = api::get::<Value>(&web.api, &viewer.actor, &format!("{base}/images")).await?;
    let sbom_href = format!(
        "/artifact/sbom?repository={}&reference={}",
        encode(&params.repository),
        encode(&a.digest)
    );
    let host = registry_host(&web, &headers);
    let mut pull_lines = vec![
        format!("docker pull {host}/{}@{}", params.repository, a.digest),
        format!("podman pull {host}/{}@{}", params.repository, a.digest),
    ];
    if let Some(tag) = a.tags.first() {
        pull_lines.insert(0, format!("docker pull {host}/{}:{tag}", params.repository));
    }
    let crumbs = Crumbs::of(&params.repository);
    let (tabs, _) = project_tabs(&web, &viewer, &crumbs.project).await;
    let referrers = a
        .referrers
        .iter()
        .map(|r| ReferrerRow {
            href: format!(
                "/artifact?repository={}&reference={}",
                encode(&params.repository),
                encode(&r.digest)
            ),
            digest: r.digest.clone(),
            kind: kind_of(&r.media_type, r.artifact_type.as_deref()),
            tag: r.tag.clone().unwrap_or_default(),
        })
        .collect();
    html(&ArtifactPage {
        chrome: Chrome::of(
            &viewer,
            format!("{}@{}", params.repository, short(&a.digest)),
        ),
        may_scan: tabs.push,
        may_delete: tabs.maintain,
        crumbs,
        repository: params.repository,
        kind: kind_of(&a.media_type, a.artifact_type.as_deref()),
        size: size(a.size_bytes),
        // An index lists its platforms; a single image's is in its config.
        platforms: match platforms(&a.platforms) {
            listed if listed.is_empty() => text(&images["images"][0]["config_platform"]),
            listed => listed,
        },
        pushed: when(a.pushed_at),
        pulled: when(a.last_pulled_at),
        pulls: a.pulls,
        signed: signed(&a.signature),
        referrers,
        tags: a.tags,
        digest: a.digest,
        pull_lines,
        images: image_views(&images),
        analysis_href: sbom_href.replacen("/artifact/sbom", "/artifact/analysis", 1),
        sbom_href,
        scans,
        scan_note,
    })
}

fn image_scans(scan: &Value) -> Vec<ImageScanView> {
    scan["images"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|image| ImageScanView {
            platform: text(&image["platform"]),
            platform_query: platform_param(image["platform"].as_str(), '&'),
            binaries: image["binaries"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|binary| {
                    let path = text(&binary["path"]);
                    let modules = image["packages"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter(|p| {
                            p["ecosystem"] == "Go"
                                && p["locations"]
                                    .as_array()
                                    .is_some_and(|l| l.iter().any(|l| l.as_str() == Some(&path)))
                        })
                        .map(|p| format!("{}@{}", text(&p["name"]), text(&p["version"])))
                        .collect::<Vec<_>>()
                        .join(", ");
                    BinaryRow {
                        go_version: text(&binary["go_version"]),
                        main_module: text(&binary["main_module"]),
                        target: format!("{}/{}", text(&binary["goos"]), text(&binary["goarch"])),
                        modules,
                        path,
                    }
                })
                .collect(),
            status: text(&image["status"]),
            scanned: image["scanned_ms"]
                .as_i64()
                .map(|ms| when(Some(ms / 1000)))
                .unwrap_or_default(),
            rows: image["vulnerabilities"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|v| VulnerabilityRow {
                    id: text(&v["id"]),
                    package: text(&v["package"]),
                    version: text(&v["version"]),
                    fixed: text(&v["fixed_version"]),
                    severity: text(&v["severity"]),
                    reachable: match v["reachable"].as_bool() {
                        Some(true) => "yes".into(),
                        Some(false) => "no".into(),
                        None => "unknown".into(),
                    },
                    summary: text(&v["summary"]),
                })
                .collect(),
        })
        .collect()
}

// ---- CI tokens --------------------------------------------------------------------------

#[derive(Deserialize)]
struct CredentialJson {
    name: String,
    repository: Option<String>,
    #[serde(default)]
    actions: Vec<String>,
    expires_at: Option<i64>,
    #[serde(default)]
    revoked: bool,
    #[serde(default)]
    created_by: String,
}

struct TokenRow {
    name: String,
    scope: String,
    expires: String,
    revoked: bool,
    created_by: String,
}

#[derive(Template)]
#[template(path = "tokens.html")]
struct TokensPage {
    chrome: Chrome,
    project: String,
    tabs: Tabs,
    rows: Vec<TokenRow>,
    /// A token just minted: its name and secret, shown this once.
    minted: Option<(String, String)>,
}

async fn tokens_page(
    web: &Web,
    viewer: &Viewer,
    project: String,
    minted: Option<(String, String)>,
) -> Page {
    #[derive(Deserialize)]
    struct Listed {
        credentials: Vec<CredentialJson>,
    }
    // A developer may mint a token for themselves without seeing the project's tokens: their
    // new token's secret is still shown.
    let listed = match api::get::<Listed>(
        &web.api,
        &viewer.actor,
        &format!("/api/v1/tokens?project={}", encode(&project)),
    )
    .await
    {
        Ok(listed) => listed,
        Err(PageError::Api { status, .. }) if minted.is_some() && status.is_client_error() => {
            Listed {
                credentials: Vec::new(),
            }
        }
        Err(e) => return Err(e),
    };
    let (tabs, _) = project_tabs(web, viewer, &project).await;
    html(&TokensPage {
        chrome: Chrome::of(viewer, format!("{project}: CI tokens")),
        tabs,
        rows: listed
            .credentials
            .into_iter()
            .map(|c| TokenRow {
                scope: format!(
                    "{} on {}",
                    c.actions.join(", "),
                    c.repository.unwrap_or_else(|| format!("{project}/*"))
                ),
                expires: when(c.expires_at),
                revoked: c.revoked,
                created_by: c.created_by,
                name: c.name,
            })
            .collect(),
        project,
        minted,
    })
}

pub(crate) async fn tokens(
    State(web): State<Arc<Web>>,
    viewer: Viewer,
    Path(project): Path<String>,
) -> Page {
    tokens_page(&web, &viewer, project, None).await
}

#[derive(Deserialize)]
pub(crate) struct NewTokenForm {
    csrf: Option<String>,
    repository: Option<String>,
    pull: Option<String>,
    push: Option<String>,
    ttl_minutes: Option<String>,
}

pub(crate) async fn create_token(
    State(web): State<Arc<Web>>,
    viewer: Viewer,
    Path(project): Path<String>,
    PageForm(form): PageForm<NewTokenForm>,
) -> Page {
    viewer.check_csrf(form.csrf.as_deref())?;
    let mut actions = Vec::new();
    if form.pull.is_some() {
        actions.push("pull");
    }
    if form.push.is_some() {
        actions.push("push");
    }
    let longest = gantry_access::limits::CI_TOKEN_TTL_SECS.end() / 60;
    let minutes: u64 = match form.ttl_minutes.as_deref().map(str::trim) {
        None | Some("") => gantry_access::limits::DEFAULT_CI_TOKEN_TTL_SECS / 60,
        Some(text) => text
            .parse()
            .ok()
            .filter(|m| (1..=longest).contains(m))
            .ok_or_else(|| {
                PageError::BadRequest(format!(
                    "{text:?} is not a number of minutes from 1 to {longest} (a week)"
                ))
            })?,
    };
    let mut body = json!({"project": project, "actions": actions, "ttl_secs": minutes * 60});
    if let Some(repository) = form
        .repository
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty())
    {
        // A name without its project is one of this project's repositories.
        let prefix = format!("{project}/");
        body["repository"] = match repository.starts_with(&prefix) {
            true => json!(repository),
            false => json!(format!("{prefix}{repository}")),
        };
    }
    let minted = api::call(
        &web.api,
        &viewer.actor,
        Method::POST,
        "/api/v1/tokens",
        Some(&body),
    )
    .await?;
    let text = |key: &str| minted[key].as_str().unwrap_or_default().to_string();
    tokens_page(&web, &viewer, project, Some((text("name"), text("secret")))).await
}

#[derive(Deserialize)]
pub(crate) struct RevokeForm {
    csrf: Option<String>,
    name: String,
}

pub(crate) async fn revoke_token(
    State(web): State<Arc<Web>>,
    viewer: Viewer,
    Path(project): Path<String>,
    PageForm(form): PageForm<RevokeForm>,
) -> Page {
    viewer.check_csrf(form.csrf.as_deref())?;
    api::call(
        &web.api,
        &viewer.actor,
        Method::DELETE,
        &format!("/api/v1/tokens/{}", encode(&form.name)),
        None,
    )
    .await?;
    notice::redirect(
        &format!("/projects/{}/tokens", encode(&project)),
        Done::Revoked,
    )
}

// ---- retention --------------------------------------------------------------------------

struct PlanRow {
    repository: String,
    what: String,
    digest: String,
    reason: String,
}

#[derive(Template)]
#[template(path = "retention.html")]
struct RetentionPage {
    chrome: Chrome,
    project: String,
    tabs: Tabs,
    retention: RetentionView,
    /// A run's or dry run's plan.
    plan: Option<Plan>,
    runs: Vec<RetentionRunRow>,
}

struct RetentionRunRow {
    at: String,
    actor: String,
    dry_run: bool,
    tags: u64,
    manifests: u64,
    freed: String,
}

struct Plan {
    dry_run: bool,
    delete: Vec<PlanRow>,
    kept: usize,
    protected: usize,
    freed: String,
}

async fn retention_page(web: &Web, viewer: &Viewer, project: String, plan: Option<Plan>) -> Page {
    let base = format!("/api/v1/projects/{}/retention", encode(&project));
    let policy = api::get::<Value>(&web.api, &viewer.actor, &base).await?;
    let history = api::get::<Value>(&web.api, &viewer.actor, &format!("{base}/runs")).await?;
    let runs = history["runs"]
        .as_array()
        .into_iter()
        .flatten()
        .take(10)
        .map(|run| RetentionRunRow {
            at: when(run["at"].as_i64()),
            actor: text(&run["actor"]),
            dry_run: run["dry_run"].as_bool().unwrap_or(false),
            tags: run["deleted_tags"].as_u64().unwrap_or(0),
            manifests: run["deleted_manifests"].as_u64().unwrap_or(0),
            freed: size(run["freed_bytes"].as_u64().unwrap_or(0)),
        })
        .collect();
    let (tabs, _) = project_tabs(web, viewer, &project).await;
    html(&RetentionPage {
        chrome: Chrome::of(viewer, format!("{project}: retention")),
        tabs,
        retention: RetentionView::of(&policy),
        project,
        plan,
        runs,
    })
}

pub(crate) async fn retention(
    State(web): State<Arc<Web>>,
    viewer: Viewer,
    Path(project): Path<String>,
) -> Page {
    retention_page(&web, &viewer, project, None).await
}

#[derive(Deserialize)]
pub(crate) struct RetentionRunForm {
    csrf: Option<String>,
    /// `now`: run the policy; absent: a dry run.
    run: Option<String>,
}

/// Runs the policy, as a dry run unless the form says `run=now`, and shows exactly what would
/// go (or went).
pub(crate) async fn retention_run(
    State(web): State<Arc<Web>>,
    viewer: Viewer,
    Path(project): Path<String>,
    PageForm(form): PageForm<RetentionRunForm>,
) -> Page {
    viewer.check_csrf(form.csrf.as_deref())?;
    let dry_run = form.run.as_deref() != Some("now");
    let report = api::call(
        &web.api,
        &viewer.actor,
        Method::POST,
        &format!(
            "/api/v1/projects/{}/retention/runs?dry_run={dry_run}",
            encode(&project)
        ),
        None,
    )
    .await?;
    let list = |key: &str| report[key].as_array().cloned().unwrap_or_default();
    let mut delete: Vec<PlanRow> = list("delete_tags")
        .iter()
        .map(|t| PlanRow {
            repository: text(&t["repository"]),
            what: format!("tag {}", text(&t["tag"])),
            digest: text(&t["digest"]),
            reason: text(&t["reason"]),
        })
        .collect();
    delete.extend(list("delete_manifests").iter().map(|m| PlanRow {
        repository: text(&m["repository"]),
        what: "manifest".into(),
        digest: text(&m["digest"]),
        reason: text(&m["reason"]),
    }));
    let plan = Plan {
        dry_run,
        delete,
        kept: list("keep").len(),
        protected: list("protected").len(),
        freed: size(report["freed_bytes"].as_u64().unwrap_or(0)),
    };
    retention_page(&web, &viewer, project, Some(plan)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gc_summary_reads_the_apis_report_and_a_scheduled_runs_result_alike() {
        let answered = json!({"dry_run": true, "manifests": [["team/app", "sha256:ab"]],
            "manifest_bytes": 2048, "blobs": 3, "blob_bytes": 1_048_576, "uploads": 1, "repositories": 0});
        let scheduled = json!({"manifests": 1, "manifest_bytes": 2048, "blobs": 3,
            "blob_bytes": 1_048_576, "uploads": 1, "repositories": 0});
        let tail =
            "1 manifests (2.0 KiB), 3 blobs (1.0 MiB), 1 upload sessions, 0 empty repositories";
        assert_eq!(gc_summary(&answered), format!("would delete {tail}"));
        assert_eq!(gc_summary(&scheduled), format!("deleted {tail}"));
    }

    #[test]
    fn figures_read_as_people_read_them() {
        assert_eq!(size(512), "512 B");
        assert_eq!(size(3 << 20), "3.0 MiB");
        assert_eq!(when(Some(0)), "1970-01-01 00:00 UTC");
        assert_eq!(when(None), "—");
        assert_eq!(percent(50, Some(200)), Some(25));
        assert_eq!(percent(500, Some(200)), Some(100));
        assert_eq!(percent(5, None), None);
    }

    #[test]
    fn sign_in_returns_only_to_a_path_of_this_site() {
        assert_eq!(local_path(Some("/projects/team")), "/projects/team");
        for foreign in [
            "//evil.example",
            "https://evil.example",
            "/\\evil.example",
            "x",
            "/\t/evil.example",
            "/\n/evil.example",
            "/ /evil.example",
            "/\u{1}",
            "/\r",
        ] {
            assert_eq!(local_path(Some(foreign)), "/", "{foreign}");
        }
        assert_eq!(local_path(None), "/");
    }
}

// ---- audit logs and a project's usage ----------------------------------------------------

struct AuditRow {
    at: String,
    actor: String,
    action: String,
    resource: String,
    outcome: String,
    /// What refused a refusal, or what a change did.
    detail: String,
    client: String,
}

/// Entries an audit page shows (the newest).
const AUDIT_PAGE_ENTRIES: u32 = 200;

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    chrome: Chrome,
    /// The project whose log this is, with its tabs; `None` for the whole registry's.
    project: Option<(String, Tabs)>,
    limit: u32,
    rows: Vec<AuditRow>,
}

/// The audit page of `project`, or of the whole registry (system administrators: the API
/// refuses others).
async fn audit_page(web: &Web, viewer: &Viewer, project: Option<String>) -> Page {
    let filter = project
        .as_deref()
        .map(|p| format!("&project={}", encode(p)))
        .unwrap_or_default();
    let path = format!("/api/v1/audit?limit={AUDIT_PAGE_ENTRIES}{filter}");
    let listed = api::get::<Value>(&web.api, &viewer.actor, &path).await?;
    let rows = listed["events"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| AuditRow {
            at: when(e["at"].as_i64()),
            actor: text(&e["actor"]),
            action: text(&e["action"]),
            resource: text(&e["resource"]),
            outcome: text(&e["outcome"]),
            detail: text(&e["detail"]),
            client: text(&e["client"]),
        })
        .collect();
    let (title, project) = match project {
        Some(project) => {
            let (tabs, _) = project_tabs(web, viewer, &project).await;
            (format!("{project}: audit log"), Some((project, tabs)))
        }
        None => ("Audit log".to_string(), None),
    };
    html(&AuditPage {
        chrome: Chrome::of(viewer, title),
        project,
        limit: AUDIT_PAGE_ENTRIES,
        rows,
    })
}

pub(crate) async fn audit(
    State(web): State<Arc<Web>>,
    viewer: Viewer,
    Path(project): Path<String>,
) -> Page {
    audit_page(&web, &viewer, Some(project)).await
}

/// Every project's audit log and what belongs to none, for system administrators.
pub(crate) async fn system_audit(State(web): State<Arc<Web>>, viewer: Viewer) -> Page {
    audit_page(&web, &viewer, None).await
}

/// A line chart of `points` (day, value) as SVG path data in a `WIDTH`×`HEIGHT` box, with the
/// largest value for the axis label.
struct Chart {
    path: String,
    /// The last point, marked (a single day is a dot).
    end: (String, String),
    max: String,
    first: String,
    last: String,
}

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 160.0;

fn chart(points: &[(String, u64)], label: impl Fn(u64) -> String) -> Option<Chart> {
    let (first, last) = (points.first()?, points.last()?);
    let max = points.iter().map(|(_, v)| *v).max().unwrap_or(0).max(1);
    let step = if points.len() > 1 {
        WIDTH / (points.len() - 1) as f64
    } else {
        0.0
    };
    let at = |i: usize, v: u64| (i as f64 * step, HEIGHT - (v as f64 / max as f64) * HEIGHT);
    let path = points
        .iter()
        .enumerate()
        .map(|(i, (_, v))| {
            let (x, y) = at(i, *v);
            format!("{}{x:.1},{y:.1}", if i == 0 { "M" } else { " L" })
        })
        .collect();
    let (x, y) = at(points.len() - 1, last.1);
    Some(Chart {
        path,
        end: (format!("{x:.1}"), format!("{y:.1}")),
        max: label(max),
        first: first.0.clone(),
        last: last.0.clone(),
    })
}

struct SeriesView {
    name: String,
    chart: Option<Chart>,
    latest: String,
}

#[derive(Template)]
#[template(path = "usage.html")]
struct UsagePage {
    chrome: Chrome,
    project: String,
    tabs: Tabs,
    storage: Option<Chart>,
    repositories: Vec<SeriesView>,
    /// Per repository, the size of each version line's newest image, lowest line first.
    versions: Vec<SeriesView>,
}

fn series_points(series: &Value) -> Vec<(String, u64)> {
    series["days"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| {
            (
                d["day"].as_str().unwrap_or("").to_string(),
                d["bytes"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

pub(crate) async fn usage(
    State(web): State<Arc<Web>>,
    viewer: Viewer,
    Path(project): Path<String>,
) -> Page {
    let report = api::get::<Value>(
        &web.api,
        &viewer.actor,
        &format!("/api/v1/usage?project={}&since_days=90", encode(&project)),
    )
    .await?;
    let list = |key: &str| report[key].as_array().cloned().unwrap_or_default();
    let storage = list("projects")
        .iter()
        .find(|p| p["project"] == project.as_str())
        .and_then(|p| chart(&series_points(p), size));
    let repositories = list("repositories")
        .iter()
        .map(|r| {
            let points = series_points(r);
            SeriesView {
                name: r["repository"].as_str().unwrap_or("").to_string(),
                latest: points.last().map(|(_, v)| size(*v)).unwrap_or_default(),
                chart: chart(&points, size),
            }
        })
        .collect();
    let versions = list("versions")
        .iter()
        .map(|repository| {
            let points: Vec<(String, u64)> = repository["versions"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|v| {
                    (
                        v["line"].as_str().unwrap_or("").to_string(),
                        v["bytes"].as_u64().unwrap_or(0),
                    )
                })
                .collect();
            SeriesView {
                name: repository["repository"].as_str().unwrap_or("").to_string(),
                latest: points.last().map(|(_, v)| size(*v)).unwrap_or_default(),
                chart: chart(&points, size),
            }
        })
        .collect();
    let (tabs, _) = project_tabs(&web, &viewer, &project).await;
    html(&UsagePage {
        chrome: Chrome::of(&viewer, format!("{project}: usage")),
        project,
        tabs,
        storage,
        repositories,
        versions,
    })
}

// ---- administrators' pages ---------------------------------------------------------------

#[derive(Template)]
#[template(path = "admin.html")]
struct AdminPage {
    chrome: Chrome,
    users: Vec<(String, bool)>,
    jobs: Vec<JobRow>,
    /// Name, location, records, imported, newest record.
    sources: Vec<(String, String, u64, String, String)>,
    generation: i64,
    /// Name, URL, cache project, cached bytes, cached artifacts.
    upstreams: Vec<(String, String, String, String, u64)>,
    robots: Vec<RobotRow>,
    allowlist: AllowlistView,
    /// The latest scheduled collections: finished, state, what they did.
    gc_runs: Vec<(String, String, String)>,
}

/// What a garbage collection's report says it did (or, dry, would do).
fn gc_summary(report: &Value) -> String {
    let count = |key: &str| report[key].as_u64().unwrap_or(0);
    format!(
        "{} {} manifests ({}), {} blobs ({}), {} upload sessions, {} empty repositories",
        if report["dry_run"].as_bool().unwrap_or(false) {
            "would delete"
        } else {
            "deleted"
        },
        // A report as the API answers lists the manifests; a scheduled job's result counts them.
        report["manifests"]
            .as_array()
            .map_or_else(|| count("manifests"), |m| m.len() as u64),
        size(count("manifest_bytes")),
        count("blobs"),
        size(count("blob_bytes")),
        count("uploads"),
        count("repositories"),
    )
}

struct JobRow {
    id: i64,
    kind: String,
    subject: String,
    state: String,
    attempts: String,
    error: String,
    created: String,
}

/// Users and recent background jobs (GC runs, retention, scans, replication): system
/// administrators (the API refuses others).
pub(crate) async fn admin(State(web): State<Arc<Web>>, viewer: Viewer) -> Page {
    let get = |path: &'static str| api::get::<Value>(&web.api, &viewer.actor, path);
    let users = get("/api/v1/users").await?;
    let jobs = get("/api/v1/jobs?limit=100").await?;
    let vulndb = get("/api/v1/vulndb").await?;
    let mirror = get("/api/v1/mirror").await?;
    let robots = get("/api/v1/robots").await?;
    let allowlist = get("/api/v1/vulnerability-allowlist").await?;
    let gc_jobs = get("/api/v1/jobs?kind=gc&limit=10").await?;
    let rows = |v: &Value, key: &str| v[key].as_array().cloned().unwrap_or_default();
    html(&AdminPage {
        chrome: Chrome::of(&viewer, "Administration"),
        generation: vulndb["generation"].as_i64().unwrap_or(0),
        sources: rows(&vulndb, "sources")
            .iter()
            .map(|s| {
                (
                    text(&s["name"]),
                    text(&s["location"]),
                    s["records"].as_u64().unwrap_or(0),
                    when(s["imported_at"].as_i64()),
                    text(&s["newest_modified"]),
                )
            })
            .collect(),
        upstreams: rows(&mirror, "upstreams")
            .iter()
            .map(|u| {
                (
                    text(&u["name"]),
                    text(&u["url"]),
                    text(&u["project"]),
                    size(u["cached_bytes"].as_u64().unwrap_or(0)),
                    u["cached_artifacts"].as_u64().unwrap_or(0),
                )
            })
            .collect(),
        robots: RobotRow::listed(&robots),
        allowlist: AllowlistView::of(&allowlist, "/admin/allowlist".into(), true),
        gc_runs: rows(&gc_jobs, "jobs")
            .iter()
            .map(|j| {
                let report = j["result"]
                    .as_str()
                    .and_then(|r| serde_json::from_str::<Value>(r).ok());
                (
                    when(j["finished_ms"].as_i64().map(|ms| ms / 1000)),
                    text(&j["state"]),
                    report
                        .as_ref()
                        .map(gc_summary)
                        .unwrap_or_else(|| text(&j["last_error"])),
                )
            })
            .collect(),
        users: users["users"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|u| (text(&u["name"]), u["admin"].as_bool().unwrap_or(false)))
            .collect(),
        jobs: jobs["jobs"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|j| JobRow {
                id: j["id"].as_i64().unwrap_or(0),
                kind: text(&j["kind"]),
                subject: text(&j["subject"]),
                state: text(&j["state"]),
                attempts: format!(
                    "{}/{}",
                    j["attempts"].as_u64().unwrap_or(0),
                    j["max_attempts"].as_u64().unwrap_or(0)
                ),
                error: text(&j["last_error"]),
                created: when(j["created_ms"].as_i64().map(|ms| ms / 1000)),
            })
            .collect(),
    })
}

#[derive(Template)]
#[template(path = "gc.html")]
struct GcPage {
    chrome: Chrome,
    dry_run: bool,
    summary: String,
    /// (repository, digest) of the manifests collected, the first hundred.
    manifests: Vec<(String, String)>,
    more: usize,
}

#[derive(Deserialize)]
pub(crate) struct GcForm {
    csrf: Option<String>,
    /// Present: only report what would be collected.
    dry_run: Option<String>,
}

/// Runs a garbage collection now (or a dry run) and shows its report.
pub(crate) async fn collect_garbage(
    State(web): State<Arc<Web>>,
    viewer: Viewer,
    PageForm(form): PageForm<GcForm>,
) -> Page {
    viewer.check_csrf(form.csrf.as_deref())?;
    let dry_run = form.dry_run.is_some();
    let report = api::call(
        &web.api,
        &viewer.actor,
        Method::POST,
        &format!("/api/v1/gc?dry_run={dry_run}"),
        None,
    )
    .await?;
    let manifests: Vec<(String, String)> = report["manifests"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| (text(&m[0]), text(&m[1])))
        .collect();
    html(&GcPage {
        chrome: Chrome::of(&viewer, "Garbage collection"),
        dry_run,
        summary: gc_summary(&report),
        more: manifests.len().saturating_sub(100),
        manifests: manifests.into_iter().take(100).collect(),
    })
}

// ---- size analysis ----------------------------------------------------------------------

struct AnalysisLayer {
    digest: String,
    compressed: String,
    uncompressed: String,
    files: u64,
    created_by: String,
}

#[derive(Template)]
#[template(path = "analysis.html")]
struct AnalysisPage {
    chrome: Chrome,
    repository: String,
    crumbs: Crumbs,
    reference: String,
    platform: String,
    compressed: String,
    uncompressed: String,
    wasted: String,
    layers: Vec<AnalysisLayer>,
    /// Path, size, layer.
    largest: Vec<(String, String, u64)>,
    /// Path, size, how, layer, by layer.
    waste: Vec<(String, String, String, u64, u64)>,
    binary: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct AnalysisParams {
    repository: String,
    reference: String,
    platform: Option<String>,
}

/// An image's size analysis: layers, largest files, wasted bytes, the entrypoint binary.
pub(crate) async fn analysis(
    State(web): State<Arc<Web>>,
    viewer: Viewer,
    PageQuery(params): PageQuery<AnalysisParams>,
) -> Page {
    let platform = platform_param(params.platform.as_deref(), '?');
    let path = artifact_api(
        &params.repository,
        &params.reference,
        &format!("/analysis{platform}"),
    );
    let report = api::get::<Value>(&web.api, &viewer.actor, &path).await?;
    let number = |v: &Value| v.as_u64().unwrap_or(0);
    let list = |key: &str| report[key].as_array().cloned().unwrap_or_default();
    let binary = report["binary"].as_object().map(|b| {
        let flag = |key: &str, yes: &str, no: &str| match b.get(key).and_then(Value::as_bool) {
            Some(true) => yes.to_string(),
            Some(false) => no.to_string(),
            None => String::new(),
        };
        [
            text(&b["path"]),
            size(b["size"].as_u64().unwrap_or(0)),
            flag("static_linked", "static", "dynamic"),
            flag("stripped", "stripped", "with symbols"),
            b["go_version"].as_str().unwrap_or("not Go").to_string(),
        ]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" · ")
    });
    html(&AnalysisPage {
        chrome: Chrome::of(&viewer, format!("{}: size analysis", params.repository)),
        crumbs: Crumbs::of(&params.repository),
        compressed: size(number(&report["compressed"])),
        uncompressed: size(number(&report["uncompressed"])),
        wasted: size(number(&report["wasted_bytes"])),
        layers: list("layers")
            .iter()
            .map(|l| AnalysisLayer {
                digest: text(&l["digest"]),
                compressed: size(number(&l["compressed"])),
                uncompressed: size(number(&l["uncompressed"])),
                files: number(&l["files"]),
                created_by: text(&l["created_by"]),
            })
            .collect(),
        largest: list("largest")
            .iter()
            .map(|f| {
                (
                    text(&f["path"]),
                    size(number(&f["size"])),
                    number(&f["layer"]),
                )
            })
            .collect(),
        waste: list("wasted")
            .iter()
            .map(|w| {
                (
                    text(&w["path"]),
                    size(number(&w["size"])),
                    text(&w["how"]),
                    number(&w["layer"]),
                    number(&w["by"]),
                )
            })
            .collect(),
        binary,
        platform: params.platform.unwrap_or_default(),
        repository: params.repository,
        reference: params.reference,
    })
}
