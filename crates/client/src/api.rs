//! Calls to Gantry's REST API (`/api/v1`), with the same connection and credentials as the
//! registry calls. Errors carry the server's OCI error code and message.

use reqwest::Method;
use serde_json::Value;

use crate::{RegistryClient, Result};

impl RegistryClient {
    /// Sends a JSON request to the REST API; returns the JSON answer (`Null` for 204).
    pub async fn api(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Value> {
        let url = self.url(path).await?;
        let mut request = self.request(method.clone(), &url);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = self.check(method, self.send(request).await?).await?;
        let text = response.text().await.unwrap_or_default();
        if text.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).map_err(|e| {
            crate::ClientError::Protocol(format!("{url} answered with invalid JSON: {e}"))
        })
    }

    /// Checks the credentials: `GET /v2/` must answer 200 with them.
    pub async fn check_login(&self) -> Result<()> {
        let url = self.url("/v2/").await?;
        let response = self.send(self.request(Method::GET, &url)).await?;
        self.check(Method::GET, response).await.map(|_| ())
    }
}
