//! The access model over HTTP against the real server: the authorization matrix (every /v2
//! and /api endpoint × every role × private/public project × anonymous), the token flow, and
//! attacks on it.

mod common;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::*;
use gantry_oci::{media_type, Digest};
use reqwest::StatusCode;
use serde_json::{json, Value};

const PASSWORD: &str = "member-password";

/// Identities of the matrix, weakest first.
const IDENTITIES: [&str; 8] = [
    "anonymous",
    "outsider",
    "limited-guest",
    "guest",
    "developer",
    "maintainer",
    "project-admin",
    "sysadmin",
];

/// A server with auto-creation off (the default), a private and a public project holding
/// one image each, and one user per role in both.
async fn matrix_server() -> (Server, Vec<(String, Digest, Digest)>) {
    let s = Server::start_configured(&[("GANTRY_AUTO_CREATE_PROJECTS", "false")]);
    for (name, public) in [("priv", false), ("pub", true)] {
        api_create_project(&s, name, public).await;
    }
    for user in IDENTITIES[1..7].iter().chain(["sysadmin", "spare"].iter()) {
        api_create_user(&s, user, PASSWORD, *user == "sysadmin").await;
    }
    let mut images = Vec::new();
    for project in ["priv", "pub"] {
        for role in &IDENTITIES[2..7] {
            api_set_role(&s, project, role, role).await;
        }
        let repo = format!("{project}/app");
        let (manifest, digest) = push_image(&s, &repo, "v1", project).await;
        let config = serde_json::from_slice::<Value>(&manifest).unwrap()["config"]["digest"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        images.push((repo, digest, config));
    }
    (s, images)
}

fn client_for(identity: &str) -> reqwest::Client {
    match identity {
        "anonymous" => anonymous(),
        user => http_as(user, PASSWORD),
    }
}

/// One endpoint of the matrix: how to call it and who may.
struct Case {
    name: &'static str,
    /// Which identities are allowed, in the private and in the public project.
    private: &'static [&'static str],
    public: &'static [&'static str],
}

const MEMBERS_WHO_PULL: &[&str] = &[
    "limited-guest",
    "guest",
    "developer",
    "maintainer",
    "project-admin",
    "sysadmin",
];
const MEMBERS_WHO_LIST: &[&str] = &[
    "guest",
    "developer",
    "maintainer",
    "project-admin",
    "sysadmin",
];
const PUSHERS: &[&str] = &["developer", "maintainer", "project-admin", "sysadmin"];
const DELETERS: &[&str] = &["maintainer", "project-admin", "sysadmin"];
const ADMINS: &[&str] = &["project-admin", "sysadmin"];
const EVERYONE: &[&str] = &IDENTITIES;
const AUTHENTICATED: &[&str] = &[
    "outsider",
    "limited-guest",
    "guest",
    "developer",
    "maintainer",
    "project-admin",
    "sysadmin",
];

