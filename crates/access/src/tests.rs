use super::*;
use gantry_auth::throttle::ThrottleRules;
use gantry_meta::AuditQuery;

struct Fixture {
    _dir: tempfile::TempDir,
    access: Arc<AccessService>,
}

async fn fixture(config: AccessConfig) -> Fixture {
    let (dir, _, meta) = gantry_meta::testing::fresh_store().await;
    let hash = gantry_auth::password::hash("secret-pw").unwrap();
    meta.create_user("root", &hash, true).await.unwrap();
    meta.create_user("alice", &hash, false).await.unwrap();
    meta.create_user("bob", &hash, false).await.unwrap();
    meta.create_project("team-a", false, Some("alice"))
        .await
        .unwrap();
    meta.create_project("pub", true, None).await.unwrap();
    meta.set_member("team-a", "bob", "guest").await.unwrap();
    let access = AccessService::new(meta, TokenKey::generate(), config).unwrap();
    Fixture { _dir: dir, access }
}

/// A fixture whose throttle locks after three failures.
async fn fixture_locking_after_three_failures() -> Fixture {
    fixture(AccessConfig {
        throttle: ThrottleRules {
            max_failures: 3,
            ..ThrottleRules::default()
        },
        ..AccessConfig::default()
    })
    .await
}

fn repo(name: &str) -> RepositoryName {
    RepositoryName::parse(name).unwrap()
}

fn user(name: &str) -> Identity {
    Identity::User {
        name: name.into(),
        system_admin: name == "root",
    }
}

async fn ci_credential(access: &AccessService, name: &str, repository: Option<&str>) -> String {
    let (secret, hash) = gantry_auth::secret::generate("gantry_ci_");
    let credential = Credential {
        name: name.into(),
        kind: "ci".into(),
        project: Some("team-a".into()),
        repository: repository.map(str::to_string),
        actions: vec!["pull".into(), "push".into()],
        expires_at: Some(now_secs() as i64 + 600),
        revoked_at: None,
        created_by: "alice".into(),
    };
    access
        .meta()
        .create_credential(&credential, &hash)
        .await
        .unwrap();
    secret
}

#[tokio::test]
async fn logins_verify_passwords_and_secrets_and_are_audited() {
    let f = fixture(AccessConfig::default()).await;
    let a = &f.access;
    assert_eq!(
        a.login("alice", "secret-pw", "192.0.2.1", LoginVia::Basic)
            .await
            .unwrap(),
        user("alice")
    );
    for (name, password) in [("alice", "wrong"), ("nobody", "secret-pw"), ("", "")] {
        assert!(matches!(
            a.login(name, password, "192.0.2.1", LoginVia::Basic).await,
            Err(AccessError::Unauthenticated(m)) if !m.contains(password) || password.is_empty()
        ));
    }
    let secret = ci_credential(a, "ci$team-a+1", None).await;
    assert!(matches!(
        a.login("ci$team-a+1", &secret, "192.0.2.1", LoginVia::Basic)
            .await
            .unwrap(),
        Identity::Scoped { .. }
    ));
    // The secret of one credential does not log in as another name.
    assert!(a
        .login("ci$team-a+2", &secret, "192.0.2.1", LoginVia::Basic)
        .await
        .is_err());
    a.audit_log().flush().await;
    let events = a
        .meta()
        .audit(&AuditQuery {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    let outcomes: Vec<(&str, &str)> = events
        .iter()
        .rev()
        .map(|e| (e.actor.as_str(), e.outcome.as_str()))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("alice", "success"),
            ("alice", "failure"),
            ("nobody", "failure"),
            ("", "failure"),
            ("ci$team-a+1", "success"),
            ("ci$team-a+2", "failure")
        ]
    );
    assert!(events
        .iter()
        .all(|e| e.client_addr.as_deref() == Some("192.0.2.1")
            && e.action == "login"
            && e.resource == "basic"));
}

