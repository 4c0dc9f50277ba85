//! The REST API keeps the contract its OpenAPI document states: every request the document
//! allows is taken, every request it forbids is refused with the OCI error JSON, and every
//! answer has a status and shape the document lists. Schemathesis checks the whole document
//! against the real binary; the other tests pin the faults it found, one each.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::*;
use reqwest::StatusCode;
use serde_json::{json, Value};

/// The served OpenAPI document.
async fn openapi(s: &Server) -> Value {
    get_json(s, "/api/v1/openapi.json").await
}

/// Sends `request` and asserts it is refused with 400 INVALID_REQUEST, the JSON error.
async fn assert_invalid(request: reqwest::RequestBuilder) -> Value {
    let response = request.send().await.unwrap();
    assert_error(response, StatusCode::BAD_REQUEST, "INVALID_REQUEST").await
}

/// The schema of `operation`'s parameter `name` in the served document.
fn parameter_schema(doc: &Value, path: &str, method: &str, name: &str) -> Value {
    doc["paths"][path][method]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("{method} {path} documents {name}"))["schema"]
        .clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn rest_api_conforms_to_its_openapi_document_under_schemathesis() {
    // Tokens live an hour, longer than the run.
    let s = Server::start_configured(&[("GANTRY_TOKEN_TTL_SECS", "3600")]);
    // The run authenticates as the admin with a bearer token for scope api:v1:* (minted with
    // the admin's Basic credentials): it changes the admin's own password among everything
    // else it tries, which would make Basic credentials fail for the rest of the run and lock
    // them out through the failed-login throttle. The token names the admin, not a password.
    let token = get_json(&s, "/auth/token?service=gantry&scope=api:v1:*").await;
    let token = token["token"].as_str().expect("a token").to_string();
    let config = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/schemathesis.toml");
    let workdir = tempfile::tempdir().unwrap();
    let output = Command::new("st")
        .current_dir(workdir.path())
        .arg("--config-file")
        .arg(&config)
        .args(["run", &s.url("/api/v1/openapi.json")])
        .args(["--checks", "all"])
        // ignored_auth sends wrong Basic credentials to every operation; past five failures
        // from one address in a minute the documented throttle answers 429 TOOMANYREQUESTS
        // where the check insists on 401/403, and locks the address. That auth is enforced is
        // the access tests' subject (access::authorization_matrix_every_endpoint_role_and_visibility).
        .args(["--exclude-checks", "ignored_auth"])
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .args(["--phases", "examples,coverage,fuzzing,stateful"])
        .args(["--max-examples", "30"])
        // One worker: hypothesis' lambda descriptions race in CPython 3.11's parser when
        // schemathesis generates from several threads ("AST constructor recursion depth
        // mismatch"), and the server's two cores are shared anyway.
        .args(["--workers", "1"])
        .args(["--request-timeout", "30"])
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run st ({e}): pip install schemathesis, as .ci/run does")
        });
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "schemathesis found the API and its document disagree ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    // Every operation the document lists (the HTTP methods of its path items; a path item
    // may also hold shared `parameters`), counted from it so that a new resource needs no
    // edit here.
    const METHODS: [&str; 8] = [
        "get", "put", "post", "delete", "options", "head", "patch", "trace",
    ];
    let documented = openapi(&s).await["paths"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|item| item.as_object().unwrap().keys())
        .filter(|key| METHODS.contains(&key.as_str()))
        .count();
    assert!(
        stdout.contains(&format!("Selected: {documented}/{documented}"))
            && stdout.contains(&format!("Tested: {documented}")),
        "every operation ({documented} documented) was tested:\n{stdout}"
    );
}

#[tokio::test]
async fn malformed_path_parameter_is_the_json_error_not_plain_text() {
    let s = Server::start();
    api_create_project(&s, "team-a", false).await;
    for (method, path) in [
        ("DELETE", "/api/v1/projects/team-a/archives/null,null"),
        ("POST", "/api/v1/projects/team-a/archives/abc/restore"),
        (
            "DELETE",
            "/api/v1/projects/team-a/archives/99999999999999999999",
        ),
    ] {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let body = assert_invalid(http().request(method, s.url(path))).await;
        let message = body["errors"][0]["message"].as_str().unwrap();
        assert!(message.starts_with("path parameter:"), "{path}: {message}");
    }
    // An id in range that names no archive is a 404, as documented.
    let r = http()
        .delete(s.url("/api/v1/projects/team-a/archives/1"))
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::NOT_FOUND, "NOT_FOUND").await;
}