const CASES: &[Case] = &[
    Case {
        name: "v2 base",
        private: AUTHENTICATED,
        public: AUTHENTICATED,
    },
    Case {
        name: "tags list",
        private: MEMBERS_WHO_LIST,
        public: EVERYONE,
    },
    Case {
        name: "manifest get",
        private: MEMBERS_WHO_PULL,
        public: EVERYONE,
    },
    Case {
        name: "manifest head",
        private: MEMBERS_WHO_PULL,
        public: EVERYONE,
    },
    Case {
        name: "blob get",
        private: MEMBERS_WHO_PULL,
        public: EVERYONE,
    },
    Case {
        name: "referrers",
        private: MEMBERS_WHO_PULL,
        public: EVERYONE,
    },
    Case {
        name: "upload start",
        private: PUSHERS,
        public: PUSHERS,
    },
    Case {
        name: "manifest put",
        private: PUSHERS,
        public: PUSHERS,
    },
    Case {
        name: "manifest delete",
        private: DELETERS,
        public: DELETERS,
    },
    Case {
        name: "blob delete",
        private: DELETERS,
        public: DELETERS,
    },
    Case {
        name: "api repository delete",
        private: DELETERS,
        public: DELETERS,
    },
    Case {
        name: "api artifact delete",
        private: DELETERS,
        public: DELETERS,
    },
    Case {
        name: "api tag remove",
        private: DELETERS,
        public: DELETERS,
    },
    Case {
        name: "api project show",
        private: MEMBERS_WHO_PULL,
        public: AUTHENTICATED,
    },
    Case {
        name: "api members list",
        private: MEMBERS_WHO_LIST,
        public: AUTHENTICATED,
    },
    Case {
        name: "api member set",
        private: ADMINS,
        public: ADMINS,
    },
    Case {
        name: "api project update",
        private: ADMINS,
        public: ADMINS,
    },
    Case {
        name: "api robots list",
        private: ADMINS,
        public: ADMINS,
    },
    Case {
        name: "api robot create",
        private: ADMINS,
        public: ADMINS,
    },
    Case {
        name: "api tokens list",
        private: ADMINS,
        public: ADMINS,
    },
    Case {
        name: "api token create (pull)",
        private: MEMBERS_WHO_PULL,
        public: AUTHENTICATED,
    },
    Case {
        name: "api token create (push)",
        private: PUSHERS,
        public: PUSHERS,
    },
    Case {
        name: "api audit of project",
        private: ADMINS,
        public: ADMINS,
    },
    Case {
        name: "api tag rules show",
        private: MEMBERS_WHO_PULL,
        public: AUTHENTICATED,
    },
    Case {
        name: "api tag rules set",
        private: DELETERS,
        public: DELETERS,
    },
    Case {
        name: "api retention show",
        private: MEMBERS_WHO_PULL,
        public: AUTHENTICATED,
    },
    Case {
        name: "api retention history",
        private: MEMBERS_WHO_PULL,
        public: AUTHENTICATED,
    },
    Case {
        name: "api retention set",
        private: DELETERS,
        public: DELETERS,
    },
    Case {
        name: "api retention dry run",
        private: DELETERS,
        public: DELETERS,
    },
    Case {
        name: "api quota show",
        private: MEMBERS_WHO_PULL,
        public: AUTHENTICATED,
    },
    Case {
        name: "api quota set",
        private: &["sysadmin"],
        public: &["sysadmin"],
    },
    Case {
        name: "api quota recount",
        private: &["sysadmin"],
        public: &["sysadmin"],
    },
    Case {
        name: "api quotas list",
        private: &["sysadmin"],
        public: &["sysadmin"],
    },
    Case {
        name: "api archives list",
        private: MEMBERS_WHO_PULL,
        public: AUTHENTICATED,
    },
    Case {
        name: "api archive dry run",
        private: DELETERS,
        public: DELETERS,
    },
    Case {
        name: "api archive delete",
        private: DELETERS,
        public: DELETERS,
    },
    Case {
        name: "api archive restore",
        private: DELETERS,
        public: DELETERS,
    },
    Case {
        name: "api member remove",
        private: ADMINS,
        public: ADMINS,
    },
    // Webhooks say where a project's events go: project admins only.
    Case {
        name: "api webhooks list",
        private: ADMINS,
        public: ADMINS,
    },
    Case {
        name: "api webhook add",
        private: ADMINS,
        public: ADMINS,
    },
    Case {
        name: "api webhook remove",
        private: ADMINS,
        public: ADMINS,
    },
    Case {
        name: "api webhook update",
        private: ADMINS,
        public: ADMINS,
    },
    Case {
        name: "api webhook deliveries",
        private: ADMINS,
        public: ADMINS,
    },
    Case {
        name: "api webhook test",
        private: ADMINS,
        public: ADMINS,
    },
    Case {
        name: "api jobs list",
        private: &["sysadmin"],
        public: &["sysadmin"],
    },
    Case {
        name: "api job show",
        private: &["sysadmin"],
        public: &["sysadmin"],
    },
    Case {
        name: "api users list",
        private: &["sysadmin"],
        public: &["sysadmin"],
    },
    Case {
        name: "api system robots list",
        private: &["sysadmin"],
        public: &["sysadmin"],
    },
    // A project's usage names its repositories and version tags: those who may list them.
    Case {
        name: "api usage of a project",
        private: MEMBERS_WHO_LIST,
        public: AUTHENTICATED,
    },
    Case {
        name: "api usage of every project",
        private: &["sysadmin"],
        public: &["sysadmin"],
    },
    Case {
        name: "api usage snapshot",
        private: &["sysadmin"],
        public: &["sysadmin"],
    },
];

