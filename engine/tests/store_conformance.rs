//! One conformance suite for every [`Store`]: the same test functions run against SQLite (a temp
//! file) and PostgreSQL (a database of its own per test, created and dropped through the admin
//! URL in `OWLCLAW_TEST_DATABASE_URL`, e.g. `postgres://postgres@127.0.0.1:5432/postgres`).
//!
//! Without that variable the PostgreSQL tests fail when `CI` is set, and otherwise print a loud
//! warning and pass without checking anything.
//!
//! Times are passed explicitly (`t0` plus offsets), so leases, timers and backoffs are tested
//! without sleeping.

use chrono::{DateTime, SubsecRound, Utc};
use owlclaw_core::lifecycle::{self, Happening};
use owlclaw_core::retry::Backoff;
use owlclaw_core::task::TaskDef;
use owlclaw_core::wire::{
    Completion, CronSchedule, ExchangeRequest, ListFilter, Outcome, RunEvent, ScheduleRequest,
    StepCheckpoint, StepStatus, WorkerRegistration,
};
use owlclaw_core::{Error, RunId, RunStatus};
use owlclaw_engine::store::{self, CronRecord, Inserted, NewRun, Store, Wake, WorkerRecord};
use owlclaw_engine::{Engine, EngineConfig};
use serde_json::{json, Value};
use sqlx::Connection;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use owlclaw_engine::testing::{admin_url, PgDb};
const TENANT: &str = "acme";

// ---------------------------------------------------------------------------------------------
// Harness

/// A store on a fresh database, and how to open it again (a second engine on the same data).
struct Harness {
    store: Arc<dyn Store>,
    url: String,
    pg: bool,
    _dir: Option<tempfile::TempDir>,
    _db: Option<PgDb>,
}

impl Harness {
    async fn sqlite() -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/owlclaw.db", dir.path().display());
        let store = store::open(&url).await.expect("open SQLite store");
        Harness {
            store,
            url,
            pg: false,
            _dir: Some(dir),
            _db: None,
        }
    }

    async fn postgres() -> Option<Harness> {
        let db = PgDb::create().await?;
        let store = store::open(&db.url).await.expect("open PostgreSQL store");
        Some(Harness {
            store,
            url: db.url.clone(),
            pg: true,
            _dir: None,
            _db: Some(db),
        })
    }

    /// Another store on the same database, as a second engine replica would open it.
    async fn reopen(&self) -> Arc<dyn Store> {
        store::open(&self.url).await.expect("reopen store")
    }

    async fn close(self) {
        self.store.close().await;
    }

    /// Registers a worker serving `tasks` (default definitions) and returns its record.
    async fn worker(&self, name: &str, tasks: &[&str], now: DateTime<Utc>) -> WorkerRecord {
        worker_on(&*self.store, TENANT, name, tasks, now).await
    }
}

async fn worker_on(
    store: &dyn Store,
    tenant: &str,
    name: &str,
    tasks: &[&str],
    now: DateTime<Utc>,
) -> WorkerRecord {
    let record = WorkerRecord {
        id: format!("{name}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]),
        tenant: tenant.into(),
        name: name.into(),
        tasks: tasks.iter().map(|t| t.to_string()).collect(),
        limits: Vec::new(),
        units_due: Default::default(),
    };
    let reg = WorkerRegistration {
        name: name.into(),
        tasks: tasks.iter().map(|t| TaskDef::new(*t)).collect(),
        slots: 10,
        labels: BTreeMap::new(),
        workflows: Vec::new(),
    };
    store.register_worker(&record, &reg, now).await.unwrap();
    record
}

/// Instantiates every test function for both stores.
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let h = super::Harness::sqlite().await;
                    super::$name(&h).await;
                    h.close().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(h) = super::Harness::postgres().await else { return };
                    super::$name(&h).await;
                    h.close().await;
                }
            )*
        }
    };
}

conformance!(
    life_cycle_with_events,
    refusals,
    priority_then_fifo,
    one_task_behind_another_tasks_backlog,
    several_tasks_behind_another_tasks_backlog,
    delayed_runs_and_timers,
    retries_with_backoff,
    not_retryable_fails_at_once,
    timed_out_outcome,
    leases_heartbeats_and_expiry,
    engine_deadline,
    deregister_and_hand_back,
    cancel_in_every_state,
    manual_retry,
    list_and_count_by_status,
    list_filter_and_cursor,
    idempotency,
    tokens,
    workers_tasks_and_crons,
    cron_ticks_fire_once,
    queue_depth,
    concurrent_claims_never_share_a_run,
    concurrent_maintenance_acts_once,
    wake_ups,
    engine_end_to_end,
    durable_steps_and_suspension,
    delete_and_purge,
    expiries,
    fast_paths_write_the_life_cycle_rows,
    errors_keep_their_cause,
    a_retried_request_gets_its_claims_back,
    a_resent_checkpoint_writes_one_event,
    rate_limited_claims,
    claims_under_both_limits,
    limited_claims_take_keys_in_turns,
    a_key_at_its_limit_holds_back_no_other_key,
    priority_comes_before_turns,
    a_key_queued_again_starts_at_the_head,
    a_run_that_comes_due_takes_its_turn_at_the_head,
    runs_claimed_without_the_limit_give_their_turns_back,
    cancel_strategies_apply_in_the_insert,
    links_of_finished_runs,
    skipped_cron_ticks_and_policies,
    bulk_cancel_and_retry,
);

// ---------------------------------------------------------------------------------------------
// Helpers

fn queued(tenant: impl Into<String>, task: &str, priority: u8, ready: u64) -> store::QueueDepth {
    store::QueueDepth {
        tenant: tenant.into(),
        task: task.into(),
        priority,
        ready,
    }
}

fn t0() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

fn secs(s: f64) -> chrono::Duration {
    chrono::Duration::microseconds((s * 1e6) as i64)
}

/// A run of `task` due at `at`, with default policies.
fn new_run(task: &str, at: DateTime<Utc>) -> NewRun {
    NewRun {
        links: Default::default(),
        id: RunId::new(),
        tenant: TENANT.into(),
        task: task.into(),
        input: json!({"task": task}),
        priority: 5,
        retries: 0,
        timeout: Duration::from_secs(30),
        backoff: Backoff::default(),
        run_at: at,
        idempotency_key: None,
        owner: None,
        metadata: None,
        parent_id: None,
        reason: "scheduled".into(),
        concurrency: None,
        rate_limit: None,
        workflow: false,
        expires_at: None,
    }
}

/// A run of `task` under a concurrency limit of 2 per key (`queue`), with key `key`.
fn queued_under_key(task: &str, key: &str, at: DateTime<Utc>) -> NewRun {
    use owlclaw_core::task::{Concurrency, ConcurrencyStrategy};
    let mut run = new_run(task, at);
    run.concurrency = Some((
        Concurrency {
            max: 2,
            key: Some("k".into()),
            strategy: ConcurrencyStrategy::Queue,
        },
        key.into(),
    ));
    run
}

/// A worker's limits: `max` running runs per key of `task`.
fn concurrency_limit(task: &str, max: u32) -> Vec<(String, owlclaw_engine::store::Limit)> {
    let limit = owlclaw_engine::store::Limit {
        concurrency: Some(max),
        rate: None,
    };
    vec![(task.into(), limit)]
}

fn created(i: &Inserted) -> &owlclaw_core::wire::RunSnapshot {
    match i {
        Inserted::Created(s) => s,
        Inserted::Existing(s) => panic!("expected a new run, got existing {}", s.id),
    }
}

async fn insert(store: &dyn Store, runs: Vec<NewRun>, now: DateTime<Utc>) -> Vec<RunId> {
    store
        .insert_runs(runs, now)
        .await
        .unwrap()
        .iter()
        .map(|i| created(i).id)
        .collect()
}

async fn get(store: &dyn Store, id: RunId) -> owlclaw_core::wire::RunSnapshot {
    store
        .get_run(TENANT, id)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("run {id} not found"))
}

type Ev = (Option<RunStatus>, RunStatus, u32, Option<String>, String);

fn ev(e: &RunEvent) -> Ev {
    (e.from, e.to, e.attempt, e.worker.clone(), e.reason.clone())
}

async fn events(store: &dyn Store, id: RunId) -> Vec<RunEvent> {
    store.run_events(TENANT, id).await.unwrap()
}

fn ok(id: RunId, attempt: u32, output: Value) -> Completion {
    Completion {
        run_id: id,
        attempt,
        outcome: Outcome::Succeeded { output },
    }
}

fn failed(id: RunId, attempt: u32, error: &str, retryable: bool) -> Completion {
    Completion {
        run_id: id,
        attempt,
        outcome: Outcome::Failed {
            error: error.into(),
            retryable,
        },
    }
}

fn outcome(id: RunId, attempt: u32, outcome: Outcome) -> Completion {
    Completion {
        run_id: id,
        attempt,
        outcome,
    }
}

const LEASE: Duration = Duration::from_secs(10);

