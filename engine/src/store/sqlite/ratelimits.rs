//! Rate limits' definitions; their buckets are spent by claims (see `concurrency.rs`).

use super::*;
use crate::store::RateLimits;
use owlclaw_core::ratelimit::RateLimit;

/// The tenant's rate limit `name`, if defined.
pub(super) fn rate_limit(conn: &Connection, tenant: &str, name: &str) -> Result<Option<RateLimit>> {
    one(
        conn,
        "SELECT lim, per_ms FROM rate_limits WHERE tenant = ?1 AND name = ?2",
        params![tenant, name],
        |r| {
            Ok(RateLimit {
                name: name.to_string(),
                limit: r.get(0)?,
                per: Duration::from_millis(r.get::<_, i64>(1)? as u64),
            })
        },
    )
}

/// The bucket of `key` under the tenant's rate limit `name` as last spent: units and when.
pub(super) fn bucket(
    conn: &Connection,
    tenant: &str,
    name: &str,
    key: &str,
) -> Result<Option<(f64, i64)>> {
    one(
        conn,
        "SELECT tokens, at_us FROM rate_buckets WHERE tenant = ?1 AND name = ?2 AND rkey = ?3",
        params![tenant, name, key],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
}

#[async_trait]
impl RateLimits for SqliteStore {
    async fn set_rate_limit(&self, tenant: &str, limit: &RateLimit) -> Result<()> {
        let (tenant, limit) = (tenant.to_string(), limit.clone());
        self.write(move |c| {
            exec(
                c,
                "INSERT INTO rate_limits (tenant, name, lim, per_ms) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (tenant, name) DO UPDATE SET lim = excluded.lim, \
                 per_ms = excluded.per_ms",
                params![
                    tenant,
                    limit.name,
                    limit.limit,
                    limit.per.as_millis() as i64
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn rate_limits(&self, tenant: &str) -> Result<Vec<RateLimit>> {
        let tenant = tenant.to_string();
        self.read(move |c| {
            all(
                c,
                "SELECT name, lim, per_ms FROM rate_limits WHERE tenant = ?1 ORDER BY name",
                params![tenant],
                |r| {
                    Ok(RateLimit {
                        name: r.get(0)?,
                        limit: r.get(1)?,
                        per: Duration::from_millis(r.get::<_, i64>(2)? as u64),
                    })
                },
            )
        })
        .await
    }

    async fn forget_full_buckets(&self, now: DateTime<Utc>) -> Result<usize> {
        self.write(move |c| {
            exec(
                c,
                "DELETE FROM rate_buckets WHERE at_us <= ?1 - COALESCE((SELECT per_ms * 1000 \
                 FROM rate_limits WHERE rate_limits.tenant = rate_buckets.tenant \
                 AND rate_limits.name = rate_buckets.name), 0)",
                params![micros(now)],
            )
        })
        .await
    }

    async fn rate_bucket(&self, tenant: &str, name: &str, key: &str) -> Result<Option<(f64, i64)>> {
        let (tenant, name, key) = (tenant.to_string(), name.to_string(), key.to_string());
        self.read(move |c| bucket(c, &tenant, &name, &key)).await
    }
}
