//! The management commands: `login`/`logout` and the REST API's users, projects, members,
//! robot accounts, CI tokens and audit log. Each command is one API call, printed as a table
//! (or as the API's JSON with `--json`).

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use gantry_client::{ClientError, Credentials, DockerConfig, RegistryClient, Transport};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

pub const DEFAULT_REGISTRY: &str = "127.0.0.1:5000";

/// How to reach a registry: the scheme and the certificates to trust.
#[derive(Args, Clone, Default)]
pub struct TransportArgs {
    /// Speak plain HTTP even to a registry that is not on this machine (loopback registries
    /// are tried over https first, then plain HTTP).
    #[arg(long, global = true)]
    plain_http: bool,
    /// A PEM file of CA certificates to trust besides the system's, for a registry whose
    /// certificate a private CA signed.
    #[arg(long, env = "GANTRY_CA_CERT", global = true)]
    ca_cert: Option<PathBuf>,
}

impl TransportArgs {
    /// A client for `registry` (`HOST[:PORT]`, or with `https://` / `http://` to fix the scheme).
    pub fn client(
        &self,
        registry: &str,
        credentials: Option<Credentials>,
    ) -> anyhow::Result<RegistryClient> {
        RegistryClient::new(registry, &self.transport(), credentials)
            .context("--ca-cert (or GANTRY_CA_CERT) must name a PEM file of CA certificates")
    }

    /// A plain HTTP client (downloads), trusting `--ca-cert` besides the system's roots.
    pub fn http_client(&self) -> anyhow::Result<reqwest::Client> {
        gantry_client::http_client(&self.transport())
            .context("--ca-cert (or GANTRY_CA_CERT) must name a PEM file of CA certificates")
    }

    fn transport(&self) -> Transport {
        Transport {
            plain_http: self.plain_http,
            ca_cert: self.ca_cert.clone(),
            ..Transport::default()
        }
    }
}

/// Which registry to talk to and as whom.
#[derive(Args, Clone)]
pub struct ApiArgs {
    /// Registry to manage, HOST[:PORT], or https://HOST[:PORT] or http://HOST[:PORT] to fix
    /// the scheme [default: 127.0.0.1:5000].
    #[arg(long, env = "GANTRY_REGISTRY", global = true)]
    registry: Option<String>,
    #[command(flatten)]
    transport: TransportArgs,
    /// User (or robot/CI token name) [default: from `gantry login`].
    #[arg(long, env = "GANTRY_USERNAME", global = true)]
    username: Option<String>,
    /// Password or secret; prefer the environment variable to the flag.
    #[arg(long, env = "GANTRY_PASSWORD", hide_env_values = true, global = true)]
    password: Option<String>,
    /// Print the API's JSON instead of a table.
    #[arg(long, global = true)]
    pub(crate) json: bool,
}

impl ApiArgs {
    fn registry(&self) -> String {
        let registry = self.registry.as_deref().unwrap_or(DEFAULT_REGISTRY);
        registry
            .trim_start_matches("http://")
            .trim_start_matches("https://")
            .trim_end_matches('/')
            .to_string()
    }

    fn client(&self) -> anyhow::Result<RegistryClient> {
        let credentials = stored_or_given(
            self.username.as_deref(),
            self.password.as_deref(),
            &self.registry(),
        )?;
        self.client_as(credentials)
    }

    /// A client for the registry (its scheme as given) with these credentials.
    fn client_as(&self, credentials: Option<Credentials>) -> anyhow::Result<RegistryClient> {
        self.transport.client(
            self.registry.as_deref().unwrap_or(DEFAULT_REGISTRY),
            credentials,
        )
    }

    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let client = self.client()?;
        client
            .api(method, path, body.as_ref())
            .await
            .map_err(|e| explain(e, &self.registry()))
    }
}

