//! The `gantry` binary: command-line parsing and wiring only; the work lives in the crates.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use gantry_client::{ImageRef, Layout, RegistryClient};

mod admin;
mod analyze_cmd;
mod backup;
mod bootstrap;
mod browse_cmd;
mod build_cmd;
mod config;
mod data_dir;
mod gate_cmd;
mod image_source;
mod jobs_cmd;
mod lifecycle_cmd;
mod lint_cmd;
mod logging;
mod progress;
mod replication_cmd;
mod scan_cmd;
mod serve;
mod signing_cmd;
mod tls;
mod usage_cmd;
mod vulndb_cache;
mod vulndb_cmd;

use config::LogFormat;

#[derive(Parser)]
#[command(
    name = "gantry",
    version,
    about = "A private container registry and image-lifecycle platform for Go services, in one binary.",
    long_about = "A private container registry and image-lifecycle platform for Go services, in one binary.\n\n\
        Start a registry with no setup (blobs on local disk, metadata in SQLite, 127.0.0.1:5000):\n    gantry serve\n\n\
        Then push an OCI image layout to it, pull it back, or copy between registries:\n    \
        gantry push ./my-layout:v1 127.0.0.1:5000/team/app:v1\n    \
        gantry pull 127.0.0.1:5000/team/app:v1 ./copy\n    \
        gantry copy 127.0.0.1:5000/team/app:v1 127.0.0.1:5000/team/app:stable\n\n\
        Every registry is private: the first start creates the user `admin` (password from\n\
        GANTRY_ADMIN_PASSWORD, or generated and printed once). Log in, make a project, add people:\n    \
        gantry login 127.0.0.1:5000 -u admin\n    \
        gantry project create team\n    \
        gantry user create alice && gantry member add team alice --role developer\n    \
        gantry token create --project team --push --ttl 15m     (a CI credential)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the registry server.
    #[command(long_about = "Run the registry server.\n\n\
        Settings come from flags, then GANTRY_* environment variables, then the TOML file given by\n\
        --config, then defaults. Example file:\n\n    \
        listen = \"127.0.0.1:5000\"\n    data_dir = \"/var/lib/gantry\"\n    drain_timeout_secs = 30\n    [log]\n    format = \"json\"\n    level = \"info\"\n    [tls]\n    cert = \"/etc/gantry/fullchain.pem\"\n    key = \"/etc/gantry/privkey.pem\"")]
    Serve(ServeArgs),
    /// Push an image from an OCI image layout directory to a registry.
    #[command(
        long_about = "Push an image from an OCI image layout directory to a registry.\n\n\
        LAYOUT is a directory (e.g. made by `skopeo copy ... oci:DIR:TAG` or `gantry pull`), optionally\n\
        followed by :TAG to choose one of several images in it. Blobs the registry already holds are skipped.\n\n\
        Example: gantry push ./app-layout:v1.2.0 127.0.0.1:5000/team/app:v1.2.0"
    )]
    Push {
        /// LAYOUT_DIR[:TAG]
        layout: String,
        /// REGISTRY/REPOSITORY[:TAG|@DIGEST]
        image: String,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Pull an image from a registry into an OCI image layout directory.
    #[command(
        long_about = "Pull an image from a registry into an OCI image layout directory.\n\n\
        The directory is created if needed; the image is named by its tag (or TAG after the directory).\n\
        Every blob is verified against its digest before it is kept.\n\n\
        Example: gantry pull 127.0.0.1:5000/team/app:v1.2.0 ./app-layout"
    )]
    Pull {
        /// REGISTRY/REPOSITORY[:TAG|@DIGEST]
        image: String,
        /// LAYOUT_DIR[:TAG]
        layout: String,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Copy an image between repositories or registries, byte for byte.
    #[command(
        long_about = "Copy an image between repositories or registries, byte for byte (same digests).\n\n\
        Inside one registry, blobs are mounted instead of transferred.\n\n\
        Example: gantry copy 127.0.0.1:5000/team/app:v1 registry.example.com/team/app:v1"
    )]
    Copy {
        /// REGISTRY/REPOSITORY[:TAG|@DIGEST] to copy from.
        source: String,
        /// REGISTRY/REPOSITORY[:TAG|@DIGEST] to copy to.
        destination: String,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Build a Go main package into a minimal, reproducible image, without a Docker daemon.
    #[command(
        long_about = "Build a Go main package into a minimal, reproducible image, without a Docker daemon.\n\n\
        The binary is built with CGO_ENABLED=0, -trimpath and -ldflags=\"-s -w\" for each --platform,\n\
        on a base Gantry writes itself: CA certificates, /etc/passwd and /etc/group with the\n\
        nonroot user 65532, /tmp (and the time zone database with --with-tzdata). The image runs\n\
        the binary as 65532. Every timestamp is SOURCE_DATE_EPOCH (or the commit time), so the\n\
        same source gives the same digest. An SPDX SBOM from the binary's Go build info is\n\
        pushed as a referrer of each platform's image.\n\n\
        Examples:\n    \
        gantry build ./cmd/api --image 127.0.0.1:5000/team/api --tags auto\n    \
        gantry build . --image registry.example.com/team/api:v1.2.0 --platform linux/amd64,linux/arm64\n    \
        gantry build . --image registry.example.com/team/api:dev --output ./api-layout"
    )]
    Build(build_cmd::BuildArgs),
    /// Show where the bytes of an image go, check it against a size budget, or compare two.
    #[command(
        long_about = "Show where the bytes of an image go, check it against a size budget, or compare two.\n\n\
        Reports each layer's compressed and uncompressed size, the largest files, bytes wasted on\n\
        files that later layers overwrite or delete, and whether the entrypoint binary is static,\n\
        stripped, and which Go version and modules built it.\n\n\
        Examples:\n    \
        gantry analyze 127.0.0.1:5000/team/api:v1.2.0 --budget 10MB\n    \
        gantry analyze oci:./api-layout:dev --json\n    \
        gantry analyze 127.0.0.1:5000/team/api:v1.1.0 127.0.0.1:5000/team/api:v1.2.0"
    )]
    Analyze(analyze_cmd::AnalyzeArgs),
    /// An image's packages and known vulnerabilities (Go modules and stdlib, Alpine, Debian).
    #[command(long_about = scan_cmd::LONG_ABOUT)]
    Scan(scan_cmd::ScanArgs),
    /// Check a Dockerfile for the mistakes of multi-stage Go builds.
    #[command(long_about = lint_cmd::long_about())]
    Lint {
        /// The Dockerfile.
        #[arg(default_value = "Dockerfile")]
        file: PathBuf,
        /// Print the findings as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print starter files: `gantry init dockerfile` writes a Dockerfile that passes `gantry lint`.
    Init {
        #[command(subcommand)]
        what: InitCommand,
    },
    /// Log in to a registry; the credentials are kept in the docker config.json.
    #[command(
        long_about = "Log in to a registry; the credentials are kept in the docker-compatible\n\
        config.json ($DOCKER_CONFIG or ~/.docker), which docker, podman, skopeo and oras read too.\n\n\
        Examples:\n    gantry login 127.0.0.1:5000 -u admin\n    \
        echo \"$TOKEN\" | gantry login registry.example.com -u 'ci$team+1a2b3c' --password-stdin"
    )]
    Login {
        /// HOST[:PORT] (or https://HOST[:PORT] / http://HOST[:PORT]) [default: 127.0.0.1:5000].
        registry: Option<String>,
        /// The user (or robot / CI token name) to log in as [default: asked].
        #[arg(short, long)]
        username: Option<String>,
        /// Read the password from stdin.
        #[arg(long)]
        password_stdin: bool,
        #[command(flatten)]
        transport: admin::TransportArgs,
    },
    /// Forget the credentials of a registry.
    Logout {
        /// HOST[:PORT] [default: 127.0.0.1:5000].
        registry: Option<String>,
    },
    /// Manage users (system administrators).
    User {
        #[command(subcommand)]
        command: admin::UserCommand,
        #[command(flatten)]
        api: admin::ApiArgs,
    },
    /// Manage projects: the first path component of a repository is its project.
    Project {
        #[command(subcommand)]
        command: admin::ProjectCommand,
        #[command(flatten)]
        api: admin::ApiArgs,
    },
    /// Manage project members and their roles.
    Member {
        #[command(subcommand)]
        command: admin::MemberCommand,
        #[command(flatten)]
        api: admin::ApiArgs,
    },
    /// Manage robot accounts: long-lived credentials with explicit permissions.
    Robot {
        #[command(subcommand)]
        command: admin::RobotCommand,
        #[command(flatten)]
        api: admin::ApiArgs,
    },
    /// Show or set a project's tag rules: immutable tags, allowed tags, no latest.
    TagRules {
        #[command(subcommand)]
        command: lifecycle_cmd::TagRulesCommand,
        #[command(flatten)]
        api: admin::ApiArgs,
    },
    /// Browse a project's repositories (`gantry repo list PROJECT`) or delete one
    /// (`gantry repo delete PROJECT/NAME`).
    Repo {
        #[command(subcommand)]
        command: browse_cmd::RepoCommand,
        #[command(flatten)]
        api: admin::ApiArgs,
    },
    /// Browse a repository's artifacts (`gantry artifact list REPOSITORY`, `gantry artifact show REF`).
    Artifact {
        #[command(subcommand)]
        command: browse_cmd::ArtifactCommand,
        #[command(flatten)]
        api: admin::ApiArgs,
    },
    /// Show, set, run (or dry-run) a project's retention policy.
    Retention {
        #[command(subcommand)]
        command: lifecycle_cmd::RetentionCommand,
        #[command(flatten)]
        api: admin::ApiArgs,
    },
    /// How projects and images grow and are used over time (daily snapshots).
    #[command(
        long_about = "How projects and their images grow and are used over time, from the snapshots the\n\
        server takes each day (stored bytes, artifacts, cumulative pushes and pulls per project and\n\
        repository, and the size of the newest image of each version line vMAJOR.MINOR).\n\n\
        Shows, per project, a sparkline of stored bytes over the days with first → last and the\n\
        change; the repositories that grew most; and the images that grew between versions\n\
        (`team/api  v1.0.0 9.0 MB → v1.4.0 30.1 MB (+234%)`), which stay visible after retention\n\
        deleted the old versions. Without PROJECT: every project (system administrators).\n\
        Examples:\n    \
        gantry usage team\n    \
        gantry usage team --since 12w\n    \
        gantry usage --since 7d --json\n    \
        gantry usage snapshot"
    )]
    Usage {
        #[command(subcommand)]
        command: Option<usage_cmd::UsageCommand>,
        /// The project to show [default: every project, for system administrators].
        project: Option<String>,
        /// The window: snapshots of the last 7d, 30d, 12w... (days or weeks), today included.
        #[arg(long, default_value = "30d", value_parser = usage_cmd::parse_window)]
        since: u32,
        #[command(flatten)]
        api: admin::ApiArgs,
    },
    /// Show a project's usage and quota; set limits; recount (system administrators).
    Quota {
        #[command(subcommand)]
        command: lifecycle_cmd::QuotaCommand,
        #[command(flatten)]
        api: admin::ApiArgs,
    },
    /// Move old artifacts out of the registry into the archive location (dir or S3).
    #[command(
        long_about = "Move old artifacts out of the registry into the server's archive location\n\
        (a directory or an S3 bucket, see `gantry serve --archive-location`), one OCI image layout\n\
        tarball per artifact. A digest goes with all its tags or not at all; signatures and SBOMs go\n\
        with their subject; garbage collection then frees the blobs. `gantry restore` brings an\n\
        archive back byte for byte. Example, release versions older than half a year:\n    \
        gantry archive team --tag 'v*' --pushed-before 180d --dry-run\n    \
        gantry archive team --tag 'v*' --pushed-before 180d"
    )]
    Archive {
        #[command(flatten)]
        args: lifecycle_cmd::ArchiveArgs,
        #[command(flatten)]
        api: admin::ApiArgs,
    },
    /// Bring archived artifacts back, byte for byte (ids from `gantry archive PROJECT --list`).
    Restore {
        /// The project the archives belong to.
        project: String,
        /// Archive ids to restore.
        #[arg(required = true)]
        ids: Vec<i64>,
        #[command(flatten)]
        api: admin::ApiArgs,
    },
    /// Send a project's events to a URL as signed CloudEvents; see deliveries (project admins).
    Webhook {
        #[command(subcommand)]
        command: jobs_cmd::WebhookCommand,
        #[command(flatten)]
        api: admin::ApiArgs,
    },
    /// A project's pull gate: refuse pulls of images with known vulnerabilities; allowlists.
    Gate {
        #[command(subcommand)]
        command: gate_cmd::GateCommand,
        #[command(flatten)]
        api: admin::ApiArgs,
    },
    /// Check an image's cosign signature against public keys (exit 1 when not signed by one).
    #[command(long_about = signing_cmd::VERIFY_LONG_ABOUT)]
    Verify(signing_cmd::VerifyArgs),
    /// Sign an image with a cosign private key (cosign v3's bundle, or the .sig tag).
    #[command(long_about = signing_cmd::SIGN_LONG_ABOUT)]
    Sign(signing_cmd::SignArgs),
    /// Signing keys in cosign's format.
    Key {
        #[command(subcommand)]
        command: signing_cmd::KeyCommand,
    },
    /// A project's signing policy: the keys it trusts; refuse pulls of unsigned images.
    SigningPolicy {
        #[command(subcommand)]
        command: signing_cmd::SigningPolicyCommand,
        #[command(flatten)]
        api: admin::ApiArgs,
    },
    /// Replication to and from other registries: rules, runs by hand, runs and items.
    Replication {
        #[command(subcommand)]
        command: replication_cmd::ReplicationCommand,
        #[command(flatten)]
        api: admin::ApiArgs,
    },
    /// Warm edge caches before a rollout: preheat rules, runs by hand, runs and items.
    #[command(
        long_about = "Warm edge caches before a rollout: preheat rules (`[[preheat]]` in the \
        config file, or `gantry preheat create` with `kind = \"preheat\"`), runs by hand, each \
        run's and item's status.\n\n\
        A preheat rule pulls what it selects through an edge registry that caches this one (a\n\
        Gantry pull-through cache, Distribution in proxy mode), so the edge holds it before the\n\
        peak and its pulls need nothing from here. It runs on its `schedule`, `at` a time, and by hand.\n\n\
        Example (gantry.toml):\n    \
        [[preheat]]\n    \
        name = \"eu-rollout\"\n    \
        edge = \"https://edge-eu.example.com\"\n    \
        edge_project = \"origin\"          # the edge's cache project for this registry\n    \
        project = \"team\"\n    \
        most_pulled = { count = 10, days = 7 }\n    \
        schedule = \"0 5 * * 1\"          # Mondays 05:00 UTC, before the rollout"
    )]
    Preheat {
        #[command(subcommand)]
        command: replication_cmd::ReplicationCommand,
        #[command(flatten)]
        api: admin::ApiArgs,
    },
    /// Background jobs and their history: scheduled GC, retention, snapshots, deliveries.
    Jobs {
        #[command(subcommand)]
        command: jobs_cmd::JobsCommand,
        #[command(flatten)]
        api: admin::ApiArgs,
    },
    /// Run online garbage collection now (system administrators); pushes and pulls go on.
    Gc {
        /// Report what would be freed without deleting anything.
        #[arg(long)]
        dry_run: bool,
        /// Only collect what is older than this, e.g. 1h, 30m (protects pushes in flight);
        /// 0s collects everything unreferenced now: only when no push is under way.
        #[arg(long, default_value = "1h", value_parser = admin::parse_duration)]
        grace: u64,
        /// Throttle: milliseconds to pause between batches of 1000 deletions (at most 60000).
        #[arg(long, default_value_t = 0)]
        pause_ms: u64,
        #[command(flatten)]
        api: admin::ApiArgs,
    },
    /// The vulnerability database scans match against: import OSV data, see what is loaded.
    Vulndb {
        #[command(subcommand)]
        command: vulndb_cmd::VulnDbCommand,
    },
    /// Copy the data directory into DIR while the server runs: a consistent backup.
    #[command(
        long_about = "Copy the data directory into DIR while the server runs: a consistent backup.\n\n\
        The database is copied as of one moment (SQLite's VACUUM INTO: pushes go on), then every\n\
        blob it records (digests verified), the token signing key and the initial admin password\n\
        file; gantry-backup.json is written last, and only a directory with it is a backup.\n\
        Garbage collection waits while a backup copies blobs. Upload sessions in progress and\n\
        the archive location are not included. Run it as the server's user, e.g. nightly:\n    \
        gantry backup /var/backups/gantry/$(date +%F) --data-dir /var/lib/gantry"
    )]
    Backup {
        /// A new (or empty) directory for the backup.
        dir: PathBuf,
        #[command(flatten)]
        data: backup::DataDirArgs,
    },
    /// Restore a backup made by `gantry backup` into a new data directory.
    #[command(
        long_about = "Restore a backup made by `gantry backup` into a new data directory.\n\n\
        The data directory (--data-dir) must not exist or be empty, and no server may run on it.\n\
        Every file's checksum and every blob's digest is verified; the data appears there only\n\
        once all of it is copied. Then start the server on it. Example:\n    \
        gantry restore-backup /var/backups/gantry/2026-11-30 --data-dir /var/lib/gantry"
    )]
    RestoreBackup {
        /// The backup directory (it holds gantry-backup.json).
        dir: PathBuf,
        #[command(flatten)]
        data: backup::DataDirArgs,
    },
    /// Mint, list and revoke short-lived CI tokens.
    Token {
        #[command(subcommand)]
        command: admin::TokenCommand,
        #[command(flatten)]
        api: admin::ApiArgs,
    },
    /// Read the audit log: logins, pushes, pulls, deletes and permission changes.
    Audit {
        /// Only this project's events (project admins may read their own).
        #[arg(long)]
        project: Option<String>,
        /// Only events this recent, e.g. 1h, 7d.
        #[arg(long, value_parser = admin::parse_duration)]
        since: Option<u64>,
        /// At most this many events.
        #[arg(long, default_value_t = 100)]
        limit: u32,
        #[command(flatten)]
        api: admin::ApiArgs,
    },
}