#[tokio::test]
async fn repeated_failures_lock_the_user_and_slow_only_failures_from_the_address() {
    let f = fixture_locking_after_three_failures().await;
    let a = &f.access;
    for _ in 0..3 {
        assert!(matches!(
            a.login("alice", "guess", "198.51.100.1", LoginVia::Basic)
                .await,
            Err(AccessError::Unauthenticated(_))
        ));
    }
    // Locked even with the right password, from that address and for that user elsewhere.
    assert!(matches!(
        a.login("alice", "secret-pw", "198.51.100.1", LoginVia::Basic)
            .await,
        Err(AccessError::Throttled { .. })
    ));
    assert!(matches!(
        a.login("alice", "secret-pw", "198.51.100.2", LoginVia::Basic)
            .await,
        Err(AccessError::Throttled { .. })
    ));
    // The address is locked for failures, not for someone else's valid password.
    assert!(matches!(
        a.login("bob", "wrong", "198.51.100.1", LoginVia::Basic)
            .await,
        Err(AccessError::Throttled { .. })
    ));
    assert!(a
        .login("bob", "secret-pw", "198.51.100.1", LoginVia::Basic)
        .await
        .is_ok());
    assert!(a
        .login("bob", "secret-pw", "198.51.100.3", LoginVia::Basic)
        .await
        .is_ok());
}

/// Basic verifications are remembered for a minute, and that memory answered a locked-out user
/// with the right password at once while every wrong guess got 429: the difference told an
/// attacker which guess was right. A locked user is refused whatever the cache holds.
#[tokio::test]
async fn a_locked_user_is_refused_even_with_a_password_the_server_remembers() {
    let f = fixture_locking_after_three_failures().await;
    let a = &f.access;
    assert!(a
        .basic("alice", "secret-pw", "198.51.100.1", LoginVia::Basic)
        .await
        .is_ok());
    for guess in 0..3 {
        let refused = a
            .basic(
                "alice",
                &format!("guess-{guess}"),
                "203.0.113.9",
                LoginVia::Basic,
            )
            .await;
        assert!(matches!(refused, Err(AccessError::Unauthenticated(_))));
    }
    for client in ["198.51.100.1", "203.0.113.9"] {
        assert!(matches!(
            a.basic("alice", "secret-pw", client, LoginVia::Basic).await,
            Err(AccessError::Throttled { .. })
        ));
    }
    // Other users' remembered passwords still work.
    assert!(a
        .basic("bob", "secret-pw", "203.0.113.9", LoginVia::Basic)
        .await
        .is_ok());
}

#[tokio::test]
async fn authorization_follows_roles_visibility_and_project_existence() {
    let f = fixture(AccessConfig::default()).await;
    let a = &f.access;
    let anon = Caller::anonymous();
    let alice = Caller::Identity(user("alice"));
    let bob = Caller::Identity(user("bob"));
    let root = Caller::Identity(user("root"));
    let app = repo("team-a/app");
    assert!(a.authorize(&alice, &app, Action::Push).await.is_ok());
    assert!(a.authorize(&bob, &app, Action::Pull).await.is_ok());
    assert!(matches!(
        a.authorize(&bob, &app, Action::Push).await,
        Err(AccessError::Denied(_))
    ));
    assert!(matches!(
        a.authorize(&anon, &app, Action::Pull).await,
        Err(AccessError::Unauthenticated(_))
    ));
    assert!(a
        .authorize(&anon, &repo("pub/x"), Action::Pull)
        .await
        .is_ok());
    assert!(matches!(
        a.authorize(&anon, &repo("pub/x"), Action::Push).await,
        Err(AccessError::Unauthenticated(_))
    ));
    // Nobody pushes into a project that does not exist, not even a system admin.
    assert!(matches!(
        a.authorize(&root, &repo("ghost/x"), Action::Push).await,
        Err(AccessError::ProjectUnknown(p)) if p == "ghost"
    ));
    assert!(matches!(
        a.authorize(&alice, &repo("ghost/x"), Action::Push).await,
        Err(AccessError::Denied(_))
    ));
}

