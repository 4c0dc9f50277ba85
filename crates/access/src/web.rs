//! Sign-in to the web UI: a user's password (throttled and audited as every login) opens a
//! session named by a random secret (the cookie; stored as its digest) with a CSRF token
//! for its forms, for [`WEB_SESSION_TTL`]. Each request resolves the session's user afresh,
//! so a deleted user's sessions end at once; a password change ends the user's sessions.

use std::time::Duration;

use gantry_auth::secret;
use gantry_meta::WebSession;

use crate::{AccessError, AccessService, Actor, LoginVia, Result};

/// The caller an in-process API request acts as (the web UI's pages ask the REST API as the
/// signed-in user): a request extension, which no client can send, taken by the API's caller
/// extractor instead of credentials.
#[derive(Debug, Clone)]
pub struct ActingAs(pub Actor);

/// How long a web session lasts from its sign-in.
pub const WEB_SESSION_TTL: Duration = Duration::from_secs(8 * 3600);

/// A session just opened: the cookie's secret (shown to the browser only) and its CSRF token.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub secret: String,
    pub csrf: String,
    /// Unix milliseconds.
    pub expires_ms: i64,
}

impl AccessService {
    /// Signs `username` in from `client` with `password`. Errors: `Unauthenticated` for wrong
    /// credentials or a robot account or CI token (they have no UI), `Throttled`.
    pub async fn sign_in(&self, username: &str, password: &str, client: &str) -> Result<SignedIn> {
        if username.contains('$') {
            return Err(AccessError::Unauthenticated(
                "robot accounts and CI tokens cannot sign in to the web UI: sign in as a user"
                    .into(),
            ));
        }
        self.login(username, password, client, LoginVia::Web)
            .await?;
        let (secret, digest) = secret::generate("gantry_web_");
        let (csrf, _) = secret::generate("");
        let now = gantry_meta::now_ms();
        let session = WebSession {
            user_name: username.to_string(),
            csrf: csrf.clone(),
            created_ms: now,
            expires_ms: now + WEB_SESSION_TTL.as_millis() as i64,
        };
        self.meta.create_web_session(&digest, &session).await?;
        Ok(SignedIn {
            secret,
            csrf,
            expires_ms: session.expires_ms,
        })
    }

    /// The caller a session's `secret` stands for (at `client`), with its CSRF token; `None`
    /// for no such session, an expired one, or one whose user is gone.
    pub async fn web_caller(&self, secret: &str, client: &str) -> Result<Option<(Actor, String)>> {
        let digest = secret::digest(secret);
        let Some(session) = self
            .meta
            .web_session(&digest, gantry_meta::now_ms())
            .await?
        else {
            return Ok(None);
        };
        match self.subject(&session.user_name).await {
            Ok(identity) => Ok(Some((
                Actor {
                    identity,
                    client: client.to_string(),
                },
                session.csrf,
            ))),
            Err(AccessError::Unauthenticated(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Ends the session of `secret` (logout).
    pub async fn sign_out(&self, secret: &str) -> Result<()> {
        self.meta
            .delete_web_session(&secret::digest(secret))
            .await?;
        Ok(())
    }
}