#[derive(Subcommand)]
enum InitCommand {
    /// A multi-stage Dockerfile for a Go service: static binary on scratch, CA certificates,
    /// non-root user.
    Dockerfile {
        /// The main package.
        #[arg(long, default_value = ".")]
        package: String,
        /// The Go version of the build stage's image.
        #[arg(long, default_value = "1.22")]
        go_version: String,
    },
}

#[derive(Args)]
struct ServeArgs {
    /// TOML configuration file.
    #[arg(long, env = "GANTRY_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:5000].
    #[arg(long, env = "GANTRY_LISTEN")]
    listen: Option<String>,
    /// Directory for blobs and the metadata database [default: ./gantry-data].
    #[arg(long, env = "GANTRY_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Seconds a shutdown waits for requests in flight before closing them [default: 30].
    #[arg(long, env = "GANTRY_DRAIN_TIMEOUT_SECS")]
    drain_timeout_secs: Option<u64>,
    /// Log line format [default: text].
    #[arg(long, env = "GANTRY_LOG_FORMAT", value_enum)]
    log_format: Option<LogFormat>,
    /// Log filter, e.g. info, debug, gantry_server=debug [default: info].
    #[arg(long, env = "GANTRY_LOG")]
    log_level: Option<String>,
    /// URL clients reach the registry at, e.g. https://registry.example.com behind a TLS
    /// proxy (token challenges point there) [default: the Host of each request].
    #[arg(long, env = "GANTRY_PUBLIC_URL")]
    public_url: Option<String>,
    /// Reverse proxies whose X-Forwarded-For / Forwarded headers name the client (for login
    /// throttling and the audit log): addresses or CIDR networks, comma-separated, e.g.
    /// 10.0.0.0/8,::1 [default: none; the client is the connection's peer].
    #[arg(long, env = "GANTRY_TRUSTED_PROXIES", value_delimiter = ',')]
    trusted_proxies: Option<Vec<String>>,
    /// Create a project (private, pusher as project admin) on the first push into it,
    /// instead of refusing the push [default: false].
    #[arg(long, env = "GANTRY_AUTO_CREATE_PROJECTS")]
    auto_create_projects: Option<bool>,
    /// Lifetime of issued registry tokens in seconds [default: 300].
    #[arg(long, env = "GANTRY_TOKEN_TTL_SECS")]
    token_ttl_secs: Option<u64>,
    /// The registry tokens' ES256 signing key, a PKCS#8 PEM P-256 key file that every replica
    /// behind one URL shares; it must exist (make it once: openssl genpkey -algorithm EC
    /// -pkeyopt ec_paramgen_curve:P-256 -out FILE) [default: DATA_DIR/token-signing-key.pem,
    /// created on first start].
    #[arg(long, env = "GANTRY_TOKEN_KEY")]
    token_key: Option<PathBuf>,
    /// Seconds between scheduled garbage collections; 0 turns them off [default: 21600].
    #[arg(long, env = "GANTRY_GC_INTERVAL_SECS")]
    gc_interval_secs: Option<u64>,
    /// Where archived artifacts go: a directory, or s3://BUCKET[/PREFIX] with the usual
    /// AWS_* variables for credentials, region and endpoint [default: DATA_DIR/archive].
    #[arg(long, env = "GANTRY_ARCHIVE_LOCATION")]
    archive_location: Option<String>,
    /// Where blobs live: s3://BUCKET[/PREFIX] on S3-compatible object storage, with the usual
    /// AWS_* variables for credentials, region and endpoint (AWS_ENDPOINT_URL, AWS_REGION,
    /// AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) [default: DATA_DIR/storage on local disk].
    #[arg(long = "storage", env = "GANTRY_STORAGE")]
    storage_location: Option<String>,
    /// Where the metadata lives: postgres://USER:PASSWORD@HOST:PORT/DATABASE for PostgreSQL
    /// (what several replicas share), or the path of an SQLite file
    /// [default: DATA_DIR/gantry.db].
    #[arg(long, env = "GANTRY_DATABASE")]
    database: Option<String>,
    /// Also serve /metrics, /healthz and /readyz on this IP:port, without credentials (for
    /// Prometheus and load balancers on a monitoring network) [default: none; /metrics is then
    /// served on the main listener to system administrators only].
    #[arg(long, env = "GANTRY_METRICS_LISTEN")]
    metrics_listen: Option<String>,
    /// Label push and pull counters with the repository too: one series per repository, so
    /// only for registries with few of them [default: false].
    #[arg(long, env = "GANTRY_METRICS_PER_REPOSITORY")]
    metrics_per_repository: Option<bool>,
    /// Serve HTTPS (TLS 1.2+, HTTP/2 and HTTP/1.1) with this PEM certificate chain, the
    /// server's certificate first; reloaded when the file changes or on SIGHUP [default: plain HTTP].
    #[arg(long, env = "GANTRY_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key (ECDSA, Ed25519 or RSA) of --tls-cert.
    #[arg(long, env = "GANTRY_TLS_KEY")]
    tls_key: Option<PathBuf>,
    /// Seconds between looks at the certificate files for a change (a renewal is then served
    /// without a restart); 0: reload only on SIGHUP [default: 2].
    #[arg(long, env = "GANTRY_TLS_RELOAD_POLL_SECS")]
    tls_reload_poll_secs: Option<u64>,
    /// Be a pull-through cache of this registry: NAME=URL, e.g.
    /// docker.io=https://registry-1.docker.io; repeatable (GANTRY_UPSTREAM: comma-separated),
    /// the first is the default for mirror requests without ?ns=. What is cached lives in a
    /// project named NAME; `[[upstreams]]` in the config file also takes credentials,
    /// `public` and `project` [default: none].
    #[arg(
        long = "upstream",
        env = "GANTRY_UPSTREAM",
        value_delimiter = ',',
        value_name = "NAME=URL"
    )]
    upstreams: Option<Vec<String>>,
}

