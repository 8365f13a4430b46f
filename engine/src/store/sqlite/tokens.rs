//! API tokens.

use super::*;

#[async_trait]
impl Tokens for SqliteStore {
    async fn create_token(&self, hash: &str, tenant: &str, now: DateTime<Utc>) -> Result<()> {
        sqlx::query("INSERT INTO api_tokens (hash, tenant, created_at) VALUES (?, ?, ?)")
            .bind(hash)
            .bind(tenant)
            .bind(micros(now))
            .execute(&self.write)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn token_tenant(&self, hash: &str) -> Result<Option<String>> {
        sqlx::query_scalar("SELECT tenant FROM api_tokens WHERE hash = ?")
            .bind(hash)
            .fetch_optional(&self.read)
            .await
            .map_err(db)
    }
}
