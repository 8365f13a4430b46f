//! Rate limits: defined by name, per tenant; spent by the claims of the tasks that use them.

use super::Engine;
use crate::limits;
use owlclaw_core::ratelimit::RateLimit;
use owlclaw_core::Result;

impl Engine {
    /// Creates or changes a rate limit. Workers waiting for its units claim again at once.
    pub async fn set_rate_limit(&self, tenant: &str, limit: RateLimit) -> Result<RateLimit> {
        limit.validate()?;
        limits::check_text("name", &limit.name)?;
        self.inner.store.set_rate_limit(tenant, &limit).await?;
        self.inner.work.notify_waiters();
        tracing::info!(name = %limit.name, limit = limit.limit, per = %owlclaw_core::duration::format_duration(limit.per), "rate limit set");
        Ok(limit)
    }

    /// The tenant's rate limits, by name.
    pub async fn rate_limits(&self, tenant: &str) -> Result<Vec<RateLimit>> {
        self.inner.store.rate_limits(tenant).await
    }
}
