-- A limited claim's lock and its first page in one round trip. A claim under a limit takes the
-- limit's advisory lock (see `store/postgres/concurrency.rs`), then reads the room left and the
-- first runs in turn, and holds the lock until it commits: every round trip between the lock and
-- the commit is time in which no other claim of the task can go. The lock cannot be taken in
-- the reading statement itself: that statement's snapshot would be taken before the lock was
-- granted and miss the leases of the claim that held it. A volatile function's statements each
-- take a fresh snapshot, so the query below, run after the locks are granted, sees every claim
-- committed before.
CREATE FUNCTION owlclaw_limited_page(locks TEXT[], p_tenant TEXT, p_task TEXT, page BIGINT, lim BIGINT)
RETURNS TABLE (qid BIGINT, ckey TEXT, priority BIGINT, turn BIGINT, n BIGINT)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
BEGIN
    -- In the order given (sorted by the caller, as every claim and insert takes them).
    PERFORM count(pg_advisory_xact_lock(hashtextextended(k, 0)))
        FROM (SELECT k FROM unnest(locks) WITH ORDINALITY AS l(k, o) ORDER BY o) s;
    RETURN QUERY WITH running AS MATERIALIZED (
        SELECT l.ckey, count(*) AS n FROM leases l
        WHERE l.tenant = p_tenant AND l.task = p_task AND l.ckey IS NOT NULL AND lim IS NOT NULL
        GROUP BY 1
    )
    SELECT NULL::bigint, r.ckey, NULL::bigint, NULL::bigint, r.n FROM running r
    UNION ALL
    (SELECT q.qid, q.ckey, q.priority, q.turn, NULL::bigint FROM queue q
        WHERE q.tenant = p_tenant AND q.task = p_task AND q.ckey IS NOT NULL
          AND q.ckey <> ALL(ARRAY(SELECT r.ckey FROM running r WHERE r.n >= lim))
        ORDER BY q.priority DESC, q.turn, q.qid LIMIT page);
END
$$;
