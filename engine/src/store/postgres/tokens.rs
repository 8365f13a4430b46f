//! API tokens.

use super::*;

#[async_trait]
impl Tokens for PostgresStore {
    async fn create_token(&self, hash: &str, tenant: &str, now: DateTime<Utc>) -> Result<()> {
        sqlx::query("INSERT INTO api_tokens (hash, tenant, created_at) VALUES ($1, $2, $3)")
            .bind(hash)
            .bind(tenant)
            .bind(micros(now))
            .execute(&self.pool)
            .await
            .map_err(|e| self.place.db(e))?;
        Ok(())
    }

    async fn token_tenant(&self, hash: &str) -> Result<Option<String>> {
        sqlx::query_scalar("SELECT tenant FROM api_tokens WHERE hash = $1")
            .bind(hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.place.db(e))
    }
}
