//! PostgreSQL for the `postgres` and `postgres2` modes: a fresh database per phase (created on
//! the server of `--pg-url`, dropped afterwards), and what the server spends
//! over the drain (CPU, context switches, transactions).

use crate::cost;
use anyhow::{bail, Context as _, Result};
use sqlx::{Connection as _, PgConnection, Row as _};
use std::sync::atomic::{AtomicU32, Ordering};

/// `--pg-url` when neither the flag nor `OWLCLAW_TEST_DATABASE_URL` gives one.
pub(crate) const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// The default of `--pg-url`: `OWLCLAW_TEST_DATABASE_URL`, else [`DEFAULT_PG_URL`].
pub(crate) fn default_pg_url() -> String {
    std::env::var("OWLCLAW_TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_PG_URL.to_string())
}

/// Whether `url` names a PostgreSQL database.
pub(crate) fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// Splits `scheme://authority/path?query` into (`scheme://authority`, path without its `/`,
/// `?query` or "").
fn split_url(url: &str) -> Result<(&str, &str, &str)> {
    let Some(scheme_end) = url.find("://") else {
        bail!("{:?} is not a URL", redact(url));
    };
    let (main, query) = match url.find('?') {
        Some(q) => (&url[..q], &url[q..]),
        None => (url, ""),
    };
    let start = scheme_end + 3;
    let auth_end = main[start..].find('/').map_or(main.len(), |i| start + i);
    let path = main[auth_end..].trim_start_matches('/');
    Ok((&main[..auth_end], path, query))
}

/// `url` with its database (the path) replaced by `db`; the query string is kept.
pub(crate) fn with_database(url: &str, db: &str) -> Result<String> {
    let (base, _, query) = split_url(url)?;
    Ok(format!("{base}/{db}{query}"))
}

/// The database that `url` names (its path), if any.
pub(crate) fn database_name(url: &str) -> Option<String> {
    let (_, path, _) = split_url(url).ok()?;
    (!path.is_empty()).then(|| path.to_string())
}

/// `url` without its password, for messages.
pub(crate) fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let start = scheme_end + 3;
    let auth_end = url[start..]
        .find(['/', '?'])
        .map_or(url.len(), |i| start + i);
    let authority = &url[start..auth_end];
    match authority.rsplit_once('@') {
        Some((userinfo, host)) if userinfo.contains(':') => {
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{}{user}:***@{host}{}", &url[..start], &url[auth_end..])
        }
        _ => url.to_string(),
    }
}

/// A database of its own for one phase, on the server of `admin_url`: created by
/// [`PgDatabase::create`], dropped by [`PgDatabase::drop_now`] (or, on an early exit, when the
/// value is dropped).
#[derive(Debug)]
pub(crate) struct PgDatabase {
    admin_url: String,
    pub(crate) name: String,
    pub(crate) url: String,
    dropped: bool,
}

impl PgDatabase {
    /// `CREATE DATABASE owlclaw_bench_<random>` on the server of `admin_url`.
    pub(crate) async fn create(admin_url: &str) -> Result<PgDatabase> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!(
            "owlclaw_bench_{:x}_{:x}_{n}",
            std::process::id(),
            nanos & 0xffff_ffff_ffff
        );
        let url = with_database(admin_url, &name)?;
        let mut conn = PgConnection::connect(admin_url)
            .await
            .with_context(|| format!("connecting to PostgreSQL at {}", redact(admin_url)))?;
        let created = sqlx::raw_sql(&format!("CREATE DATABASE \"{name}\""))
            .execute(&mut conn)
            .await;
        let _ = conn.close().await;
        created.with_context(|| format!("creating the database {name}"))?;
        Ok(PgDatabase {
            admin_url: admin_url.to_string(),
            name,
            url,
            dropped: false,
        })
    }

    /// `DROP DATABASE ... WITH (FORCE)`.
    pub(crate) async fn drop_now(mut self) -> Result<()> {
        self.dropped = true;
        drop_database(&self.admin_url, &self.name).await
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        if self.dropped {
            return;
        }
        // An early exit (an error): drop it on a runtime of its own, since this may run inside
        // the benchmark's runtime where blocking on a future is not allowed.
        let (admin, name) = (self.admin_url.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                if let Err(e) = rt.block_on(drop_database(&admin, &name)) {
                    eprintln!("owlclaw-bench: {e:#}");
                }
            }
        })
        .join();
    }
}

async fn drop_database(admin_url: &str, name: &str) -> Result<()> {
    let mut conn = PgConnection::connect(admin_url)
        .await
        .with_context(|| format!("connecting to PostgreSQL at {}", redact(admin_url)))?;
    let dropped = sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .execute(&mut conn)
        .await;
    let _ = conn.close().await;
    dropped.with_context(|| format!("dropping the database {name}"))?;
    Ok(())
}

