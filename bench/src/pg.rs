//! PostgreSQL for the `postgres` and `postgres2` modes: a fresh database per phase (created on
//! the server of `--pg-url`, dropped afterwards), and the server's CPU time for the drain line.

use anyhow::{bail, Context as _, Result};
use sqlx::{Connection as _, PgConnection, Row as _};
use std::collections::HashMap;
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

/// Reads the CPU time of the PostgreSQL server's processes that work for one database: its
/// backends, and the server's WAL writer, checkpointer and background writer (shared with
/// other databases of the server, idle otherwise). Only for a server on this machine (it reads
/// `/proc/<pid>/stat` of the pids that `pg_stat_activity` shows).
#[derive(Debug, Clone)]
pub(crate) struct PgProbe {
    pub(crate) admin_url: String,
    pub(crate) database: String,
}

/// CPU seconds per process id.
pub(crate) type CpuSample = HashMap<u32, f64>;

impl PgProbe {
    pub(crate) async fn sample(&self) -> Option<CpuSample> {
        let mut conn = PgConnection::connect(&self.admin_url).await.ok()?;
        let rows = sqlx::query(
            "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid() \
             OR (datname IS NULL AND backend_type IN ('walwriter', 'checkpointer', 'background writer'))",
        )
        .bind(&self.database)
        .fetch_all(&mut conn)
        .await;
        let _ = conn.close().await;
        let sample: CpuSample = rows
            .ok()?
            .iter()
            .filter_map(|r| {
                let pid = u32::try_from(r.try_get::<i32, _>(0).ok()?).ok()?;
                Some((pid, crate::phases::cpu_seconds(Some(pid))?))
            })
            .collect();
        (!sample.is_empty()).then_some(sample)
    }
}

/// CPU seconds spent between two samples: processes that appeared in between count from zero
/// (connections opened during the interval); those that ended in between are not counted.
pub(crate) fn cpu_spent(before: &CpuSample, after: &CpuSample) -> f64 {
    after
        .iter()
        .map(|(pid, t)| (t - before.get(pid).copied().unwrap_or(0.0)).max(0.0))
        .sum()
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

    #[test]
    fn cpu_of_new_processes_counts_from_zero() {
        let before: CpuSample = [(1, 1.0), (2, 5.0)].into();
        let after: CpuSample = [(1, 1.5), (3, 0.25)].into();
        assert_eq!(cpu_spent(&before, &after), 0.75);
    }
}