/// Credentials from flags/environment, else from `gantry login`'s config.json entry.
pub fn stored_or_given(
    username: Option<&str>,
    password: Option<&str>,
    registry: &str,
) -> anyhow::Result<Option<Credentials>> {
    if let Some(username) = username {
        return Ok(Some(Credentials {
            username: username.to_string(),
            password: password.unwrap_or_default().to_string(),
        }));
    }
    let Some(path) = DockerConfig::default_path() else {
        return Ok(None);
    };
    Ok(DockerConfig::load(path)?.credentials(registry))
}

/// Adds what to do to the errors a user can fix.
fn explain(error: ClientError, registry: &str) -> anyhow::Error {
    let hint = match &error {
        ClientError::Status { status, .. } if *status == StatusCode::UNAUTHORIZED => Some(format!(
            "log in with `gantry login {registry}` or set GANTRY_USERNAME and GANTRY_PASSWORD"
        )),
        ClientError::Status { status, .. } if *status == StatusCode::FORBIDDEN => {
            Some("ask a project admin or a system administrator for this permission".into())
        }
        ClientError::Connect { .. } => Some(format!(
            "is the registry running at {registry}? choose another with --registry or GANTRY_REGISTRY"
        )),
        _ => None,
    };
    match hint {
        Some(hint) => anyhow::anyhow!("{error}\n  hint: {hint}"),
        None => error.into(),
    }
}

/// Reads a secret: one line from stdin when it is piped, else a prompt without echo.
pub(crate) fn read_secret(prompt: &str) -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        let mut line = String::new();
        stdin.lock().read_line(&mut line)?;
        return Ok(line.trim_end_matches(['\r', '\n']).to_string());
    }
    eprint!("{prompt}");
    std::io::stderr().flush()?;
    let fd = libc::STDIN_FILENO;
    let mut saved: libc::termios = unsafe { std::mem::zeroed() };
    let echo_off = unsafe { libc::tcgetattr(fd, &mut saved) } == 0;
    if echo_off {
        let mut quiet = saved;
        quiet.c_lflag &= !libc::ECHO;
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, &quiet) };
    }
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    if echo_off {
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, &saved) };
    }
    eprintln!();
    read?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

/// A hundred years: longer durations are typing mistakes (and would overflow a timestamp).
const LONGEST_DURATION_SECS: u64 = 100 * 365 * 86_400;

/// Parses `90`, `30s`, `15m`, `12h`, `7d` into seconds; `0` and `0s` are a length too (a grace
/// window or an age of zero). Lifetimes, which cannot be zero, use [`parse_lifetime`].
pub fn parse_duration(text: &str) -> anyhow::Result<u64> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let multiplier = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => bail!("duration {text:?} has an unknown unit: use s, m, h or d (e.g. 15m)"),
    };
    let number: u64 = number
        .parse()
        .with_context(|| format!("duration {text:?} is not a number followed by s, m, h or d"))?;
    number
        .checked_mul(multiplier)
        .filter(|secs| *secs <= LONGEST_DURATION_SECS)
        .with_context(|| format!("duration {text:?} is absurdly long: give at most a few years"))
}

/// Parses a lifetime (of a token or a robot account) like [`parse_duration`], refusing zero,
/// which would make a credential that is expired when it is made.
pub fn parse_lifetime(text: &str) -> anyhow::Result<u64> {
    let secs = parse_duration(text)?;
    anyhow::ensure!(
        secs > 0,
        "lifetime {text:?} is zero: a credential that expires at once is useless; give e.g. 15m or 90d"
    );
    Ok(secs)
}

pub(crate) fn time_of(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| secs.to_string())
}

/// Prints rows as aligned columns under a header.
pub(crate) fn table(header: &[&str], rows: Vec<Vec<String>>) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(header.iter().map(|h| h.to_uppercase()).collect());
    for row in rows {
        line(row);
    }
}

pub(crate) fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(text).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

pub(crate) fn print_json(value: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("JSON prints")
    );
}

