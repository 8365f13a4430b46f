//! Durable event waits: parked by a report, ended by a push (see [`crate::store::waits`]).

use super::*;
use crate::store::waits::{
    ended, first_match, step_output, CandidateRow, OpenWait, WaiterRow, CANDIDATE_COLS, PAGE,
};
use owlclaw_core::wire::ReceivedEvent;

/// Keeps the waits of applied reports: each takes a stored event at once when there is one (the
/// changes returned queue their runs again), else stays open for a push.
pub(super) fn open_waits(
    conn: &Connection,
    tenant: &str,
    waits: &[OpenWait],
    states: &mut HashMap<RunId, Locked>,
    now: DateTime<Utc>,
) -> Result<Vec<Planned>> {
    let mut arrived = Vec::new();
    for w in waits {
        let mut taken = None;
        if let (Some(event), Some(st)) = (find_event(conn, tenant, w)?, states.get_mut(&w.run_id)) {
            let received = event.received();
            if let Some(p) = ended(st, w.deadline, &received, now)? {
                write_step(
                    conn,
                    w.seq,
                    i64::from(w.position),
                    st.run.attempt,
                    &received,
                    now,
                )?;
                arrived.push(p);
                taken = Some(event.seq);
            }
        }
        exec(
            conn,
            "INSERT INTO event_waits (run_seq, position, tenant, key, filter, deadline, event_seq) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (run_seq, position) DO UPDATE SET \
             key = excluded.key, filter = excluded.filter, deadline = excluded.deadline, \
             event_seq = excluded.event_seq",
            params![
                w.seq,
                i64::from(w.position),
                tenant,
                w.key,
                w.filter_text(),
                w.deadline,
                taken
            ],
        )?;
    }
    Ok(arrived)
}

/// The first stored event that `w` takes: of its key, pushed since its run was created, matching
/// its filter, and not taken by another wait of the run.
fn find_event(conn: &Connection, tenant: &str, w: &OpenWait) -> Result<Option<CandidateRow>> {
    let created: i64 = one(
        conn,
        "SELECT created_at FROM runs WHERE seq = ?1",
        params![w.seq],
        |r| r.get(0),
    )?
    .unwrap_or(0);
    let (mut after_at, mut after_seq) = (created, i64::MIN);
    loop {
        let page = all(
            conn,
            &format!(
                "SELECT {CANDIDATE_COLS} FROM pushed_events e WHERE tenant = ?1 AND key = ?2 \
                 AND (created_at, seq) > (?3, ?4) AND NOT EXISTS (SELECT 1 FROM event_waits w \
                   WHERE w.run_seq = ?5 AND w.event_seq = e.seq) \
                 ORDER BY created_at, seq LIMIT ?6"
            ),
            params![tenant, w.key, after_at, after_seq, w.seq, PAGE],
            CandidateRow::from_sqlite,
        )?;
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
pub(super) fn end_waits(
    conn: &Connection,
    tenant: &str,
    seq: i64,
    event: &ReceivedEvent,
    now: DateTime<Utc>,
) -> Result<Vec<RunId>> {
    let open = all(
        conn,
        "SELECT run_seq, position, filter, deadline FROM event_waits WHERE tenant = ?1 \
         AND key = ?2 AND event_seq IS NULL AND deadline > ?3 ORDER BY run_seq, position",
        params![tenant, event.key, micros(now)],
        WaiterRow::from_sqlite,
    )?;
    let mut changes = Vec::new();
    let mut resumed = Vec::new();
    for w in open.into_iter().filter(|w| w.takes(&event.payload)) {
        let Some(mut st) = state_by_seq(conn, w.run_seq)? else {
            continue;
        };
        // A wait left open by a run that went on (it timed out, or was cancelled) ends nothing.
        let Some(p) = ended(&mut st, w.deadline, event, now)? else {
            continue;
        };
        write_step(conn, w.run_seq, w.position, st.run.attempt, event, now)?;
        exec(
            conn,
            "UPDATE event_waits SET event_seq = ?1 WHERE run_seq = ?2 AND position = ?3",
            params![seq, w.run_seq, w.position],
        )?;
        resumed.push(st.run.id);
        changes.push(p);
    }
    apply(conn, &changes, now)?;
    Ok(resumed)
}

/// Commits `event` as the output of the wait's step.
fn write_step(
    conn: &Connection,
    run_seq: i64,
    position: i64,
    attempt: u32,
    event: &ReceivedEvent,
    now: DateTime<Utc>,
) -> Result<()> {
    exec(
        conn,
        "INSERT INTO steps (run_seq, position, name, status, output, error, attempt, started_at, \
           finished_at) VALUES (?1, ?2, ?3, 'succeeded', ?4, NULL, ?5, ?6, ?6) \
         ON CONFLICT (run_seq, position) DO UPDATE SET status = 'succeeded', \
           output = excluded.output, error = NULL, finished_at = excluded.finished_at",
        params![
            run_seq,
            position,
            owlclaw_core::event::wait_step_name(&event.key),
            step_output(event),
            i64::from(attempt),
            micros(now)
        ],
    )?;
    Ok(())
}
