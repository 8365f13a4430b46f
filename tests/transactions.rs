//! Runs enqueued inside the application's own sqlx transaction (`task::enqueue_in`), in lite
//! mode on SQLite and on PostgreSQL: the run exists if and only if the transaction commits, with
//! the application's own rows; workers are woken once it commits (the engine's poll interval is
//! a minute here, so a run claimed sooner was claimed because of the wake-up).

use owlclaw::sqlx;
use owlclaw::{task, Context, Error, ListFilter, RunStatus};
use owlclaw_core::task::TaskDef;
use owlclaw_core::wire::{ExchangeRequest, WorkerRegistration};
use owlclaw_tests::{eventually, Backend, TestDb, TestEnv};
use std::time::{Duration, Instant};

#[task(name = "tx.send_email")]
async fn send_email(_ctx: Context, to: String) -> anyhow::Result<String> {
    Ok(format!("sent to {to}"))
}

#[task(
    name = "tx.debounced",
    concurrency = 1,
    concurrency_strategy = "cancel_in_progress"
)]
async fn debounced(_ctx: Context, n: u32) -> anyhow::Result<u32> {
    Ok(n)
}

/// The runs of `tx.send_email` in the store.
async fn emails(client: &owlclaw::Client) -> Vec<owlclaw::RunSnapshot> {
    client
        .list(ListFilter {
            task: Some("tx.send_email".into()),
            ..ListFilter::default()
        })
        .await
        .unwrap()
        .runs
}

/// A long poll of a raw worker session for `tx.send_email`, started before the commit: it
/// answers with the run once the engine is woken (its own poll is a minute away).
async fn long_poll(client: &owlclaw::Client) -> tokio::task::JoinHandle<(usize, Duration)> {
    let orch = client.orchestrator().clone();
    let session = orch
        .register_worker(WorkerRegistration {
            name: "poller".into(),
            tasks: vec![TaskDef::new("tx.send_email")],
            slots: 1,
            labels: Default::default(),
            workflows: vec![],
        })
        .await
        .unwrap();
    tokio::spawn(async move {
        let started = Instant::now();
        let got = orch
            .exchange(
                &session.worker_id,
                ExchangeRequest {
                    want: 1,
                    wait_ms: 60_000,
                    ..ExchangeRequest::default()
                },
            )
            .await
            .unwrap();
        (got.assignments.len(), started.elapsed())
    })
}

/// The application's tables and the checks, once its pool and transaction type are known.
macro_rules! transactional_enqueue {
    ($client:expr, $pool:expr, $create:expr, $insert:expr, $count:expr) => {{
        let client = $client;
        let pool = $pool;
        sqlx::query($create).execute(&pool).await.unwrap();

        // Rolled back: neither the order nor the run.
        let mut tx = pool.begin().await.unwrap();
        sqlx::query($insert).bind(1_i64).execute(&mut *tx).await.unwrap();
        let run = send_email::enqueue_in(&client, &mut tx, "a@b.c".into())
            .await
            .unwrap();
        tx.rollback().await.unwrap();
        let orders: i64 = sqlx::query_scalar($count).fetch_one(&pool).await.unwrap();
        assert_eq!(orders, 0);
        assert!(emails(&client).await.is_empty());
        let err = client.status(run.id()).await.unwrap_err();
        assert!(matches!(err, Error::NotFound { .. }), "{err:?}");

        // Committed: the order and its run, and a long poll started before the commit gets
        // the run at once (the engine's own poll is a minute away).
        let poll = long_poll(&client).await;
        let mut tx = pool.begin().await.unwrap();
        sqlx::query($insert).bind(2_i64).execute(&mut *tx).await.unwrap();
        let run = send_email::enqueue_in(&client, &mut tx, "c@d.e".into())
            .await
            .unwrap();
        // Not visible outside the transaction before it commits.
        assert!(emails(&client).await.is_empty());
        tx.commit().await.unwrap();
        let (claimed, waited) = tokio::time::timeout(Duration::from_secs(120), poll)
            .await
            .expect("the long poll answers")
            .unwrap();
        assert_eq!(claimed, 1, "the committed run was claimed");
        assert!(
            waited < Duration::from_secs(45),
            "claimed after {waited:?}: woken by the commit, not by the minute's poll"
        );
        let orders: i64 = sqlx::query_scalar($count).fetch_one(&pool).await.unwrap();
        assert_eq!(orders, 1);
        let stored = emails(&client).await;
        assert_eq!(stored.len(), 1);
        assert_eq!(stored[0].id, run.id());
        assert_eq!(stored[0].input, serde_json::json!("c@d.e"));

        // A worker runs the next one, committed the same way.
        let worker = client
            .worker("w")
            .task::<send_email>()
            .start()
            .await
            .unwrap();
        let mut tx = pool.begin().await.unwrap();
        sqlx::query($insert).bind(3_i64).execute(&mut *tx).await.unwrap();
        let run = send_email::enqueue(&client, "f@g.h".into())
            .idempotency_key("order-3")
            .in_transaction(&mut tx)
            .await
            .unwrap();
        // The same key again in the same transaction: the same run.
        let again = send_email::enqueue(&client, "f@g.h".into())
            .idempotency_key("order-3")
            .in_transaction(&mut tx)
            .await
            .unwrap();
        assert_eq!(again.id(), run.id());
        tx.commit().await.unwrap();
        assert_eq!(
            run.result_timeout(Duration::from_secs(60)).await.unwrap(),
            "sent to f@g.h"
        );

        // A task that cancels runs of its key is refused, naming the field; nothing is stored.
        let mut tx = pool.begin().await.unwrap();
        let err = debounced::enqueue_in(&client, &mut tx, 1).await.unwrap_err();
        assert!(
            matches!(&err, Error::InvalidInput { field, .. } if field == "concurrency"),
            "{err:?}"
        );
        tx.rollback().await.unwrap();
        worker.shutdown().await.unwrap();
        eventually("the worker's runs done", Duration::from_secs(60), || async {
            let runs = emails(&client).await;
            (runs.len() == 2 && runs.iter().any(|r| r.status == RunStatus::Succeeded))
                .then_some(())
        })
        .await;
    }};
}