/// Reads what the PostgreSQL server spends for one database: the CPU time and context switches
/// of its processes that work for it — its backends, and the server's WAL writer, checkpointer
/// and background writer (shared with other databases of the server, idle otherwise) — read from
/// `/proc/<pid>/stat` and `/proc/<pid>/status` of the pids that `pg_stat_activity` shows (so only
/// for a server on this machine); and the database's committed transactions
/// (`pg_stat_database.xact_commit`). Each reading opens a connection of its own to `admin_url`.
#[derive(Debug, Clone)]
pub(crate) struct PgProbe {
    pub(crate) admin_url: String,
    pub(crate) database: String,
}

/// How long after a transaction PostgreSQL 15 has surely published it in `pg_stat_database`.
/// A backend publishes its counters when it goes idle at least 1 s after its last publication
/// (and only if it gets the statistics entry's lock at once: busy backends often don't); else it
/// arms a timer that publishes them, waiting for the lock, at most 10 s later
/// (`PGSTAT_MIN_INTERVAL`, `PGSTAT_IDLE_INTERVAL`); and at exit. PostgreSQL 15 has no
/// `pg_stat_force_next_flush()`.
pub(crate) const STATS_PUBLISHED_WITHIN: std::time::Duration =
    std::time::Duration::from_millis(11_000);

impl PgProbe {
    /// CPU time and context switches of the server's processes of the database, per pid.
    pub(crate) async fn processes(&self) -> Option<cost::Sample> {
        let mut conn = PgConnection::connect(&self.admin_url).await.ok()?;
        let rows = sqlx::query(
            "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid() \
             OR (datname IS NULL AND backend_type IN ('walwriter', 'checkpointer', 'background writer'))",
        )
        .bind(&self.database)
        .fetch_all(&mut conn)
        .await;
        let _ = conn.close().await;
        let sample: cost::Sample = rows
            .ok()?
            .iter()
            .filter_map(|r| {
                let pid = u32::try_from(r.try_get::<i32, _>(0).ok()?).ok()?;
                Some((pid, cost::single_threaded(pid)?))
            })
            .collect();
        (!sample.is_empty()).then_some(sample)
    }

    /// The database's `xact_commit` as published so far (a new connection: a fresh snapshot of
    /// the statistics, which a connection otherwise caches for the rest of its transaction).
    /// A `LISTEN`ing backend's transactions (one per batch of notifications it reads) are
    /// published only when it exits, so they are not in it while the engine runs.
    pub(crate) async fn xact_commit(&self) -> Option<u64> {
        let mut conn = PgConnection::connect(&self.admin_url).await.ok()?;
        let row = sqlx::query("SELECT xact_commit FROM pg_stat_database WHERE datname = $1")
            .bind(&self.database)
            .fetch_one(&mut conn)
            .await;
        let _ = conn.close().await;
        u64::try_from(row.ok()?.try_get::<i64, _>(0).ok()?).ok()
    }

    /// `CHECKPOINT`: writes out every dirty page now, ending a checkpoint under way. Needs a
    /// superuser or the `pg_checkpoint` role.
    pub(crate) async fn checkpoint(&self) -> Result<()> {
        let mut conn = PgConnection::connect(&self.admin_url).await?;
        let done = sqlx::raw_sql("CHECKPOINT").execute(&mut conn).await;
        let _ = conn.close().await;
        done.context("CHECKPOINT")?;
        Ok(())
    }

    /// Waits, at most `limit`, until no vacuum or analyze of the database runs
    /// (`pg_stat_progress_vacuum`, `pg_stat_progress_analyze`: the engine's own, started by the
    /// runs it claimed, or autovacuum's); returns how long it waited.
    pub(crate) async fn wait_vacuums(
        &self,
        limit: std::time::Duration,
    ) -> Result<std::time::Duration> {
        let t0 = std::time::Instant::now();
        let mut conn = PgConnection::connect(&self.admin_url).await?;
        loop {
            // A `VACUUM (ANALYZE)` shows in the second view once its vacuum is done.
            let running: i64 = sqlx::query_scalar(
                "SELECT (SELECT count(*) FROM pg_stat_progress_vacuum WHERE datname = $1) \
                      + (SELECT count(*) FROM pg_stat_progress_analyze WHERE datname = $1)",
            )
            .bind(&self.database)
            .fetch_one(&mut conn)
            .await?;
            if running == 0 || t0.elapsed() >= limit {
                let _ = conn.close().await;
                return Ok(t0.elapsed());
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "b").unwrap(),
            "postgres://postgres@127.0.0.1:5432/b"
        );
        assert_eq!(
            with_database("postgres://u:p@h/db?sslmode=disable", "x").unwrap(),
            "postgres://u:p@h/x?sslmode=disable"
        );
        assert_eq!(
            with_database("postgresql://h:5432", "x").unwrap(),
            "postgresql://h:5432/x"
        );
        assert!(with_database("nonsense", "x").is_err());
        assert_eq!(
            database_name("postgres://u@h/db?a=b").as_deref(),
            Some("db")
        );
        assert_eq!(database_name("postgres://u@h"), None);
        assert_eq!(
            redact("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert!(is_postgres_url("postgresql://h/db"));
        assert!(!is_postgres_url("sqlite://x.db"));
    }
}