/// The cells of a listing; times (columns `at`, `*_at` in seconds, `*_ms` in milliseconds)
/// read as RFC 3339.
fn rows(value: &Value, key: &str, columns: &[&str]) -> Vec<Vec<String>> {
    let cell = |item: &Value, column: &str| match item[column].as_i64() {
        Some(secs) if column == "at" || column.ends_with("_at") => time_of(secs),
        Some(millis) if column.ends_with("_ms") => time_of(millis / 1000),
        _ => text(&item[column]),
    };
    value[key]
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|item| columns.iter().map(|c| cell(item, c)).collect())
                .collect()
        })
        .unwrap_or_default()
}

pub(crate) fn list(args: &ApiArgs, value: &Value, key: &str, columns: &[&str]) {
    if args.json {
        print_json(value);
    } else {
        table(columns, rows(value, key, columns));
    }
}

pub(crate) fn done(args: &ApiArgs, value: &Value, message: &str) {
    if args.json {
        print_json(value);
    } else {
        println!("{message}");
    }
}

/// The permissions flags of robots and CI tokens.
#[derive(Args, Clone)]
pub struct Permissions {
    /// Allow pulling.
    #[arg(long)]
    pull: bool,
    /// Allow pushing (and pulling, which pushing needs).
    #[arg(long)]
    push: bool,
    /// Allow deleting manifests, tags and blobs.
    #[arg(long)]
    delete: bool,
}

impl Permissions {
    fn actions(&self) -> anyhow::Result<Vec<&'static str>> {
        let mut actions = Vec::new();
        if self.pull || self.push {
            actions.push("pull");
        }
        if self.push {
            actions.push("push");
        }
        if self.delete {
            actions.push("delete");
        }
        if actions.is_empty() {
            bail!("give at least one of --pull, --push, --delete");
        }
        Ok(actions)
    }
}

/// Prints a new credential and its secret (shown this once).
fn print_credential(args: &ApiArgs, value: &Value) {
    if args.json {
        return print_json(value);
    }
    let name = text(&value["name"]);
    let expires = value["expires_at"]
        .as_i64()
        .map_or("never".to_string(), time_of);
    println!(
        "Created {} {name} ({} on {}), expires {expires}.",
        if value["kind"] == "ci" {
            "CI token"
        } else {
            "robot account"
        },
        text(&value["actions"]),
        value["repository"]
            .as_str()
            .or(value["project"].as_str())
            .unwrap_or("every project"),
    );
    println!("Username: {name}");
    println!("Password: {}", text(&value["secret"]));
    println!("The password is shown only now. Log in with it, e.g.:");
    println!(
        "  echo \"$PASSWORD\" | docker login {} -u '{name}' --password-stdin",
        args.registry()
    );
}

