//! Rate limits' definitions; their buckets are spent by claims (see `concurrency.rs`).

use super::*;
use crate::store::RateLimits;
use owlclaw_core::ratelimit::RateLimit;

impl PostgresStore {
    async fn set_rate_limit_tx(&self, tenant: &str, limit: &RateLimit) -> R<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO rate_limits (tenant, name, lim, per_ms) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (tenant, name) DO UPDATE SET lim = excluded.lim, per_ms = excluded.per_ms",
        )
        .bind(tenant)
        .bind(&limit.name)
        .bind(i64::from(limit.limit))
        .bind(limit.per.as_millis() as i64)
        .execute(&mut *tx)
        .await?;
        // Runs waiting for units may start now: other engines' workers claim again.
        let wakes = Wakes {
            work: true,
            ..Wakes::default()
        };
        notify(&mut tx, wakes).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn rate_limits_tx(&self, tenant: &str) -> R<Vec<RateLimit>> {
        let rows: Vec<(String, i64, i64)> = sqlx::query_as(
            "SELECT name, lim, per_ms FROM rate_limits WHERE tenant = $1 ORDER BY name",
        )
        .bind(tenant)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(name, limit, per_ms)| RateLimit {
                name,
                limit: limit as u32,
                per: Duration::from_millis(per_ms as u64),
            })
            .collect())
    }
}

#[async_trait]
impl RateLimits for PostgresStore {
    async fn set_rate_limit(&self, tenant: &str, limit: &RateLimit) -> Result<()> {
        self.retry(|| self.set_rate_limit_tx(tenant, limit)).await
    }

    async fn rate_limits(&self, tenant: &str) -> Result<Vec<RateLimit>> {
        self.retry(|| self.rate_limits_tx(tenant)).await
    }

    async fn forget_full_buckets(&self, now: DateTime<Utc>) -> Result<usize> {
        // A claim spending a bucket meanwhile holds its row: the delete then sees the new
        // `at_us` and keeps it.
        let done = sqlx::query(
            "DELETE FROM rate_buckets b USING rate_limits l \
             WHERE l.tenant = b.tenant AND l.name = b.name AND b.at_us <= $1 - l.per_ms * 1000",
        )
        .bind(micros(now))
        .execute(&self.pool)
        .await
        .map_err(|e| self.place.db(e))?;
        Ok(done.rows_affected() as usize)
    }

    async fn rate_bucket(&self, tenant: &str, name: &str, key: &str) -> Result<Option<(f64, i64)>> {
        sqlx::query_as(
            "SELECT tokens, at_us FROM rate_buckets WHERE tenant = $1 AND name = $2 AND rkey = $3",
        )
        .bind(tenant)
        .bind(name)
        .bind(clean(key))
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| self.place.db(e))
    }
}