/// Sends the case's request as `identity` on the project's image; returns the response.
async fn call(
    s: &Server,
    case: &str,
    identity: &str,
    (repo, manifest, config): &(String, Digest, Digest),
    round: usize,
) -> reqwest::Response {
    let project = repo.split('/').next().unwrap();
    let c = client_for(identity);
    let unknown = Digest::sha256_of(format!("{case}{identity}{round}").as_bytes());
    let url = |p: &str| s.url(p);
    let request = match case {
        "v2 base" => c.get(url("/v2/")),
        "tags list" => c.get(url(&format!("/v2/{repo}/tags/list"))),
        "manifest get" => c
            .get(url(&format!("/v2/{repo}/manifests/v1")))
            .header("accept", media_type::OCI_MANIFEST),
        "manifest head" => c
            .head(url(&format!("/v2/{repo}/manifests/{manifest}")))
            .header("accept", media_type::OCI_MANIFEST),
        "blob get" => c.get(url(&format!("/v2/{repo}/blobs/{config}"))),
        "referrers" => c.get(url(&format!("/v2/{repo}/referrers/{manifest}"))),
        "upload start" => c.post(url(&format!("/v2/{repo}/blobs/uploads/"))),
        "manifest put" => {
            let bytes = get_bytes(s, &format!("/v2/{repo}/manifests/v1")).await;
            c.put(url(&format!("/v2/{repo}/manifests/copy-{round}")))
                .header("content-type", media_type::OCI_MANIFEST)
                .body(bytes)
        }
        // Unknown digests: an allowed caller gets 404, so the matrix changes nothing.
        "manifest delete" => c.delete(url(&format!("/v2/{repo}/manifests/{unknown}"))),
        "blob delete" => c.delete(url(&format!("/v2/{repo}/blobs/{unknown}"))),
        // No such repository: an allowed caller gets 404, so the matrix changes nothing.
        "api repository delete" => c.delete(url(&format!(
            "/api/v1/repositories/{project}%2Fnone-such-{round}"
        ))),
        "api artifact delete" => c.delete(url(&format!(
            "/api/v1/repositories/{project}%2Fapp/artifacts/{unknown}"
        ))),
        "api tag remove" => c.delete(url(&format!(
            "/api/v1/repositories/{project}%2Fapp/artifacts/{unknown}/tags/v1"
        ))),
        "api project show" => c.get(url(&format!("/api/v1/projects/{project}"))),
        "api members list" => c.get(url(&format!("/api/v1/projects/{project}/members"))),
        "api member set" => c
            .put(url(&format!("/api/v1/projects/{project}/members/spare")))
            .json(&json!({"role": "guest"})),
        "api project update" => c
            .patch(url(&format!("/api/v1/projects/{project}")))
            .json(&json!({"public": project == "pub"})),
        "api robots list" => c.get(url(&format!("/api/v1/projects/{project}/robots"))),
        "api robot create" => c
            .post(url(&format!("/api/v1/projects/{project}/robots")))
            .json(&json!({"name": format!("r{round}-{identity}"), "actions": ["pull"]})),
        "api tokens list" => c.get(url(&format!("/api/v1/tokens?project={project}"))),
        "api token create (pull)" => c
            .post(url("/api/v1/tokens"))
            .json(&json!({"project": project, "actions": ["pull"], "ttl_secs": 60})),
        "api token create (push)" => c
            .post(url("/api/v1/tokens"))
            .json(&json!({"project": project, "actions": ["pull", "push"], "ttl_secs": 60})),
        "api audit of project" => c.get(url(&format!("/api/v1/audit?project={project}"))),
        "api member remove" => c.delete(url(&format!("/api/v1/projects/{project}/members/spare"))),
        "api tag rules show" => c.get(url(&format!("/api/v1/projects/{project}/tag-rules"))),
        "api tag rules set" => c
            .put(url(&format!("/api/v1/projects/{project}/tag-rules")))
            .json(&json!({})),
        "api retention show" => c.get(url(&format!("/api/v1/projects/{project}/retention"))),
        "api retention history" => {
            c.get(url(&format!("/api/v1/projects/{project}/retention/runs")))
        }
        "api retention set" => c
            .put(url(&format!("/api/v1/projects/{project}/retention")))
            .json(&json!({"rules": []})),
        "api retention dry run" => c.post(url(&format!(
            "/api/v1/projects/{project}/retention/runs?dry_run=true"
        ))),
        "api quota show" => c.get(url(&format!("/api/v1/projects/{project}/quota"))),
        "api quota set" => c
            .put(url(&format!("/api/v1/projects/{project}/quota")))
            .json(&json!({"storage_bytes": null, "artifacts": null})),
        "api quota recount" => c.post(url(&format!("/api/v1/projects/{project}/quota/recount"))),
        "api quotas list" => c.get(url("/api/v1/quotas")),
        "api usage of a project" => c.get(url(&format!("/api/v1/usage?project={project}"))),
        "api usage of every project" => c.get(url("/api/v1/usage")),
        "api usage snapshot" => c.post(url("/api/v1/usage/snapshots")),
        "api archives list" => c.get(url(&format!("/api/v1/projects/{project}/archives"))),
        "api archive dry run" => c
            .post(url(&format!(
                "/api/v1/projects/{project}/archives?dry_run=true"
            )))
            .json(&json!({"tags": {"include": ["none-such-*"]}})),
        // No such archive: an allowed caller gets 404, so the matrix changes nothing.
        "api archive delete" => c.delete(url(&format!("/api/v1/projects/{project}/archives/999"))),
        "api archive restore" => c.post(url(&format!(
            "/api/v1/projects/{project}/archives/999/restore"
        ))),
        "api webhooks list" => c.get(url(&format!("/api/v1/projects/{project}/webhooks"))),
        "api webhook add" => c
            .post(url(&format!("/api/v1/projects/{project}/webhooks")))
            .json(&json!({"url": "http://127.0.0.1:9/hook", "event_types": ["tag.deleted"]})),
        "api webhook remove" => c.delete(url(&format!("/api/v1/projects/{project}/webhooks/999"))),
        "api webhook update" => c
            .patch(url(&format!("/api/v1/projects/{project}/webhooks/999")))
            .json(&json!({"enabled": false})),
        "api webhook deliveries" => c.get(url(&format!(
            "/api/v1/projects/{project}/webhooks/999/deliveries"
        ))),
        "api webhook test" => c.post(url(&format!(
            "/api/v1/projects/{project}/webhooks/999/test"
        ))),
        "api jobs list" => c.get(url("/api/v1/jobs")),
        "api job show" => c.get(url("/api/v1/jobs/999999")),
        "api users list" => c.get(url("/api/v1/users")),
        "api system robots list" => c.get(url("/api/v1/robots")),
        other => panic!("unknown case {other}"),
    };
    request.send().await.unwrap()
}