async fn claim_ids(store: &dyn Store, w: &WorkerRecord, n: u32, now: DateTime<Utc>) -> Vec<RunId> {
    store
        .claim(w, n, now, LEASE, None)
        .await
        .unwrap()
        .iter()
        .map(|a| a.run_id)
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The suite

/// Rate limits: defined per tenant and replaced by name; a claim takes what its key's bucket
/// pays for (a full bucket at first, then what time gives back), notes when the next units come,
/// and shares the bucket with another replica's claims. Runs of a limit not defined wait.
async fn rate_limited_claims(h: &Harness) {
    use owlclaw_core::ratelimit::{RateLimit, RateLimitUse};
    use owlclaw_engine::store::Limit;
    use std::sync::atomic::Ordering;
    let s = &*h.store;
    let t = t0();
    let limit = |n| RateLimit {
        name: "stripe".into(),
        limit: n,
        per: Duration::from_secs(1),
    };
    s.set_rate_limit(TENANT, &limit(3)).await.unwrap();
    s.set_rate_limit(TENANT, &limit(4)).await.unwrap();
    assert_eq!(s.rate_limits(TENANT).await.unwrap(), vec![limit(4)]);
    assert!(s.rate_limits("other-tenant").await.unwrap().is_empty());

    let rated = |task: &str, name: &str| {
        let mut run = new_run(task, t);
        run.rate_limit = Some((
            RateLimitUse {
                name: name.into(),
                units: 1,
                key: None,
            },
            String::new(),
        ));
        run
    };
    insert(s, (0..6).map(|_| rated("t.rated", "stripe")).collect(), t).await;
    insert(s, vec![rated("t.undefined", "nope")], t).await;
    let mut w = h.worker("w", &["t.rated", "t.undefined"], t).await;
    let rate = |name: &str| Limit {
        concurrency: None,
        rate: Some(RateLimitUse {
            name: name.into(),
            units: 1,
            key: None,
        }),
    };
    w.limits = vec![
        ("t.rated".into(), rate("stripe")),
        ("t.undefined".into(), rate("nope")),
    ];
    assert_eq!(
        claim_ids(s, &w, 10, t).await.len(),
        4,
        "a full bucket: 4 units"
    );
    assert_eq!(
        w.units_due.swap(0, Ordering::Relaxed),
        (t + secs(0.25)).timestamp_micros(),
        "the next unit comes after a quarter of a second"
    );
    assert!(claim_ids(s, &w, 10, t).await.is_empty());
    // Another replica's claim half a second later finds the bucket this one spent.
    let other = h.reopen().await;
    assert_eq!(claim_ids(&*other, &w, 10, t + secs(0.5)).await.len(), 2);
    other.close().await;
    assert!(claim_ids(s, &w, 10, t + secs(0.5)).await.is_empty());
    // A bucket last spent a period ago is full again: its row goes, as if never spent.
    assert!(s.rate_bucket(TENANT, "stripe", "").await.unwrap().is_some());
    assert_eq!(s.forget_full_buckets(t + secs(1.2)).await.unwrap(), 0);
    assert_eq!(s.forget_full_buckets(t + secs(1.5)).await.unwrap(), 1);
    assert_eq!(s.rate_bucket(TENANT, "stripe", "").await.unwrap(), None);
    let waiting = s
        .list_runs(
            TENANT,
            &ListFilter {
                task: Some("t.undefined".into()),
                ..ListFilter::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        waiting.runs[0].status,
        RunStatus::Queued,
        "no limit defined: it waits"
    );
}

/// A claim of a limited task takes one run of each key in turn: a claim that wants more runs
/// than there are keys takes a second turn, and the next claim goes on from there.
async fn limited_claims_take_keys_in_turns(h: &Harness) {
    let s = &*h.store;
    let t = t0();
    let keys = ["a", "a", "a", "b", "b", "b", "c"];
    let runs = keys.iter().map(|k| queued_under_key("t.turns", k, t));
    let ids = insert(s, runs.collect(), t).await;
    let key_of = |id: &RunId| keys[ids.iter().position(|i| i == id).unwrap()];
    let mut w = h.worker("w", &["t.turns"], t).await;
    w.limits = concurrency_limit("t.turns", 2);
    let first = claim_ids(s, &w, 4, t).await;
    let mut first_keys: Vec<&str> = first.iter().map(key_of).collect();
    first_keys.sort();
    assert_eq!(
        first_keys,
        ["a", "a", "b", "c"],
        "a, b and c, then a second turn from a"
    );
    assert!(
        first.contains(&ids[0]) && first.contains(&ids[1]),
        "each key's first runs"
    );
    // After a: b has a place left, c has no run queued, a is at its limit.
    let second = claim_ids(s, &w, 10, t).await;
    assert_eq!(second, [ids[4]]);
}

/// A key at its limit with many runs queued ahead of another key's (here: of higher priority)
/// holds none of them back: a claim passes over its runs to the other key's, and a claim with
/// every key at its limit takes nothing.
async fn a_key_at_its_limit_holds_back_no_other_key(h: &Harness) {
    let s = &*h.store;
    let t = t0();
    let mut runs: Vec<NewRun> = (0..100)
        .map(|_| {
            let mut r = queued_under_key("t.held", "a", t);
            r.priority = 9;
            r
        })
        .collect();
    let mut lone = queued_under_key("t.held", "b", t);
    lone.priority = 1;
    runs.push(lone);
    let ids = insert(s, runs, t).await;
    let mut w = h.worker("w", &["t.held"], t).await;
    w.limits = concurrency_limit("t.held", 1);
    let first = claim_ids(s, &w, 10, t).await;
    assert_eq!(first.len(), 2, "one run of each key: {first:?}");
    assert!(first.contains(&ids[0]), "a's first run");
    assert!(first.contains(&ids[100]), "b's run, behind 99 of a");
    assert!(
        claim_ids(s, &w, 10, t).await.is_empty(),
        "both keys at their limit"
    );
    s.complete(&w, &[ok(ids[0], 1, json!(null))], t)
        .await
        .unwrap();
    assert_eq!(claim_ids(s, &w, 10, t).await, [ids[1]], "a's next run");
}

/// Across the keys of a limited task, higher priority first, then the keys' turns; within a
/// key, priority then FIFO.
async fn priority_comes_before_turns(h: &Harness) {
    let s = &*h.store;
    let t = t0();
    let runs = [("a", 1), ("a", 1), ("b", 9), ("b", 9), ("c", 5), ("c", 9)];
    let ids = insert(
        s,
        runs.iter()
            .map(|(k, p)| {
                let mut r = queued_under_key("t.prio", k, t);
                r.priority = *p;
                r
            })
            .collect(),
        t,
    )
    .await;
    let mut w = h.worker("w", &["t.prio"], t).await;
    w.limits = concurrency_limit("t.prio", 2);
    let mut first = claim_ids(s, &w, 4, t).await;
    first.sort();
    let mut expected = vec![ids[2], ids[3], ids[5], ids[4]];
    expected.sort();
    assert_eq!(first, expected, "b's and c's of priority 9, then c's of 5");
    let mut second = claim_ids(s, &w, 10, t).await;
    second.sort();
    assert_eq!(second, [ids[0], ids[1]], "a's, of priority 1, last");
}

/// A key's runs queued after claims moved on take their turns from where the claims stand,
/// not from the start: a key with runs queued goes on after its last, a key without any starts
/// at the head, beside the run there.
async fn a_key_queued_again_starts_at_the_head(h: &Harness) {
    let s = &*h.store;
    let t = t0();
    let mut w = h.worker("w", &["t.head"], t).await;
    w.limits = concurrency_limit("t.head", 10);
    let a = insert(
        s,
        (0..5).map(|_| queued_under_key("t.head", "a", t)).collect(),
        t,
    )
    .await;
    assert_eq!(
        claim_ids(s, &w, 3, t).await,
        a[..3],
        "a's first three turns"
    );
    // The head is a's fourth run. b, new, takes its turn; a's new run the turn after its last.
    let later = ["a", "b"].map(|k| queued_under_key("t.head", k, t));
    let later = insert(s, later.into(), t).await;
    let mut next = claim_ids(s, &w, 2, t).await;
    next.sort();
    let mut expected = vec![a[3], later[1]];
    expected.sort();
    assert_eq!(next, expected, "a's fourth run and b's, in one turn");
    assert_eq!(
        claim_ids(s, &w, 10, t).await,
        [a[4], later[0]],
        "a's fifth run, then its sixth"
    );
}

/// A run queued by another path than the insert (a delayed run coming due) takes its turn as
/// one inserted does: at the head, beside the run there, not behind the key that fills the queue.
async fn a_run_that_comes_due_takes_its_turn_at_the_head(h: &Harness) {
    let s = &*h.store;
    let t = t0();
    let mut w = h.worker("w", &["t.due"], t).await;
    w.limits = concurrency_limit("t.due", 10);
    let a = insert(
        s,
        (0..5).map(|_| queued_under_key("t.due", "a", t)).collect(),
        t,
    )
    .await;
    let mut later = queued_under_key("t.due", "b", t);
    later.run_at = t + secs(1.0);
    let b = insert(s, vec![later], t).await[0];
    assert_eq!(claim_ids(s, &w, 2, t).await, a[..2], "a's first two turns");
    let m = s.maintain(t + secs(1.0), 1000).await.unwrap();
    assert_eq!(m.promoted, 1);
    let mut next = claim_ids(s, &w, 2, t + secs(1.0)).await;
    next.sort();
    let mut expected = vec![a[2], b];
    expected.sort();
    assert_eq!(next, expected, "a's third run and b's, in one turn");
}

/// Runs of a limited task claimed by a worker that serves it without the limit (one registered
/// before the limit was added) leave the queue as a limited claim's do: a key left without
/// queued runs that way starts at the head again.
async fn runs_claimed_without_the_limit_give_their_turns_back(h: &Harness) {
    let s = &*h.store;
    let t = t0();
    let mut limited = h.worker("w", &["t.back"], t).await;
    limited.limits = concurrency_limit("t.back", 10);
    let unlimited = h.worker("u", &["t.back"], t).await;
    let keys = ["a", "a", "a", "b", "b", "b"];
    let ids = insert(
        s,
        keys.iter()
            .map(|k| queued_under_key("t.back", k, t))
            .collect(),
        t,
    )
    .await;
    let mut first = claim_ids(s, &limited, 2, t).await;
    first.sort();
    assert_eq!(first, [ids[0], ids[3]], "a's and b's first turns");
    assert_eq!(
        claim_ids(s, &unlimited, 2, t).await,
        [ids[1], ids[2]],
        "the rest of a, oldest first, without the limit"
    );
    // a has no run queued: its new one takes the turn at the head (b's second run's).
    let again = insert(s, vec![queued_under_key("t.back", "a", t)], t).await[0];
    let mut next = claim_ids(s, &limited, 2, t).await;
    next.sort();
    let mut expected = vec![ids[4], again];
    expected.sort();
    assert_eq!(
        next, expected,
        "b's second run and a's new one, in one turn"
    );
}

/// A task under a concurrency limit and a rate limit without a key of its own: each key runs
/// at most its limit, and all keys spend from the task's one bucket.
async fn claims_under_both_limits(h: &Harness) {
    use owlclaw_core::ratelimit::{RateLimit, RateLimitUse};
    use owlclaw_engine::store::Limit;
    use std::sync::atomic::Ordering;
    let s = &*h.store;
    let t = t0();
    s.set_rate_limit(
        TENANT,
        &RateLimit {
            name: "api".into(),
            limit: 3,
            per: Duration::from_secs(3),
        },
    )
    .await
    .unwrap();
    let run = |key: &str| {
        let mut run = queued_under_key("t.both", key, t);
        run.rate_limit = Some((
            RateLimitUse {
                name: "api".into(),
                units: 1,
                key: None,
            },
            String::new(),
        ));
        run
    };
    let keys = ["a", "a", "a", "b", "b", "b", "c"];
    let ids = insert(s, keys.iter().map(|k| run(k)).collect(), t).await;
    let key_of = |id: &RunId| keys[ids.iter().position(|i| i == id).unwrap()];
    let mut w = h.worker("w", &["t.both"], t).await;
    w.limits = vec![(
        "t.both".into(),
        Limit {
            concurrency: Some(2),
            rate: Some(RateLimitUse {
                name: "api".into(),
                units: 1,
                key: None,
            }),
        },
    )];
    let first: Vec<&str> = claim_ids(s, &w, 10, t).await.iter().map(key_of).collect();
    assert_eq!(
        first,
        ["a", "b", "c"],
        "3 units: one run of each key in turn"
    );
    assert_eq!(
        w.units_due.swap(0, Ordering::Relaxed),
        (t + secs(1.0)).timestamp_micros(),
        "the bucket has a unit again a second later"
    );
    assert_eq!(
        s.rate_bucket(TENANT, "api", "").await.unwrap().unwrap().0,
        0.0
    );
    // Three seconds later the bucket is full again; a and b have one place left each, c has no
    // run queued: two of the three units go.
    let mut second: Vec<&str> = claim_ids(s, &w, 10, t + secs(3.0))
        .await
        .iter()
        .map(key_of)
        .collect();
    second.sort();
    assert_eq!(second, ["a", "b"]);
    assert_eq!(
        s.rate_bucket(TENANT, "api", "").await.unwrap().unwrap().0,
        1.0,
        "one unit left"
    );
}

/// `cancel_newest` and `cancel_in_progress` are applied in the insert's transaction: the insert
/// answers with the new run already cancelled, or with the oldest run of its key cancelled.
async fn cancel_strategies_apply_in_the_insert(h: &Harness) {
    use owlclaw_core::task::{Concurrency, ConcurrencyStrategy};
    let s = &*h.store;
    let t = t0();
    let limited = |task: &str, strategy| {
        let mut run = new_run(task, t);
        run.concurrency = Some((
            Concurrency {
                max: 1,
                key: Some("k".into()),
                strategy,
            },
            "a".into(),
        ));
        run
    };
    let newest = || limited("t.newest", ConcurrencyStrategy::CancelNewest);
    let first = s.insert_runs(vec![newest()], t).await.unwrap();
    assert_eq!(created(&first[0]).status, RunStatus::Queued);
    let second = s.insert_runs(vec![newest()], t).await.unwrap();
    let second = created(&second[0]);
    assert_eq!(second.status, RunStatus::Cancelled, "the new run, at once");
    assert_eq!(get(s, second.id).await.status, RunStatus::Cancelled);
    assert_eq!(
        get(s, created(&first[0]).id).await.status,
        RunStatus::Queued
    );

    let latest = || limited("t.latest", ConcurrencyStrategy::CancelInProgress);
    let old = s.insert_runs(vec![latest()], t).await.unwrap();
    let new = s.insert_runs(vec![latest()], t).await.unwrap();
    assert_eq!(created(&new[0]).status, RunStatus::Queued);
    assert_eq!(
        get(s, created(&old[0]).id).await.status,
        RunStatus::Cancelled
    );
    // A claim finds only the runs kept.
    let w = h.worker("w", &["t.newest", "t.latest"], t).await;
    let mut claimed = claim_ids(s, &w, 10, t).await;
    claimed.sort();
    let mut kept = vec![created(&first[0]).id, created(&new[0]).id];
    kept.sort();
    assert_eq!(claimed, kept);
}

/// queued → running → succeeded, with one event per transition and the snapshot fields.
async fn life_cycle_with_events(h: &Harness) {
    let s = &*h.store;
    let t = t0();
    let w = h.worker("w1", &["t.ok"], t).await;
    let mut run = new_run("t.ok", t);
    run.input = json!({"n": 1, "text": "a\u{0}b ✓"});
    run.owner = Some("ann".into());
    run.metadata = Some(json!({"trace": "x"}));
    let parent = RunId::new();
    run.parent_id = Some(parent);
    let inserted = s.insert_runs(vec![run.clone()], t).await.unwrap();
    let snap = created(&inserted[0]).clone();
    assert_eq!(snap.status, RunStatus::Queued);
    let id = snap.id;

    let got = get(s, id).await;
    assert_eq!(got.status, RunStatus::Queued);
    assert_eq!((got.attempt, got.max_attempts, got.priority), (0, 1, 5));
    assert_eq!(got.input, run.input);
    assert_eq!(got.owner.as_deref(), Some("ann"));
    assert_eq!(got.metadata, Some(json!({"trace": "x"})));
    assert_eq!(got.parent_id, Some(parent));
    assert_eq!(got.timeout_ms, 30_000);
    assert_eq!((got.created_at, got.run_at), (t, t));
    assert_eq!((got.started_at, got.finished_at), (None, None));
    assert_eq!(got, snap, "the insert's snapshot is what is stored");

    let a = s.claim(&w, 10, t + secs(1.0), LEASE, None).await.unwrap();
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].run_id, id);
    assert_eq!(
        (a[0].attempt, a[0].max_attempts, a[0].timeout_ms),
        (1, 1, 30_000)
    );
    assert_eq!(a[0].input, run.input);
    assert_eq!(a[0].parent_id, Some(parent));
    let got = get(s, id).await;
    assert_eq!(got.status, RunStatus::Running);
    assert_eq!(got.attempt, 1);
    assert_eq!(got.worker.as_deref(), Some("w1"));
    assert_eq!(got.started_at, Some(t + secs(1.0)));
    let workers = s.list_workers(TENANT, t - secs(1.0)).await.unwrap();
    assert_eq!(workers.len(), 1);
    assert_eq!(workers[0].held_runs, vec![id]);

    let changed = s
        .complete(&w, &[ok(id, 1, json!({"done": true}))], t + secs(2.0))
        .await
        .unwrap();
    assert_eq!(changed, 1);
    let got = get(s, id).await;
    assert_eq!(got.status, RunStatus::Succeeded);
    assert_eq!(got.output, Some(json!({"done": true})));
    assert_eq!(got.error, None);
    assert_eq!(got.finished_at, Some(t + secs(2.0)));
    let workers = s.list_workers(TENANT, t - secs(1.0)).await.unwrap();
    assert!(workers[0].held_runs.is_empty(), "the lease is released");

    // A repeated report changes nothing.
    let again = s
        .complete(&w, &[ok(id, 1, json!("other"))], t + secs(3.0))
        .await
        .unwrap();
    assert_eq!(again, 0);
    assert_eq!(get(s, id).await.output, Some(json!({"done": true})));

    let evs = events(s, id).await;
    let w1 = Some("w1".to_string());
    assert_eq!(
        evs.iter().map(ev).collect::<Vec<_>>(),
        vec![
            (None, RunStatus::Queued, 0, None, "scheduled".into()),
            (
                Some(RunStatus::Queued),
                RunStatus::Running,
                1,
                w1.clone(),
                "claimed".into()
            ),
            (
                Some(RunStatus::Running),
                RunStatus::Succeeded,
                1,
                w1,
                "succeeded".into()
            ),
        ]
    );
    assert_eq!(
        evs.iter().map(|e| e.at).collect::<Vec<_>>(),
        vec![t, t + secs(1.0), t + secs(2.0)]
    );
    assert!(evs.iter().all(|e| e.run_id == id));
}

/// Commands the state forbids are refused, and change nothing.
async fn refusals(h: &Harness) {
    let s = &*h.store;
    let t = t0();
    let w = h.worker("w1", &["t.r"], t).await;
    let ids = insert(
        s,
        vec![
            new_run("t.r", t),
            new_run("t.r", t),
            new_run("t.r", t + secs(60.0)),
        ],
        t,
    )
    .await;
    let (done, queued, scheduled) = (ids[0], ids[1], ids[2]);
    assert_eq!(claim_ids(s, &w, 1, t).await, vec![done]);
    s.complete(&w, &[ok(done, 1, json!(1))], t).await.unwrap();

    let e = s.cancel_run(TENANT, done, t).await.unwrap_err();
    assert!(
        matches!(e, Error::InvalidTransition { action: "cancel", status: RunStatus::Succeeded, run_id } if run_id == done),
        "{e:?}"
    );
    for (id, status) in [
        (queued, RunStatus::Queued),
        (scheduled, RunStatus::Scheduled),
        (done, RunStatus::Succeeded),
    ] {
        let e = s.retry_run(TENANT, id, t).await.unwrap_err();
        assert!(
            matches!(e, Error::InvalidTransition { action: "retry", status: st, .. } if st == status),
            "{e:?}"
        );
    }
    let running = insert(s, vec![new_run("t.r", t)], t).await[0];
    assert_eq!(claim_ids(s, &w, 5, t).await, vec![queued, running]);
    let e = s.retry_run(TENANT, running, t).await.unwrap_err();
    assert!(
        matches!(
            e,
            Error::InvalidTransition {
                status: RunStatus::Running,
                ..
            }
        ),
        "{e:?}"
    );

    // Unknown runs, and runs of another tenant, are not found.
    let nobody = RunId::new();
    for id in [nobody, done] {
        let other = "other-tenant";
        assert!(matches!(
            s.cancel_run(other, id, t).await.unwrap_err(),
            Error::NotFound { .. }
        ));
        assert!(matches!(
            s.retry_run(other, id, t).await.unwrap_err(),
            Error::NotFound { .. }
        ));
        assert!(matches!(
            s.run_events(other, id).await.unwrap_err(),
            Error::NotFound { .. }
        ));
        assert!(s.get_run(other, id).await.unwrap().is_none());
    }
    assert!(matches!(
        s.cancel_run(TENANT, nobody, t).await.unwrap_err(),
        Error::NotFound { .. }
    ));

    // Nothing changed.
    assert_eq!(get(s, done).await.status, RunStatus::Succeeded);
    assert_eq!(events(s, done).await.len(), 3);
    assert_eq!(get(s, queued).await.status, RunStatus::Running);
    assert_eq!(get(s, scheduled).await.status, RunStatus::Scheduled);
    assert_eq!(events(s, scheduled).await.len(), 1);
}