#[derive(Subcommand)]
pub enum UserCommand {
    /// List users (system administrators).
    List,
    /// Create a user; the password is read from stdin, or generated and printed.
    Create {
        /// The new user's name (letters, digits, '.', '_', '-').
        name: String,
        /// Make the user a system administrator.
        #[arg(long)]
        admin: bool,
        /// Read the new password from stdin instead of generating one.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Delete a user.
    Delete {
        /// The user to delete.
        name: String,
    },
    /// Change a password (yours, or anyone's as system administrator), read from stdin.
    Passwd {
        /// The user whose password changes.
        name: String,
    },
}

#[derive(Subcommand)]
pub enum ProjectCommand {
    /// List the projects you can see.
    List,
    /// Create a project; you become its project admin.
    Create {
        /// The project's name: the first path component of its repositories.
        name: String,
        /// Allow anonymous pulls.
        #[arg(long)]
        public: bool,
    },
    /// Show a project.
    Show {
        /// The project to show.
        name: String,
    },
    /// Make a project public (anonymous pulls) or private.
    #[command(group(clap::ArgGroup::new("visibility").required(true).args(["public", "private"])))]
    Set {
        /// The project to change.
        name: String,
        /// Allow anonymous pulls.
        #[arg(long)]
        public: bool,
        /// Only members (and system administrators) may pull.
        #[arg(long)]
        private: bool,
    },
    /// Delete a project with its members, robot accounts, CI tokens and policies. Without
    /// --force, only a project that holds nothing (repositories emptied by deleting their
    /// tags stop counting once `gantry gc` has run).
    Delete {
        /// The project to delete.
        name: String,
        /// Delete its repositories and archived artifacts first. Tag rules still apply: an
        /// immutable tag refuses the whole delete before anything is deleted (change the tag
        /// rules first).
        #[arg(long)]
        force: bool,
        /// Do not ask for confirmation on a terminal.
        #[arg(long)]
        yes: bool,
    },
}

/// Asks "`question` [y/N]" on a terminal unless `yes`; off a terminal (scripts) it goes on.
pub(crate) fn confirm(question: &str, yes: bool) -> anyhow::Result<()> {
    if yes || !std::io::stdin().is_terminal() {
        return Ok(());
    }
    eprint!("{question} [y/N] ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    if matches!(answer.trim(), "y" | "Y" | "yes") {
        Ok(())
    } else {
        bail!("nothing deleted (answer y to delete, or pass --yes)")
    }
}

/// One line per deleted repository: what went, and the bytes garbage collection will free.
fn deleted_repository_line(deleted: &Value) -> String {
    format!(
        "Deleted repository {}: {} tags, {} manifests, {} blob links, {} uploads; {} bytes to be freed by `gantry gc`.",
        text(&deleted["repository"]),
        text(&deleted["tags"]),
        text(&deleted["manifests"]),
        text(&deleted["blobs"]),
        text(&deleted["uploads"]),
        text(&deleted["freed_bytes"]),
    )
}

/// `gantry repo delete`: deletes a repository (after asking, on a terminal, unless `yes`).
pub async fn delete_repository(args: &ApiArgs, repository: &str, yes: bool) -> anyhow::Result<()> {
    confirm(
        &format!("Delete repository {repository} and everything in it?"),
        yes,
    )?;
    let value = args
        .call(
            Method::DELETE,
            &format!("/api/v1/repositories/{}", repository.replace('/', "%2F")),
            None,
        )
        .await?;
    done(args, &value, &deleted_repository_line(&value));
    Ok(())
}

#[derive(Subcommand)]
pub enum MemberCommand {
    /// List a project's members.
    List {
        /// The project whose members to list.
        project: String,
    },
    /// Add a member, or change their role.
    Add {
        /// The project to add the member to.
        project: String,
        /// The user who becomes a member.
        user: String,
        /// project-admin, maintainer, developer, guest or limited-guest.
        #[arg(long, default_value = "developer")]
        role: String,
    },
    /// Remove a member.
    Remove {
        /// The project to remove the member from.
        project: String,
        /// The member to remove.
        user: String,
    },
}

#[derive(Subcommand)]
pub enum RobotCommand {
    /// List robot accounts of a project (or system-wide ones without --project).
    List {
        /// The project whose robots to list.
        #[arg(long)]
        project: Option<String>,
    },
    /// Create a robot account; its secret is printed once.
    Create {
        /// The robot's short name; it logs in as 'robot$PROJECT+NAME' (or 'robot$NAME').
        name: String,
        /// The project it works in; without it, a system-wide robot (system administrators).
        #[arg(long)]
        project: Option<String>,
        #[command(flatten)]
        permissions: Permissions,
        /// Expire after this long, e.g. 90d [default: never].
        #[arg(long, value_parser = parse_lifetime)]
        expires_in: Option<u64>,
    },
    /// Revoke a robot account, e.g. 'robot$team-a+builder'.
    Revoke {
        /// The robot's full name, e.g. 'robot$team-a+builder'.
        name: String,
    },
}

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Mint a short-lived CI token; its secret is printed once.
    #[command(
        long_about = "Mint a short-lived CI token; its secret is printed once.\n\n\
        The token is a username and password for docker/podman/skopeo login, limited to one\n\
        project (or one repository) and the given permissions, never more than your own.\n\
        It expires by itself after --ttl and can be revoked earlier.\n\n\
        Example, in a pipeline:\n    \
        gantry token create --project team-a --repository team-a/api --push --ttl 15m --json"
    )]
    Create {
        /// The project the token works in.
        #[arg(long)]
        project: String,
        /// Limit the token to this repository of the project.
        #[arg(long)]
        repository: Option<String>,
        #[command(flatten)]
        permissions: Permissions,
        /// Lifetime, e.g. 15m, 1h (at most 7d).
        #[arg(long, default_value = "15m", value_parser = parse_lifetime)]
        ttl: u64,
    },
    /// List a project's CI tokens.
    List {
        /// The project whose CI tokens to list.
        #[arg(long)]
        project: String,
    },
    /// Revoke a CI token now.
    Revoke {
        /// The token's username, e.g. 'ci$team-a+3f9c2a1b7d4e'.
        name: String,
    },
}