async fn env_with_slow_poll(backend: Backend) -> Option<TestEnv> {
    let env = TestEnv::new(backend).await?;
    env.set_engine(|e| e.poll_interval = Duration::from_secs(60));
    Some(env)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueue_in_a_sqlite_transaction() {
    let env = env_with_slow_poll(Backend::Lite).await.unwrap();
    let client = env.client().await;
    let pool = sqlx::SqlitePool::connect(&env.database_url())
        .await
        .unwrap();
    transactional_enqueue!(
        client,
        pool,
        "CREATE TABLE orders (id INTEGER PRIMARY KEY)",
        "INSERT INTO orders (id) VALUES (?1)",
        "SELECT count(*) FROM orders"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueue_in_a_postgres_transaction() {
    let Some(env) = env_with_slow_poll(Backend::LitePostgres).await else {
        return; // no PostgreSQL configured (OWLCLAW_TEST_DATABASE_URL)
    };
    let client = env.client().await;
    let pool = sqlx::PgPool::connect(&env.database_url()).await.unwrap();
    transactional_enqueue!(
        client,
        pool,
        "CREATE TABLE orders (id BIGINT PRIMARY KEY)",
        "INSERT INTO orders (id) VALUES ($1)",
        "SELECT count(*) FROM orders"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueue_in_refuses_another_database_and_a_server_client() {
    let env = TestEnv::new(Backend::Lite).await.unwrap();
    let client = env.client().await;
    // A transaction on another SQLite file.
    let other = TestDb::new();
    let pool = sqlx::SqlitePool::connect(&format!("{}?mode=rwc", other.url()))
        .await
        .unwrap();
    let mut tx = pool.begin().await.unwrap();
    let err = send_email::enqueue_in(&client, &mut tx, "x@y.z".into())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::InvalidInput { field, message } if field == "transaction"
            && message.contains("not on the engine's database")),
        "{err:?}"
    );
    tx.rollback().await.unwrap();
    assert!(emails(&client).await.is_empty());

    // A server-mode client has no engine in this process.
    let server = TestEnv::new(Backend::Server).await.unwrap();
    let remote = server.client().await;
    let pool = sqlx::SqlitePool::connect(&server.database_url())
        .await
        .unwrap();
    let mut tx = pool.begin().await.unwrap();
    let err = send_email::enqueue_in(&remote, &mut tx, "x@y.z".into())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::InvalidInput { field, message } if field == "transaction"
            && message.contains("server mode")),
        "{err:?}"
    );
    tx.rollback().await.unwrap();
}