/// Higher priority first across tasks, FIFO within a priority; only the worker's tasks and
/// tenant.
async fn priority_then_fifo(h: &Harness) {
    let s = &*h.store;
    let t = t0();
    let w = h.worker("w1", &["t.a", "t.b"], t).await;
    let mk = |task: &str, p: u8| {
        let mut r = new_run(task, t);
        r.priority = p;
        r
    };
    let first = insert(
        s,
        vec![
            mk("t.a", 5),
            mk("t.b", 9),
            mk("t.a", 5),
            mk("t.b", 1),
            mk("t.a", 9),
            mk("t.b", 10),
        ],
        t,
    )
    .await;
    let later = insert(s, vec![mk("t.a", 9), mk("t.b", 5)], t + secs(1.0)).await;
    // Not for this worker: another task, another tenant.
    let mut foreign = mk("t.c", 10);
    foreign.task = "t.c".into();
    let mut other_tenant = mk("t.a", 10);
    other_tenant.tenant = "other-tenant".into();
    insert(s, vec![foreign, other_tenant], t).await;

    let expected = vec![
        first[5], first[1], first[4], later[0], first[0], first[2], later[1], first[3],
    ];
    let mut got = Vec::new();
    for _ in 0..3 {
        got.extend(claim_ids(s, &w, 1, t + secs(2.0)).await);
    }
    got.extend(claim_ids(s, &w, 100, t + secs(2.0)).await);
    assert_eq!(got, expected);
    assert!(claim_ids(s, &w, 100, t + secs(2.0)).await.is_empty());
    assert_eq!(
        s.queue_depth().await.unwrap(),
        vec![
            queued(TENANT.to_string(), "t.c", 10, 1),
            queued("other-tenant".to_string(), "t.a", 10, 1)
        ]
    );
}

/// A worker of one task (claimed through the task's own index) takes its runs by priority, then
/// FIFO, and none of another task's, however many of those are queued ahead of them.
async fn one_task_behind_another_tasks_backlog(h: &Harness) {
    let mine = [("t.one", 1), ("t.one", 7), ("t.one", 1), ("t.one", 7)];
    let (ids, got) = behind_a_backlog(h, &["t.one"], &mine, &[1, 100]).await;
    assert_eq!(got, vec![ids[1], ids[3], ids[0], ids[2]]);
}

/// The same for a worker of several tasks: its claims merge its tasks' queues in priority
/// order, then first in first out, past another task's backlog.
async fn several_tasks_behind_another_tasks_backlog(h: &Harness) {
    let mine = [
        ("t.a", 1),
        ("t.b", 7),
        ("t.a", 7),
        ("t.b", 1),
        ("t.b", 3),
        ("t.a", 3),
    ];
    let (ids, got) = behind_a_backlog(h, &["t.a", "t.b"], &mine, &[1, 2, 100]).await;
    assert_eq!(got, vec![ids[1], ids[2], ids[4], ids[5], ids[0], ids[3]]);
}

/// Queues 300 runs of another task at priority 10, then `mine` (task, priority), and claims
/// for a worker of `tasks` `claims` runs at a time. Returns the ids of `mine` and the runs
/// claimed, in order, after checking that nothing of the worker's is left and the backlog is.
async fn behind_a_backlog(
    h: &Harness,
    tasks: &[&str],
    mine: &[(&str, u8)],
    claims: &[u32],
) -> (Vec<RunId>, Vec<RunId>) {
    let s = &*h.store;
    let t = t0();
    let w = h.worker("w1", tasks, t).await;
    let mk = |task: &str, p: u8| {
        let mut r = new_run(task, t);
        r.priority = p;
        r
    };
    insert(s, (0..300).map(|_| mk("t.many", 10)).collect(), t).await;
    let ids = insert(s, mine.iter().map(|(task, p)| mk(task, *p)).collect(), t).await;
    let mut got = Vec::new();
    for n in claims {
        got.extend(claim_ids(s, &w, *n, t + secs(1.0)).await);
    }
    assert!(claim_ids(s, &w, 100, t + secs(1.0)).await.is_empty());
    assert_eq!(
        s.queue_depth().await.unwrap(),
        vec![queued(TENANT.to_string(), "t.many", 10, 300)]
    );
    (ids, got)
}

/// Delayed runs wait in `scheduled` until due; `maintain` promotes only due timers, in due
/// order, and reports the next one.
async fn delayed_runs_and_timers(h: &Harness) {
    let s = &*h.store;
    let t = t0();
    let w = h.worker("w1", &["t.d"], t).await;
    let ids = insert(
        s,
        vec![
            new_run("t.d", t + secs(10.0)),
            new_run("t.d", t + secs(3.0)),
            new_run("t.d", t + secs(2.0)),
            new_run("t.d", t - secs(5.0)),
        ],
        t,
    )
    .await;
    let (late, mid, early, past) = (ids[0], ids[1], ids[2], ids[3]);
    let snap = get(s, late).await;
    assert_eq!(snap.status, RunStatus::Scheduled);
    assert_eq!(snap.run_at, t + secs(10.0));
    assert_eq!(
        get(s, past).await.status,
        RunStatus::Queued,
        "a past due time is queued at once"
    );

    assert_eq!(claim_ids(s, &w, 10, t).await, vec![past]);
    let m = s.maintain(t + secs(1.0), 1000).await.unwrap();
    assert_eq!(
        (m.promoted, m.expired, m.next_due),
        (0, 0, Some(t + secs(2.0)))
    );
    assert!(claim_ids(s, &w, 10, t + secs(1.0)).await.is_empty());

    let m = s.maintain(t + secs(5.0), 1000).await.unwrap();
    assert_eq!((m.promoted, m.next_due), (2, Some(t + secs(10.0))));
    assert_eq!(get(s, mid).await.status, RunStatus::Queued);
    assert_eq!(get(s, late).await.status, RunStatus::Scheduled);
    let promoted = claim_ids(s, &w, 10, t + secs(5.0)).await;
    if h.pg {
        assert_eq!(promoted, vec![early, mid], "due order");
    } else {
        // Known divergence: sqlite.rs queues promoted runs in the order `DELETE ... RETURNING`
        // yields them, which is not the due order its comment intends.
        assert_eq!(
            promoted.iter().collect::<HashSet<_>>(),
            [early, mid].iter().collect::<HashSet<_>>()
        );
    }

    let m = s.maintain(t + secs(10.0), 1000).await.unwrap();
    assert_eq!((m.promoted, m.next_due), (1, None));
    let evs: Vec<Ev> = events(s, late).await.iter().map(ev).collect();
    assert_eq!(
        evs,
        vec![
            (None, RunStatus::Scheduled, 0, None, "scheduled".into()),
            (
                Some(RunStatus::Scheduled),
                RunStatus::Queued,
                0,
                None,
                "due".into()
            ),
        ]
    );
    assert_eq!(events(s, late).await[1].at, t + secs(10.0));
    assert_eq!(claim_ids(s, &w, 10, t + secs(10.0)).await, vec![late]);

    // The batch limit is honoured.
    let many: Vec<NewRun> = (0..5).map(|_| new_run("t.d", t + secs(20.0))).collect();
    insert(s, many, t).await;
    let m = s.maintain(t + secs(20.0), 3).await.unwrap();
    assert_eq!((m.promoted, m.next_due), (3, Some(t + secs(20.0))));
    let m = s.maintain(t + secs(20.0), 3).await.unwrap();
    assert_eq!((m.promoted, m.next_due), (2, None));
}

/// A failed attempt with attempts left is scheduled after its backoff; errors accumulate; the
/// last one fails the run.
async fn retries_with_backoff(h: &Harness) {
    let s = &*h.store;
    let t = t0();
    let w = h.worker("w1", &["t.f"], t).await;
    let mut run = new_run("t.f", t);
    run.retries = 2;
    run.backoff = Backoff {
        initial: Duration::from_secs(1),
        factor: 2.0,
        max: Duration::from_secs(10),
    };
    let id = insert(s, vec![run], t).await[0];
    let mut now = t;
    for attempt in 1..=3u32 {
        let a = s.claim(&w, 1, now, LEASE, None).await.unwrap();
        assert_eq!(a.len(), 1, "attempt {attempt} is claimed");
        assert_eq!((a[0].attempt, a[0].max_attempts), (attempt, 3));
        now += secs(1.0);
        let changed = s
            .complete(
                &w,
                &[failed(id, attempt, &format!("boom {attempt}"), true)],
                now,
            )
            .await
            .unwrap();
        assert_eq!(changed, 1);
        let snap = get(s, id).await;
        assert_eq!(
            snap.error.as_deref(),
            Some(format!("boom {attempt}").as_str())
        );
        assert_eq!(snap.errors.len() as u32, attempt);
        assert_eq!(snap.errors.last().unwrap().attempt, attempt);
        assert_eq!(snap.errors.last().unwrap().at, now);
        let last = ev(events(s, id).await.last().unwrap());
        if attempt < 3 {
            assert_eq!(snap.status, RunStatus::Scheduled);
            let base = 2f64.powi(attempt as i32 - 1);
            let delay = (snap.run_at - now).num_microseconds().unwrap() as f64 / 1e6;
            assert!(
                delay >= base / 2.0 - 1e-3 && delay <= base + 1e-3,
                "delay {delay} for base {base}"
            );
            assert_eq!(
                (last.0, last.1, last.2),
                (Some(RunStatus::Running), RunStatus::Scheduled, attempt)
            );
            assert!(
                last.4.starts_with(&format!(
                    "attempt {attempt} of 3 failed: boom {attempt}; retrying in "
                )),
                "{}",
                last.4
            );
            assert!(
                claim_ids(s, &w, 1, now).await.is_empty(),
                "not before its backoff"
            );
            now = snap.run_at;
            let m = s.maintain(now, 100).await.unwrap();
            assert_eq!(m.promoted, 1);
        } else {
            assert_eq!(snap.status, RunStatus::Failed);
            assert_eq!(snap.finished_at, Some(now));
            assert_eq!(
                last,
                (
                    Some(RunStatus::Running),
                    RunStatus::Failed,
                    3,
                    Some("w1".into()),
                    "attempt 3 of 3 failed: boom 3; no attempt left".into()
                )
            );
        }
    }
    let snap = get(s, id).await;
    assert_eq!(
        snap.errors
            .iter()
            .map(|e| e.error.as_str())
            .collect::<Vec<_>>(),
        ["boom 1", "boom 2", "boom 3"]
    );
    assert_eq!(events(s, id).await.len(), 1 + 3 * 2 + 2);
}

async fn not_retryable_fails_at_once(h: &Harness) {
    let s = &*h.store;
    let t = t0();
    let w = h.worker("w1", &["t.f"], t).await;
    let mut run = new_run("t.f", t);
    run.retries = 3;
    let id = insert(s, vec![run], t).await[0];
    claim_ids(s, &w, 1, t).await;
    s.complete(&w, &[failed(id, 1, "fatal\u{0}!", false)], t)
        .await
        .unwrap();
    let snap = get(s, id).await;
    assert_eq!(
        (snap.status, snap.attempt, snap.max_attempts),
        (RunStatus::Failed, 1, 4)
    );
    assert_eq!(snap.errors.len(), 1);
    let last = ev(events(s, id).await.last().unwrap());
    assert_eq!((last.1, last.2), (RunStatus::Failed, 1));
    assert!(
        last.4
            .starts_with("attempt 1 failed and is not retryable: fatal"),
        "{}",
        last.4
    );
}

async fn timed_out_outcome(h: &Harness) {
    let s = &*h.store;
    let t = t0();
    let w = h.worker("w1", &["t.slow"], t).await;
    let mut run = new_run("t.slow", t);
    run.retries = 1;
    run.backoff = Backoff {
        initial: Duration::from_millis(100),
        factor: 1.0,
        max: Duration::from_millis(100),
    };
    let id = insert(s, vec![run], t).await[0];
    claim_ids(s, &w, 1, t).await;
    s.complete(&w, &[outcome(id, 1, Outcome::TimedOut)], t)
        .await
        .unwrap();
    let snap = get(s, id).await;
    assert_eq!(snap.status, RunStatus::Scheduled);
    assert_eq!(snap.error.as_deref(), Some("timed out after 30s"));
    s.maintain(t + secs(1.0), 10).await.unwrap();
    assert_eq!(claim_ids(s, &w, 1, t + secs(1.0)).await, vec![id]);
    s.complete(&w, &[outcome(id, 2, Outcome::TimedOut)], t + secs(2.0))
        .await
        .unwrap();
    let snap = get(s, id).await;
    assert_eq!(snap.status, RunStatus::Failed);
    assert_eq!(
        ev(events(s, id).await.last().unwrap()).4,
        "attempt 2 of 2 failed: timed out after 30s; no attempt left"
    );
}

/// A claim gives a lease; heartbeats renew it; when it expires the run is re-queued at once,
/// the attempt counted, or failed when none is left.
async fn leases_heartbeats_and_expiry(h: &Harness) {
    let s = &*h.store;
    let t = t0();
    let w = h.worker("w1", &["t.l"], t).await;
    let mut run = new_run("t.l", t);
    run.retries = 1;
    run.timeout = Duration::from_secs(60);
    let id = insert(s, vec![run], t).await[0];
    assert_eq!(claim_ids(s, &w, 1, t).await, vec![id]);

    assert!(s
        .heartbeat(&w, &[id], t + secs(5.0), LEASE)
        .await
        .unwrap()
        .is_empty());
    let m = s.maintain(t + secs(12.0), 100).await.unwrap();
    assert_eq!(m.expired, 0, "renewed until t+15s");
    assert_eq!(get(s, id).await.status, RunStatus::Running);

    let m = s.maintain(t + secs(15.0), 100).await.unwrap();
    assert_eq!(m.expired, 1);
    let snap = get(s, id).await;
    assert_eq!((snap.status, snap.attempt), (RunStatus::Queued, 1));
    let why = "lease expired: worker w1 stopped heartbeating";
    assert_eq!(snap.error.as_deref(), Some(why));
    assert_eq!(snap.errors.len(), 1);
    assert_eq!(
        ev(events(s, id).await.last().unwrap()),
        (
            Some(RunStatus::Running),
            RunStatus::Queued,
            1,
            Some("w1".into()),
            format!("attempt 1 of 2: {why}; re-queued")
        )
    );
    assert_eq!(
        s.maintain(t + secs(15.0), 100).await.unwrap().expired,
        0,
        "once"
    );

    // The worker learns it lost the run; its late report is ignored.
    assert_eq!(
        s.heartbeat(&w, &[id], t + secs(16.0), LEASE).await.unwrap(),
        vec![id]
    );
    assert_eq!(
        s.complete(&w, &[ok(id, 1, json!(1))], t + secs(16.0))
            .await
            .unwrap(),
        0
    );
    assert_eq!(get(s, id).await.status, RunStatus::Queued);

    let a = s.claim(&w, 1, t + secs(20.0), LEASE, None).await.unwrap();
    assert_eq!(a[0].attempt, 2);
    assert_eq!(s.maintain(t + secs(29.0), 100).await.unwrap().expired, 0);
    assert_eq!(s.maintain(t + secs(30.0), 100).await.unwrap().expired, 1);
    let snap = get(s, id).await;
    assert_eq!(snap.status, RunStatus::Failed);
    assert_eq!(snap.finished_at, Some(t + secs(30.0)));
    assert_eq!(
        ev(events(s, id).await.last().unwrap()).4,
        format!("attempt 2 of 2 failed: {why}; no attempt left")
    );
    assert!(s.list_workers(TENANT, t).await.unwrap()[0]
        .held_runs
        .is_empty());
}