pub async fn login(
    registry: Option<String>,
    username: Option<String>,
    password_stdin: bool,
    transport: TransportArgs,
) -> anyhow::Result<()> {
    let args = ApiArgs {
        registry,
        transport,
        username: None,
        password: None,
        json: false,
    };
    let registry = args.registry();
    let username = match username.or_else(|| std::env::var("GANTRY_USERNAME").ok()) {
        Some(u) => u,
        None => bail!("give the username with -u/--username or GANTRY_USERNAME"),
    };
    let password = match std::env::var("GANTRY_PASSWORD") {
        Ok(p) if !password_stdin => p,
        _ => read_secret("Password: ")?,
    };
    if password.is_empty() {
        bail!("the password is empty: pipe it with --password-stdin or set GANTRY_PASSWORD");
    }
    let credentials = Credentials { username, password };
    args.client_as(Some(credentials.clone()))?
        .check_login()
        .await
        .map_err(|e| explain(e, &registry))
        .context("login failed")?;
    let path = DockerConfig::default_path()
        .context("cannot find the docker config: set HOME or DOCKER_CONFIG")?;
    let mut config = DockerConfig::load(path)?;
    config.set(&registry, &credentials);
    config.save()?;
    println!(
        "Login succeeded for {} at {registry} (saved in {}).",
        credentials.username,
        config.path().display()
    );
    Ok(())
}

pub fn logout(registry: Option<String>) -> anyhow::Result<()> {
    let registry = registry.unwrap_or_else(|| DEFAULT_REGISTRY.to_string());
    let path = DockerConfig::default_path()
        .context("cannot find the docker config: set HOME or DOCKER_CONFIG")?;
    let mut config = DockerConfig::load(path)?;
    if config.remove(&registry) {
        config.save()?;
        println!("Removed the credentials for {registry}.");
    } else {
        println!("Not logged in to {registry}.");
    }
    Ok(())
}

pub async fn user(args: &ApiArgs, command: UserCommand) -> anyhow::Result<()> {
    match command {
        UserCommand::List => {
            let users = args.call(Method::GET, "/api/v1/users", None).await?;
            list(args, &users, "users", &["name", "admin"]);
        }
        UserCommand::Create {
            name,
            admin,
            password_stdin,
        } => {
            let (password, generated) = if password_stdin {
                (read_secret("New password: ")?, false)
            } else {
                (gantry_auth::secret::generate("").0, true)
            };
            let body = json!({"name": name, "password": password, "admin": admin});
            let created = args.call(Method::POST, "/api/v1/users", Some(body)).await?;
            if generated && !args.json {
                println!("Created user {name} with password {password}");
            } else {
                done(args, &created, &format!("Created user {name}."));
            }
        }
        UserCommand::Delete { name } => {
            let value = args
                .call(Method::DELETE, &format!("/api/v1/users/{name}"), None)
                .await?;
            done(args, &value, &format!("Deleted user {name}."));
        }
        UserCommand::Passwd { name } => {
            let password = read_secret("New password: ")?;
            let value = args
                .call(
                    Method::PUT,
                    &format!("/api/v1/users/{name}/password"),
                    Some(json!({ "password": password })),
                )
                .await?;
            done(args, &value, &format!("Changed the password of {name}."));
        }
    }
    Ok(())
}

