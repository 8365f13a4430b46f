//! API tokens: created for a tenant, stored as their SHA-256 only.

use super::Engine;
use chrono::Utc;
use owlclaw_core::task as taskdef;
use owlclaw_core::{Error, Result};

impl Engine {
    /// Creates an API token for `tenant`: returns the token (shown once); only its hash is stored.
    pub async fn create_token(&self, tenant: &str) -> Result<String> {
        taskdef::validate_task_name(tenant)
            .map_err(|e| Error::invalid_input("tenant", e.replace("task name", "tenant name")))?;
        let raw = format!(
            "owc_{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        self.inner
            .store
            .create_token(&hash_token(&raw), tenant, Utc::now())
            .await?;
        Ok(raw)
    }

    /// The tenant an API token belongs to, if it is valid.
    pub async fn tenant_for_token(&self, token: &str) -> Result<Option<String>> {
        self.inner.store.token_tenant(&hash_token(token)).await
    }
}

/// SHA-256 of a token, hex-encoded: what the store keeps.
fn hash_token(token: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