#[derive(Args)]
pub struct RemoteArgs {
    #[command(flatten)]
    transport: admin::TransportArgs,
    /// Username for registries that require one.
    #[arg(long, env = "GANTRY_USERNAME")]
    username: Option<String>,
    /// Password for registries that require one.
    #[arg(long, env = "GANTRY_PASSWORD", hide_env_values = true)]
    password: Option<String>,
    /// Do not draw progress bars.
    #[arg(long, short)]
    pub quiet: bool,
}

impl RemoteArgs {
    /// Credentials from flags/environment, else those `gantry login` stored for the registry.
    pub fn client(&self, image: &ImageRef) -> anyhow::Result<RegistryClient> {
        let credentials = admin::stored_or_given(
            self.username.as_deref(),
            self.password.as_deref(),
            &image.registry,
        )?;
        self.transport.client(&image.registry, credentials)
    }
}

/// Splits `DIR[:TAG]`; a colon followed by a path separator belongs to the directory.
fn split_layout(arg: &str) -> (&str, Option<&str>) {
    match arg.rsplit_once(':') {
        Some((dir, tag)) if !dir.is_empty() && !tag.is_empty() && !tag.contains('/') => {
            (dir, Some(tag))
        }
        _ => (arg, None),
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => {
            let config = config::resolve(config::Overrides {
                config: args.config,
                listen: args.listen,
                data_dir: args.data_dir,
                drain_timeout_secs: args.drain_timeout_secs,
                log_format: args.log_format,
                log_level: args.log_level,
                public_url: args.public_url,
                trusted_proxies: args.trusted_proxies,
                auto_create_projects: args.auto_create_projects,
                token_ttl_secs: args.token_ttl_secs,
                token_key: args.token_key,
                gc_interval_secs: args.gc_interval_secs,
                archive_location: args.archive_location,
                storage_location: args.storage_location,
                database: args.database,
                metrics_listen: args.metrics_listen,
                metrics_per_repository: args.metrics_per_repository,
                tls_cert: args.tls_cert,
                tls_key: args.tls_key,
                tls_reload_poll_secs: args.tls_reload_poll_secs,
                upstreams: args.upstreams,
            })?;
            logging::init(config.log_format, &config.log_level)?;
            serve::run(config).await
        }
        Command::Push {
            layout,
            image,
            remote,
        } => {
            let destination = ImageRef::parse(&image)?;
            let (dir, tag) = split_layout(&layout);
            let layout = Layout::open(dir)
                .with_context(|| format!("{dir} is not an OCI image layout directory"))?;
            let bar = progress::Bars::new(remote.quiet);
            let digest = gantry_client::push_layout(
                &layout,
                tag,
                &remote.client(&destination)?,
                &destination,
                bar.clone(),
            )
            .await?;
            bar.finish(&format!("pushed {destination} ({digest})"));
            Ok(())
        }
        Command::Pull {
            image,
            layout,
            remote,
        } => {
            let source = ImageRef::parse(&image)?;
            let (dir, tag) = split_layout(&layout);
            let tag = tag.or(source.tag()).unwrap_or("latest");
            let layout = Layout::create(dir)?;
            let bar = progress::Bars::new(remote.quiet);
            let digest = gantry_client::pull_to_layout(
                &remote.client(&source)?,
                &source,
                &layout,
                tag,
                bar.clone(),
            )
            .await?;
            bar.finish(&format!("pulled {source} ({digest}) into {dir}:{tag}"));
            Ok(())
        }
        Command::Copy {
            source,
            destination,
            remote,
        } => {
            let source = ImageRef::parse(&source)?;
            let destination = ImageRef::parse(&destination)?;
            let bar = progress::Bars::new(remote.quiet);
            let digest = gantry_client::copy(
                &remote.client(&source)?,
                &source,
                &remote.client(&destination)?,
                &destination,
                bar.clone(),
            )
            .await?;
            bar.finish(&format!("copied {source} to {destination} ({digest})"));
            Ok(())
        }
        Command::Build(args) => build_cmd::run(args).await,
        Command::Analyze(args) => analyze_cmd::run(args).await,
        Command::Scan(args) => scan_cmd::run(args).await,
        Command::Lint { file, json } => lint_cmd::lint(&file, json),
        Command::Init {
            what:
                InitCommand::Dockerfile {
                    package,
                    go_version,
                },
        } => {
            lint_cmd::init_dockerfile(&package, &go_version);
            Ok(())
        }
        Command::Login {
            registry,
            username,
            password_stdin,
            transport,
        } => admin::login(registry, username, password_stdin, transport).await,
        Command::Logout { registry } => admin::logout(registry),
        Command::User { command, api } => admin::user(&api, command).await,
        Command::Project { command, api } => admin::project(&api, command).await,
        Command::Member { command, api } => admin::member(&api, command).await,
        Command::Robot { command, api } => admin::robot(&api, command).await,
        Command::Token { command, api } => admin::token(&api, command).await,
        Command::TagRules { command, api } => lifecycle_cmd::tag_rules(&api, command).await,
        Command::Repo { command, api } => browse_cmd::repo(&api, command).await,
        Command::Artifact { command, api } => browse_cmd::artifact(&api, command).await,
        Command::Retention { command, api } => lifecycle_cmd::retention(&api, command).await,
        Command::Quota { command, api } => lifecycle_cmd::quota(&api, command).await,
        Command::Usage {
            command,
            project,
            since,
            api,
        } => usage_cmd::usage(&api, command, project, since).await,
        Command::Archive { args, api } => lifecycle_cmd::archive(&api, args).await,
        Command::Webhook { command, api } => jobs_cmd::webhook(&api, command).await,
        Command::Jobs { command, api } => jobs_cmd::jobs(&api, command).await,
        Command::Replication { command, api } => {
            replication_cmd::replication(&api, command, &["push", "pull"]).await
        }
        Command::Preheat { command, api } => {
            replication_cmd::replication(&api, command, &["preheat"]).await
        }
        Command::Gate { command, api } => gate_cmd::gate(&api, command).await,
        Command::Verify(args) => signing_cmd::verify(args).await,
        Command::Sign(args) => signing_cmd::sign(args).await,
        Command::Key { command } => signing_cmd::key(command),
        Command::SigningPolicy { command, api } => signing_cmd::signing_policy(&api, command).await,
        Command::Restore { project, ids, api } => {
            lifecycle_cmd::restore(&api, &project, &ids).await
        }
        Command::Gc {
            dry_run,
            grace,
            pause_ms,
            api,
        } => lifecycle_cmd::gc(&api, dry_run, grace, pause_ms).await,
        Command::Vulndb { command } => vulndb_cmd::vulndb(command).await,
        Command::Backup { dir, data } => backup::backup(&dir, &data).await,
        Command::RestoreBackup { dir, data } => backup::restore(&dir, &data).await,
        Command::Audit {
            project,
            since,
            limit,
            api,
        } => admin::audit(&api, project, since, limit).await,
    }
}