pub async fn project(args: &ApiArgs, command: ProjectCommand) -> anyhow::Result<()> {
    match command {
        ProjectCommand::List => {
            let projects = args.call(Method::GET, "/api/v1/projects", None).await?;
            if args.json {
                print_json(&projects);
            } else {
                let now = crate::browse_cmd::now();
                let rows = projects["projects"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|p| {
                        vec![
                            text(&p["name"]),
                            text(&p["public"]),
                            text(&p["repositories"]),
                            crate::browse_cmd::size(&p["quota"]["storage"]["used_bytes"]),
                            crate::browse_cmd::ago(&p["last_pushed_at"], now),
                        ]
                    })
                    .collect();
                table(&["name", "public", "repositories", "size", "pushed"], rows);
            }
        }
        ProjectCommand::Create { name, public } => {
            let value = args
                .call(
                    Method::POST,
                    "/api/v1/projects",
                    Some(json!({"name": name, "public": public})),
                )
                .await?;
            let visibility = if public { "public" } else { "private" };
            done(
                args,
                &value,
                &format!("Created {visibility} project {name}."),
            );
        }
        ProjectCommand::Show { name } => {
            let value = args
                .call(Method::GET, &format!("/api/v1/projects/{name}"), None)
                .await?;
            if args.json {
                print_json(&value);
            } else {
                table(
                    &["name", "public"],
                    vec![vec![text(&value["name"]), text(&value["public"])]],
                );
            }
        }
        ProjectCommand::Set {
            name,
            public,
            private: _,
        } => {
            let value = args
                .call(
                    Method::PATCH,
                    &format!("/api/v1/projects/{name}"),
                    Some(json!({ "public": public })),
                )
                .await?;
            let visibility = if public { "public" } else { "private" };
            done(
                args,
                &value,
                &format!("Project {name} is now {visibility}."),
            );
        }
        ProjectCommand::Delete { name, force, yes } => {
            let what = if force {
                "with all its repositories and archives"
            } else {
                "with its members, robots and policies"
            };
            confirm(&format!("Delete project {name} {what}?"), yes)?;
            let value = args
                .call(
                    Method::DELETE,
                    &format!("/api/v1/projects/{name}?force={force}"),
                    None,
                )
                .await?;
            if args.json {
                print_json(&value);
            } else {
                for repository in value["repositories"].as_array().into_iter().flatten() {
                    println!("{}", deleted_repository_line(repository));
                }
                println!(
                    "Deleted project {name} ({} archived artifacts deleted).",
                    text(&value["archives"])
                );
            }
        }
    }
    Ok(())
}

pub async fn member(args: &ApiArgs, command: MemberCommand) -> anyhow::Result<()> {
    match command {
        MemberCommand::List { project } => {
            let members = args
                .call(
                    Method::GET,
                    &format!("/api/v1/projects/{project}/members"),
                    None,
                )
                .await?;
            list(args, &members, "members", &["user", "role"]);
        }
        MemberCommand::Add {
            project,
            user,
            role,
        } => {
            let value = args
                .call(
                    Method::PUT,
                    &format!("/api/v1/projects/{project}/members/{user}"),
                    Some(json!({ "role": role })),
                )
                .await?;
            done(args, &value, &format!("{user} is now {role} in {project}."));
        }
        MemberCommand::Remove { project, user } => {
            let value = args
                .call(
                    Method::DELETE,
                    &format!("/api/v1/projects/{project}/members/{user}"),
                    None,
                )
                .await?;
            done(args, &value, &format!("Removed {user} from {project}."));
        }
    }
    Ok(())
}

const CREDENTIAL_COLUMNS: [&str; 6] = [
    "name",
    "actions",
    "repository",
    "expires_at",
    "revoked",
    "created_by",
];

/// `robot$x` and `ci$x` contain `$`, which must be escaped in a URL path segment.
fn path_segment(name: &str) -> String {
    name.replace('$', "%24").replace('+', "%2B")
}