/// However often a worker heartbeats, a run is failed once its timeout plus one lease passed.
async fn engine_deadline(h: &Harness) {
    let s = &*h.store;
    let t = t0();
    let w = h.worker("w1", &["t.hang"], t).await;
    let mut run = new_run("t.hang", t);
    run.timeout = Duration::from_secs(1);
    let id = insert(s, vec![run], t).await[0];
    claim_ids(s, &w, 1, t).await;
    s.heartbeat(&w, &[id], t + secs(9.0), LEASE).await.unwrap();
    assert_eq!(s.maintain(t + secs(10.5), 100).await.unwrap().expired, 0);
    assert_eq!(s.maintain(t + secs(11.0), 100).await.unwrap().expired, 1);
    let snap = get(s, id).await;
    assert_eq!(snap.status, RunStatus::Failed);
    assert_eq!(
        snap.error.as_deref(),
        Some("timed out: the worker did not report within the task's timeout")
    );
}

/// Deregistering hands back what the worker holds at once, without counting an attempt; so
/// does a `HandedBack` report.
async fn deregister_and_hand_back(h: &Harness) {
    let s = &*h.store;
    let t = t0();
    let w1 = h.worker("w1", &["t.h"], t).await;
    let w2 = h.worker("w2", &["t.h"], t).await;
    let ids = insert(
        s,
        vec![new_run("t.h", t), new_run("t.h", t), new_run("t.h", t)],
        t,
    )
    .await;
    assert_eq!(claim_ids(s, &w1, 2, t).await, ids[..2].to_vec());
    assert_eq!(claim_ids(s, &w2, 2, t).await, ids[2..].to_vec());

    assert_eq!(s.deregister_worker(&w1.id, t + secs(1.0)).await.unwrap(), 2);
    assert!(s.get_worker(&w1.id).await.unwrap().is_none());
    for id in &ids[..2] {
        let snap = get(s, *id).await;
        assert_eq!((snap.status, snap.attempt), (RunStatus::Queued, 0));
        assert_eq!(
            ev(events(s, *id).await.last().unwrap()),
            (
                Some(RunStatus::Running),
                RunStatus::Queued,
                0,
                Some("w1".into()),
                "handed back: its worker stopped; not counted as an attempt".into()
            )
        );
    }
    assert_eq!(get(s, ids[2]).await.status, RunStatus::Running);
    assert_eq!(s.deregister_worker(&w1.id, t).await.unwrap(), 0);

    let changed = s
        .complete(
            &w2,
            &[outcome(ids[2], 1, Outcome::HandedBack)],
            t + secs(2.0),
        )
        .await
        .unwrap();
    assert_eq!(changed, 1);
    let snap = get(s, ids[2]).await;
    assert_eq!((snap.status, snap.attempt), (RunStatus::Queued, 0));
    assert_eq!(
        ev(events(s, ids[2]).await.last().unwrap()).4,
        "handed back by its worker at shutdown; not counted as an attempt"
    );
    let a = s.claim(&w2, 10, t + secs(3.0), LEASE, None).await.unwrap();
    assert_eq!(a.len(), 3);
    assert!(a.iter().all(|a| a.attempt == 1), "hand-backs did not count");
    assert_eq!(
        s.list_workers(TENANT, t).await.unwrap()[0].held_runs.len(),
        3
    );
}

/// Scheduled, queued and running runs can be cancelled; what held them lets go.
async fn cancel_in_every_state(h: &Harness) {
    let s = &*h.store;
    let t = t0();
    let w = h.worker("w1", &["t.c"], t).await;
    let ids = insert(
        s,
        vec![
            new_run("t.c", t + secs(60.0)),
            new_run("t.c", t),
            new_run("t.c", t),
        ],
        t,
    )
    .await;
    let (scheduled, running, queued) = (ids[0], ids[1], ids[2]);
    assert_eq!(claim_ids(s, &w, 1, t).await, vec![running]);

    let cases = [
        (
            scheduled,
            RunStatus::Scheduled,
            0,
            None,
            "cancelled before it was due",
        ),
        (queued, RunStatus::Queued, 0, None, "cancelled while queued"),
        (
            running,
            RunStatus::Running,
            1,
            Some("w1".to_string()),
            "cancelled while running; the worker is told to stop",
        ),
    ];
    for (id, from, attempt, worker, reason) in cases {
        let snap = s.cancel_run(TENANT, id, t + secs(1.0)).await.unwrap();
        assert_eq!(snap.status, RunStatus::Cancelled);
        assert_eq!(snap.finished_at, Some(t + secs(1.0)));
        assert_eq!(snap, get(s, id).await);
        assert_eq!(
            ev(events(s, id).await.last().unwrap()),
            (
                Some(from),
                RunStatus::Cancelled,
                attempt,
                worker,
                reason.to_string()
            )
        );
    }
    let m = s.maintain(t + secs(61.0), 100).await.unwrap();
    assert_eq!(
        (m.promoted, m.next_due),
        (0, None),
        "the timer went with the run"
    );
    assert!(
        claim_ids(s, &w, 10, t + secs(2.0)).await.is_empty(),
        "and the queue entry"
    );
    assert_eq!(
        s.heartbeat(&w, &[running], t + secs(2.0), LEASE)
            .await
            .unwrap(),
        vec![running]
    );
    assert_eq!(
        s.complete(&w, &[ok(running, 1, json!(1))], t + secs(2.0))
            .await
            .unwrap(),
        0
    );
    assert_eq!(get(s, running).await.status, RunStatus::Cancelled);
    assert_eq!(
        s.maintain(t + secs(100.0), 100).await.unwrap().expired,
        0,
        "the lease went too"
    );

    // A worker stopping a run reports `Cancelled`.
    let id = insert(s, vec![new_run("t.c", t)], t).await[0];
    claim_ids(s, &w, 1, t).await;
    s.complete(&w, &[outcome(id, 1, Outcome::Cancelled)], t + secs(3.0))
        .await
        .unwrap();
    let snap = get(s, id).await;
    assert_eq!(
        (snap.status, snap.finished_at),
        (RunStatus::Cancelled, Some(t + secs(3.0)))
    );
    assert_eq!(
        ev(events(s, id).await.last().unwrap()).4,
        "stopped by its worker"
    );
}

/// `retry` re-queues a failed or cancelled run for `retries + 1` more attempts.
async fn manual_retry(h: &Harness) {
    let s = &*h.store;
    let t = t0();
    let w = h.worker("w1", &["t.m"], t).await;
    let mut run = new_run("t.m", t);
    run.retries = 1;
    run.backoff = Backoff {
        initial: Duration::from_millis(10),
        factor: 1.0,
        max: Duration::from_millis(10),
    };
    let id = insert(s, vec![run], t).await[0];
    for attempt in 1..=2 {
        s.maintain(t + secs(attempt as f64), 10).await.unwrap();
        assert_eq!(
            claim_ids(s, &w, 1, t + secs(attempt as f64)).await,
            vec![id]
        );
        s.complete(
            &w,
            &[failed(id, attempt, "no", true)],
            t + secs(attempt as f64),
        )
        .await
        .unwrap();
    }
    assert_eq!(get(s, id).await.status, RunStatus::Failed);
    let snap = s.retry_run(TENANT, id, t + secs(5.0)).await.unwrap();
    assert_eq!(snap.status, RunStatus::Queued);
    assert_eq!((snap.attempt, snap.max_attempts), (2, 4));
    assert_eq!((snap.error.as_deref(), snap.finished_at), (None, None));
    assert_eq!(snap.errors.len(), 2, "the history of errors stays");
    assert_eq!(snap.run_at, t + secs(5.0));
    assert_eq!(snap, get(s, id).await);
    assert_eq!(
        ev(events(s, id).await.last().unwrap()),
        (
            Some(RunStatus::Failed),
            RunStatus::Queued,
            2,
            None,
            "manual retry: 2 more attempt(s)".into()
        )
    );
    let a = s.claim(&w, 1, t + secs(5.0), LEASE, None).await.unwrap();
    assert_eq!((a[0].attempt, a[0].max_attempts), (3, 4));
    s.complete(&w, &[ok(id, 3, json!("yes"))], t + secs(6.0))
        .await
        .unwrap();
    assert_eq!(get(s, id).await.error, None);

    let c = insert(s, vec![new_run("t.m", t + secs(60.0))], t).await[0];
    s.cancel_run(TENANT, c, t).await.unwrap();
    let snap = s.retry_run(TENANT, c, t + secs(1.0)).await.unwrap();
    assert_eq!((snap.status, snap.max_attempts), (RunStatus::Queued, 1));
    assert_eq!(claim_ids(s, &w, 5, t + secs(1.0)).await, vec![c]);
}

