//! Runs enqueued inside the application's own sqlx transaction (lite mode): an application whose
//! data lives in the engine's database (SQLite or PostgreSQL) writes the run with its own rows,
//! so that the run exists if and only if the transaction commits; workers are woken once it has.
//!
//! ```ignore
//! // With the `sqlx-sqlite` feature (`tests/transactions.rs` runs this, on PostgreSQL too).
//! let mut tx = pool.begin().await?;
//! owlclaw::sqlx::query("INSERT INTO orders (id) VALUES (1)").execute(&mut *tx).await?;
//! send_email::enqueue_in(&client, &mut tx, "a@b.c".to_string()).await?;
//! tx.commit().await?; // the order and its run, or neither
//! ```

use owlclaw_core::wire::{ScheduleRequest, Scheduled};
use owlclaw_core::Result;
use std::future::Future;
use std::pin::Pin;

mod sealed {
    pub trait Sealed {}
}

/// The engine a transaction's runs are written for.
#[cfg(feature = "lite")]
pub type TxEngine = owlclaw_engine::Engine;
/// No engine without the `lite` feature: no transaction type implements [`AppTransaction`].
#[cfg(not(feature = "lite"))]
#[derive(Debug, Clone)]
pub enum TxEngine {}

/// A future of the scheduled runs.
pub(crate) type Scheduling<'a> = Pin<Box<dyn Future<Output = Result<Vec<Scheduled>>> + Send + 'a>>;

/// An application's sqlx transaction that runs can be enqueued in (`task::enqueue_in`,
/// [`ScheduleBuilder::in_transaction`](crate::ScheduleBuilder::in_transaction)):
/// `sqlx::Transaction<'_, Sqlite>` with the `sqlx-sqlite` feature, `sqlx::Transaction<'_,
/// Postgres>` with the `postgres` feature. Its database must be the lite-mode engine's.
pub trait AppTransaction: sealed::Sealed + Send {
    #[doc(hidden)]
    fn schedule_in<'a>(
        &'a mut self,
        engine: &'a TxEngine,
        tenant: &'a str,
        reqs: Vec<ScheduleRequest>,
    ) -> Scheduling<'a>;
}

#[cfg(feature = "sqlx-sqlite")]
impl sealed::Sealed for sqlx::Transaction<'_, sqlx::Sqlite> {}

#[cfg(feature = "sqlx-sqlite")]
impl AppTransaction for sqlx::Transaction<'_, sqlx::Sqlite> {
    fn schedule_in<'a>(
        &'a mut self,
        engine: &'a TxEngine,
        tenant: &'a str,
        reqs: Vec<ScheduleRequest>,
    ) -> Scheduling<'a> {
        Box::pin(engine.schedule_in_sqlite(self, tenant, reqs))
    }
}

#[cfg(feature = "postgres")]
impl sealed::Sealed for sqlx::Transaction<'_, sqlx::Postgres> {}

#[cfg(feature = "postgres")]
impl AppTransaction for sqlx::Transaction<'_, sqlx::Postgres> {
    fn schedule_in<'a>(
        &'a mut self,
        engine: &'a TxEngine,
        tenant: &'a str,
        reqs: Vec<ScheduleRequest>,
    ) -> Scheduling<'a> {
        Box::pin(engine.schedule_in_postgres(self, tenant, reqs))
    }
}