#[tokio::test]
async fn auto_creation_makes_the_pusher_project_admin() {
    let f = fixture(AccessConfig {
        auto_create_projects: true,
        ..AccessConfig::default()
    })
    .await;
    let a = &f.access;
    let bob = Caller::Identity(user("bob"));
    assert!(a
        .authorize(&bob, &repo("bobs/app"), Action::Push)
        .await
        .is_ok());
    assert_eq!(
        a.meta()
            .member_role("bobs", "bob")
            .await
            .unwrap()
            .as_deref(),
        Some("project-admin")
    );
    assert!(!a.meta().project("bobs").await.unwrap().unwrap().public);
    // Pulling does not create projects.
    assert!(a
        .authorize(&bob, &repo("other/app"), Action::Pull)
        .await
        .is_err());
    assert!(a.meta().project("other").await.unwrap().is_none());
}

#[tokio::test]
async fn tokens_grant_the_intersection_of_asked_and_allowed() {
    let f = fixture(AccessConfig::default()).await;
    let a = &f.access;
    let scopes = Scope::parse_all([
        "repository:team-a/app:pull,push,delete repository:pub/x:pull,push repository:other/y:pull",
    ])
    .unwrap();
    let issued = a.issue(&user("bob"), &scopes, false).await.unwrap();
    assert_eq!(
        issued.granted,
        ["repository:team-a/app:pull", "repository:pub/x:pull"]
    );
    assert!(issued.refresh_token.is_none());
    let Caller::Token(claims) = a.bearer(&issued.token).unwrap() else {
        panic!("a bearer token")
    };
    assert_eq!(claims.sub, "bob");
    let caller = Caller::Token(claims);
    assert!(a
        .authorize(&caller, &repo("team-a/app"), Action::Pull)
        .await
        .is_ok());
    assert!(matches!(
        a.authorize(&caller, &repo("team-a/app"), Action::Push)
            .await,
        Err(AccessError::Denied(_))
    ));
    // A token for project A is nothing on project B.
    assert!(a
        .authorize(&caller, &repo("team-b/app"), Action::Pull)
        .await
        .is_err());

    let anonymous = a.issue(&Identity::Anonymous, &scopes, true).await.unwrap();
    assert_eq!(anonymous.granted, ["repository:pub/x:pull"]);
    assert!(
        anonymous.refresh_token.is_none(),
        "nobody gets no refresh token"
    );
}

#[tokio::test]
async fn refresh_tokens_are_not_access_tokens_and_die_with_their_credential() {
    let f = fixture(AccessConfig::default()).await;
    let a = &f.access;
    let secret = ci_credential(a, "ci$team-a+r", None).await;
    let ci = a
        .login("ci$team-a+r", &secret, "x", LoginVia::Basic)
        .await
        .unwrap();
    let scopes = Scope::parse_all(["repository:team-a/app:pull,push"]).unwrap();
    let issued = a.issue(&ci, &scopes, true).await.unwrap();
    let refresh = issued.refresh_token.unwrap();
    assert!(
        a.bearer(&refresh).is_err(),
        "a refresh token is no access token"
    );
    assert_eq!(a.refresh(&refresh).await.unwrap(), ci);
    assert!(a.refresh(&issued.token).await.is_err());

    let Caller::Token(claims) = a.bearer(&issued.token).unwrap() else {
        panic!()
    };
    let caller = Caller::Token(claims);
    assert!(a
        .authorize(&caller, &repo("team-a/app"), Action::Push)
        .await
        .is_ok());
    assert!(a.meta().revoke_credential("ci$team-a+r").await.unwrap());
    a.forget("ci$team-a+r").await;
    assert!(a.refresh(&refresh).await.is_err());
    assert!(
        a.authorize(&caller, &repo("team-a/app"), Action::Push)
            .await
            .is_err(),
        "a revoked credential's token stops working"
    );
}