/// Newest first, filters, cursor pages, tenants apart.
async fn list_filter_and_cursor(h: &Harness) {
    let s = &*h.store;
    let t = t0();
    let w = h.worker("w1", &["t.a"], t).await;
    let mut ids = Vec::new();
    for i in 0..7 {
        let mut r = new_run(if i % 2 == 0 { "t.a" } else { "t.b" }, t);
        if i % 3 == 0 {
            r.owner = Some("ann".into());
        }
        ids.push(insert(s, vec![r], t + secs(i as f64)).await[0]);
    }
    let mut other = new_run("t.a", t);
    other.tenant = "other-tenant".into();
    let foreign = insert(s, vec![other], t).await[0];
    let newest_first: Vec<RunId> = ids.iter().rev().copied().collect();

    let list = |f: ListFilter| async move { s.list_runs(TENANT, &f).await.unwrap() };
    let all = list(ListFilter::default()).await;
    assert_eq!(
        all.runs.iter().map(|r| r.id).collect::<Vec<_>>(),
        newest_first
    );
    assert_eq!(all.next_cursor, None);

    let mut pages = Vec::new();
    let mut cursor = None;
    loop {
        let page = list(ListFilter {
            limit: Some(3),
            cursor: cursor.clone(),
            ..Default::default()
        })
        .await;
        pages.push(page.runs.iter().map(|r| r.id).collect::<Vec<_>>());
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [3, 3, 1]);
    assert_eq!(pages.concat(), newest_first);

    let by_task = list(ListFilter {
        task: Some("t.b".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(
        by_task.runs.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![ids[5], ids[3], ids[1]]
    );
    let by_owner = list(ListFilter {
        owner: Some("ann".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(
        by_owner.runs.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![ids[6], ids[3], ids[0]]
    );
    assert_eq!(claim_ids(s, &w, 1, t).await, vec![ids[0]]);
    let running = list(ListFilter {
        status: Some(RunStatus::Running),
        ..Default::default()
    })
    .await;
    assert_eq!(
        running.runs.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![ids[0]]
    );
    let combined = list(ListFilter {
        status: Some(RunStatus::Queued),
        task: Some("t.a".into()),
        owner: Some("ann".into()),
        limit: Some(1),
        ..Default::default()
    })
    .await;
    assert_eq!(
        combined.runs.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![ids[6]]
    );
    assert_eq!(combined.next_cursor, None);

    let e = s
        .list_runs(
            TENANT,
            &ListFilter {
                cursor: Some("nope".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::InvalidInput { field, .. } if field == "cursor"),
        "{e:?}"
    );
    let theirs = s
        .list_runs("other-tenant", &ListFilter::default())
        .await
        .unwrap();
    assert_eq!(
        theirs.runs.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![foreign]
    );
}

/// Every status's runs, listed (newest first, in pages) and counted, with the other filters
/// beside the status; a run that leaves a final status (a manual retry) or the store (a purge)
/// leaves its lists and counts; the runs ended per minute. PostgreSQL finds a status's runs in
/// narrow tables of their own (`0019_finished.sql`), SQLite by an index of `runs`: both give
/// these answers.
async fn list_and_count_by_status(h: &Harness) {
    let s = &*h.store;
    let t = t0();
    let w = h.worker("w1", &["t.a", "t.b"], t).await;
    let mut ids = Vec::new();
    for (i, (task, ann)) in [
        ("t.a", true),  // 0: succeeded
        ("t.b", false), // 1: failed
        ("t.a", true),  // 2: running
        ("t.a", false), // 3: succeeded
        ("t.a", false), // 4: cancelled while queued
        ("t.b", true),  // 5: queued
        ("t.a", false), // 6: queued
        ("t.a", false), // 7: scheduled
    ]
    .into_iter()
    .enumerate()
    {
        let mut r = new_run(task, if i == 7 { t + secs(600.0) } else { t });
        r.owner = ann.then(|| "ann".into());
        ids.push(insert(s, vec![r], t + secs(i as f64)).await[0]);
    }
    s.cancel_run(TENANT, ids[4], t + secs(10.0)).await.unwrap();
    assert_eq!(claim_ids(s, &w, 4, t + secs(10.0)).await, ids[..4]);
    s.complete(
        &w,
        &[
            ok(ids[0], 1, json!(0)),
            failed(ids[1], 1, "no", false),
            ok(ids[3], 1, json!(3)),
        ],
        t + secs(11.0),
    )
    .await
    .unwrap();
    let ow = worker_on(s, "other-tenant", "w2", &["t.a"], t).await;
    let mut other = new_run("t.a", t);
    other.tenant = "other-tenant".into();
    let foreign = insert(s, vec![other], t).await[0];
    assert_eq!(claim_ids(s, &ow, 1, t).await, vec![foreign]);
    s.complete(&ow, &[ok(foreign, 1, json!("theirs"))], t + secs(11.0))
        .await
        .unwrap();

    let by = |status: RunStatus| ListFilter {
        status: Some(status),
        ..ListFilter::default()
    };
    let listed = |f: ListFilter| async move {
        let page = s.list_runs(TENANT, &f).await.unwrap();
        assert!(
            page.runs
                .iter()
                .all(|r| f.status.is_none_or(|st| r.status == st)),
            "{f:?}: {page:?}"
        );
        page.runs.iter().map(|r| r.id).collect::<Vec<_>>()
    };
    let counted = |f: ListFilter, max: Option<u64>| async move {
        s.count_runs(TENANT, &f, max).await.unwrap()
    };
    for (status, want) in [
        (RunStatus::Succeeded, vec![ids[3], ids[0]]),
        (RunStatus::Failed, vec![ids[1]]),
        (RunStatus::Cancelled, vec![ids[4]]),
        (RunStatus::Running, vec![ids[2]]),
        (RunStatus::Queued, vec![ids[6], ids[5]]),
        (RunStatus::Scheduled, vec![ids[7]]),
    ] {
        assert_eq!(listed(by(status)).await, want, "{status:?}");
        assert_eq!(
            counted(by(status), None).await,
            want.len() as u64,
            "{status:?}"
        );
        assert_eq!(
            counted(by(status), Some(1)).await,
            1,
            "{status:?} at most 1"
        );
        // One run a page, by the cursor.
        let (mut pages, mut cursor) = (Vec::new(), None);
        loop {
            let page = s
                .list_runs(
                    TENANT,
                    &ListFilter {
                        limit: Some(1),
                        cursor: cursor.clone(),
                        ..by(status)
                    },
                )
                .await
                .unwrap();
            pages.extend(page.runs.iter().map(|r| r.id));
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        assert_eq!(pages, want, "{status:?} in pages of one");
    }
    let with = |status: RunStatus, f: ListFilter| ListFilter {
        status: Some(status),
        ..f
    };
    let task = |t: &str| ListFilter {
        task: Some(t.into()),
        ..ListFilter::default()
    };
    let ann = ListFilter {
        owner: Some("ann".into()),
        ..ListFilter::default()
    };
    for (f, want) in [
        (
            with(RunStatus::Succeeded, task("t.a")),
            vec![ids[3], ids[0]],
        ),
        (with(RunStatus::Succeeded, task("t.b")), vec![]),
        (with(RunStatus::Failed, task("t.b")), vec![ids[1]]),
        (with(RunStatus::Queued, task("t.b")), vec![ids[5]]),
        (with(RunStatus::Running, task("t.b")), vec![]),
        (with(RunStatus::Succeeded, ann.clone()), vec![ids[0]]),
        (with(RunStatus::Queued, ann.clone()), vec![ids[5]]),
        (with(RunStatus::Running, ann.clone()), vec![ids[2]]),
        (
            with(
                RunStatus::Succeeded,
                ListFilter {
                    created_after: Some(t + secs(0.5)),
                    ..ListFilter::default()
                },
            ),
            vec![ids[3]],
        ),
    ] {
        assert_eq!(listed(f.clone()).await, want, "{f:?}");
        assert_eq!(counted(f.clone(), None).await, want.len() as u64, "{f:?}");
    }
    let theirs = s
        .list_runs("other-tenant", &by(RunStatus::Succeeded))
        .await
        .unwrap();
    assert_eq!(
        theirs.runs.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![foreign]
    );
    let mut ended = s
        .ended_per_minute(TENANT, t - secs(60.0), t + secs(120.0))
        .await
        .unwrap()
        .into_iter()
        .fold(BTreeMap::new(), |mut m, (_, status, n)| {
            *m.entry(status).or_insert(0) += n;
            m
        });
    assert_eq!(ended.remove("succeeded"), Some(2));
    assert_eq!(ended.remove("failed"), Some(1));
    assert_eq!(ended.remove("cancelled"), Some(1));
    assert!(ended.is_empty(), "{ended:?}");

    // A manual retry takes the failed run out of the final statuses.
    s.retry_run(TENANT, ids[1], t + secs(12.0)).await.unwrap();
    assert_eq!(listed(by(RunStatus::Failed)).await, vec![]);
    assert_eq!(counted(by(RunStatus::Failed), None).await, 0);
    assert_eq!(
        listed(by(RunStatus::Queued)).await,
        vec![ids[6], ids[5], ids[1]]
    );
    // It fails again: back in the list.
    assert_eq!(claim_ids(s, &w, 10, t + secs(13.0)).await.len(), 3);
    s.complete(&w, &[failed(ids[1], 2, "no", false)], t + secs(14.0))
        .await
        .unwrap();
    assert_eq!(listed(by(RunStatus::Failed)).await, vec![ids[1]]);

    // A purge takes the finished runs out of their lists and counts.
    assert_eq!(s.purge(t + secs(3600.0), 100).await.unwrap(), 5);
    for status in [
        RunStatus::Succeeded,
        RunStatus::Failed,
        RunStatus::Cancelled,
    ] {
        assert_eq!(listed(by(status)).await, vec![], "{status:?}");
        assert_eq!(counted(by(status), None).await, 0, "{status:?}");
    }
    assert_eq!(
        s.list_runs("other-tenant", &by(RunStatus::Succeeded))
            .await
            .unwrap()
            .runs
            .len(),
        0,
        "every tenant's finished runs are purged"
    );
    assert_eq!(
        listed(by(RunStatus::Running)).await,
        vec![ids[6], ids[5], ids[2]]
    );
    assert_eq!(listed(by(RunStatus::Scheduled)).await, vec![ids[7]]);
}

/// The same key and input returns the existing run; another input is a conflict, and a bulk
/// insert with a conflict stores nothing.
async fn idempotency(h: &Harness) {
    let s = &*h.store;
    let t = t0();
    let keyed = |input: Value| {
        let mut r = new_run("t.i", t);
        r.id = RunId::for_idempotency_key(TENANT, "t.i", "k1");
        r.idempotency_key = Some("k1".into());
        r.input = input;
        r
    };
    let first = s
        .insert_runs(vec![keyed(json!({"a": 1, "b": [1, 2]}))], t)
        .await
        .unwrap();
    let snap = created(&first[0]).clone();
    assert_eq!(snap.idempotency_key.as_deref(), Some("k1"));

    let input: Value = serde_json::from_str(r#"{ "b": [1, 2], "a": 1 }"#).unwrap();
    let again = s
        .insert_runs(vec![keyed(input)], t + secs(5.0))
        .await
        .unwrap();
    match &again[0] {
        Inserted::Existing(e) => {
            assert_eq!(e.id, snap.id);
            assert_eq!(e.created_at, t);
            assert_eq!(e, &get(s, snap.id).await);
        }
        other => panic!("expected the existing run, got {other:?}"),
    }

    let e = s
        .insert_runs(vec![keyed(json!({"a": 2}))], t)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::IdempotencyConflict { key, existing } if key == "k1" && *existing == snap.id),
        "{e:?}"
    );
    let fresh = new_run("t.i", t);
    let fresh_id = fresh.id;
    let e = s
        .insert_runs(vec![fresh, keyed(json!("other"))], t)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::IdempotencyConflict { .. }), "{e:?}");
    assert!(
        s.get_run(TENANT, fresh_id).await.unwrap().is_none(),
        "all or none"
    );
    assert_eq!(events(s, snap.id).await.len(), 1);
    assert_eq!(
        s.list_runs(TENANT, &ListFilter::default())
            .await
            .unwrap()
            .runs
            .len(),
        1
    );
}

async fn tokens(h: &Harness) {
    let s = &*h.store;
    let t = t0();
    s.create_token("hash-1", TENANT, t).await.unwrap();
    s.create_token("hash-2", "other-tenant", t).await.unwrap();
    assert_eq!(
        s.token_tenant("hash-1").await.unwrap().as_deref(),
        Some(TENANT)
    );
    assert_eq!(
        s.token_tenant("hash-2").await.unwrap().as_deref(),
        Some("other-tenant")
    );
    assert_eq!(s.token_tenant("hash-3").await.unwrap(), None);
    assert!(
        s.create_token("hash-1", "x", t).await.is_err(),
        "hashes are unique"
    );
}

/// Registration stores the worker, its task definitions and their crons; listing shows the
/// runs each worker holds and honours `since`.
async fn workers_tasks_and_crons(h: &Harness) {
    let s = &*h.store;
    let t = t0();
    let mut a = TaskDef::new("t.a");
    a.retries = 2;
    a.priority = 8;
    a.timeout = Duration::from_secs(5);
    let mut c = TaskDef::new("t.cron");
    c.cron = Some("*/5 * * * *".into());
    c.timezone = Some("Europe/Paris".into());
    let record = WorkerRecord {
        id: "w1-abc".into(),
        tenant: TENANT.into(),
        name: "w1".into(),
        tasks: vec!["t.a".into(), "t.cron".into()],
        limits: Vec::new(),
        units_due: Default::default(),
    };
    let reg = WorkerRegistration {
        name: "w1".into(),
        tasks: vec![a.clone(), c.clone()],
        slots: 4,
        labels: BTreeMap::from([("zone".to_string(), "eu".to_string())]),
        workflows: Vec::new(),
    };
    s.register_worker(&record, &reg, t).await.unwrap();
    assert_eq!(s.get_task(TENANT, "t.a").await.unwrap(), Some(a.clone()));
    assert_eq!(s.get_task(TENANT, "t.cron").await.unwrap(), Some(c));
    assert_eq!(s.get_task("other-tenant", "t.a").await.unwrap(), None);
    let got = s.get_worker("w1-abc").await.unwrap().unwrap();
    assert_eq!((got.tenant.as_str(), got.name.as_str()), (TENANT, "w1"));
    assert_eq!(got.tasks, record.tasks);
    assert!(s.get_worker("nobody").await.unwrap().is_none());

    let crons = s.list_crons(TENANT).await.unwrap();
    assert_eq!(crons.len(), 1);
    assert_eq!(
        (
            crons[0].id.as_str(),
            crons[0].task.as_str(),
            crons[0].expr.as_str(),
            crons[0].timezone.as_str()
        ),
        ("task:t.cron", "t.cron", "*/5 * * * *", "Europe/Paris")
    );
    assert_eq!(crons[0].last_tick, None);

    let ids = insert(s, vec![new_run("t.a", t), new_run("t.a", t)], t).await;
    let w2 = h.worker("w2", &["t.a"], t).await;
    claim_ids(s, &record, 1, t).await;
    claim_ids(s, &w2, 1, t).await;
    let list = s.list_workers(TENANT, t - secs(1.0)).await.unwrap();
    assert_eq!(list.len(), 2);
    let mine = list.iter().find(|w| w.id == "w1-abc").unwrap();
    assert_eq!((mine.name.as_str(), mine.slots), ("w1", 4));
    assert_eq!(mine.tasks, vec!["t.a", "t.cron"]);
    assert_eq!(mine.held_runs, vec![ids[0]]);
    assert_eq!(mine.started_at, t);
    assert_eq!(
        list.iter().find(|w| w.id == w2.id).unwrap().held_runs,
        vec![ids[1]]
    );

    assert!(s
        .list_workers(TENANT, t + secs(100.0))
        .await
        .unwrap()
        .is_empty());
    s.heartbeat(&record, &[], t + secs(200.0), LEASE)
        .await
        .unwrap();
    let seen = s.list_workers(TENANT, t + secs(100.0)).await.unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].last_heartbeat, t + secs(200.0));
    assert!(s
        .list_workers("other-tenant", t - secs(1.0))
        .await
        .unwrap()
        .is_empty());

    // Registering again (a restart) updates the definitions and keeps one cron.
    a.retries = 5;
    let reg = WorkerRegistration {
        tasks: vec![a.clone()],
        ..reg
    };
    s.register_worker(&record, &reg, t + secs(300.0))
        .await
        .unwrap();
    assert_eq!(s.get_task(TENANT, "t.a").await.unwrap().unwrap().retries, 5);
    assert_eq!(s.list_crons(TENANT).await.unwrap().len(), 1);
}

fn cron_run(rec: &CronRecord, tick: DateTime<Utc>) -> NewRun {
    let key = format!("cron:{}:{}", rec.schedule.id, tick.timestamp_micros());
    let mut r = new_run(&rec.schedule.task, tick);
    r.id = RunId::for_idempotency_key(&rec.tenant, &rec.schedule.task, &key);
    r.idempotency_key = Some(key);
    r.input = rec.schedule.input.clone();
    r.reason = format!("cron {} tick {}", rec.schedule.expr, tick.to_rfc3339());
    r
}

/// A schedule of `task` created at `t` (UTC, the default policies), as the engine stores it.
fn cron_record(id: &str, task: &str, expr: &str, input: Value, t: DateTime<Utc>) -> CronRecord {
    CronRecord {
        tenant: TENANT.into(),
        schedule: CronSchedule {
            id: id.into(),
            task: task.into(),
            expr: expr.into(),
            timezone: "UTC".into(),
            input,
            last_tick: None,
            next_tick: None,
            created_at: t,
            paused_at: None,
            next_ticks: Vec::new(),
            last_run: None,
            last_fired: None,
            overlap: Default::default(),
            catch_up: Default::default(),
        },
    }
}

/// A tick fires once however often (and by however many stores) it is fired; `last_tick` only
/// moves forward and survives an update of the schedule.
async fn cron_ticks_fire_once(h: &Harness) {
    let s = &*h.store;
    let t = t0();
    let rec = cron_record("c1", "t.cron", "* * * * *", json!({"x": 1}), t);
    s.upsert_cron(&rec).await.unwrap();
    let tick1 = t - secs(30.0);
    assert!(s
        .fire_cron(&rec, tick1, cron_run(&rec, tick1), t)
        .await
        .unwrap());
    assert!(
        !s.fire_cron(&rec, tick1, cron_run(&rec, tick1), t)
            .await
            .unwrap(),
        "twice: once"
    );
    let run = get(s, cron_run(&rec, tick1).id).await;
    assert_eq!(
        (run.status, run.input.clone()),
        (RunStatus::Queued, json!({"x": 1}))
    );
    assert_eq!(
        s.list_crons(TENANT).await.unwrap()[0].last_tick,
        Some(tick1)
    );
    let older = tick1 - secs(60.0);
    assert!(
        !s.fire_cron(&rec, older, cron_run(&rec, older), t)
            .await
            .unwrap(),
        "never backwards"
    );
    assert!(s
        .get_run(TENANT, cron_run(&rec, older).id)
        .await
        .unwrap()
        .is_none());

    // Two engines racing on the next tick: one run.
    let other = h.reopen().await;
    let tick2 = tick1 + secs(60.0);
    let (a, b) = tokio::join!(
        s.fire_cron(&rec, tick2, cron_run(&rec, tick2), t),
        other.fire_cron(&rec, tick2, cron_run(&rec, tick2), t)
    );
    assert_eq!(u8::from(a.unwrap()) + u8::from(b.unwrap()), 1);
    other.close().await;
    assert_eq!(
        s.list_crons(TENANT).await.unwrap()[0].last_tick,
        Some(tick2)
    );
    let runs = s
        .list_runs(
            TENANT,
            &ListFilter {
                task: Some("t.cron".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(runs.runs.len(), 2);

    // Updating the schedule keeps its last tick; deleting removes it.
    let mut changed = rec.clone();
    changed.schedule.expr = "*/2 * * * *".into();
    changed.schedule.input = json!({"x": 2});
    s.upsert_cron(&changed).await.unwrap();
    let all = s.all_crons().await.unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].tenant, TENANT);
    assert_eq!(all[0].schedule.expr, "*/2 * * * *");
    assert_eq!(all[0].schedule.input, json!({"x": 2}));
    assert_eq!(all[0].schedule.last_tick, Some(tick2));
    assert_eq!(all[0].schedule.created_at, t);

    // Paused: kept across an update (a worker registering again); resumed: its last tick moves to
    // the resume, so the ticks missed meanwhile are not fired.
    assert!(!s.set_cron_paused(TENANT, "nope", true, t).await.unwrap());
    assert!(s.set_cron_paused(TENANT, "c1", true, t).await.unwrap());
    s.upsert_cron(&changed).await.unwrap();
    let paused = &s.list_crons(TENANT).await.unwrap()[0];
    assert_eq!(paused.paused_at, Some(t));
    assert!(s
        .set_cron_paused(TENANT, "c1", true, t + secs(5.0))
        .await
        .unwrap());
    assert_eq!(
        s.list_crons(TENANT).await.unwrap()[0].paused_at,
        Some(t),
        "pausing again keeps the first pause"
    );
    let resumed_at = tick2 + secs(3600.0);
    assert!(s
        .set_cron_paused(TENANT, "c1", false, resumed_at)
        .await
        .unwrap());
    let resumed = &s.list_crons(TENANT).await.unwrap()[0];
    assert_eq!(resumed.paused_at, None);
    assert_eq!(resumed.last_tick, Some(resumed_at));
    assert!(s
        .set_cron_paused(TENANT, "c1", false, resumed_at + secs(60.0))
        .await
        .unwrap());
    assert_eq!(
        s.list_crons(TENANT).await.unwrap()[0].last_tick,
        Some(resumed_at),
        "resuming an active schedule changes nothing"
    );
    assert!(s.list_crons("other-tenant").await.unwrap().is_empty());
    assert!(!s.delete_cron("other-tenant", "c1").await.unwrap());
    assert!(s.delete_cron(TENANT, "c1").await.unwrap());
    assert!(!s.delete_cron(TENANT, "c1").await.unwrap());
    assert!(s.all_crons().await.unwrap().is_empty());
}

async fn queue_depth(h: &Harness) {
    let s = &*h.store;
    let t = t0();
    let mut high = new_run("t.b", t);
    high.priority = 9;
    insert(
        s,
        vec![
            new_run("t.a", t),
            new_run("t.a", t),
            high,
            new_run("t.a", t + secs(9.0)),
        ],
        t,
    )
    .await;
    assert_eq!(
        s.queue_depth().await.unwrap(),
        vec![
            queued(TENANT.to_string(), "t.a", 5, 2),
            queued(TENANT.to_string(), "t.b", 9, 1)
        ]
    );
}

/// Two stores (two engine replicas) claiming from one database at the same time never hand out
/// the same run twice, and together hand out every run.
async fn concurrent_claims_never_share_a_run(h: &Harness) {
    const RUNS: usize = 2000;
    let t = t0();
    let w1 = h.worker("w1", &["t.x"], t).await;
    let w2 = h.worker("w2", &["t.x"], t).await;
    let runs: Vec<NewRun> = (0..RUNS).map(|_| new_run("t.x", t)).collect();
    insert(&*h.store, runs, t).await;
    let other = h.reopen().await;
    let drain = |store: Arc<dyn Store>, w: WorkerRecord| {
        tokio::spawn(async move {
            let mut got = Vec::new();
            loop {
                let a = store.claim(&w, 50, Utc::now(), LEASE, None).await.unwrap();
                if a.is_empty() {
                    let left: u64 = store
                        .queue_depth()
                        .await
                        .unwrap()
                        .iter()
                        .map(|d| d.ready)
                        .sum();
                    if left == 0 {
                        return got;
                    }
                    tokio::task::yield_now().await;
                    continue;
                }
                let done: Vec<Completion> = a
                    .iter()
                    .map(|a| ok(a.run_id, a.attempt, json!(null)))
                    .collect();
                assert_eq!(
                    store.complete(&w, &done, Utc::now()).await.unwrap(),
                    done.len()
                );
                got.extend(a.iter().map(|a| a.run_id));
            }
        })
    };
    let (a, b) = tokio::join!(drain(h.store.clone(), w1), drain(other.clone(), w2));
    let (a, b) = (a.unwrap(), b.unwrap());
    other.close().await;
    let sa: HashSet<RunId> = a.iter().copied().collect();
    let sb: HashSet<RunId> = b.iter().copied().collect();
    assert_eq!(
        (sa.len(), sb.len()),
        (a.len(), b.len()),
        "no duplicates within one claimer"
    );
    assert!(
        sa.is_disjoint(&sb),
        "{} runs handed out twice",
        sa.intersection(&sb).count()
    );
    assert_eq!(sa.len() + sb.len(), RUNS);
    if h.pg {
        // Both really claimed side by side (SKIP LOCKED: neither waits for the other).
        assert!(
            !sa.is_empty() && !sb.is_empty(),
            "{} / {}",
            sa.len(),
            sb.len()
        );
    }
    let done = h
        .store
        .list_runs(
            TENANT,
            &ListFilter {
                status: Some(RunStatus::Succeeded),
                limit: Some(1000),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(done.runs.len(), 1000);
    assert!(done.runs.iter().all(|r| r.attempt == 1));
}

/// Two maintenance passes at once (two replicas) promote each due timer once and expire each
/// lease once.
async fn concurrent_maintenance_acts_once(h: &Harness) {
    const N: usize = 300;
    let t = t0();
    let w = h.worker("w1", &["t.lease"], t).await;
    let mut leased = Vec::new();
    for _ in 0..N {
        let mut r = new_run("t.lease", t);
        r.retries = 1;
        leased.push(r);
    }
    let leased = insert(&*h.store, leased, t).await;
    let timed: Vec<NewRun> = (0..N).map(|_| new_run("t.timer", t + secs(5.0))).collect();
    let timed = insert(&*h.store, timed, t).await;
    assert_eq!(
        h.store
            .claim(&w, N as u32, t, LEASE, None)
            .await
            .unwrap()
            .len(),
        N
    );

    let other = h.reopen().await;
    let at = t + secs(10.0);
    let (a, b) = tokio::join!(h.store.maintain(at, 100_000), other.maintain(at, 100_000));
    let (a, b) = (a.unwrap(), b.unwrap());
    other.close().await;
    assert_eq!(a.promoted + b.promoted, N, "{a:?} {b:?}");
    assert_eq!(a.expired + b.expired, N, "{a:?} {b:?}");
    let mut depth = h.store.queue_depth().await.unwrap();
    depth.sort();
    assert_eq!(
        depth,
        vec![
            queued(TENANT.to_string(), "t.lease", 5, N as u64),
            queued(TENANT.to_string(), "t.timer", 5, N as u64)
        ]
    );
    for id in leased.iter().step_by(37) {
        let evs: Vec<Ev> = events(&*h.store, *id).await.iter().map(ev).collect();
        assert_eq!(evs.len(), 3, "{evs:?}");
        assert_eq!(
            (evs[2].0, evs[2].1, evs[2].2),
            (Some(RunStatus::Running), RunStatus::Queued, 1)
        );
    }
    for id in timed.iter().step_by(37) {
        assert_eq!(events(&*h.store, *id).await.len(), 2);
    }
}

/// PostgreSQL pushes other engines' changes (`LISTEN/NOTIFY`), and keeps doing so after its
/// connection was lost; SQLite has no such channel.
async fn wake_ups(h: &Harness) {
    let mut rx = match h.store.subscribe().await.unwrap() {
        Some(rx) => rx,
        None => {
            assert!(!h.pg, "PostgreSQL pushes wake-ups");
            return;
        }
    };
    let other = h.reopen().await;
    let t = Utc::now();
    async fn expect(rx: &mut tokio::sync::mpsc::UnboundedReceiver<Wake>, want: Wake, what: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(w)) if w == want => return,
                Ok(Some(_)) => continue,
                Ok(None) => panic!("wake-up channel closed waiting for {want:?} ({what})"),
                Err(_) => panic!("no {want:?} wake-up within 10s after {what}"),
            }
        }
    }
    let drain =
        |rx: &mut tokio::sync::mpsc::UnboundedReceiver<Wake>| while rx.try_recv().is_ok() {};

    let queued = insert(&*other, vec![new_run("t.w", t)], t).await[0];
    expect(&mut rx, Wake::Work, "inserting a queued run").await;
    insert(&*other, vec![new_run("t.w", t + secs(3600.0))], t).await;
    expect(&mut rx, Wake::Timers, "inserting a delayed run").await;
    other.cancel_run(TENANT, queued, t).await.unwrap();
    expect(&mut rx, Wake::Finished, "cancelling a run").await;
    let w = worker_on(&*other, TENANT, "w1", &["t.w"], t).await;
    let id = insert(&*other, vec![new_run("t.w", t)], t).await[0];
    other.claim(&w, 1, t, LEASE, None).await.unwrap();
    drain(&mut rx);
    other.complete(&w, &[ok(id, 1, json!(1))], t).await.unwrap();
    expect(&mut rx, Wake::Finished, "completing a run").await;
    // A claim for several tasks locks the first runs of each, and takes fewer: those it left
    // were hidden from other claims meanwhile, so it wakes them.
    let w2 = worker_on(&*other, TENANT, "w2", &["t.w", "t.x"], t).await;
    insert(&*other, vec![new_run("t.w", t), new_run("t.x", t)], t).await;
    expect(&mut rx, Wake::Work, "inserting queued runs").await;
    drain(&mut rx);
    assert_eq!(other.claim(&w2, 1, t, LEASE, None).await.unwrap().len(), 1);
    expect(&mut rx, Wake::Work, "claiming one of two runs of two tasks").await;
    let rec = cron_record("c1", "t.w", "* * * * *", Value::Null, t);
    drain(&mut rx);
    other.upsert_cron(&rec).await.unwrap();
    expect(&mut rx, Wake::Crons, "creating a cron").await;

    // Kill the listening connection: the listener reconnects and wake-ups flow again.
    let admin = admin_url().unwrap();
    let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
    let db = h
        .url
        .rsplit('/')
        .next()
        .unwrap()
        .split('?')
        .next()
        .unwrap()
        .to_string();
    let killed: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND query ILIKE 'LISTEN%'",
    )
    .bind(&db)
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert!(!killed.is_empty(), "found the listening connection");
    let _ = conn.close().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    drain(&mut rx);
    let mut ok_after = false;
    for _ in 0..20 {
        insert(&*other, vec![new_run("t.w", Utc::now())], Utc::now()).await;
        if let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(500), rx.recv()).await {
            ok_after = true;
            break;
        }
    }
    assert!(
        ok_after,
        "wake-ups flow again after the connection was lost"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    drain(&mut rx);
    insert(&*other, vec![new_run("t.w", Utc::now())], Utc::now()).await;
    expect(&mut rx, Wake::Work, "inserting after a reconnect").await;
    other.close().await;
}

/// The engine over the store: schedule, claim through an exchange, complete, wait. On
/// PostgreSQL, a second engine on the same database wakes its long-polling worker through
/// NOTIFY, long before its (here very slow) polling would.
async fn engine_end_to_end(h: &Harness) {
    let cfg = EngineConfig {
        database_url: h.url.clone(),
        lease: Duration::from_secs(5),
        poll_interval: if h.pg {
            Duration::from_secs(30)
        } else {
            Duration::from_millis(100)
        },
        ..EngineConfig::default()
    };
    let engine = Engine::with_store(h.store.clone(), cfg.clone());
    let session = engine
        .register_worker(
            TENANT,
            WorkerRegistration {
                name: "e2e".into(),
                tasks: vec![TaskDef::new("t.e2e")],
                slots: 2,
                labels: BTreeMap::new(),
                workflows: Vec::new(),
            },
        )
        .await
        .unwrap();
    let scheduler = if h.pg {
        Engine::with_store(h.reopen().await, cfg.clone())
    } else {
        engine.clone()
    };
    // Let the engines' wake-up relays subscribe before anything happens.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let waiting = {
        let engine = engine.clone();
        let id = session.worker_id.clone();
        tokio::spawn(async move {
            let started = tokio::time::Instant::now();
            let r = engine
                .exchange(
                    TENANT,
                    &id,
                    ExchangeRequest {
                        want: 1,
                        wait_ms: 20_000,
                        ..Default::default()
                    },
                )
                .await
                .unwrap();
            (r, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let scheduled = scheduler
        .schedule(
            TENANT,
            ScheduleRequest {
                task: "t.e2e".into(),
                input: json!({"k": "v"}),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(scheduled.created);
    let (resp, waited) = waiting.await.unwrap();
    assert_eq!(resp.assignments.len(), 1, "the idle worker got the run");
    assert!(
        waited < Duration::from_secs(10),
        "woken at once, not by polling: {waited:?}"
    );
    let a = &resp.assignments[0];
    assert_eq!(
        (a.run_id, a.input.clone()),
        (scheduled.run.id, json!({"k": "v"}))
    );

    let waiter = {
        let scheduler = scheduler.clone();
        let id = a.run_id;
        tokio::spawn(async move {
            scheduler
                .wait_run(TENANT, id, Duration::from_secs(20))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    engine
        .exchange(
            TENANT,
            &session.worker_id,
            ExchangeRequest {
                completions: vec![ok(a.run_id, a.attempt, json!("done"))],
                want: 1,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let started = tokio::time::Instant::now();
    let done = waiter.await.unwrap().unwrap();
    assert_eq!(done.status, RunStatus::Succeeded);
    assert_eq!(done.output, Some(json!("done")));
    assert!(started.elapsed() < Duration::from_secs(10));
    let evs: Vec<RunStatus> = scheduler
        .run_events(TENANT, a.run_id, None)
        .await
        .unwrap()
        .iter()
        .map(|e| e.to)
        .collect();
    assert_eq!(
        evs,
        [RunStatus::Queued, RunStatus::Running, RunStatus::Succeeded]
    );
    engine
        .deregister_worker(TENANT, &session.worker_id)
        .await
        .unwrap();
    if h.pg {
        scheduler.shutdown().await;
    }
    engine.shutdown().await;
}

/// Checkpoints of the attempt holding a run are stored with an event each; stale ones are
/// refused. A suspended run gives its slot back and is re-dispatched at its wake-up time
/// without counting an attempt, its steps kept.
async fn durable_steps_and_suspension(h: &Harness) {
    let s = &*h.store;
    let t = t0();
    let w = h.worker("w1", &["t.s"], t).await;
    let other = h.worker("w2", &["t.s"], t).await;
    let id = insert(s, vec![new_run("t.s", t)], t).await[0];
    claim_ids(s, &w, 1, t).await;
    let cp = |position: u32,
              name: &str,
              status: StepStatus,
              output: Option<Value>,
              error: Option<&str>| {
        StepCheckpoint {
            run_id: id,
            attempt: 1,
            position,
            name: name.into(),
            status,
            output,
            error: error.map(Into::into),
        }
    };
    s.checkpoint_step(
        &w,
        &cp(0, "upload", StepStatus::Running, None, None),
        t + secs(1.0),
    )
    .await
    .unwrap();
    s.checkpoint_step(
        &w,
        &cp(
            0,
            "upload",
            StepStatus::Succeeded,
            Some(json!({"url": "u"})),
            None,
        ),
        t + secs(2.0),
    )
    .await
    .unwrap();
    s.checkpoint_step(
        &w,
        &cp(1, "resize", StepStatus::Running, None, None),
        t + secs(3.0),
    )
    .await
    .unwrap();
    s.checkpoint_step(
        &w,
        &cp(1, "resize", StepStatus::Failed, None, Some("oops")),
        t + secs(3.5),
    )
    .await
    .unwrap();
    let steps = s.run_steps(TENANT, id).await.unwrap();
    assert_eq!(steps.len(), 2);
    assert_eq!(
        (steps[0].position, steps[0].name.as_str(), steps[0].status),
        (0, "upload", StepStatus::Succeeded)
    );
    assert_eq!(steps[0].output, Some(json!({"url": "u"})));
    assert_eq!(
        (steps[0].attempt, steps[0].started_at, steps[0].finished_at),
        (1, t + secs(1.0), Some(t + secs(2.0)))
    );
    assert_eq!(
        (steps[1].status, steps[1].error.as_deref()),
        (StepStatus::Failed, Some("oops"))
    );
    assert_eq!(
        (steps[1].started_at, steps[1].finished_at),
        (t + secs(3.0), Some(t + secs(3.5)))
    );
    assert!(s.run_steps("other-tenant", id).await.unwrap().is_empty());
    let reasons: Vec<Ev> = events(s, id).await.iter().skip(2).map(ev).collect();
    let w1 = Some("w1".to_string());
    let running = Some(RunStatus::Running);
    assert_eq!(
        reasons,
        vec![
            (
                running,
                RunStatus::Running,
                1,
                w1.clone(),
                "step 0 \"upload\" running".into()
            ),
            (
                running,
                RunStatus::Running,
                1,
                w1.clone(),
                "step 0 \"upload\" succeeded".into()
            ),
            (
                running,
                RunStatus::Running,
                1,
                w1.clone(),
                "step 1 \"resize\" running".into()
            ),
            (
                running,
                RunStatus::Running,
                1,
                w1.clone(),
                "step 1 \"resize\" failed: oops".into()
            ),
        ]
    );

    // Stale checkpoints: another attempt, another worker, an unknown run.
    let mut stale = cp(2, "x", StepStatus::Running, None, None);
    stale.attempt = 2;
    let e = s.checkpoint_step(&w, &stale, t).await.unwrap_err();
    assert!(
        matches!(
            e,
            Error::InvalidTransition {
                action: "checkpoint",
                ..
            }
        ),
        "{e:?}"
    );
    let e = s
        .checkpoint_step(&other, &cp(2, "x", StepStatus::Running, None, None), t)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::InvalidTransition {
                action: "checkpoint",
                ..
            }
        ),
        "{e:?}"
    );
    let mut unknown = cp(2, "x", StepStatus::Running, None, None);
    unknown.run_id = RunId::new();
    let e = s.checkpoint_step(&w, &unknown, t).await.unwrap_err();
    assert!(matches!(e, Error::NotFound { .. }), "{e:?}");
    assert_eq!(s.run_steps(TENANT, id).await.unwrap().len(), 2);

    // A long durable sleep.
    let until = t + secs(100.0);
    let changed = s
        .complete(
            &w,
            &[outcome(id, 1, Outcome::Suspended { until })],
            t + secs(4.0),
        )
        .await
        .unwrap();
    assert_eq!(changed, 1);
    let snap = get(s, id).await;
    assert_eq!(
        (snap.status, snap.attempt, snap.run_at),
        (RunStatus::Scheduled, 0, until)
    );
    assert_eq!(
        ev(events(s, id).await.last().unwrap()),
        (
            running,
            RunStatus::Scheduled,
            0,
            w1.clone(),
            format!(
                "suspended: sleeping until {}; its worker slot is free",
                until.to_rfc3339()
            )
        )
    );
    assert!(s
        .list_workers(TENANT, t)
        .await
        .unwrap()
        .iter()
        .all(|w| w.held_runs.is_empty()));
    let m = s.maintain(t + secs(99.0), 10).await.unwrap();
    assert_eq!((m.promoted, m.next_due), (0, Some(until)));
    assert_eq!(s.maintain(until, 10).await.unwrap().promoted, 1);
    let a = s.claim(&w, 1, until, LEASE, None).await.unwrap();
    assert_eq!(a[0].attempt, 1, "the sleep did not count as an attempt");
    assert_eq!(
        s.run_steps(TENANT, id).await.unwrap().len(),
        2,
        "steps are kept"
    );

    // A wake-up time already past parks the run until now.
    let now = until + secs(1.0);
    s.complete(&w, &[outcome(id, 1, Outcome::Suspended { until: t })], now)
        .await
        .unwrap();
    assert_eq!(get(s, id).await.run_at, now);
    assert_eq!(s.maintain(now, 10).await.unwrap().promoted, 1);
}

/// `delete_runs` and `purge` remove runs with everything that refers to them.
/// A run past its expiry that has not started ends cancelled with error `expired`; one that
/// started, or whose expiry is later, is left alone; the next expiry is reported.
async fn expiries(h: &Harness) {
    let s = &*h.store;
    let t = t0();
    assert_eq!(s.expire_due(t, 100).await.unwrap(), (0, None));
    let mut queued = new_run("t.x", t);
    queued.expires_at = Some(t + secs(10.0));
    let mut delayed = new_run("t.x", t + secs(5.0));
    delayed.expires_at = Some(t + secs(10.0));
    let mut later = new_run("t.x", t);
    later.expires_at = Some(t + secs(60.0));
    let mut started = new_run("t.y", t);
    started.expires_at = Some(t + secs(10.0));
    let ids = insert(s, vec![queued, delayed, later, started], t).await;
    assert_eq!(get(s, ids[0]).await.expires_at, Some(t + secs(10.0)));
    let w = h.worker("wy", &["t.y"], t).await;
    let claimed = s
        .claim(&w, 10, t + secs(1.0), Duration::from_secs(30), None)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(
        s.expire_due(t + secs(9.0), 100).await.unwrap(),
        (0, Some(t + secs(10.0))),
        "nothing due yet"
    );
    let (expired, next) = s.expire_due(t + secs(10.0), 100).await.unwrap();
    assert_eq!(
        expired, 2,
        "the queued and the delayed run; not the started one"
    );
    assert_eq!(next, Some(t + secs(60.0)));
    for id in &ids[..2] {
        let run = get(s, *id).await;
        assert_eq!(run.status, RunStatus::Cancelled);
        assert_eq!(run.error.as_deref(), Some("expired"));
        let events = s.run_events(TENANT, *id).await.unwrap();
        assert!(events
            .last()
            .unwrap()
            .reason
            .starts_with("expired: not started by"));
    }
    assert_eq!(get(s, ids[2]).await.status, RunStatus::Queued);
    assert_eq!(get(s, ids[3]).await.status, RunStatus::Running);
    // A queued run that expired is gone from the queue: nothing to claim.
    let w = h.worker("wx", &["t.x"], t).await;
    let claimed = s
        .claim(&w, 10, t + secs(11.0), Duration::from_secs(30), None)
        .await
        .unwrap();
    assert_eq!(
        claimed.iter().map(|a| a.run_id).collect::<Vec<_>>(),
        vec![ids[2]]
    );
}

async fn delete_and_purge(h: &Harness) {
    let s = &*h.store;
    let t = t0();
    let w = h.worker("w1", &["t.p"], t).await;
    let ids = insert(s, (0..5).map(|_| new_run("t.p", t)).collect(), t).await;
    claim_ids(s, &w, 3, t).await;
    s.complete(&w, &[ok(ids[0], 1, json!(0))], t + secs(1.0))
        .await
        .unwrap();
    s.complete(&w, &[failed(ids[1], 1, "x", false)], t + secs(5.0))
        .await
        .unwrap();
    s.checkpoint_step(
        &w,
        &StepCheckpoint {
            run_id: ids[2],
            attempt: 1,
            position: 0,
            name: "s".into(),
            status: StepStatus::Succeeded,
            output: Some(json!(1)),
            error: None,
        },
        t,
    )
    .await
    .unwrap();
    s.complete(&w, &[outcome(ids[2], 1, Outcome::Cancelled)], t + secs(6.0))
        .await
        .unwrap();

    assert_eq!(s.purge(t + secs(3.0), 100).await.unwrap(), 1);
    assert!(s.get_run(TENANT, ids[0]).await.unwrap().is_none());
    assert!(matches!(
        s.run_events(TENANT, ids[0]).await.unwrap_err(),
        Error::NotFound { .. }
    ));
    assert_eq!(
        s.purge(t + secs(10.0), 1).await.unwrap(),
        1,
        "the limit holds"
    );
    assert_eq!(s.purge(t + secs(10.0), 100).await.unwrap(), 1);
    assert!(s.run_steps(TENANT, ids[2]).await.unwrap().is_empty());
    assert_eq!(
        s.purge(t + secs(10.0), 100).await.unwrap(),
        0,
        "unfinished runs stay"
    );

    assert_eq!(s.delete_runs("other-tenant", &[ids[3]]).await.unwrap(), 0);
    assert_eq!(
        s.delete_runs(TENANT, &[ids[3], RunId::new()])
            .await
            .unwrap(),
        1
    );
    assert!(s.get_run(TENANT, ids[3]).await.unwrap().is_none());
    assert_eq!(
        claim_ids(s, &w, 10, t).await,
        vec![ids[4]],
        "its queue entry went too"
    );
    let left = s.list_runs(TENANT, &ListFilter::default()).await.unwrap();
    assert_eq!(
        left.runs.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![ids[4]]
    );
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL only

/// A password in the URL appears in no error, and connection failures are `Connection` errors
/// naming the redacted URL. Needs no server.
#[tokio::test]
async fn postgres_errors_hide_the_password() {
    let e = store::open("postgres://owl:hunter2-secret@127.0.0.1:1/owlclaw")
        .await
        .unwrap_err();
    match &e {
        Error::Connection { url, .. } => assert_eq!(url, "postgres://owl:***@127.0.0.1:1/owlclaw"),
        other => panic!("expected a connection error, got {other:?}"),
    }
    assert!(!format!("{e} {e:?}").contains("hunter2"), "{e:?}");
    let e = store::open("postgres://owl@127.0.0.1:1/owlclaw?password=hunter2-secret")
        .await
        .unwrap_err();
    match &e {
        Error::Connection { url, .. } => {
            assert_eq!(url, "postgres://owl@127.0.0.1:1/owlclaw?password=***")
        }
        other => panic!("expected a connection error, got {other:?}"),
    }
    assert!(!format!("{e} {e:?}").contains("hunter2"), "{e:?}");
    let e = store::open("mysql://root:hunter2-secret@h/db")
        .await
        .unwrap_err();
    assert!(!format!("{e} {e:?}").contains("hunter2"), "{e:?}");
}

/// The PostgreSQL store vacuums the tables its claims and completions leave dead rows in
/// itself after enough claims (the queue's hot tables, and `runs`: their dead index entries would
/// slow every claim until autovacuum came, if it does), in the background, and claims go on
/// meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_vacuums_the_tables_claims_churn() {
    let Some(db) = PgDb::create().await else {
        return;
    };
    let store = owlclaw_engine::store::postgres::PostgresStore::open(&db.url)
        .await
        .unwrap()
        .vacuum_every(50)
        .vacuum_runs_every(50);
    let t = t0();
    let w = worker_on(&store, TENANT, "w1", &["t.v"], t).await;
    let ids = insert(&store, (0..120).map(|_| new_run("t.v", t)).collect(), t).await;
    let mut claimed = Vec::new();
    for _ in 0..12 {
        claimed.extend(claim_ids(&store, &w, 10, t).await);
    }
    assert_eq!(claimed, ids, "every run claimed once, in order");
    let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let counts: Vec<(String, i64)> = sqlx::query_as(
            "SELECT relname::text, vacuum_count FROM pg_stat_user_tables \
             WHERE relname IN ('queue', 'leases', 'timers', 'runs') ORDER BY relname",
        )
        .fetch_all(&mut conn)
        .await
        .unwrap();
        if store.vacuums() >= 1
            && store.runs_vacuums() >= 1
            && counts.len() == 4
            && counts.iter().all(|(_, n)| *n >= 1)
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no vacuum of the tables within 30 s after 120 claims: {counts:?}, {} of the queue \
             tables and {} of runs done",
            store.vacuums(),
            store.runs_vacuums()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = conn.close().await;
    store.close().await;
}

/// Replicas starting at once on a fresh database migrate it once, without errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_concurrent_migrations() {
    let Some(db) = PgDb::create().await else {
        return;
    };
    // Four replicas starting at once (joined, not spawned: sqlx's migration future is not
    // `Send` in general).
    let (a, b, c, d) = tokio::join!(
        store::open(&db.url),
        store::open(&db.url),
        store::open(&db.url),
        store::open(&db.url)
    );
    let stores = vec![a, b, c, d];
    for s in &stores {
        assert!(s.is_ok(), "{:?}", s.as_ref().err());
    }
    for s in stores.into_iter().flatten() {
        s.ping().await.unwrap();
        s.close().await;
    }
    let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let versions: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations ORDER BY version")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    let migrations = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres"))
        .unwrap()
        .count() as i64;
    assert_eq!(
        versions,
        (1..=migrations).collect::<Vec<_>>(),
        "every migration, once"
    );
    let _ = conn.close().await;
}

/// The life-cycle state of a stored run, as the pure module sees it.
fn state_of(
    snap: &owlclaw_core::wire::RunSnapshot,
    worker_id: Option<&str>,
) -> lifecycle::RunState {
    lifecycle::RunState {
        id: snap.id,
        status: snap.status,
        attempt: snap.attempt,
        max_attempts: snap.max_attempts,
        retries: snap.max_attempts - 1,
        backoff: Backoff::default(),
        timeout: Duration::from_millis(snap.timeout_ms),
        worker: snap.worker.clone(),
        worker_id: worker_id.map(str::to_string),
        error: snap.error.clone(),
        errors: None,
        run_at: snap.run_at,
        finished_at: snap.finished_at,
    }
}

/// A timer coming due, a claim and a success are written by bulk SQL in both stores (the hot
/// path), not through `lifecycle::decide`: they must write the rows the pure module decides.
async fn fast_paths_write_the_life_cycle_rows(h: &Harness) {
    let s = &*h.store;
    let t = t0();
    let w = h.worker("w-fast", &["t.fast"], t).await;
    let id = insert(s, vec![new_run("t.fast", t + secs(1.0))], t).await[0];
    let mut expected = Vec::new();

    let due_at = t + secs(2.0);
    let before = get(s, id).await;
    let change = lifecycle::decide(&state_of(&before, None), Happening::Due, due_at)
        .unwrap()
        .expect("a scheduled run comes due");
    expected.push(change.event.clone());
    assert_eq!(s.maintain(due_at, 100).await.unwrap().promoted, 1);
    let after = get(s, id).await;
    assert_eq!(after.status, change.status);
    assert_eq!(after.attempt, change.attempt);

    let claim_at = t + secs(3.0);
    let change = lifecycle::decide(
        &state_of(&after, None),
        Happening::Claimed {
            worker_id: &w.id,
            worker: &w.name,
        },
        claim_at,
    )
    .unwrap()
    .expect("a queued run is claimed");
    expected.push(change.event.clone());
    assert_eq!(claim_ids(s, &w, 1, claim_at).await, vec![id]);
    let after = get(s, id).await;
    assert_eq!(
        (after.status, after.attempt),
        (change.status, change.attempt)
    );
    assert_eq!(after.worker, change.worker);
    assert_eq!(after.started_at, Some(claim_at));

    let done_at = t + secs(4.0);
    let out = Outcome::Succeeded {
        output: json!({"ok": true}),
    };
    let change = lifecycle::decide(
        &state_of(&after, Some(&w.id)),
        Happening::Reported {
            worker_id: &w.id,
            attempt: after.attempt,
            outcome: &out,
        },
        done_at,
    )
    .unwrap()
    .expect("the holder's success applies");
    expected.push(change.event.clone());
    assert_eq!(
        s.complete(&w, &[ok(id, after.attempt, json!({"ok": true}))], done_at)
            .await
            .unwrap(),
        1
    );
    let after = get(s, id).await;
    assert_eq!(after.status, change.status);
    assert_eq!(after.finished_at, change.finished_at);
    assert_eq!(after.error, change.error);

    let stored: Vec<lifecycle::EventRow> = events(s, id)
        .await
        .iter()
        .skip(1) // the insert's own event
        .map(|e| lifecycle::EventRow {
            from: e.from,
            to: e.to,
            attempt: e.attempt,
            worker: e.worker.clone(),
            reason: e.reason.clone(),
        })
        .collect();
    assert_eq!(stored, expected);
}

/// A database error keeps the driver's error as its `source()`, with its type, and says whether
/// the database was unreachable (what the API answers 503 `unavailable` for).
async fn errors_keep_their_cause(h: &Harness) {
    let other = h.reopen().await;
    other.close().await;
    let err = other.get_run(TENANT, RunId::new()).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Database {
                unavailable: true,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.code(), "unavailable");
    assert!(err.is_transient());
    let source = std::error::Error::source(&err).expect("the driver's error is kept");
    if h.pg {
        assert!(
            matches!(
                source.downcast_ref::<sqlx::Error>(),
                Some(sqlx::Error::PoolClosed)
            ),
            "{source:?}"
        );
    } else {
        // The SQLite store's connections live on its own threads: once closed, the cause is
        // that typed refusal (there is no driver call to fail).
        assert_eq!(
            source.downcast_ref::<store::sqlite::StoreClosed>(),
            Some(&store::sqlite::StoreClosed),
            "{source:?}"
        );
    }
}

fn req(id: &str, resent: bool) -> Option<store::ClaimRequest<'_>> {
    Some(store::ClaimRequest { id, resent })
}

/// A worker's exchange request whose answer was lost (the engine died after committing the
/// claim) is retried with the same id: it gets the same runs back, without another attempt or
/// another claim, and new ones only for its other slots; with fewer slots, the rest go back to
/// the queue at once, not counted as an attempt, and their event says why.
async fn a_retried_request_gets_its_claims_back(h: &Harness) {
    let s = &*h.store;
    let t = t0();
    let w = h.worker("w-retry", &["t.r"], t).await;
    let ids = insert(s, (0..4).map(|_| new_run("t.r", t)).collect(), t).await;
    let first = s
        .claim(&w, 2, t + secs(1.0), LEASE, req("req-1", false))
        .await
        .unwrap();
    let got: Vec<RunId> = first.iter().map(|a| a.run_id).collect();
    assert_eq!(got, ids[..2].to_vec());

    // The retry: the same two runs, same attempt, and one more for the third slot.
    let again = s
        .claim(&w, 3, t + secs(2.0), LEASE, req("req-1", true))
        .await
        .unwrap();
    let got: Vec<(RunId, u32)> = again.iter().map(|a| (a.run_id, a.attempt)).collect();
    assert_eq!(got, vec![(ids[0], 1), (ids[1], 1), (ids[2], 1)]);
    for id in &ids[..3] {
        let claims = events(s, *id)
            .await
            .iter()
            .filter(|e| e.to == RunStatus::Running)
            .count();
        assert_eq!(claims, 1, "claimed once: {id}");
    }
    // The lease was renewed from the retry's time.
    assert_eq!(s.maintain(t + secs(11.5), 100).await.unwrap().expired, 0);

    // Another request id gets new runs only; a retry with one slot keeps one and hands back the
    // others at once.
    let other = s
        .claim(&w, 5, t + secs(3.0), LEASE, req("req-2", false))
        .await
        .unwrap();
    assert_eq!(
        other.iter().map(|a| a.run_id).collect::<Vec<_>>(),
        vec![ids[3]]
    );
    let one = s
        .claim(&w, 1, t + secs(4.0), LEASE, req("req-1", true))
        .await
        .unwrap();
    assert_eq!(
        one.iter().map(|a| a.run_id).collect::<Vec<_>>(),
        vec![ids[0]]
    );
    for id in &ids[1..3] {
        let run = get(s, *id).await;
        assert_eq!((run.status, run.attempt), (RunStatus::Queued, 0));
        let last = events(s, *id).await.pop().unwrap();
        assert_eq!(
            ev(&last),
            (
                Some(RunStatus::Running),
                RunStatus::Queued,
                0,
                Some("w-retry".into()),
                "handed back: the answer to its claim never reached worker w-retry; not counted as an attempt".into()
            )
        );
    }
    // Another worker with the same request id gets nothing of the first worker's.
    let w2 = h.worker("w-other", &["t.r"], t).await;
    let theirs = s
        .claim(&w2, 5, t + secs(5.0), LEASE, req("req-1", true))
        .await
        .unwrap();
    let got: Vec<RunId> = theirs.iter().map(|a| a.run_id).collect();
    assert_eq!(
        got,
        vec![ids[1], ids[2]],
        "only the handed-back runs, claimed anew"
    );
}

/// A checkpoint sent again because its answer was lost (same step, status and attempt) is
/// accepted and writes nothing more: one event per step change.
async fn a_resent_checkpoint_writes_one_event(h: &Harness) {
    let s = &*h.store;
    let t = t0();
    let w = h.worker("w-resend", &["t.cp"], t).await;
    let id = insert(s, vec![new_run("t.cp", t)], t).await[0];
    claim_ids(s, &w, 1, t).await;
    let done = StepCheckpoint {
        run_id: id,
        attempt: 1,
        position: 0,
        name: "charge".into(),
        status: StepStatus::Succeeded,
        output: Some(json!(7)),
        error: None,
    };
    for at in [1.0, 2.0] {
        s.checkpoint_step(&w, &done, t + secs(at)).await.unwrap();
    }
    let steps: Vec<String> = events(s, id)
        .await
        .into_iter()
        .filter(|e| e.reason.starts_with("step "))
        .map(|e| e.reason)
        .collect();
    assert_eq!(steps, ["step 0 \"charge\" succeeded"]);
    let recorded = s.run_steps(TENANT, id).await.unwrap();
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].output, Some(json!(7)));
}

async fn links_of_finished_runs(h: &Harness) {
    let s = &*h.store;
    let t = t0();
    assert_eq!(s.finished_links(100).await.unwrap().0.len(), 0);
    assert!(!s.finished_links(100).await.unwrap().1, "nothing open");
    let mut linked = new_run("t.l", t);
    linked.links = store::RunLinks {
        on_success: vec!["t.next".into(), "t.next".into()],
        on_error: vec!["t.report".into()],
    };
    let mut failing = new_run("t.l", t);
    failing.links = store::RunLinks {
        on_success: vec![],
        on_error: vec!["t.report".into()],
    };
    let plain = new_run("t.l", t);
    let ids = insert(s, vec![linked, failing, plain], t).await;
    // Open, none finished.
    let (finished, open) = s.finished_links(100).await.unwrap();
    assert!(finished.is_empty());
    assert!(open);
    let w = h.worker("wl", &["t.l"], t).await;
    assert_eq!(
        s.claim(&w, 10, t, Duration::from_secs(30), None)
            .await
            .unwrap()
            .len(),
        3
    );
    s.complete(
        &w,
        &[
            ok(ids[0], 1, json!(1)),
            failed(ids[1], 1, "boom", false),
            ok(ids[2], 1, json!(3)),
        ],
        t,
    )
    .await
    .unwrap();
    let (finished, open) = s.finished_links(100).await.unwrap();
    assert!(open);
    let got: Vec<(RunId, store::RunLinks)> =
        finished.into_iter().map(|f| (f.id, f.links)).collect();
    assert_eq!(
        got,
        vec![
            (
                ids[0],
                store::RunLinks {
                    on_success: vec!["t.next".into(), "t.next".into()],
                    on_error: vec!["t.report".into()],
                }
            ),
            (
                ids[1],
                store::RunLinks {
                    on_success: vec![],
                    on_error: vec!["t.report".into()],
                }
            ),
        ],
        "the finished runs with links, oldest first; not the run without"
    );
    s.links_done(TENANT, ids[0]).await.unwrap();
    s.links_done(TENANT, ids[1]).await.unwrap();
    let (finished, open) = s.finished_links(100).await.unwrap();
    assert!(finished.is_empty() && !open);
    // A manual retry opens its links again; deleting the run deletes them.
    s.retry_run(TENANT, ids[1], t + secs(1.0)).await.unwrap();
    let (finished, open) = s.finished_links(100).await.unwrap();
    assert!(finished.is_empty() && open, "open again, not finished");
    assert_eq!(s.delete_runs(TENANT, &[ids[1]]).await.unwrap(), 1);
    assert!(!s.finished_links(100).await.unwrap().1);
}

async fn skipped_cron_ticks_and_policies(h: &Harness) {
    let s = &*h.store;
    let t = t0();
    let mut rec = cron_record("c-policies", "t.cron", "@every 1m", json!(null), t);
    rec.schedule.overlap = owlclaw_core::cron::Overlap::Skip;
    rec.schedule.catch_up = owlclaw_core::cron::CatchUp::All;
    s.upsert_cron(&rec).await.unwrap();
    let c = listed_cron(s).await;
    assert_eq!(
        (c.overlap, c.catch_up, c.last_tick, c.last_fired),
        (
            owlclaw_core::cron::Overlap::Skip,
            owlclaw_core::cron::CatchUp::All,
            None,
            None
        )
    );
    let tick1 = t + secs(60.0);
    assert!(s
        .fire_cron(&rec, tick1, cron_run(&rec, tick1), t)
        .await
        .unwrap());
    let c = listed_cron(s).await;
    assert_eq!((c.last_tick, c.last_fired), (Some(tick1), Some(tick1)));
    // A skipped tick moves the last tick, not the last fired one; once, and never backwards.
    let tick2 = tick1 + secs(60.0);
    assert!(s.skip_cron_tick(&rec, tick2).await.unwrap());
    assert!(!s.skip_cron_tick(&rec, tick2).await.unwrap(), "once");
    assert!(
        !s.skip_cron_tick(&rec, tick1).await.unwrap(),
        "never backwards"
    );
    let c = listed_cron(s).await;
    assert_eq!((c.last_tick, c.last_fired), (Some(tick2), Some(tick1)));
    assert!(s
        .get_run(TENANT, cron_run(&rec, tick2).id)
        .await
        .unwrap()
        .is_none());
    // Changing the policies keeps the ticks.
    let mut changed = rec.clone();
    changed.schedule.overlap = owlclaw_core::cron::Overlap::BufferOne;
    changed.schedule.catch_up = owlclaw_core::cron::CatchUp::None;
    s.upsert_cron(&changed).await.unwrap();
    let c = listed_cron(s).await;
    assert_eq!(
        (c.overlap, c.catch_up, c.last_tick, c.last_fired),
        (
            owlclaw_core::cron::Overlap::BufferOne,
            owlclaw_core::cron::CatchUp::None,
            Some(tick2),
            Some(tick1)
        )
    );
}

/// The tenant's one cron schedule.
async fn listed_cron(s: &dyn Store) -> CronSchedule {
    s.list_crons(TENANT).await.unwrap().remove(0)
}

/// `act_on_runs` (an operator's bulk action): each named run once, in one transaction; runs
/// whose status refuses the action, and unknown ids, change nothing; a retry opens a run's
/// links again, as a single retry does.
async fn bulk_cancel_and_retry(h: &Harness) {
    let s = &*h.store;
    let t = t0();
    let w = h.worker("wb", &["t.b"], t).await;
    let mut linked = new_run("t.b", t);
    linked.links = store::RunLinks {
        on_success: vec!["t.next".into()],
        on_error: vec![],
    };
    let ids = insert(
        s,
        vec![
            new_run("t.b", t),
            new_run("t.b", t),
            new_run("t.b", t + secs(60.0)),
            linked,
        ],
        t,
    )
    .await;
    let (running, done, scheduled, queued) = (ids[0], ids[1], ids[2], ids[3]);
    assert_eq!(claim_ids(s, &w, 2, t).await, vec![running, done]);
    s.complete(&w, &[ok(done, 1, json!(1))], t).await.unwrap();

    let all = [running, done, scheduled, queued, RunId::new(), queued];
    let changed = s
        .act_on_runs(TENANT, &all, false, t + secs(1.0))
        .await
        .unwrap();
    assert_eq!(
        changed, 3,
        "running, scheduled and queued; not the finished one"
    );
    for id in [running, scheduled, queued] {
        let snap = get(s, id).await;
        assert_eq!(
            (snap.status, snap.finished_at),
            (RunStatus::Cancelled, Some(t + secs(1.0)))
        );
    }
    assert_eq!(get(s, done).await.status, RunStatus::Succeeded);
    let reasons: Vec<String> = events(s, queued)
        .await
        .into_iter()
        .map(|e| e.reason)
        .collect();
    assert_eq!(
        reasons.len(),
        2,
        "one cancel event, named twice: {reasons:?}"
    );
    assert_eq!(
        claim_ids(s, &w, 10, t + secs(120.0)).await,
        Vec::<RunId>::new(),
        "nothing left to claim"
    );
    let (finished, _) = s.finished_links(100).await.unwrap();
    for f in finished {
        s.links_done(TENANT, f.id).await.unwrap();
    }
    assert!(!s.finished_links(100).await.unwrap().1, "no link open");

    let changed = s
        .act_on_runs(TENANT, &[queued, done, scheduled], true, t + secs(2.0))
        .await
        .unwrap();
    assert_eq!(changed, 2, "a succeeded run is not retried");
    assert_eq!(get(s, queued).await.status, RunStatus::Queued);
    assert_eq!(get(s, scheduled).await.status, RunStatus::Queued);
    assert_eq!(get(s, running).await.status, RunStatus::Cancelled);
    assert!(
        s.finished_links(100).await.unwrap().1,
        "the retried run's links are open again"
    );
    let mut claimed = claim_ids(s, &w, 10, t + secs(2.0)).await;
    claimed.sort();
    let mut want = vec![queued, scheduled];
    want.sort();
    assert_eq!(claimed, want);
}

/// A database whose queue held runs of limited tasks before the turns: the migration gives each
/// key's runs their turns in claim order (priority, then age), and runs queued after it get
/// theirs from the trigger, after their key's last.
#[tokio::test]
async fn postgres_migration_gives_the_queued_runs_their_turns() {
    let Some(db) = PgDb::create().await else {
        return;
    };
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/postgres");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let turns_sql = files
        .iter()
        .position(|f| f.ends_with("0017_turns.sql"))
        .unwrap();
    let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
    for f in &files[..turns_sql] {
        sqlx::raw_sql(&std::fs::read_to_string(f).unwrap())
            .execute(&mut conn)
            .await
            .unwrap();
    }
    let queue =
        "INSERT INTO queue (run_seq, tenant, task, priority, ckey) VALUES ($1, 'x', 't', $2, $3)";
    for (seq, key, priority) in [
        (1, Some("a"), 0),
        (2, Some("b"), 0),
        (3, Some("a"), 9),
        (4, Some("a"), 0),
        (5, None, 0),
    ] {
        sqlx::query(queue)
            .bind(seq as i64)
            .bind(priority as i64)
            .bind(key)
            .execute(&mut conn)
            .await
            .unwrap();
    }
    sqlx::raw_sql(&std::fs::read_to_string(&files[turns_sql]).unwrap())
        .execute(&mut conn)
        .await
        .unwrap();
    // Queued after the migration: by the trigger, b after its last, c (new) at the head.
    for (seq, key) in [(6, "b"), (7, "c")] {
        sqlx::query(queue)
            .bind(seq as i64)
            .bind(0i64)
            .bind(key)
            .execute(&mut conn)
            .await
            .unwrap();
    }
    let turns: Vec<(i64, Option<i64>)> =
        sqlx::query_as("SELECT run_seq, turn FROM queue ORDER BY run_seq")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    assert_eq!(
        turns,
        [
            (1, Some(2)),
            (2, Some(1)),
            (3, Some(1)),
            (4, Some(3)),
            (5, None),
            (6, Some(2)),
            (7, Some(1)),
        ]
    );
}
