//! API tokens: created for a tenant, stored as their SHA-256 only.

use super::Engine;
use owlclaw_core::task as taskdef;
use owlclaw_core::{Error, Result};
use std::time::{Duration, Instant};

/// How long a valid API token is trusted without reading the store again: a token deleted from
/// the database stops working within this time.
const TOKEN_CACHE: Duration = Duration::from_secs(10);

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
            .create_token(&hash_token(&raw), tenant, self.now())
            .await?;
        Ok(raw)
    }

    /// The tenant an API token belongs to, if it is valid. A valid token is remembered for
    /// [`TOKEN_CACHE`], so that a worker's requests do not each read the store; an unknown one is
    /// looked up every time (nothing an unauthenticated caller sends is kept).
    pub async fn tenant_for_token(&self, token: &str) -> Result<Option<String>> {
        let hash = hash_token(token);
        if let Some((tenant, read)) = self.inner.tokens.lock().unwrap().get(&hash) {
            if read.elapsed() < TOKEN_CACHE {
                return Ok(Some(tenant.clone()));
            }
        }
        let tenant = self.inner.store.token_tenant(&hash).await?;
        let mut cache = self.inner.tokens.lock().unwrap();
        match &tenant {
            Some(t) => {
                cache.insert(hash, (t.clone(), Instant::now()));
            }
            None => {
                cache.remove(&hash);
            }
        }
        Ok(tenant)
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
