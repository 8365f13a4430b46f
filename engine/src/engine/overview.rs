//! The operator's overview of a tenant: queue depth by task and priority, and runs finished per
//! minute over the last hour. Minutes more than [`SETTLED`] old no longer change (a run's
//! `finished_at` is its commit time), so they are counted once and kept per tenant; each call
//! counts only the minutes still open.

use super::Engine;
use chrono::{DateTime, Utc};
use owlclaw_core::wire::{MinuteCount, Overview, QueuedCount};
use owlclaw_core::Result;
use std::collections::BTreeMap;

/// Minutes shown.
const MINUTES: i64 = 60;
/// Minutes after which a minute's counts no longer change.
const SETTLED: i64 = 2;

/// Counts of one minute: succeeded, failed, cancelled.
pub(super) type Counts = [u64; 3];

/// The settled minutes counted so far, per tenant.
pub(super) type MinuteCache =
    std::sync::Mutex<std::collections::HashMap<String, BTreeMap<i64, Counts>>>;

fn start_of(minute: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(minute * 60, 0).unwrap_or_default()
}

impl Engine {
    /// The tenant's overview.
    pub async fn overview(&self, tenant: &str) -> Result<Overview> {
        let now = self.now();
        let current = now.timestamp().div_euclid(60);
        let first = current - (MINUTES - 1);
        let settled_until = current - SETTLED + 1; // minutes < this are settled
        let cached: BTreeMap<i64, Counts> = {
            let mut cache = self.inner.minutes.lock().unwrap();
            let minutes = cache.entry(tenant.to_string()).or_default();
            minutes.retain(|m, _| *m >= first);
            minutes.clone()
        };
        let missing = (first..settled_until).any(|m| !cached.contains_key(&m));
        // The settled minutes not counted yet, then the open ones: at most two reads.
        let from = if missing { first } else { settled_until };
        let mut counted: BTreeMap<i64, Counts> = BTreeMap::new();
        for (m, status, n) in self
            .inner
            .store
            .ended_per_minute(tenant, start_of(from), start_of(current + 1))
            .await?
        {
            let slot = match status.as_str() {
                "succeeded" => 0,
                "failed" => 1,
                "cancelled" => 2,
                _ => continue,
            };
            counted.entry(m).or_default()[slot] += n;
        }
        if missing {
            let mut cache = self.inner.minutes.lock().unwrap();
            let minutes = cache.entry(tenant.to_string()).or_default();
            for m in first..settled_until {
                minutes.insert(m, counted.get(&m).copied().unwrap_or_default());
            }
        }
        let minutes = (first..=current)
            .map(|m| {
                let c = if m < settled_until && !missing {
                    cached.get(&m).copied().unwrap_or_default()
                } else {
                    counted.get(&m).copied().unwrap_or_default()
                };
                MinuteCount {
                    minute: start_of(m),
                    succeeded: c[0],
                    failed: c[1],
                    cancelled: c[2],
                }
            })
            .collect();
        let mut queued: Vec<QueuedCount> = self
            .inner
            .store
            .queue_depth()
            .await?
            .into_iter()
            .filter(|d| d.tenant == tenant)
            .map(|d| QueuedCount {
                task: d.task,
                priority: d.priority,
                count: d.ready,
            })
            .collect();
        queued.sort_by(|a, b| b.count.cmp(&a.count).then(a.task.cmp(&b.task)));
        Ok(Overview {
            schema_version: 1,
            at: now,
            queued,
            minutes,
        })
    }
}
