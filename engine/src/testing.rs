//! Test support shared by the engine's and the workspace's test suites (feature `testing`): a
//! fresh PostgreSQL database per test, from `OWLCLAW_TEST_DATABASE_URL`.

use sqlx::Connection;

/// The variable naming the PostgreSQL server the tests use.
pub const DB_ENV: &str = "OWLCLAW_TEST_DATABASE_URL";

/// The admin URL of the PostgreSQL server under test, or `None` (with a loud warning) when it
/// is not configured outside CI.
pub fn admin_url() -> Option<String> {
    match std::env::var(DB_ENV) {
        Ok(u) if !u.trim().is_empty() => Some(u),
        _ => {
            if std::env::var_os("CI").is_some() {
                panic!(
                    "{DB_ENV} is not set, so the PostgreSQL store cannot be tested. Point it at a \
                     PostgreSQL server whose user may create databases, e.g. \
                     {DB_ENV}=postgres://postgres@127.0.0.1:5432/postgres (each test creates and \
                     drops a database of its own)."
                );
            }
            // Straight to the process's stderr, past the test harness's capture, once.
            static WARNED: std::sync::Once = std::sync::Once::new();
            WARNED.call_once(|| {
                use std::io::Write;
                let _ = writeln!(
                    std::io::stderr(),
                    "\n##################################################################\n\
                     ## WARNING: {DB_ENV} is not set: the PostgreSQL store tests\n\
                     ## are SKIPPED (they pass without checking anything). Run with\n\
                     ##   {DB_ENV}=postgres://postgres@127.0.0.1:5432/postgres\n\
                     ##################################################################\n"
                );
            });
            None
        }
    }
}

/// `url` with its database name replaced.
fn with_database(url: &str, name: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("a URL");
    let (rest, query) = match rest.split_once('?') {
        Some((r, q)) => (r, format!("?{q}")),
        None => (rest, String::new()),
    };
    let authority = rest.split('/').next().unwrap();
    format!("{scheme}://{authority}/{name}{query}")
}

/// A database of one test, dropped (connections and all) when the test ends, even by a panic.
#[derive(Debug)]
pub struct PgDb {
    admin: String,
    name: String,
    /// The URL of the test database.
    pub url: String,
}

impl PgDb {
    /// Creates a fresh database; `None` when PostgreSQL is not configured (outside CI).
    pub async fn create() -> Option<PgDb> {
        let admin = admin_url()?;
        let name = format!(
            "owlclaw_t_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..16]
        );
        let mut conn = sqlx::PgConnection::connect(&admin)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {DB_ENV}: {e}"));
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .expect("create a test database");
        let _ = conn.close().await;
        let url = with_database(&admin, &name);
        Some(PgDb { admin, name, url })
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(mut c) = sqlx::PgConnection::connect(&admin).await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&mut c)
                        .await;
                    let _ = c.close().await;
                }
            })
        })
        .join();
    }
}
