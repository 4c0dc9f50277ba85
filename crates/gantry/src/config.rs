//! Settings for `gantry serve`, layered as users of other daemons expect: command-line flags
//! override `GANTRY_*` environment variables (clap reads both), which override the TOML file
//! given by `--config`, which overrides the built-in defaults.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:5000";
pub const DEFAULT_DATA_DIR: &str = "./gantry-data";
/// How long a shutdown waits for requests in flight before closing them (as distribution's
/// `http.draintimeout`).
pub const DEFAULT_DRAIN_TIMEOUT_SECS: u64 = 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// The TOML file's shape; every field is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub drain_timeout_secs: Option<u64>,
    pub public_url: Option<String>,
    /// Reverse proxies (addresses or CIDR networks) whose X-Forwarded-For / Forwarded headers
    /// name the client.
    pub trusted_proxies: Option<Vec<String>>,
    #[serde(default)]
    pub log: FileLogConfig,
    #[serde(default)]
    pub auth: FileAuthConfig,
    #[serde(default)]
    pub gc: FileGcConfig,
    #[serde(default)]
    pub archive: FileArchiveConfig,
    #[serde(default)]
    pub storage: FileStorageConfig,
    #[serde(default)]
    pub metrics: FileMetricsConfig,
    #[serde(default)]
    pub tls: FileTlsConfig,
    #[serde(default)]
    pub database: FileDatabaseConfig,
    #[serde(default)]
    pub vulndb: FileVulnDbConfig,
    /// `[[upstreams]]`: registries this one is a pull-through cache of.
    #[serde(default)]
    pub upstreams: Vec<FileUpstream>,
    #[serde(default)]
    pub mirror: FileMirrorConfig,
    /// `[[replication]]`: registries what is pushed here is copied to (`kind = "push"`, the
    /// default), or that are pulled from (`kind = "pull"`).
    #[serde(default)]
    pub replication: Vec<gantry_mirror::replication::RuleSpec>,
    /// `[[preheat]]`: edge caches warmed with what they will be asked for.
    #[serde(default)]
    pub preheat: Vec<FilePreheat>,
}

/// One `[[preheat]]` table: an edge cache of this registry to warm.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilePreheat {
    pub name: String,
    /// `http(s)://host[:port]` of the edge registry.
    pub edge: String,
    /// The edge's cache project for this registry (`origin` for `origin/team/app`); absent:
    /// the edge mirrors this registry's names as they are.
    pub edge_project: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    /// The project whose tags are warmed.
    pub project: String,
    #[serde(default)]
    pub repositories: gantry_lifecycle::retention::Selector,
    #[serde(default)]
    pub tags: gantry_lifecycle::retention::Selector,
    /// Only the `count` tags most pulled within the last `days` days.
    pub most_pulled: Option<gantry_mirror::replication::MostPulled>,
    /// Image labels an image must have (`KEY` or `KEY=VALUE`).
    #[serde(default)]
    pub labels: Vec<String>,
    /// When to warm (cron, UTC); without one, only by hand (`gantry preheat run`) or `at`.
    pub schedule: Option<gantry_lifecycle::schedule::Schedule>,
    /// Warm once at this time (RFC 3339), as before a rollout.
    pub at: Option<String>,
}

/// One `[[upstreams]]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileUpstream {
    /// What mirror requests name it by (`?ns=NAME`), and its cache project's name unless
    /// `project` says otherwise.
    pub name: String,
    /// `http(s)://host[:port]` of the upstream registry.
    pub url: String,
    pub username: Option<String>,
    pub password: Option<String>,
    /// Requests without `ns` go to this upstream.
    #[serde(default)]
    pub default: bool,
    /// Anyone may pull what is mirrored (docker sends no credentials to a mirror).
    #[serde(default)]
    pub public: bool,
    pub project: Option<String>,
}

/// `[mirror]`: the pull-through cache's behaviour.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileMirrorConfig {
    /// Seconds a tag's cached manifest is served before the upstream is asked again
    /// (default 60).
    pub revalidate_after_secs: Option<u64>,
    /// Seconds an upstream may take to accept a connection, and to send the next bytes of
    /// an answer, before it counts as failed (default 10 and 30).
    pub connect_timeout_secs: Option<u64>,
    pub read_timeout_secs: Option<u64>,
}