#[tokio::test]
async fn gc_pause_ms_above_the_documented_maximum_is_refused() {
    let s = Server::start();
    let doc = openapi(&s).await;
    let maximum = parameter_schema(&doc, "/api/v1/gc", "post", "pause_ms")["maximum"]
        .as_u64()
        .expect("pause_ms has a documented maximum");
    assert_eq!(maximum, 60_000);
    let too_long = format!("/api/v1/gc?dry_run=true&pause_ms={}", maximum + 1);
    let body = assert_invalid(http().post(s.url(&too_long))).await;
    assert_eq!(
        body["errors"][0]["message"],
        "pause_ms 60001 is out of range: give 0 to 60000"
    );
    let r = http()
        .post(s.url(&format!("/api/v1/gc?dry_run=true&pause_ms={maximum}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn quota_body_of_the_wrong_type_is_refused_with_the_json_error() {
    let s = Server::start();
    api_create_project(&s, "team-a", false).await;
    let quota = s.url("/api/v1/projects/team-a/quota");
    let r = http()
        .put(&quota)
        .json(&json!({"storage_bytes": 1000, "artifacts": 5}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // `[null, null]` used to be read field by field as "both unlimited".
    for body in [
        "[null, null]",
        "[1, 2]",
        r#"{"storage_bytes": "1000"}"#,
        r#"{"storage_bytes": 1.5}"#,
        r#"{"storage_bytes": -1}"#,
        r#"{"storage_bytes": 9223372036854775808}"#,
        "null",
    ] {
        assert_invalid(http().put(&quota).body(body)).await;
    }
    let now = get_json(&s, "/api/v1/projects/team-a/quota").await;
    assert_eq!(now["storage"]["limit_bytes"], 1000, "{now}");
    assert_eq!(now["artifacts"]["limit"], 5, "{now}");
}

#[tokio::test]
async fn audit_limit_the_document_allows_is_accepted() {
    let s = Server::start();
    let doc = openapi(&s).await;
    let schema = parameter_schema(&doc, "/api/v1/audit", "get", "limit");
    let (minimum, maximum) = (
        schema["minimum"].as_i64().unwrap(),
        schema["maximum"].as_i64().unwrap(),
    );
    assert_eq!((minimum, maximum), (1, 10_000));
    for limit in [minimum, 100, maximum] {
        let r = http()
            .get(s.url(&format!("/api/v1/audit?limit={limit}&since=0")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "limit={limit}");
    }
    // Outside the documented range: the JSON error, never a plain-text parse failure.
    for query in [
        format!("limit={}", minimum - 1),
        format!("limit={}", maximum + 1),
        "limit=-252".to_string(),
        "limit=99999999999".to_string(),
        "since=-1".to_string(),
    ] {
        assert_invalid(http().get(s.url(&format!("/api/v1/audit?{query}")))).await;
    }
}

#[tokio::test]
async fn deleting_yourself_answers_the_documented_400() {
    let s = Server::start();
    let doc = openapi(&s).await;
    let documented = &doc["paths"]["/api/v1/users/{user}"]["delete"]["responses"]["400"];
    assert!(
        documented["description"]
            .as_str()
            .is_some_and(|d| d.contains("you cannot delete yourself")),
        "{documented}"
    );
    let body = assert_invalid(http().delete(s.url("/api/v1/users/admin"))).await;
    assert_eq!(body["errors"][0]["message"], "you cannot delete yourself");
}

/// The README's REST examples, run as written with curl: `curl -d` sends the JSON body as
/// `application/x-www-form-urlencoded`, which the API reads as JSON like most REST APIs.
#[test]
fn readme_rest_example_works_with_curl_as_written() {
    let s = Server::start_configured(&[("GANTRY_AUTO_CREATE_PROJECTS", "false")]);
    let readme =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../README.md"))
            .unwrap();
    let examples: Vec<&str> = readme
        .lines()
        .filter(|line| line.starts_with("curl -u admin:$PW") && line.contains("/api/v1/"))
        .collect();
    assert!(
        examples
            .iter()
            .any(|line| line.contains("-X POST") && line.contains("/api/v1/projects -d ")),
        "the README shows creating a project: {examples:?}"
    );
    let workdir = tempfile::tempdir().unwrap();
    for example in &examples {
        let command = example.replace("http://127.0.0.1:5000", &s.base).replacen(
            "curl ",
            "curl -sS --fail-with-body ",
            1,
        );
        let body = run(Command::new("sh")
            .current_dir(workdir.path())
            .args(["-c", &command])
            .env("PW", ADMIN_PASSWORD));
        let body: Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("{example} answered JSON ({e}): {body}"));
        if example.contains("-X POST") {
            assert_eq!(body, json!({"name": "team-b", "public": false}));
            // The browsing examples that follow show what team-b holds.
            tokio::runtime::Runtime::new().unwrap().block_on(push_image(
                &s,
                "team-b/app",
                "v1.2.0",
                "readme",
            ));
        }
    }
    // A body that is not JSON is still refused, with the JSON error.
    let output = run(Command::new("curl")
        .args(["-sS", "-u", &admin_creds(), "-X", "POST"])
        .arg(s.url("/api/v1/projects"))
        .args(["-d", "name=team-c", "-w", "\n%{http_code} %{content_type}"]));
    let (body, status) = output.rsplit_once('\n').unwrap();
    assert_eq!(status, "400 application/json", "{output}");
    let body: Value = serde_json::from_str(body).unwrap();
    assert_eq!(body["errors"][0]["code"], "INVALID_REQUEST", "{body}");
}
