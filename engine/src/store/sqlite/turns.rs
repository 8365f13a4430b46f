//! The turns of the queued runs of limited tasks (see `migrations/sqlite/0017_turns.sql`): given
//! to the runs queued without one, taken back from the runs that leave the queue.

use super::*;

/// Gives a turn to each queued run of a limited task that has none, in the order they were
/// queued: a key's first queued run the turn at the head of its task's queue, each further one
/// the turn after its key's last.
pub(super) fn give_turns(conn: &Connection) -> Result<()> {
    let new: Vec<(i64, String, String, String)> = all(
        conn,
        "SELECT qid, tenant, task, ckey FROM queue WHERE ckey IS NOT NULL AND turn IS NULL \
         ORDER BY qid",
        [],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
    )?;
    if new.is_empty() {
        return Ok(());
    }
    let mut heads: HashMap<(String, String), i64> = HashMap::new();
    // (last turn, runs queued) of each key met.
    let mut keys: HashMap<(String, String, String), (i64, i64)> = HashMap::new();
    let mut turns = Vec::with_capacity(new.len());
    for (qid, tenant, task, key) in new {
        let of_task = (tenant, task);
        let head = match heads.get(&of_task) {
            Some(h) => *h,
            None => {
                let h = one(
                    conn,
                    "SELECT turn FROM queue WHERE tenant = ?1 AND task = ?2 AND ckey IS NOT NULL \
                     AND turn IS NOT NULL ORDER BY priority DESC, turn, qid LIMIT 1",
                    params![of_task.0, of_task.1],
                    |r| r.get(0),
                )?
                .unwrap_or(0);
                heads.insert(of_task.clone(), h);
                h
            }
        };
        let k = (of_task.0, of_task.1, key);
        let (last, queued) = match keys.get(&k) {
            Some(s) => *s,
            None => one(
                conn,
                "SELECT last_turn, queued FROM concurrency_keys \
                 WHERE tenant = ?1 AND task = ?2 AND ckey = ?3",
                params![k.0, k.1, k.2],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?
            .unwrap_or((0, 0)),
        };
        let turn = if queued > 0 { head.max(last + 1) } else { head };
        keys.insert(k, (turn, queued + 1));
        turns.push(json!([qid, turn]));
    }
    exec(
        conn,
        "UPDATE queue SET turn = j.value->>1 FROM json_each(?1) AS j WHERE queue.qid = j.value->>0",
        params![Value::Array(turns).to_string()],
    )?;
    let keys: Vec<Value> = keys
        .into_iter()
        .map(|((tenant, task, key), (last, queued))| json!([tenant, task, key, last, queued]))
        .collect();
    exec(
        conn,
        "INSERT INTO concurrency_keys (tenant, task, ckey, last_turn, queued) \
         SELECT value->>0, value->>1, value->>2, value->>3, value->>4 FROM json_each(?1) WHERE true \
         ON CONFLICT (tenant, task, ckey) DO UPDATE SET \
           last_turn = excluded.last_turn, queued = excluded.queued",
        params![Value::Array(keys).to_string()],
    )?;
    Ok(())
}

/// Deletes the queue rows of the runs `seqs`, taking their turns back.
pub(super) fn unqueue(conn: &Connection, seqs: &[i64]) -> Result<()> {
    if seqs.is_empty() {
        return Ok(());
    }
    let gone: Vec<(String, String, String, i64)> = all(
        conn,
        "SELECT tenant, task, ckey, count(*) FROM queue \
         WHERE run_seq IN (SELECT value FROM json_each(?1)) AND ckey IS NOT NULL \
         AND turn IS NOT NULL GROUP BY 1, 2, 3",
        params![seqs_json(seqs)],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
    )?;
    delete_from(conn, "queue", seqs)?;
    left_queue(conn, gone)
}

/// `n` queued runs (with their turns) of each (tenant, task, key) left the queue. A statement
/// per key: in SQLite (no round trip) cheaper than a batch encoded as JSON. A key left without
/// queued runs keeps its row until [`forget_idle_keys`]: its next run takes the head's turn.
pub(super) fn left_queue(
    conn: &Connection,
    gone: Vec<(String, String, String, i64)>,
) -> Result<()> {
    if gone.is_empty() {
        return Ok(());
    }
    let mut less = conn
        .prepare_cached(
            "UPDATE concurrency_keys SET queued = queued - ?4 \
             WHERE tenant = ?1 AND task = ?2 AND ckey = ?3",
        )
        .db()?;
    for (tenant, task, key, n) in gone {
        less.execute(params![tenant, task, key, n]).db()?;
    }
    Ok(())
}

/// Deletes the rows of the keys without queued runs (with the retention pass, once a minute).
pub(super) fn forget_idle_keys(conn: &Connection) -> Result<usize> {
    exec(conn, "DELETE FROM concurrency_keys WHERE queued <= 0", [])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        migrate(&conn).unwrap();
        conn
    }

    /// Queues a run of task `t` under `key` (none: a task without a limit) at `priority`.
    fn queue(conn: &Connection, seq: i64, key: Option<&str>, priority: i64) {
        conn.execute(
            "INSERT INTO queue (run_seq, tenant, task, priority, ckey) VALUES (?1, 'x', 't', ?2, ?3)",
            params![seq, priority, key],
        )
        .unwrap();
    }

    fn turns(conn: &Connection) -> Vec<(i64, Option<i64>)> {
        all(
            conn,
            "SELECT run_seq, turn FROM queue ORDER BY run_seq",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap()
    }

    fn keys(conn: &Connection) -> Vec<(String, i64, i64)> {
        all(
            conn,
            "SELECT ckey, last_turn, queued FROM concurrency_keys ORDER BY ckey",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap()
    }

    #[test]
    fn keys_take_turns_from_the_head() {
        let conn = db();
        for (seq, key) in [(1, "a"), (2, "a"), (3, "a"), (4, "b"), (5, "b")] {
            queue(&conn, seq, Some(key), 0);
        }
        queue(&conn, 6, None, 0);
        give_turns(&conn).unwrap();
        assert_eq!(
            turns(&conn),
            [
                (1, Some(0)),
                (2, Some(1)),
                (3, Some(2)),
                (4, Some(0)),
                (5, Some(1)),
                (6, None)
            ],
            "each key from the head, a run of a task without a limit has none"
        );
        assert_eq!(keys(&conn), [("a".into(), 2, 3), ("b".into(), 1, 2)]);
        // The head moves on: a's first two runs and b's first leave the queue.
        unqueue(&conn, &[1, 2, 4]).unwrap();
        assert_eq!(keys(&conn), [("a".into(), 2, 1), ("b".into(), 1, 1)]);
        // a still has a run queued: its next turn follows its last; c, new, and b, with its
        // runs queued, take theirs from the head (turn 1) on.
        queue(&conn, 7, Some("a"), 0);
        queue(&conn, 8, Some("c"), 0);
        queue(&conn, 9, Some("b"), 0);
        give_turns(&conn).unwrap();
        let t = turns(&conn);
        assert_eq!(&t[3..], [(7, Some(3)), (8, Some(1)), (9, Some(2))], "{t:?}");
    }

    #[test]
    fn a_key_without_queued_runs_starts_again_at_the_head() {
        let conn = db();
        for seq in 1..=5 {
            queue(&conn, seq, Some("a"), 0);
        }
        queue(&conn, 6, Some("b"), 0);
        give_turns(&conn).unwrap();
        // b's run went (a claim); a's first three too: the head is at turn 3.
        unqueue(&conn, &[1, 2, 3, 6]).unwrap();
        assert_eq!(keys(&conn), [("a".into(), 4, 2), ("b".into(), 0, 0)]);
        queue(&conn, 7, Some("b"), 0);
        give_turns(&conn).unwrap();
        assert_eq!(
            turns(&conn).last(),
            Some(&(7, Some(3))),
            "b's next run at the head"
        );
        // Keys without queued runs go with the retention pass; the others stay.
        unqueue(&conn, &[7]).unwrap();
        assert_eq!(forget_idle_keys(&conn).unwrap(), 1);
        assert_eq!(keys(&conn), [("a".into(), 4, 2)]);
    }

    #[test]
    fn a_run_that_leaves_before_its_turn_was_never_counted() {
        let conn = db();
        queue(&conn, 1, Some("a"), 0);
        give_turns(&conn).unwrap();
        queue(&conn, 2, Some("a"), 0);
        // Run 2 goes (cancelled, say) before it had a turn: a keeps one run.
        unqueue(&conn, &[2]).unwrap();
        assert_eq!(keys(&conn), [("a".into(), 0, 1)]);
        unqueue(&conn, &[1]).unwrap();
        assert_eq!(keys(&conn), [("a".into(), 0, 0)]);
    }

    /// A database whose queue held runs of limited tasks before the turns: the migration gives
    /// each key's runs their turns in claim order (priority, then age) and counts them.
    #[test]
    fn the_migration_gives_the_queued_runs_their_turns() {
        let conn = Connection::open_in_memory().unwrap();
        let (before, turns_sql) = MIGRATIONS.split_at(16);
        for sql in before {
            conn.execute_batch(sql).unwrap();
        }
        for (seq, key, priority) in [(1, "a", 0), (2, "b", 0), (3, "a", 9), (4, "a", 0)] {
            queue(&conn, seq, Some(key), priority);
        }
        queue(&conn, 5, None, 0);
        conn.execute_batch(turns_sql[0]).unwrap();
        assert_eq!(
            turns(&conn),
            [
                (1, Some(2)),
                (2, Some(1)),
                (3, Some(1)),
                (4, Some(3)),
                (5, None)
            ]
        );
        assert_eq!(keys(&conn), [("a".into(), 3, 3), ("b".into(), 1, 1)]);
    }
}