/// `[vulndb]`: the vulnerability database's scheduled refresh.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileVulnDbConfig {
    /// An http(s) URL or a directory (an internal mirror) to import from on a schedule, as
    /// `gantry vulndb import` would; absent: no scheduled refresh.
    pub refresh: Option<String>,
    /// Seconds between refreshes (default a day).
    pub refresh_every_secs: Option<u64>,
    /// A PEM file of CA certificates the refresh trusts besides the system's roots (an
    /// internal mirror's private CA).
    pub refresh_ca_cert: Option<PathBuf>,
}

/// `[database]`: where the metadata lives.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileDatabaseConfig {
    /// `postgres://…` for PostgreSQL; otherwise an SQLite file path.
    pub url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileMetricsConfig {
    /// A separate address serving /metrics, /healthz and /readyz without credentials.
    pub listen: Option<String>,
    pub per_repository: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileTlsConfig {
    /// PEM certificate chain, the server's certificate first.
    pub cert: Option<PathBuf>,
    /// PEM private key of that certificate.
    pub key: Option<PathBuf>,
    pub reload_poll_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileArchiveConfig {
    pub location: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileStorageConfig {
    /// `s3://BUCKET[/PREFIX]`; absent: the data directory.
    pub location: Option<String>,
    /// Size of the parts an upload sends to S3, in MiB (5 to 16): each active upload
    /// buffers one part.
    pub part_size_mib: Option<usize>,
    /// Blob GETs answer 307 to a presigned URL of the bucket instead of streaming.
    pub redirect: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileGcConfig {
    pub interval_secs: Option<u64>,
    pub grace_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileAuthConfig {
    pub auto_create_projects: Option<bool>,
    pub token_ttl_secs: Option<u64>,
    /// The registry tokens' signing key (PKCS#8 PEM, P-256), shared by replicas.
    pub token_key: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileLogConfig {
    pub format: Option<LogFormat>,
    pub level: Option<String>,
}

/// A secret setting: its Debug form never shows the value.
#[derive(Clone)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(****)")
    }
}

/// The settings `serve` runs with, after layering.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub drain_timeout: std::time::Duration,
    /// Password for the `admin` user created on first start (GANTRY_ADMIN_PASSWORD only:
    /// a secret does not belong in flags or config files).
    pub admin_password: Option<Secret>,
    pub log_format: LogFormat,
    pub log_level: String,
    /// The URL clients use to reach the registry (the token realm is derived from it);
    /// `None`: the Host of each request.
    pub public_url: Option<String>,
    /// Peers believed when they name the client in X-Forwarded-For / Forwarded; empty: none
    /// (the client is the connection's peer).
    pub trusted_proxies: gantry_server::TrustedProxies,
    /// Whether a push into a project that does not exist creates it.
    pub auto_create_projects: bool,
    pub token_ttl: std::time::Duration,
    /// The token signing key file every replica shares; it must exist (made once beforehand).
    /// `None`: `<data_dir>/token-signing-key.pem`, generated on first start.
    pub token_key: Option<PathBuf>,
    /// How often online garbage collection runs by itself; `None`: only when asked.
    pub gc_interval: Option<std::time::Duration>,
    pub gc_grace: std::time::Duration,
    /// Where `gantry archive` moves artifacts: a directory or `s3://BUCKET[/PREFIX]`.
    pub archive_location: String,
    /// Where blobs live: `s3://BUCKET[/PREFIX]`; `None`: `<data_dir>/storage`.
    pub storage_location: Option<String>,
    /// Bytes per S3 part (and per upload buffered in memory), for S3 storage.
    pub storage_part_size: usize,
    /// Whether blob GETs are redirected to presigned URLs of the bucket (S3 storage only).
    pub storage_redirect: bool,
    /// Where the metadata lives: `data_dir/gantry.db` unless `--database` says otherwise.
    pub database: gantry_meta::DatabaseLocation,
    /// Where `/metrics`, `/healthz` and `/readyz` are served without credentials; `None`:
    /// only on the main listener, `/metrics` for system administrators.
    pub metrics_listen: Option<SocketAddr>,
    /// Whether push and pull counters carry the repository (one series per repository).
    pub metrics_per_repository: bool,
    /// Serve HTTPS with this certificate and key; `None`: plain HTTP.
    pub tls: Option<crate::tls::TlsFiles>,
    /// How often the certificate files are looked at for a change; `None`: only on SIGHUP.
    pub tls_reload_poll: Option<std::time::Duration>,
    /// `[vulndb] refresh`: where and how often to import vulnerability data; `None`: never
    /// by itself.
    pub vulndb_refresh: Option<crate::vulndb_cmd::Refresh>,
    /// The upstreams this registry is a pull-through cache of (none: it is not one).
    pub upstreams: Vec<gantry_mirror::Upstream>,
    /// How long a tag's cached manifest is served before the upstream is asked again.
    pub revalidate_after: std::time::Duration,
    /// How upstreams (and replication targets) are reached.
    pub upstream_transport: gantry_client::Transport,
    /// Push replication and preheat rules (none: nothing is replicated or warmed).
    pub replication: Vec<gantry_mirror::replication::RuleSpec>,
}

/// An upstream that accepts no connection within this many seconds counts as unreachable.
pub const DEFAULT_UPSTREAM_CONNECT_TIMEOUT_SECS: u64 = 10;
/// An upstream that sends nothing for this many seconds within an answer counts as failed.
pub const DEFAULT_UPSTREAM_READ_TIMEOUT_SECS: u64 = 30;

/// `--upstream NAME=URL` as an upstream; the first one given is the default.
pub fn upstream_flag(flag: &str, first: bool) -> anyhow::Result<gantry_mirror::Upstream> {
    let (name, url) = flag.split_once('=').with_context(|| {
        format!("--upstream {flag:?} is not NAME=URL, e.g. --upstream docker.io=https://registry-1.docker.io")
    })?;
    Ok(gantry_mirror::Upstream {
        name: name.to_string(),
        url: url.to_string(),
        credentials: None,
        default: first,
        public: false,
        project: name.to_string(),
    })
}

/// Credentials from a table's `username` and `password`: both or neither.
fn credentials(
    table: &str,
    name: &str,
    username: Option<String>,
    password: Option<String>,
) -> anyhow::Result<Option<gantry_client::Credentials>> {
    match (username, password) {
        (Some(username), Some(password)) => {
            Ok(Some(gantry_client::Credentials { username, password }))
        }
        (None, None) => Ok(None),
        _ => anyhow::bail!(
            "[[{table}]] {name:?} has a username without a password or the other way round: \
             give both or neither"
        ),
    }
}

/// A `[[preheat]]` table as the rule it is.
fn preheat_table(table: FilePreheat) -> gantry_mirror::replication::RuleSpec {
    gantry_mirror::replication::RuleSpec {
        name: table.name,
        kind: gantry_mirror::replication::RuleKind::Preheat,
        url: table.edge,
        username: table.username,
        password: table.password,
        project: Some(table.project),
        repositories: table.repositories,
        tags: table.tags,
        labels: table.labels,
        schedule: table.schedule,
        at: table.at,
        edge_project: table.edge_project,
        most_pulled: table.most_pulled,
        ..gantry_mirror::replication::RuleSpec::default()
    }
}

fn upstream_table(table: FileUpstream) -> anyhow::Result<gantry_mirror::Upstream> {
    let credentials = credentials("upstreams", &table.name, table.username, table.password)?;
    Ok(gantry_mirror::Upstream {
        project: table.project.unwrap_or_else(|| table.name.clone()),
        name: table.name,
        url: table.url,
        credentials,
        default: table.default,
        public: table.public,
    })
}

/// A scheduled vulnerability database refresh runs daily unless told otherwise.
pub const DEFAULT_VULNDB_REFRESH_EVERY_SECS: u64 = 86_400;

/// Scheduled garbage collection: every 6 hours, collecting what is older than an hour.
pub const DEFAULT_GC_INTERVAL_SECS: u64 = 6 * 3600;
pub const DEFAULT_GC_GRACE_SECS: u64 = 3600;

/// Lifetime of registry tokens (distribution's default is also a few minutes).
pub const DEFAULT_TOKEN_TTL_SECS: u64 = 300;

/// Looking at two files' metadata every 2 s costs nothing, and a renewal is served at once.
pub const DEFAULT_TLS_RELOAD_POLL_SECS: u64 = 2;

/// What flags and environment said (each `None` when neither was given).
#[derive(Debug, Default)]
pub struct Overrides {
    pub config: Option<PathBuf>,
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub drain_timeout_secs: Option<u64>,
    pub log_format: Option<LogFormat>,
    pub log_level: Option<String>,
    pub public_url: Option<String>,
    pub trusted_proxies: Option<Vec<String>>,
    pub auto_create_projects: Option<bool>,
    pub token_ttl_secs: Option<u64>,
    pub token_key: Option<PathBuf>,
    pub gc_interval_secs: Option<u64>,
    pub archive_location: Option<String>,
    pub storage_location: Option<String>,
    pub database: Option<String>,
    pub metrics_listen: Option<String>,
    pub metrics_per_repository: Option<bool>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub tls_reload_poll_secs: Option<u64>,
    /// `--upstream NAME=URL`, repeatable; replaces the file's `[[upstreams]]`.
    pub upstreams: Option<Vec<String>>,
}

/// The SQLite file of the embedded default, inside the data directory.
pub const DATABASE_FILE: &str = "gantry.db";

/// `--database` (or `[database] url`) as a location; the data directory's SQLite file when
/// neither is given.
pub fn database_location(given: Option<String>, data_dir: &Path) -> gantry_meta::DatabaseLocation {
    match given {
        Some(location) => gantry_meta::DatabaseLocation::parse(&location),
        None => gantry_meta::DatabaseLocation::Sqlite(data_dir.join(DATABASE_FILE)),
    }
}

pub fn load_file(path: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "cannot read config file {}: check the --config path or GANTRY_CONFIG",
            path.display()
        )
    })?;
    toml::from_str(&text)
        .with_context(|| format!("config file {} is not valid Gantry TOML", path.display()))
}