#[tokio::test]
async fn repository_scoped_credentials_and_listing() {
    let f = fixture(AccessConfig::default()).await;
    let a = &f.access;
    let secret = ci_credential(a, "ci$team-a+one", Some("team-a/app")).await;
    let ci = a
        .login("ci$team-a+one", &secret, "x", LoginVia::Basic)
        .await
        .unwrap();
    let caller = Caller::Identity(ci.clone());
    assert!(a
        .authorize(&caller, &repo("team-a/app"), Action::Push)
        .await
        .is_ok());
    assert!(a
        .authorize(&caller, &repo("team-a/other"), Action::Push)
        .await
        .is_err());
    let names: Vec<String> = ["pub/x", "team-a/app", "team-a/other", "zzz/q"]
        .map(String::from)
        .into();
    assert_eq!(
        a.listable(&ci, names.clone()).await.unwrap(),
        ["pub/x", "team-a/app"]
    );
    assert_eq!(
        a.listable(&user("bob"), names.clone()).await.unwrap(),
        ["pub/x", "team-a/app", "team-a/other"]
    );
    assert_eq!(
        a.listable(&Identity::Anonymous, names.clone())
            .await
            .unwrap(),
        ["pub/x"]
    );
    assert_eq!(
        a.listable(&user("root"), names.clone()).await.unwrap(),
        names
    );
}

/// Issue 12: cached verifications and project facts were dropped only when the change went
/// through the same server, so another replica kept accepting a deleted user's password for
/// up to a minute (`VERIFIED_TTL`). Every change bumps the `access` change counter, which
/// each server reads every `CHANGE_POLL`.
#[tokio::test]
async fn a_user_deleted_through_one_server_is_refused_by_another_within_a_second_or_two() {
    let f = fixture(AccessConfig::default()).await;
    let one = &f.access;
    let other = AccessService::new(
        one.meta().clone(),
        TokenKey::generate(),
        AccessConfig::default(),
    )
    .unwrap();
    let bob = other
        .basic("bob", "secret-pw", "10.0.0.2", LoginVia::Basic)
        .await
        .unwrap();
    let pull = |who: Identity| {
        let other = other.clone();
        async move {
            other
                .authorize(&Caller::Identity(who), &repo("team-a/app"), Action::Pull)
                .await
        }
    };
    assert!(pull(bob.clone()).await.is_ok(), "bob is a guest of team-a");
    let root = Actor {
        identity: Identity::User {
            name: "root".into(),
            system_admin: true,
        },
        client: "10.0.0.1".into(),
    };
    one.delete_user(&root, "bob").await.unwrap();
    let deleted_at = std::time::Instant::now();
    loop {
        let login = other
            .basic("bob", "secret-pw", "10.0.0.2", LoginVia::Basic)
            .await;
        let role = pull(bob.clone()).await;
        if login.is_err() && role.is_err() {
            break;
        }
        assert!(
            deleted_at.elapsed() < CHANGE_POLL * 3,
            "the other server still accepts bob after {:?} (login {}, pull {})",
            deleted_at.elapsed(),
            login.is_ok(),
            role.is_ok()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Issue 12: the memory of insufficient-scope answers (401 first, 403 when the same token
/// comes back for the same need, which the oras SDK waits for) was kept per process, so
/// behind a balancer the token sent again reached another replica, got 401 again, and the
/// oras SDK gave up. The answer is now claimed in the shared database.
#[tokio::test]
async fn a_token_told_its_scope_is_insufficient_gets_403_from_another_replica() {
    let f = fixture(AccessConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("shared-key.pem");
    let replica = |meta: MetaStore| {
        AccessService::new(
            meta,
            TokenKey::load_or_generate(&key_file).unwrap(),
            AccessConfig::default(),
        )
        .unwrap()
    };
    let (one, other) = (
        replica(f.access.meta().clone()),
        replica(f.access.meta().clone()),
    );
    let scopes = Scope::parse_all(["repository:pub/x:pull"]).unwrap();
    let issued = one.issue(&user("bob"), &scopes, false).await.unwrap();
    // bob may pull team-a/app, but this token does not say so.
    let lacking = |service: &Arc<AccessService>| {
        let caller = service.bearer(&issued.token).unwrap();
        let service = service.clone();
        async move {
            service
                .authorize(&caller, &repo("team-a/app"), Action::Pull)
                .await
        }
    };
    assert!(matches!(
        lacking(&one).await,
        Err(AccessError::InsufficientScope {
            repeated: false,
            ..
        })
    ));
    assert!(matches!(
        lacking(&other).await,
        Err(AccessError::InsufficientScope { repeated: true, .. })
    ));
}
