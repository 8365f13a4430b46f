//! API tokens.

use super::*;

#[async_trait]
impl Tokens for SqliteStore {
    async fn create_token(&self, hash: &str, tenant: &str, now: DateTime<Utc>) -> Result<()> {
        let (hash, tenant) = (hash.to_string(), tenant.to_string());
        self.write(move |c| {
            exec(
                c,
                "INSERT INTO api_tokens (hash, tenant, created_at) VALUES (?1, ?2, ?3)",
                params![hash, tenant, micros(now)],
            )
            .map(|_| ())
        })
        .await
    }

    async fn token_tenant(&self, hash: &str) -> Result<Option<String>> {
        let hash = hash.to_string();
        self.read(move |c| {
            one(
                c,
                "SELECT tenant FROM api_tokens WHERE hash = ?1",
                params![hash],
                |r| r.get(0),
            )
        })
        .await
    }
}