pub fn resolve(overrides: Overrides) -> anyhow::Result<ServeConfig> {
    let file = match &overrides.config {
        Some(path) => load_file(path)?,
        None => FileConfig::default(),
    };
    let listen = overrides
        .listen
        .or(file.listen)
        .unwrap_or_else(|| DEFAULT_LISTEN.to_string());
    let listen: SocketAddr = listen.parse().with_context(|| {
        format!("listen address {listen:?} is not an IP:port such as 127.0.0.1:5000 or [::1]:5000")
    })?;
    let data_dir: PathBuf = overrides
        .data_dir
        .or(file.data_dir)
        .unwrap_or_else(|| DEFAULT_DATA_DIR.into());
    let tls = match (
        overrides.tls_cert.or(file.tls.cert),
        overrides.tls_key.or(file.tls.key),
    ) {
        (Some(cert), Some(key)) => Some(crate::tls::TlsFiles { cert, key }),
        (None, None) => None,
        _ => anyhow::bail!(
            "TLS needs both the certificate chain and its private key: give --tls-cert and \
             --tls-key (GANTRY_TLS_CERT and GANTRY_TLS_KEY, or cert and key under [tls])"
        ),
    };
    let upstreams = match overrides.upstreams {
        Some(flags) => flags
            .iter()
            .enumerate()
            .map(|(i, flag)| upstream_flag(flag, i == 0))
            .collect::<anyhow::Result<Vec<_>>>()?,
        None => file
            .upstreams
            .into_iter()
            .map(upstream_table)
            .collect::<anyhow::Result<Vec<_>>>()?,
    };
    gantry_mirror::upstream::validate_all(&upstreams)
        .context("the upstreams (--upstream, GANTRY_UPSTREAM or [[upstreams]]) cannot be used")?;
    let seconds = std::time::Duration::from_secs;
    let replication = file
        .replication
        .into_iter()
        .chain(file.preheat.into_iter().map(preheat_table))
        .collect();
    Ok(ServeConfig {
        replication,
        upstreams,
        revalidate_after: file
            .mirror
            .revalidate_after_secs
            .map_or(gantry_mirror::DEFAULT_REVALIDATE_AFTER, seconds),
        upstream_transport: gantry_client::Transport {
            connect_timeout: Some(seconds(
                file.mirror
                    .connect_timeout_secs
                    .unwrap_or(DEFAULT_UPSTREAM_CONNECT_TIMEOUT_SECS),
            )),
            read_timeout: Some(seconds(
                file.mirror
                    .read_timeout_secs
                    .unwrap_or(DEFAULT_UPSTREAM_READ_TIMEOUT_SECS),
            )),
            ..gantry_client::Transport::default()
        },
        listen,
        tls,
        tls_reload_poll: match overrides
            .tls_reload_poll_secs
            .or(file.tls.reload_poll_secs)
            .unwrap_or(DEFAULT_TLS_RELOAD_POLL_SECS)
        {
            0 => None,
            secs => Some(std::time::Duration::from_secs(secs)),
        },
        archive_location: overrides
            .archive_location
            .or(file.archive.location)
            .unwrap_or_else(|| data_dir.join("archive").display().to_string()),
        storage_redirect: match file.storage.redirect {
            Some(true) if overrides.storage_location.is_none() && file.storage.location.is_none() => {
                anyhow::bail!(
                    "[storage] redirect = true needs blobs in object storage: set --storage, \
                     GANTRY_STORAGE or [storage] location to s3://BUCKET[/PREFIX]"
                )
            }
            redirect => redirect.unwrap_or(false),
        },
        storage_location: match overrides.storage_location.or(file.storage.location) {
            Some(location) if !location.starts_with("s3://") => anyhow::bail!(
                "storage location {location:?} (--storage, GANTRY_STORAGE or [storage] location) \
                 must be s3://BUCKET[/PREFIX]; leave it out to keep blobs in the data directory"
            ),
            location => location,
        },
        storage_part_size: match file.storage.part_size_mib {
            None => gantry_storage::DEFAULT_PART_SIZE,
            Some(mib) if (5..=16).contains(&mib) => mib * 1024 * 1024,
            Some(mib) => anyhow::bail!(
                "[storage] part_size_mib = {mib} is outside 5 to 16: S3 parts are at least \
                 5 MiB, and each active upload buffers one part in memory"
            ),
        },
        database: database_location(overrides.database.or(file.database.url), &data_dir),
        data_dir,
        drain_timeout: std::time::Duration::from_secs(
            overrides
                .drain_timeout_secs
                .or(file.drain_timeout_secs)
                .unwrap_or(DEFAULT_DRAIN_TIMEOUT_SECS),
        ),
        admin_password: std::env::var("GANTRY_ADMIN_PASSWORD").ok().map(Secret),
        log_format: overrides.log_format.or(file.log.format).unwrap_or_default(),
        log_level: overrides
            .log_level
            .or(file.log.level)
            .unwrap_or_else(|| "info".into()),
        public_url: match overrides.public_url.or(file.public_url) {
            Some(url) if !(url.starts_with("http://") || url.starts_with("https://")) => {
                anyhow::bail!(
                    "public URL {url:?} must start with http:// or https://, e.g. https://registry.example.com"
                )
            }
            url => url,
        },
        trusted_proxies: gantry_server::TrustedProxies::parse(
            &overrides
                .trusted_proxies
                .or(file.trusted_proxies)
                .unwrap_or_default(),
        )
        .context(
            "trusted proxies (--trusted-proxies, GANTRY_TRUSTED_PROXIES or trusted_proxies) \
             must be IP addresses or CIDR networks, separated by commas",
        )?,
        auto_create_projects: overrides
            .auto_create_projects
            .or(file.auth.auto_create_projects)
            .unwrap_or(false),
        token_key: overrides.token_key.or(file.auth.token_key),
        token_ttl: std::time::Duration::from_secs(
            overrides
                .token_ttl_secs
                .or(file.auth.token_ttl_secs)
                .unwrap_or(DEFAULT_TOKEN_TTL_SECS)
                .max(1),
        ),
        gc_interval: match overrides
            .gc_interval_secs
            .or(file.gc.interval_secs)
            .unwrap_or(DEFAULT_GC_INTERVAL_SECS)
        {
            0 => None,
            secs => Some(std::time::Duration::from_secs(secs)),
        },
        gc_grace: std::time::Duration::from_secs(
            file.gc.grace_secs.unwrap_or(DEFAULT_GC_GRACE_SECS),
        ),
        metrics_listen: overrides
            .metrics_listen
            .or(file.metrics.listen)
            .map(|address| {
                address.parse().with_context(|| {
                    format!(
                        "metrics listen address {address:?} (--metrics-listen, GANTRY_METRICS_LISTEN \
                         or [metrics] listen) is not an IP:port such as 127.0.0.1:9090"
                    )
                })
            })
            .transpose()?,
        metrics_per_repository: overrides
            .metrics_per_repository
            .or(file.metrics.per_repository)
            .unwrap_or(false),
        vulndb_refresh: match (file.vulndb.refresh, file.vulndb.refresh_every_secs) {
            (None, _) if file.vulndb.refresh_ca_cert.is_some() => anyhow::bail!(
                "[vulndb] refresh_ca_cert is set without refresh: give refresh = \"URL\" to \
                 import from, or remove refresh_ca_cert"
            ),
            (None, Some(_)) => anyhow::bail!(
                "[vulndb] refresh_every_secs is set without refresh: give refresh = \"URL or \
                 directory\" to import from, or remove refresh_every_secs"
            ),
            (None, None) => None,
            (Some(_), Some(0)) => anyhow::bail!(
                "[vulndb] refresh_every_secs = 0: give the seconds between refreshes, e.g. 86400 \
                 for a day, or remove refresh to refresh only by hand (gantry vulndb import)"
            ),
            (Some(location), every) => Some(crate::vulndb_cmd::Refresh {
                location,
                ca_cert: file.vulndb.refresh_ca_cert,
                every: std::time::Duration::from_secs(
                    every.unwrap_or(DEFAULT_VULNDB_REFRESH_EVERY_SECS),
                ),
            }),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_apply_without_anything() {
        let c = resolve(Overrides::default()).unwrap();
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(c.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
        assert_eq!(c.log_format, LogFormat::Text);
        assert_eq!(c.drain_timeout.as_secs(), DEFAULT_DRAIN_TIMEOUT_SECS);
        assert!(
            !c.auto_create_projects,
            "pushing never creates projects unless asked"
        );
        assert_eq!(c.token_ttl.as_secs(), DEFAULT_TOKEN_TTL_SECS);
        assert_eq!(c.public_url, None);
        assert!(
            c.trusted_proxies.is_empty(),
            "no forwarding header is believed unless proxies are configured"
        );
        assert_eq!(
            c.gc_interval.map(|d| d.as_secs()),
            Some(DEFAULT_GC_INTERVAL_SECS)
        );
        assert_eq!(c.tls, None, "plain HTTP unless a certificate is given");
    }

    #[test]
    fn vulndb_refresh_is_read_from_the_file_with_a_daily_default() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gantry.toml");
        let with = |text: &str| {
            std::fs::write(&path, text).unwrap();
            resolve(Overrides {
                config: Some(path.clone()),
                ..Default::default()
            })
        };
        assert_eq!(with("").unwrap().vulndb_refresh, None);
        let daily = with("[vulndb]\nrefresh = \"https://mirror/osv/Go/all.zip\"\n").unwrap();
        assert_eq!(
            daily.vulndb_refresh,
            Some(crate::vulndb_cmd::Refresh {
                location: "https://mirror/osv/Go/all.zip".into(),
                every: std::time::Duration::from_secs(DEFAULT_VULNDB_REFRESH_EVERY_SECS),
                ca_cert: None,
            })
        );
        let private = with(
            "[vulndb]\nrefresh = \"https://mirror/all.zip\"\nrefresh_ca_cert = \"/etc/mirror-ca.pem\"\n",
        )
        .unwrap();
        assert_eq!(
            private.vulndb_refresh.unwrap().ca_cert.as_deref(),
            Some(Path::new("/etc/mirror-ca.pem"))
        );
        let error = with("[vulndb]\nrefresh_ca_cert = \"/etc/mirror-ca.pem\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("refresh_ca_cert is set without refresh"),
            "{error}"
        );
        let hourly = with("[vulndb]\nrefresh = \"/srv/osv\"\nrefresh_every_secs = 3600\n").unwrap();
        assert_eq!(hourly.vulndb_refresh.unwrap().every.as_secs(), 3600);
        let error = with("[vulndb]\nrefresh_every_secs = 60\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("without refresh"), "{error}");
        let error = with("[vulndb]\nrefresh = \"/srv/osv\"\nrefresh_every_secs = 0\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("refresh_every_secs = 0"), "{error}");
    }

    #[test]
    fn tls_takes_a_certificate_and_a_key_from_file_or_flags() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gantry.toml");
        std::fs::write(
            &path,
            "[tls]\ncert = \"/etc/gantry/chain.pem\"\nkey = \"/etc/gantry/key.pem\"\n",
        )
        .unwrap();
        let c = resolve(Overrides {
            config: Some(path.clone()),
            tls_cert: Some("/run/renewed.pem".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            c.tls,
            Some(crate::tls::TlsFiles {
                cert: "/run/renewed.pem".into(),
                key: "/etc/gantry/key.pem".into(),
            })
        );
        let err = resolve(Overrides {
            tls_cert: Some("/etc/gantry/chain.pem".into()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("--tls-key"), "{err}");
    }

    #[test]
    fn storage_location_comes_from_flag_or_file_and_must_be_s3() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gantry.toml");
        std::fs::write(
            &path,
            "[storage]\nlocation = \"s3://blobs/gantry\"\npart_size_mib = 16\n",
        )
        .unwrap();
        let c = resolve(Overrides {
            config: Some(path.clone()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(c.storage_location.as_deref(), Some("s3://blobs/gantry"));
        assert_eq!(c.storage_part_size, 16 * 1024 * 1024);
        assert!(!c.storage_redirect, "blobs are streamed unless asked");
        let c = resolve(Overrides {
            config: Some(path.clone()),
            storage_location: Some("s3://other".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(c.storage_location.as_deref(), Some("s3://other"));
        assert_eq!(
            resolve(Overrides::default()).unwrap().storage_location,
            None
        );

        let err = resolve(Overrides {
            storage_location: Some("/var/blobs".into()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("GANTRY_STORAGE"), "{err}");
        std::fs::write(&path, "[storage]\npart_size_mib = 4\n").unwrap();
        let err = resolve(Overrides {
            config: Some(path.clone()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("outside 5 to 16"), "{err}");
        std::fs::write(&path, "[storage]\nredirect = true\n").unwrap();
        let err = resolve(Overrides {
            config: Some(path),
            ..Default::default()
        })
        .unwrap_err();
        assert!(
            err.to_string().contains("needs blobs in object storage"),
            "{err}"
        );
    }

    #[test]
    fn flags_override_file_which_overrides_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gantry.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:6000\"\ndata_dir = \"/srv/g\"\ntrusted_proxies = [\"10.0.0.0/8\", \"::1\"]\n[log]\nformat = \"json\"\n[auth]\nauto_create_projects = true\n",
        )
        .unwrap();
        let c = resolve(Overrides {
            config: Some(path.clone()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(c.listen.port(), 6000);
        assert_eq!(c.data_dir, PathBuf::from("/srv/g"));
        assert_eq!(c.log_format, LogFormat::Json);
        assert!(c.auto_create_projects);
        assert_eq!(
            c.trusted_proxies,
            gantry_server::TrustedProxies::parse(&["10.0.0.0/8", "::1"]).unwrap()
        );
        let c = resolve(Overrides {
            config: Some(path),
            listen: Some("127.0.0.1:7000".into()),
            auto_create_projects: Some(false),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(c.listen.port(), 7000);
        assert!(!c.auto_create_projects);
        assert_eq!(c.data_dir, PathBuf::from("/srv/g"));
    }

    #[test]
    fn token_key_comes_from_flag_or_file_and_defaults_to_the_data_directory() {
        assert_eq!(resolve(Overrides::default()).unwrap().token_key, None);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gantry.toml");
        std::fs::write(&path, "[auth]\ntoken_key = \"/etc/gantry/token-key.pem\"\n").unwrap();
        let c = resolve(Overrides {
            config: Some(path.clone()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(c.token_key, Some("/etc/gantry/token-key.pem".into()));
        let c = resolve(Overrides {
            config: Some(path),
            token_key: Some("/run/secrets/key.pem".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(c.token_key, Some("/run/secrets/key.pem".into()));
    }

    #[test]
    fn bad_inputs_say_what_is_wrong() {
        let err = resolve(Overrides {
            listen: Some("localhost".into()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("not an IP:port"), "{err}");
        let err = resolve(Overrides {
            public_url: Some("registry.example.com".into()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("https://"), "{err}");
        let err = resolve(Overrides {
            trusted_proxies: Some(vec!["10.0.0.0/8".into(), "lb.internal".into()]),
            ..Default::default()
        })
        .unwrap_err();
        assert!(format!("{err:#}").contains("\"lb.internal\""), "{err:#}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "listne = \"x\"\n").unwrap();
        let err = resolve(Overrides {
            config: Some(path),
            ..Default::default()
        })
        .unwrap_err();
        assert!(format!("{err:#}").contains("unknown field"), "{err:#}");
    }
}