/// glibc gives each thread that allocates its own arena (up to 8 per core); with the blocking
/// pool's threads that fragments memory for nothing. Two arenas keep peak RSS low.
fn limit_malloc_arenas() {
    #[cfg(target_env = "gnu")]
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

fn main() -> ExitCode {
    limit_malloc_arenas();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_argument_splits_off_a_tag() {
        assert_eq!(split_layout("./dir:v1"), ("./dir", Some("v1")));
        assert_eq!(split_layout("./dir"), ("./dir", None));
        assert_eq!(split_layout("/tmp/a:b/c"), ("/tmp/a:b/c", None));
    }

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    /// A command's long help set on its arguments' struct (`#[derive(Args)]` then
    /// `#[command(long_about = …)]`) is replaced by the doc comment of the command's variant,
    /// so `gantry scan --help` lost its explanation and examples. Long help goes on the
    /// variant; no arguments struct in the binary carries one.
    #[test]
    fn long_help_is_never_set_where_the_variant_doc_replaces_it() {
        use clap::CommandFactory;
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        for entry in std::fs::read_dir(&src).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            let lines: Vec<&str> = text.lines().map(str::trim).collect();
            for three in lines.windows(3) {
                let derives_args = three[0].starts_with("#[derive(") && three[0].contains("Args)");
                let sets_about = three[1].starts_with("#[command(")
                    && (three[1].contains("about") || three[2].contains("about"));
                assert!(
                    !(derives_args && sets_about),
                    "{}: an Args struct with its own long_about: put it on the command's \
                     variant",
                    path.display()
                );
            }
        }
        let mut cli = Cli::command();
        for command in ["scan", "verify"] {
            let help = cli
                .find_subcommand_mut(command)
                .unwrap()
                .render_long_help()
                .to_string();
            assert!(help.contains("Examples:"), "{command}: {help}");
        }
    }

    /// Every command and every argument a user can give says what it is in `--help`
    /// (an entry with an empty description teaches nothing).
    #[test]
    fn help_entries_have_no_empty_descriptions() {
        use clap::CommandFactory;
        fn undescribed(command: &clap::Command, path: &str, found: &mut Vec<String>) {
            for arg in command.get_arguments() {
                let builtin = matches!(arg.get_id().as_str(), "help" | "version");
                if !builtin && !arg.is_hide_set() && arg.get_help().is_none() {
                    found.push(format!("{path} <{}>", arg.get_id()));
                }
            }
            for sub in command.get_subcommands() {
                let sub_path = format!("{path} {}", sub.get_name());
                if sub.get_about().is_none() && sub.get_name() != "help" {
                    found.push(sub_path.clone());
                }
                undescribed(sub, &sub_path, found);
            }
        }
        let mut found = Vec::new();
        undescribed(&Cli::command(), "gantry", &mut found);
        assert!(
            found.is_empty(),
            "help entries without a description: {found:#?}"
        );
    }
}