pub async fn robot(args: &ApiArgs, command: RobotCommand) -> anyhow::Result<()> {
    match command {
        RobotCommand::List { project } => {
            let path = match &project {
                Some(p) => format!("/api/v1/projects/{p}/robots"),
                None => "/api/v1/robots".to_string(),
            };
            let robots = args.call(Method::GET, &path, None).await?;
            list(args, &robots, "credentials", &CREDENTIAL_COLUMNS);
        }
        RobotCommand::Create {
            name,
            project,
            permissions,
            expires_in,
        } => {
            let path = match &project {
                Some(p) => format!("/api/v1/projects/{p}/robots"),
                None => "/api/v1/robots".to_string(),
            };
            let body = json!({
                "name": name,
                "actions": permissions.actions()?,
                "expires_in_secs": expires_in,
            });
            let value = args.call(Method::POST, &path, Some(body)).await?;
            print_credential(args, &value);
        }
        RobotCommand::Revoke { name } => {
            let value = args
                .call(
                    Method::DELETE,
                    &format!("/api/v1/robots/{}", path_segment(&name)),
                    None,
                )
                .await?;
            done(args, &value, &format!("Revoked {name}."));
        }
    }
    Ok(())
}

pub async fn token(args: &ApiArgs, command: TokenCommand) -> anyhow::Result<()> {
    match command {
        TokenCommand::Create {
            project,
            repository,
            permissions,
            ttl,
        } => {
            let body = json!({
                "project": project,
                "repository": repository,
                "actions": permissions.actions()?,
                "ttl_secs": ttl,
            });
            let value = args
                .call(Method::POST, "/api/v1/tokens", Some(body))
                .await?;
            print_credential(args, &value);
        }
        TokenCommand::List { project } => {
            let tokens = args
                .call(
                    Method::GET,
                    &format!("/api/v1/tokens?project={project}"),
                    None,
                )
                .await?;
            list(args, &tokens, "credentials", &CREDENTIAL_COLUMNS);
        }
        TokenCommand::Revoke { name } => {
            let value = args
                .call(
                    Method::DELETE,
                    &format!("/api/v1/tokens/{}", path_segment(&name)),
                    None,
                )
                .await?;
            done(args, &value, &format!("Revoked {name}."));
        }
    }
    Ok(())
}

pub async fn audit(
    args: &ApiArgs,
    project: Option<String>,
    since: Option<u64>,
    limit: u32,
) -> anyhow::Result<()> {
    let mut query = vec![format!("limit={limit}")];
    if let Some(project) = project {
        query.push(format!("project={project}"));
    }
    if let Some(since) = since {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        query.push(format!("since={}", now - since as i64));
    }
    let events = args
        .call(
            Method::GET,
            &format!("/api/v1/audit?{}", query.join("&")),
            None,
        )
        .await?;
    if args.json {
        print_json(&events);
        return Ok(());
    }
    let columns = [
        "at", "actor", "action", "resource", "project", "client", "outcome", "detail",
    ];
    table(&columns, rows(&events, "events", &columns));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units_and_refuse_nonsense() {
        assert_eq!(parse_duration("90").unwrap(), 90);
        assert_eq!(parse_duration("30s").unwrap(), 30);
        assert_eq!(parse_duration("15m").unwrap(), 900);
        assert_eq!(parse_duration("2h").unwrap(), 7200);
        assert_eq!(parse_duration("7d").unwrap(), 604800);
        for bad in [
            "",
            "m",
            "15x",
            "-1m",
            "1.5h",
            "99999999999999999999d",
            "36501d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    /// `gantry gc --grace 0s` was refused as "not positive": a zero window is a length too.
    #[test]
    fn zero_duration_is_accepted_but_a_zero_lifetime_is_not() {
        assert_eq!(parse_duration("0s").unwrap(), 0);
        assert_eq!(parse_duration("0").unwrap(), 0);
        let refused = parse_lifetime("0s").unwrap_err().to_string();
        assert!(refused.contains("zero"), "{refused}");
        assert_eq!(parse_lifetime("15m").unwrap(), 900);
    }

    #[test]
    fn credential_names_are_escaped_in_paths() {
        assert_eq!(path_segment("robot$team-a+ci"), "robot%24team-a%2Bci");
    }
}