#[tokio::test]
async fn authorization_matrix_every_endpoint_role_and_visibility() {
    let (s, images) = matrix_server().await;
    let mut checked = 0;
    let mut round = 0;
    for case in CASES {
        for (image, allowed) in images.iter().zip([case.private, case.public]) {
            for identity in IDENTITIES {
                round += 1;
                let response = call(&s, case.name, identity, image, round).await;
                let status = response.status();
                let context = format!("{} on {} as {identity}: {status}", case.name, image.0);
                let (want_status, want_code) = if allowed.contains(&identity) {
                    match case.name {
                        // Allowed deletes of unknown digests reach the registry: 404.
                        "manifest delete" => (StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN"),
                        "blob delete" => (StatusCode::NOT_FOUND, "BLOB_UNKNOWN"),
                        "api repository delete" => (StatusCode::NOT_FOUND, "NAME_UNKNOWN"),
                        "api artifact delete" | "api tag remove" => {
                            (StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN")
                        }
                        "api archive restore"
                        | "api archive delete"
                        | "api webhook remove"
                        | "api webhook update"
                        | "api webhook deliveries"
                        | "api webhook test"
                        | "api job show" => (StatusCode::NOT_FOUND, "NOT_FOUND"),
                        // The first allowed caller removes the member; later ones find none.
                        "api member remove" if status == StatusCode::NOT_FOUND => {
                            (StatusCode::NOT_FOUND, "NOT_FOUND")
                        }
                        _ => {
                            assert!(status.is_success(), "{context} should be allowed");
                            checked += 1;
                            continue;
                        }
                    }
                } else if identity == "anonymous" {
                    assert!(
                        header(&response, "www-authenticate").is_some(),
                        "{context}: a challenge tells the client how to authenticate"
                    );
                    (StatusCode::UNAUTHORIZED, "UNAUTHORIZED")
                } else {
                    (StatusCode::FORBIDDEN, "DENIED")
                };
                if case.name == "manifest head" {
                    assert_eq!(status, want_status, "{context}"); // HEAD has no body
                } else {
                    assert_error(response, want_status, want_code).await;
                }
                checked += 1;
            }
        }
    }
    assert_eq!(checked, CASES.len() * 2 * IDENTITIES.len());

    // The catalog lists exactly the repositories each identity may list.
    for identity in IDENTITIES {
        let catalog: Value = client_for(identity)
            .get(s.url("/v2/_catalog"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let mut want = vec![];
        if MEMBERS_WHO_LIST.contains(&identity) {
            want.push("priv/app");
        }
        want.push("pub/app");
        assert_eq!(
            catalog["repositories"],
            json!(want),
            "catalog as {identity}"
        );
    }
}

/// Asks the token endpoint for `scopes` with `client`'s credentials.
async fn token_for(s: &Server, client: &reqwest::Client, scopes: &[&str]) -> (StatusCode, Value) {
    let mut query: Vec<(&str, &str)> = vec![("service", "gantry")];
    query.extend(scopes.iter().map(|scope| ("scope", *scope)));
    let r = client
        .get(s.url("/auth/token"))
        .query(&query)
        .send()
        .await
        .unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// The claims of a JWT, unverified (what the client could read).
fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

fn bearer(token: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {token}").parse().unwrap(),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .unwrap()
}

#[tokio::test]
async fn token_flow_challenges_and_grants_the_intersection_of_asked_and_allowed() {
    let (s, _) = matrix_server().await;
    let realm = format!("http://{}/auth/token", s.addr);
    let r = anonymous().get(s.url("/v2/")).send().await.unwrap();
    assert_eq!(
        header(&r, "www-authenticate"),
        Some(format!("Bearer realm=\"{realm}\",service=\"gantry\"").as_str())
    );
    assert_error(r, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    let r = anonymous()
        .post(s.url("/v2/priv/app/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        header(&r, "www-authenticate"),
        Some(
            format!(
                "Bearer realm=\"{realm}\",service=\"gantry\",scope=\"repository:priv/app:pull,push\""
            )
            .as_str()
        )
    );

    // A guest asking for push gets pull only; the token says so and the registry agrees.
    let (status, answer) = token_for(
        &s,
        &http_as("guest", PASSWORD),
        &["repository:priv/app:pull,push"],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let token = answer["token"].as_str().unwrap();
    assert_eq!(answer["access_token"], answer["token"]);
    assert!(answer["expires_in"].as_u64().unwrap() > 0);
    let granted = claims(token);
    assert_eq!(granted["sub"], "guest");
    assert_eq!(
        granted["access"],
        json!([{"type": "repository", "name": "priv/app", "actions": ["pull"]}])
    );
    let guest = bearer(token);
    let r = guest
        .get(s.url("/v2/priv/app/manifests/v1"))
        .header("accept", media_type::OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = guest
        .post(s.url("/v2/priv/app/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    // No token would let a guest push: 403, not a request for a better token (the challenge
    // still names the scope).
    let challenge = header(&r, "www-authenticate").unwrap().to_string();
    assert!(challenge.contains("scope=\"repository:priv/app:pull,push\""));
    assert!(!challenge.contains("insufficient_scope"), "{challenge}");
    assert_error(r, StatusCode::FORBIDDEN, "DENIED").await;

    // A token for one repository is nothing on another, even one the user may push to: the
    // registry asks for a better token (401 insufficient_scope), which the user then gets.
    let (_, answer) = token_for(
        &s,
        &http_as("developer", PASSWORD),
        &["repository:priv/app:pull,push"],
    )
    .await;
    let developer = bearer(answer["token"].as_str().unwrap());
    for repository in ["pub/app", "priv/other"] {
        let path = format!("/v2/{repository}/blobs/uploads/");
        let r = developer.post(s.url(&path)).send().await.unwrap();
        assert_eq!(
            header(&r, "www-authenticate"),
            Some(format!(
                "Bearer realm=\"{realm}\",service=\"gantry\",scope=\"repository:{repository}:pull,push\",error=\"insufficient_scope\""
            ).as_str())
        );
        assert_error(r, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
        let scope = format!("repository:{repository}:pull,push");
        let r = bearer_as(&s, "developer", &[&scope])
            .await
            .post(s.url(&path))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::ACCEPTED, "{path}");
    }
    let r = developer
        .post(s.url("/v2/priv/app/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);

    // Several scope parameters (skopeo's cross-repository mount) and a catalog scope.
    let (_, answer) = token_for(
        &s,
        &http_as("developer", PASSWORD),
        &[
            "repository:pub/app:pull",
            "repository:priv/app:pull,push",
            "repository:elsewhere/x:pull",
        ],
    )
    .await;
    let access = &claims(answer["token"].as_str().unwrap())["access"];
    assert_eq!(access.as_array().unwrap().len(), 3);
    assert_eq!(access[0]["actions"], json!(["pull"]));
    assert_eq!(access[1]["actions"], json!(["pull", "push"]));
    assert_eq!(
        access[2]["actions"],
        json!([]),
        "a project that does not exist grants nothing"
    );

    // Anonymous tokens: public pulls only; using one elsewhere is a 401 (log in), not a 403.
    let (status, answer) = token_for(
        &s,
        &anonymous(),
        &["repository:pub/app:pull", "repository:priv/app:pull"],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let nobody = bearer(answer["token"].as_str().unwrap());
    let r = nobody
        .get(s.url("/v2/pub/app/tags/list"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = nobody
        .get(s.url("/v2/priv/app/tags/list"))
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;

    // Bad credentials at the token endpoint are refused, not downgraded to anonymous.
    let (status, answer) =
        token_for(&s, &http_as("guest", "wrong"), &["repository:pub/app:pull"]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(answer["errors"][0]["code"], "UNAUTHORIZED");
}

#[tokio::test]
async fn forged_tampered_and_expired_tokens_are_refused() {
    let s = Server::start_configured(&[("GANTRY_TOKEN_TTL_SECS", "5")]);
    push_image(&s, "team/app", "v1", "t").await;
    let (_, answer) = token_for(&s, &http(), &["repository:team/app:pull"]).await;
    let token = answer["token"].as_str().unwrap().to_string();
    let get = |token: String| {
        let url = s.url("/v2/team/app/tags/list");
        async move { bearer(&token).get(url).send().await.unwrap() }
    };
    assert_eq!(get(token.clone()).await.status(), StatusCode::OK);

    let parts: Vec<&str> = token.split('.').collect();
    let mut payload = claims(&token);
    let encode = |v: &Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap());
    // alg: none, with the real payload and no signature.
    let none = format!(
        "{}.{}.",
        encode(&json!({"alg": "none", "typ": "JWT"})),
        parts[1]
    );
    // A tampered payload under the real signature: more actions, another repository.
    payload["access"][0]["actions"] = json!(["pull", "push", "delete"]);
    payload["access"][0]["name"] = json!("team/other");
    let tampered = format!("{}.{}.{}", parts[0], encode(&payload), parts[2]);
    // A token signed by another key, carrying the server's kid.
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    let foreign =
        gantry_auth::TokenKey::generate().issue(&serde_json::from_value(claims(&token)).unwrap());
    let foreign_parts: Vec<&str> = foreign.split('.').collect();
    let wrong_key = format!("{}.{}.{}", parts[0], foreign_parts[1], foreign_parts[2]);
    assert!(
        header["kid"].as_str().is_some_and(|k| k.len() == 59),
        "{header}"
    );
    // HS256 with the public kid, the classic algorithm confusion.
    let hmac = format!(
        "{}.{}.{}",
        encode(&json!({"alg": "HS256", "kid": header["kid"]})),
        parts[1],
        parts[2]
    );
    for (what, forged) in [
        ("alg none", none),
        ("tampered payload", tampered),
        ("foreign key", foreign),
        ("foreign signature under our kid", wrong_key),
        ("HS256", hmac),
        ("garbage", "not.a.token".to_string()),
    ] {
        let r = get(forged).await;
        let body = assert_error(r, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
        assert!(
            !body.to_string().contains(&token),
            "{what}: the token is not echoed"
        );
    }
    tokio::time::sleep(std::time::Duration::from_millis(5100)).await;
    let body = assert_error(get(token).await, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    assert!(body.to_string().contains("expired"), "{body}");
}

#[tokio::test]
async fn brute_force_logins_are_throttled_and_say_when_to_retry() {
    if single_process_only(
        "login throttling counts failures per process (README: behind N replicas a client gets up to N times the attempts before a lockout), so the exact lockout point is a property of one process",
    ) {
        return;
    }
    let (s, _) = matrix_server().await;
    let guesser = http_as("developer", "guess");
    for _ in 0..5 {
        let r = guesser.get(s.url("/v2/")).send().await.unwrap();
        assert_error(r, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    }
    // Now even the right password is refused for a while, on /v2 and at the token endpoint.
    let r = http_as("developer", PASSWORD)
        .get(s.url("/v2/"))
        .send()
        .await
        .unwrap();
    let retry: u64 = header(&r, "retry-after").unwrap().parse().unwrap();
    assert!((1..=300).contains(&retry), "{retry}");
    let body = assert_error(r, StatusCode::TOO_MANY_REQUESTS, "TOOMANYREQUESTS").await;
    assert!(!body.to_string().contains(PASSWORD));
    let (status, _) = token_for(&s, &http_as("developer", PASSWORD), &[]).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    // The failures are in the audit log, with the client's address.
    let audit: Value = get_json(&s, "/api/v1/audit?limit=1000").await;
    let failures = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            e["action"] == "login" && e["outcome"] == "failure" && e["actor"] == "developer"
        })
        .inspect(|e| assert_eq!(e["client"], "127.0.0.1"))
        .count();
    assert_eq!(failures, 5);
}

#[tokio::test]
async fn traversing_and_confusable_names_are_refused_everywhere() {
    let (s, _) = matrix_server().await;
    let developer = http_as("developer", PASSWORD);
    for scope in [
        "repository:priv/../pub/app:pull,push",
        "repository:../priv/app:pull",
        "repository:prіv/app:pull", // Cyrillic і
        "repository:PRIV/app:pull",
        "repository:priv/app",
    ] {
        let (status, body) = token_for(&s, &developer, &[scope]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{scope}");
        assert_eq!(body["errors"][0]["code"], "INVALID_REQUEST", "{scope}");
    }
    // (reqwest would resolve `%2e%2e` itself; raw requests below send it as written.)
    for path in [
        "/v2/pr%D1%96v/app/tags/list",
        "/v2/priv/app%2F..%2F..%2Fx/tags/list",
    ] {
        let r = developer.get(s.url(path)).send().await.unwrap();
        assert_error(r, StatusCode::BAD_REQUEST, "NAME_INVALID").await;
    }
    for path in [
        "/v2/priv/../pub/app/tags/list",
        "/v2/priv/%2e%2e/pub/app/tags/list",
    ] {
        let (status, body) = raw_request(&s, "GET", path);
        assert_eq!(status, 400, "{path}");
        assert_eq!(body["errors"][0]["code"], "NAME_INVALID", "{path}");
    }
}

#[tokio::test]
async fn containerd_oauth2_password_and_refresh_grants() {
    let (s, _) = matrix_server().await;
    let form = |pairs: &[(&str, &str)]| {
        let url = s.url("/auth/token");
        let body: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        async move {
            let r = anonymous().post(url).form(&body).send().await.unwrap();
            let status = r.status();
            (status, r.json::<Value>().await.unwrap())
        }
    };
    let (status, answer) = form(&[
        ("grant_type", "password"),
        ("username", "developer"),
        ("password", PASSWORD),
        ("service", "gantry"),
        ("client_id", "containerd-client"),
        ("access_type", "offline"),
        (
            "scope",
            "repository:priv/app:pull repository:pub/app:pull,push",
        ),
    ])
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(
        answer["scope"],
        "repository:priv/app:pull repository:pub/app:pull,push"
    );
    let refresh = answer["refresh_token"].as_str().unwrap().to_string();
    let r = bearer(answer["access_token"].as_str().unwrap())
        .post(s.url("/v2/pub/app/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    // A refresh token is not an access token.
    let r = bearer(&refresh).get(s.url("/v2/")).send().await.unwrap();
    assert_error(r, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    let (status, answer) = form(&[
        ("grant_type", "refresh_token"),
        ("refresh_token", &refresh),
        ("service", "gantry"),
        ("scope", "repository:priv/app:pull,push"),
    ])
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["scope"], "repository:priv/app:pull,push");
    assert_eq!(
        claims(answer["access_token"].as_str().unwrap())["sub"],
        "developer"
    );

    for bad in [
        vec![
            ("grant_type", "password"),
            ("username", "developer"),
            ("password", "nope"),
        ],
        vec![("grant_type", "refresh_token"), ("refresh_token", "x.y.z")],
    ] {
        let (status, answer) = form(&bad).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
    }
    let (status, answer) = form(&[("grant_type", "client_credentials")]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(answer["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("grant_type"));
}

#[tokio::test]
async fn permission_changes_apply_to_the_next_request() {
    let (s, _) = matrix_server().await;
    let spare = http_as("spare", PASSWORD);
    let push = || spare.post(s.url("/v2/priv/app/blobs/uploads/")).send();
    assert_error(push().await.unwrap(), StatusCode::FORBIDDEN, "DENIED").await;
    let set_role = |role: &'static str| {
        http()
            .put(s.url("/api/v1/projects/priv/members/spare"))
            .json(&json!({ "role": role }))
            .send()
    };
    assert!(set_role("developer").await.unwrap().status().is_success());
    assert_eq!(push().await.unwrap().status(), StatusCode::ACCEPTED);
    assert!(set_role("guest").await.unwrap().status().is_success());
    assert_error(push().await.unwrap(), StatusCode::FORBIDDEN, "DENIED").await;
    // Making the project public opens pulls to everyone at once.
    let pull = || anonymous().get(s.url("/v2/priv/app/tags/list")).send();
    assert_error(
        pull().await.unwrap(),
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED",
    )
    .await;
    let r = http()
        .patch(s.url("/api/v1/projects/priv"))
        .json(&json!({"public": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(pull().await.unwrap().status(), StatusCode::OK);
}

#[tokio::test]
async fn the_api_takes_bearer_tokens_issued_for_it_and_no_others() {
    let (s, _) = matrix_server().await;
    let maintainer = http_as("maintainer", PASSWORD);
    let (_, api) = token_for(&s, &maintainer, &["api:v1:*"]).await;
    let r = bearer(api["token"].as_str().unwrap())
        .get(s.url("/api/v1/projects/priv/members"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // The token acts as its subject: a maintainer still cannot manage members.
    let r = bearer(api["token"].as_str().unwrap())
        .put(s.url("/api/v1/projects/priv/members/spare"))
        .json(&json!({"role": "guest"}))
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::FORBIDDEN, "DENIED").await;
    // A registry token is not an API token.
    let (_, registry) = token_for(&s, &maintainer, &["repository:priv/app:pull"]).await;
    let r = bearer(registry["token"].as_str().unwrap())
        .get(s.url("/api/v1/projects"))
        .send()
        .await
        .unwrap();
    let body = assert_error(r, StatusCode::FORBIDDEN, "DENIED").await;
    assert!(body.to_string().contains("api:v1:*"), "{body}");
    // Nobody gets an API token.
    let (_, anon) = token_for(&s, &anonymous(), &["api:v1:*"]).await;
    assert_eq!(
        claims(anon["token"].as_str().unwrap())["access"][0]["actions"],
        json!([])
    );
    // The OpenAPI document is public.
    let doc: Value = anonymous()
        .get(s.url("/api/v1/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["paths"]["/api/v1/tokens"]["post"].is_object());
}

/// `curl` as a real client: the HTTP status of `GET path` with Basic credentials `user:password`
/// and extra `headers`.
fn curl_status(s: &Server, path: &str, credentials: &str, headers: &[&str]) -> u16 {
    let mut cmd = std::process::Command::new("curl");
    cmd.args([
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-u",
        credentials,
    ]);
    for h in headers {
        cmd.args(["-H", h]);
    }
    run(cmd.arg(s.url(path))).trim().parse().unwrap()
}

/// Mints a CI token for `repository` (project `project`, which must exist) as admin.
async fn ci_token(s: &Server, project: &str, repository: &str) -> (String, String) {
    let r: Value = http()
        .post(s.url("/api/v1/tokens"))
        .json(&json!({"project": project, "repository": repository, "actions": ["push"], "ttl_secs": 600}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    (
        r["name"].as_str().unwrap().to_string(),
        r["secret"].as_str().unwrap().to_string(),
    )
}

/// A server with user `alice` (who never logged in yet) and a fresh, unused CI token for
/// `ci/app` (name, secret).
async fn server_with_alice_and_a_ci_token() -> (Server, String, String) {
    let s = Server::start();
    api_create_project(&s, "ci", false).await;
    api_create_user(&s, "alice", PASSWORD, false).await;
    let (ci_name, ci_secret) = ci_token(&s, "ci", "ci/app").await;
    (s, ci_name, ci_secret)
}

#[tokio::test]
async fn a_valid_password_is_not_refused_after_another_names_failures_from_the_same_address() {
    if single_process_only(
        "login throttling counts failures per process (README: behind N replicas a client gets up to N times the attempts before a lockout), so the exact lockout point is a property of one process",
    ) {
        return;
    }
    // The CI token is minted a second before the failures.
    let (s, ci_name, ci_secret) = server_with_alice_and_a_ci_token().await;
    // One stale secret for a name that does not exist, from this (shared) address.
    for _ in 0..5 {
        assert_eq!(curl_status(&s, "/v2/", "nobody:stale", &[]), 401);
    }
    assert_eq!(
        curl_status(&s, "/v2/", "nobody:stale", &[]),
        429,
        "the failing client is told to back off"
    );
    // Everyone else behind the address, with a valid credential, gets in.
    assert_eq!(
        curl_status(&s, "/v2/", &format!("alice:{PASSWORD}"), &[]),
        200
    );
    assert_eq!(
        curl_status(&s, "/v2/", &format!("{ci_name}:{ci_secret}"), &[]),
        200,
        "a CI token still works after failures from its address"
    );
    assert_eq!(
        curl_status(
            &s,
            "/auth/token?service=gantry&scope=repository:ci/app:pull,push",
            &format!("{ci_name}:{ci_secret}"),
            &[]
        ),
        200
    );
    // A wrong password from the locked address is throttled, not just refused.
    assert_eq!(curl_status(&s, "/v2/", "alice:wrong", &[]), 429);
}

#[tokio::test]
async fn a_stale_ci_secret_does_not_lock_its_address() {
    let (s, ci_name, _) = server_with_alice_and_a_ci_token().await;
    // A CI fleet behind one NAT retrying with an old secret.
    for _ in 0..20 {
        assert_eq!(
            curl_status(&s, "/v2/", &format!("{ci_name}:old-secret"), &[]),
            401
        );
    }
    assert_eq!(curl_status(&s, "/v2/", "alice:wrong", &[]), 401);
    assert_eq!(
        curl_status(&s, "/v2/", &format!("alice:{PASSWORD}"), &[]),
        200
    );
}

#[tokio::test]
async fn x_forwarded_for_is_honoured_only_from_a_trusted_proxy() {
    if single_process_only(
        "the test plays the trusted proxy itself, and behind the balancer nginx sets X-Forwarded-For; it also counts on one process's login throttle",
    ) {
        return;
    }
    // The tests connect from 127.0.0.1: here that is a trusted proxy in front of the clients.
    let behind_proxy =
        Server::start_configured(&[("GANTRY_TRUSTED_PROXIES", "127.0.0.1,10.0.0.0/8")]);
    for _ in 0..5 {
        let status = curl_status(
            &behind_proxy,
            "/v2/",
            "nobody:wrong",
            &["X-Forwarded-For: 203.0.113.5"],
        );
        assert_eq!(status, 401);
    }
    assert_eq!(
        curl_status(
            &behind_proxy,
            "/v2/",
            "nobody:wrong",
            &["X-Forwarded-For: 203.0.113.5"]
        ),
        429,
        "the client behind the proxy is throttled..."
    );
    assert_eq!(
        curl_status(
            &behind_proxy,
            "/v2/",
            "nobody:wrong",
            &["X-Forwarded-For: 203.0.113.6"]
        ),
        401,
        "...not its neighbours behind the same proxy"
    );
    assert_eq!(
        curl_status(
            &behind_proxy,
            "/v2/",
            "nobody:wrong",
            &["Forwarded: for=203.0.113.7"]
        ),
        401
    );
    let audit = get_json(&behind_proxy, "/api/v1/audit?limit=1000").await;
    let clients: std::collections::BTreeSet<&str> = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "login" && e["actor"] == "nobody")
        .map(|e| e["client"].as_str().unwrap())
        .collect();
    assert_eq!(
        clients,
        ["203.0.113.5", "203.0.113.6", "203.0.113.7"].into(),
        "the audit log names the client, not the proxy"
    );

    // Without trusted proxies the header is anyone's to forge and is ignored.
    let direct = Server::start();
    for n in 0..5 {
        let forged = format!("X-Forwarded-For: 203.0.113.{n}");
        assert_eq!(
            curl_status(&direct, "/v2/", "nobody:wrong", &[&forged]),
            401
        );
    }
    assert_eq!(
        curl_status(
            &direct,
            "/v2/",
            "nobody:wrong",
            &["X-Forwarded-For: 198.51.100.1"]
        ),
        429,
        "rotating a forged header does not escape the peer's throttle"
    );
    let audit = get_json(&direct, "/api/v1/audit?limit=1000").await;
    assert!(audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "login" && e["actor"] == "nobody")
        .all(|e| e["client"] == "127.0.0.1"));
}

/// A client holding the token `user` gets for `scopes`.
async fn bearer_as(s: &Server, user: &str, scopes: &[&str]) -> reqwest::Client {
    let (_, answer) = token_for(s, &http_as(user, PASSWORD), scopes).await;
    bearer(answer["token"].as_str().unwrap())
}

/// The `WWW-Authenticate` value that asks for `scopes` because a token lacks them.
fn insufficient_scope_challenge(s: &Server, scopes: &str) -> String {
    format!(
        "Bearer realm=\"http://{}/auth/token\",service=\"gantry\",scope=\"{scopes}\",error=\"insufficient_scope\"",
        s.addr
    )
}

#[tokio::test]
async fn pull_token_may_poll_its_upload_status() {
    let (s, _) = matrix_server().await;
    let pusher = bearer_as(&s, "developer", &["repository:priv/app:pull,push"]).await;
    let r = pusher
        .post(s.url("/v2/priv/app/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let location = header(&r, "location").unwrap().to_string();
    // The client's token after a refresh carries pull only (as the oras SDK's may).
    for user in ["developer", "guest"] {
        let puller = bearer_as(&s, user, &["repository:priv/app:pull"]).await;
        let r = puller.get(s.url(&location)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::NO_CONTENT, "{user}");
        assert_eq!(header(&r, "range"), Some("0-0"));
    }
    // Writing to the upload still needs push: a developer is asked for a better token, a
    // guest (who will never get one) is denied.
    for (user, status) in [
        ("developer", StatusCode::UNAUTHORIZED),
        ("guest", StatusCode::FORBIDDEN),
    ] {
        let puller = bearer_as(&s, user, &["repository:priv/app:pull"]).await;
        let r = puller
            .patch(s.url(&location))
            .body("x")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status, "{user}");
    }
    // Basic callers follow the same table: a guest may poll, not write.
    let guest = http_as("guest", PASSWORD);
    let r = guest.get(s.url(&location)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = guest
        .patch(s.url(&location))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::FORBIDDEN, "DENIED").await;
}

#[tokio::test]
async fn missing_scope_answers_401_insufficient_scope_challenge() {
    let (s, _) = matrix_server().await;
    let stale = bearer_as(&s, "developer", &["repository:priv/app:pull"]).await;
    let get = |client: &reqwest::Client| {
        client
            .get(s.url("/v2/pub/app/manifests/v1"))
            .header("accept", media_type::OCI_MANIFEST)
            .send()
    };
    let r = get(&stale).await.unwrap();
    let challenge = insufficient_scope_challenge(&s, "repository:pub/app:pull");
    assert_eq!(header(&r, "www-authenticate"), Some(challenge.as_str()));
    assert_error(r, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    // A client that sends the same token again (the oras SDK acts on 403 only) gets 403
    // with the same challenge.
    let r = get(&stale).await.unwrap();
    assert_eq!(header(&r, "www-authenticate"), Some(challenge.as_str()));
    assert_error(r, StatusCode::FORBIDDEN, "DENIED").await;
    // The token the challenge asks for works.
    let better = bearer_as(&s, "developer", &["repository:pub/app:pull"]).await;
    assert_eq!(get(&better).await.unwrap().status(), StatusCode::OK);
    // Push with a pull token: the challenge names pull,push.
    let r = stale
        .put(s.url("/v2/priv/app/manifests/v2"))
        .header("content-type", media_type::OCI_MANIFEST)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(
        header(&r, "www-authenticate"),
        Some(insufficient_scope_challenge(&s, "repository:priv/app:pull,push").as_str())
    );
    assert_error(r, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    // An outsider's token for what it may never have: 403, no request for a better token.
    let outsider = bearer_as(&s, "outsider", &["repository:priv/app:pull"]).await;
    let r = outsider
        .get(s.url("/v2/priv/app/tags/list"))
        .send()
        .await
        .unwrap();
    assert!(!header(&r, "www-authenticate")
        .unwrap()
        .contains("insufficient_scope"));
    assert_error(r, StatusCode::FORBIDDEN, "DENIED").await;
}

#[tokio::test]
async fn mount_lacking_pull_on_from_answers_a_challenge_with_both_scopes() {
    let (s, images) = matrix_server().await;
    let (from, _, config) = &images[1]; // pub/app's config blob
    let mount = format!("/v2/priv/app/blobs/uploads/?mount={config}&from={from}");
    let r = bearer_as(&s, "developer", &["repository:priv/app:pull,push"])
        .await
        .post(s.url(&mount))
        .send()
        .await
        .unwrap();
    assert_eq!(
        header(&r, "www-authenticate"),
        Some(
            insufficient_scope_challenge(
                &s,
                &format!("repository:priv/app:pull,push repository:{from}:pull")
            )
            .as_str()
        )
    );
    assert_error(r, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    // With both scopes, as the challenge asked, the blob is mounted.
    let r = bearer_as(
        &s,
        "developer",
        &["repository:priv/app:pull,push", "repository:pub/app:pull"],
    )
    .await
    .post(s.url(&mount))
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(
        header(&r, "docker-content-digest"),
        Some(config.to_string().as_str())
    );
    // A caller who may not pull from `from` at all gets an upload session instead (the spec's
    // answer to a mount that cannot be done), with a token as with Basic credentials.
    let (secret_repo, _, secret_config) = &images[0]; // priv/app
    api_create_project(&s, "own", false).await;
    api_set_role(&s, "own", "outsider", "developer").await;
    let outsider = bearer_as(&s, "outsider", &["repository:own/app:pull,push"]).await;
    let steal = format!("/v2/own/app/blobs/uploads/?mount={secret_config}&from={secret_repo}");
    for client in [outsider, http_as("outsider", PASSWORD)] {
        let r = client.post(s.url(&steal)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::ACCEPTED);
    }
}
