//! Durable event waits: parked by a report, ended by a push (see [`crate::store::waits`]).
//!
//! A report that parks a run and a push of an event it waits for may run at once on two
//! replicas: each would miss the other's uncommitted row. Both take a transaction-scoped advisory
//! lock on the tenant and key first, so one sees what the other committed.

use super::*;
use crate::store::waits::{
    ended, first_match, step_output, CandidateRow, OpenWait, WaiterRow, CANDIDATE_COLS, PAGE,
};
use owlclaw_core::wire::ReceivedEvent;

/// Serializes the waits and pushes of one key of one tenant, until the transaction ends.
async fn lock_key(conn: &mut PgConnection, tenant: &str, key: &str) -> R<()> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
        .bind(format!("event-wait/{}/{key}", clean(tenant)))
        .execute(conn)
        .await?;
    Ok(())
}

/// Keeps the waits of applied reports: each takes a stored event at once when there is one (the
/// changes returned queue their runs again), else stays open for a push.
pub(super) async fn open_waits(
    conn: &mut PgConnection,
    tenant: &str,
    waits: &[OpenWait],
    states: &mut HashMap<RunId, Locked>,
    now: DateTime<Utc>,
) -> R<Vec<Planned>> {
    let mut keys: Vec<&str> = waits.iter().map(|w| w.key.as_str()).collect();
    keys.sort_unstable();
    keys.dedup();
    for key in keys {
        lock_key(conn, tenant, key).await?;
    }
    let mut arrived = Vec::new();
    for w in waits {
        let mut taken = None;
        let found = find_event(conn, tenant, w).await?;
        if let (Some(event), Some(st)) = (found, states.get_mut(&w.run_id)) {
            let received = event.received();
            if let Some(p) = ended(st, w.deadline, &received, now)? {
                let position = i64::from(w.position);
                write_step(conn, w.seq, position, st.run.attempt, &received, now).await?;
                arrived.push(p);
                taken = Some(event.seq);
            }
        }
        sqlx::query(
            "INSERT INTO event_waits (run_seq, position, tenant, key, filter, deadline, event_seq) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (run_seq, position) DO UPDATE SET \
             key = excluded.key, filter = excluded.filter, deadline = excluded.deadline, \
             event_seq = excluded.event_seq",
        )
        .bind(w.seq)
        .bind(i64::from(w.position))
        .bind(tenant)
        .bind(&w.key)
        .bind(clean(&w.filter_text()))
        .bind(w.deadline)
        .bind(taken)
        .execute(&mut *conn)
        .await?;
    }
    Ok(arrived)
}

/// The first stored event that `w` takes: of its key, pushed since its run was created, matching
/// its filter, and not taken by another wait of the run.
async fn find_event(
    conn: &mut PgConnection,
    tenant: &str,
    w: &OpenWait,
) -> R<Option<CandidateRow>> {
    let created: Option<i64> = sqlx::query_scalar("SELECT created_at FROM runs WHERE seq = $1")
        .bind(w.seq)
        .fetch_optional(&mut *conn)
        .await?;
    let (mut after_at, mut after_seq) = (created.unwrap_or(0), i64::MIN);
    loop {
        let page: Vec<CandidateRow> = sqlx::query_as(&format!(
            "SELECT {CANDIDATE_COLS} FROM pushed_events e WHERE tenant = $1 AND key = $2 \
             AND (created_at, seq) > ($3, $4) AND NOT EXISTS (SELECT 1 FROM event_waits w \
               WHERE w.run_seq = $5 AND w.event_seq = e.seq) \
             ORDER BY created_at, seq LIMIT $6"
        ))
        .bind(tenant)
        .bind(&w.key)
        .bind(after_at)
        .bind(after_seq)
        .bind(w.seq)
        .bind(PAGE)
        .fetch_all(&mut *conn)
        .await?;
        let full = page.len() as i64 == PAGE;
        if let Some(last) = page.last() {
            (after_at, after_seq) = (last.created_at, last.seq);
        }
        if let Some(e) = first_match(&w.filter, page) {
            return Ok(Some(e));
        }
        if !full {
            return Ok(None);
        }
    }
}

/// Ends the open waits of `key` that the event just stored (`seq`) matches, of runs still parked
/// by them; returns those runs, queued again.
pub(super) async fn end_waits(
    conn: &mut PgConnection,
    tenant: &str,
    seq: i64,
    event: &ReceivedEvent,
    now: DateTime<Utc>,
    wakes: &mut Wakes,
) -> R<Vec<RunId>> {
    lock_key(conn, tenant, &event.key).await?;
    let open: Vec<WaiterRow> = sqlx::query_as(
        "SELECT run_seq, position, filter, deadline FROM event_waits WHERE tenant = $1 \
         AND key = $2 AND event_seq IS NULL AND deadline > $3 ORDER BY run_seq, position",
    )
    .bind(tenant)
    .bind(&event.key)
    .bind(micros(now))
    .fetch_all(&mut *conn)
    .await?;
    let mut changes = Vec::new();
    let mut resumed = Vec::new();
    for w in open.into_iter().filter(|w| w.takes(&event.payload)) {
        // A run locked by someone else is not parked by this wait any more (it is being
        // dispatched at the wait's end, or cancelled): never wait for it.
        let row: Option<StateRow> = sqlx::query_as(&format!(
            "SELECT {STATE_COLS} FROM runs WHERE seq = $1 FOR UPDATE SKIP LOCKED"
        ))
        .bind(w.run_seq)
        .fetch_optional(&mut *conn)
        .await?;
        let Some(mut st) = row.map(Locked::try_from).transpose()? else {
            continue;
        };
        // A wait left open by a run that went on (it timed out, or was cancelled) ends nothing.
        let Some(p) = ended(&mut st, w.deadline, event, now)? else {
            continue;
        };
        write_step(conn, w.run_seq, w.position, st.run.attempt, event, now).await?;
        sqlx::query("UPDATE event_waits SET event_seq = $1 WHERE run_seq = $2 AND position = $3")
            .bind(seq)
            .bind(w.run_seq)
            .bind(w.position)
            .execute(&mut *conn)
            .await?;
        resumed.push(st.run.id);
        changes.push(p);
    }
    apply(conn, &changes, now, wakes).await?;
    Ok(resumed)
}

/// Commits `event` as the output of the wait's step.
async fn write_step(
    conn: &mut PgConnection,
    run_seq: i64,
    position: i64,
    attempt: u32,
    event: &ReceivedEvent,
    now: DateTime<Utc>,
) -> R<()> {
    sqlx::query(
        "INSERT INTO steps (run_seq, position, name, status, output, error, attempt, started_at, \
           finished_at) VALUES ($1, $2, $3, 'succeeded', $4, NULL, $5, $6, $6) \
         ON CONFLICT (run_seq, position) DO UPDATE SET status = 'succeeded', \
           output = excluded.output, error = NULL, finished_at = excluded.finished_at",
    )
    .bind(run_seq)
    .bind(position)
    .bind(owlclaw_core::event::wait_step_name(&event.key))
    .bind(clean(&step_output(event)))
    .bind(i64::from(attempt))
    .bind(micros(now))
    .execute(conn)
    .await?;
    Ok(())
}
