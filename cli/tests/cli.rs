//! End-to-end tests of the `owlclaw` binary: each runs the real executable against a real SQLite
//! file in a temporary directory and checks its exit code, stdout and stderr.
//!
//! Runs are created with `submit --retries 0 --timeout 30s`, which needs no worker; the last tests
//! start a real lite-mode worker in this process (the `#[task]`s below) on the same file, the way
//! a shell inspects the runs of a running program.

use owlclaw::{task, Client, Config, Context};
use serde_json::{json, Value};
use std::path::PathBuf;

mod common;
use common::{owlclaw, Out};

/// A temporary directory holding `owlclaw.db`.
struct Db {
    dir: tempfile::TempDir,
}

impl Db {
    fn new() -> Db {
        Db {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("owlclaw.db")
    }

    fn url(&self) -> String {
        format!("sqlite://{}", self.path().display())
    }

    /// `owlclaw --database URL ARGS...`
    fn run(&self, args: &[&str]) -> Out {
        let url = self.url();
        let mut all = vec!["--database", url.as_str()];
        all.extend_from_slice(args);
        owlclaw(self.dir.path(), &all, &[])
    }

    /// Schedules a queued run of `task` without any worker and returns its id.
    fn submit(&self, task: &str, input: &str, extra: &[&str]) -> String {
        let mut args = vec![
            "--json",
            "submit",
            task,
            "--input",
            input,
            "--retries",
            "0",
            "--timeout",
            "30s",
        ];
        args.extend_from_slice(extra);
        let out = self.run(&args).ok();
        out.json()["id"].as_str().expect("id").to_owned()
    }
}

const SNAPSHOT_FIELDS: [&str; 17] = [
    "id",
    "task",
    "status",
    "attempt",
    "max_attempts",
    "priority",
    "input",
    "output",
    "error",
    "owner",
    "idempotency_key",
    "parent_id",
    "run_at",
    "created_at",
    "started_at",
    "finished_at",
    "steps",
];

#[test]
fn submit_then_status_prints_the_snapshot_as_json_and_as_a_block() {
    let db = Db::new();
    let out = db
        .run(&[
            "--json",
            "submit",
            "resize",
            "--input",
            r#"{"w":640}"#,
            "--retries",
            "0",
            "--timeout",
            "30s",
            "--priority",
            "7",
        ])
        .ok();
    let submitted = out.json();
    assert!(out.stderr.is_empty(), "{out:#?}");
    let id = submitted["id"].as_str().unwrap();
    assert_eq!(submitted["status"], "queued");

    let status = db.run(&["status", id, "--json"]).ok().json();
    for field in SNAPSHOT_FIELDS {
        assert!(status.get(field).is_some(), "no {field} in {status}");
    }
    assert_eq!(status["id"], id);
    assert_eq!(status["task"], "resize");
    assert_eq!(status["status"], "queued");
    assert_eq!(status["attempt"], 0);
    assert_eq!(status["max_attempts"], 1);
    assert_eq!(status["priority"], 7);
    assert_eq!(status["input"], json!({"w": 640}));
    assert_eq!(status["output"], Value::Null);
    assert_eq!(status["steps"], json!([]));
    assert!(status["created_at"].as_str().unwrap().ends_with('Z'));
    // No worker runs: a read says so (the answer to submit does not look).
    assert_eq!(status["waiting"], "no live worker serves task `resize`");
    assert_eq!(submitted.get("waiting"), None);
    // The same snapshot, but for the precision of its times (stored to the microsecond) and the
    // reason it waits.
    let without_times = |v: &Value| {
        let mut v = v.clone();
        for field in ["run_at", "created_at", "waiting"] {
            v.as_object_mut().unwrap().remove(field);
        }
        v
    };
    assert_eq!(without_times(&status), without_times(&submitted));

    let human = db.run(&["status", id]).ok().stdout;
    for line in [
        format!("id:               {id}"),
        "task:             resize".into(),
        "status:           queued".into(),
        "waiting:          no live worker serves task `resize`".into(),
        "attempt:          0/1".into(),
        "priority:         7".into(),
        r#"input:            {"w":640}"#.into(),
        "output:           -".into(),
        "error:            -".into(),
        "errors:           -".into(),
    ] {
        assert!(human.lines().any(|l| l == line), "no {line:?} in\n{human}");
    }
}

#[test]
fn submit_without_json_prints_one_line_with_the_id() {
    let db = Db::new();
    let out = db
        .run(&["submit", "t", "--retries", "0", "--timeout", "30s"])
        .ok();
    assert!(out.stdout.starts_with("run "), "{out:#?}");
    assert!(out.stdout.contains(": queued (created;"), "{out:#?}");
    assert_eq!(out.stdout.lines().count(), 1);
}

#[test]
fn list_filters_limits_and_pages_newest_first() {
    let db = Db::new();
    let a1 = db.submit("a", "1", &[]);
    let b1 = db.submit("b", "2", &["--user", "alice"]);
    let a2 = db.submit("a", "3", &[]);
    let a3 = db.submit("a", "4", &["--delay", "1h"]);

    let ids = |v: &Value| -> Vec<String> {
        v["runs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let all = db.run(&["list", "--json"]).ok().json();
    assert_eq!(
        ids(&all),
        [a3.as_str(), a2.as_str(), b1.as_str(), a1.as_str()]
    );
    assert_eq!(all["next_cursor"], Value::Null);

    let task_a = db.run(&["--json", "list", "--task", "a"]).ok().json();
    assert_eq!(ids(&task_a), [a3.as_str(), a2.as_str(), a1.as_str()]);
    let queued_a = db
        .run(&["--json", "list", "--task", "a", "--status", "queued"])
        .ok()
        .json();
    assert_eq!(ids(&queued_a), [a2.as_str(), a1.as_str()]);
    let scheduled = db
        .run(&["--json", "list", "--status", "scheduled"])
        .ok()
        .json();
    assert_eq!(ids(&scheduled), [a3.as_str()]);
    let alice = db.run(&["--json", "list", "--owner", "alice"]).ok().json();
    assert_eq!(ids(&alice), [b1.as_str()]);
    let as_alice = db.run(&["--json", "--user", "alice", "list"]).ok().json();
    assert_eq!(ids(&as_alice), [b1.as_str()]);

    let page1 = db.run(&["--json", "list", "--limit", "3"]).ok().json();
    assert_eq!(ids(&page1), [a3.as_str(), a2.as_str(), b1.as_str()]);
    let cursor = page1["next_cursor"].as_str().expect("a next cursor");
    let page2 = db
        .run(&["--json", "list", "--limit", "3", "--cursor", cursor])
        .ok()
        .json();
    assert_eq!(ids(&page2), [a1.as_str()]);
    assert_eq!(page2["next_cursor"], Value::Null);

    let human = db.run(&["list", "--limit", "2"]).ok().stdout;
    let lines: Vec<&str> = human.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["ID", "TASK", "STATUS", "ATTEMPT", "PRIORITY", "CREATED"]
    );
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(row[..5], [a3.as_str(), "a", "scheduled", "0/1", "5"]);
    assert!(row[5].ends_with('Z') && row[5].len() == 20, "{row:?}");
    // Columns are aligned: each header starts where its cells start.
    let at = lines[0].find("STATUS").unwrap();
    assert_eq!(&lines[2][at..at + 6], "queued");
    assert!(lines[3].contains("--cursor"), "{human}");

    assert_eq!(db.run(&["list", "--limit", "0"]).code, 2);
    let bad = db.run(&["list", "--status", "done"]);
    assert_eq!(bad.code, 2, "{bad:#?}");
    assert!(
        bad.stderr.contains("--status") && bad.stderr.contains("done"),
        "{bad:#?}"
    );
}

#[test]
fn events_show_the_creation_of_the_run() {
    let db = Db::new();
    let id = db.submit("t", "null", &[]);
    let events = db.run(&["--json", "events", &id]).ok().json();
    let events = events.as_array().unwrap();
    assert_eq!(events.len(), 1);
    let e = &events[0];
    for field in ["run_id", "at", "from", "to", "attempt", "worker", "reason"] {
        assert!(e.get(field).is_some(), "no {field} in {e}");
    }
    assert_eq!(e["run_id"], id.as_str());
    assert_eq!(e["from"], Value::Null);
    assert_eq!(e["to"], "queued");
    assert_eq!(e["reason"], "scheduled");

    let human = db.run(&["events", &id]).ok().stdout;
    let lines: Vec<&str> = human.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["AT", "FROM", "→", "TO", "ATTEMPT", "WORKER", "REASON"]
    );
    assert!(lines[1].contains("- → queued"), "{human}");
    assert!(lines[1].ends_with("scheduled"), "{human}");
}

#[test]
fn cancel_twice_is_an_invalid_transition_and_retry_requeues() {
    let db = Db::new();
    let id = db.submit("t", "{}", &[]);
    let cancelled = db.run(&["--json", "cancel", &id]).ok().json();
    assert_eq!(cancelled["status"], "cancelled");
    assert!(cancelled["finished_at"].is_string());

    let again = db
        .run(&["--json", "cancel", &id])
        .refused("invalid_transition");
    assert!(
        again.error()["message"]
            .as_str()
            .unwrap()
            .contains("cancelled"),
        "{again:#?}"
    );
    let human = db.run(&["cancel", &id]);
    assert_eq!(human.code, 1);
    assert!(
        human.stderr.starts_with("error: cannot cancel run"),
        "{human:#?}"
    );

    let retried = db.run(&["retry", &id]).ok();
    assert_eq!(retried.stdout, format!("run {id}: queued (attempt 0/1)\n"));
    let status = db.run(&["--json", "status", &id]).ok().json();
    assert_eq!(status["status"], "queued");
    db.run(&["--json", "retry", &id])
        .refused("invalid_transition");

    let events = db.run(&["--json", "events", &id]).ok().json();
    let path: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["to"].as_str().unwrap())
        .collect();
    assert_eq!(path, ["queued", "cancelled", "queued"]);
}

/// `cancel`/`retry` with a filter instead of a run: counted, confirmed (`--yes` without a
/// terminal), acted on; runs of other tasks are left alone.
#[test]
fn cancel_and_retry_by_filter_count_confirm_and_act_on_the_matches() {
    let db = Db::new();
    for i in 0..5 {
        db.submit("t", &i.to_string(), &[]);
    }
    let other = db.submit("u", "{}", &[]);
    // Without a terminal to confirm on, --yes is needed; nothing is done.
    let unconfirmed = db.run(&["cancel", "--status", "queued", "--task", "t"]);
    assert_eq!(unconfirmed.code, 2, "{unconfirmed:#?}");
    assert!(
        unconfirmed
            .stderr
            .contains("5 run(s) match: pass --yes to cancel them"),
        "{unconfirmed:#?}"
    );
    let done = db
        .run(&["--json", "cancel", "--task", "t", "--yes"])
        .ok()
        .json();
    assert_eq!(done["matched"], 5);
    assert_eq!(done["changed"], 5);
    let cancelled = db
        .run(&["--json", "list", "--status", "cancelled"])
        .ok()
        .json();
    assert_eq!(cancelled["runs"].as_array().unwrap().len(), 5);
    let status = db.run(&["--json", "status", &other]).ok().json();
    assert_eq!(
        status["status"], "queued",
        "another task's run is untouched"
    );
    let human = db
        .run(&["retry", "--task", "t", "--status", "cancelled", "--yes"])
        .ok();
    assert_eq!(
        human.stdout,
        "retried 5 of 5 matching run(s); the others' status did not allow it\n"
    );
    // A run id and a filter together are a usage error; neither is one too.
    assert_eq!(db.run(&["cancel", &other, "--task", "t"]).code, 2);
    assert_eq!(db.run(&["cancel"]).code, 2);
}

/// `events --follow` and `--jsonl`, `wait`, `top --once` and `export`: what an operator watches
/// a store with.
#[test]
fn follow_wait_top_and_export_show_the_state() {
    let db = Db::new();
    let queued = db.submit("t", "1", &[]);
    let cancelled = db.submit("t", "2", &[]);
    db.run(&["cancel", &cancelled]).ok();

    // --follow on a finished run prints its transitions and ends; --jsonl lines are versioned.
    let followed = db.run(&["events", &cancelled, "--follow", "--jsonl"]).ok();
    let lines: Vec<serde_json::Value> = followed
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert_eq!(lines.len(), 2, "{followed:#?}");
    assert!(lines.iter().all(|l| l["schema_version"] == 1));
    assert_eq!(lines[1]["to"], "cancelled");

    // wait: a cancelled run fails the command; a queued one times out, with a plain line (no
    // terminal here) saying where it is.
    let waited = db.run(&["wait", &cancelled]);
    assert_eq!(waited.code, 1, "{waited:#?}");
    assert!(waited.stdout.contains("cancelled"), "{waited:#?}");
    let timed_out = db.run(&["wait", &queued, "--timeout", "1s"]);
    assert_eq!(timed_out.code, 1, "{timed_out:#?}");
    assert!(
        timed_out.stderr.contains(&format!("run {queued}: queued")),
        "{timed_out:#?}"
    );

    let top = db.run(&["top", "--once"]).ok();
    assert!(
        top.stdout.starts_with(
            "runs: scheduled 0  queued 1  running 0  succeeded 0  failed 0  cancelled 1"
        ),
        "{top:#?}"
    );

    let file = db.dir.path().join("state.json");
    let done = db.run(&["export", "--out", file.to_str().unwrap()]).ok();
    assert!(done.stdout.starts_with("exported 1 run(s)"), "{done:#?}");
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(doc["schema_version"], 1);
    assert_eq!(doc["runs_included"], "unfinished");
    assert_eq!(doc["runs"].as_array().unwrap().len(), 1);
    assert_eq!(doc["runs"][0]["id"], queued.as_str());
    let all = db
        .run(&["export", "--out", file.to_str().unwrap(), "--runs", "all"])
        .ok();
    assert!(all.stdout.starts_with("exported 2 run(s)"), "{all:#?}");
    // Only the database and the export are left: the temporary file was renamed.
    let mut names: Vec<String> = std::fs::read_dir(db.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with("owlclaw.db"))
        .collect();
    names.sort();
    assert_eq!(names, ["state.json"]);
}

#[test]
fn idempotency_key_gives_the_same_run_and_conflicts_on_another_input() {
    let db = Db::new();
    let first = db.submit("t", r#"{"n":1}"#, &["--idempotency-key", "k1"]);
    let second = db.submit("t", r#"{"n":1}"#, &["--idempotency-key", "k1"]);
    assert_eq!(first, second);
    let human = db
        .run(&[
            "submit",
            "t",
            "--input",
            r#"{"n":1}"#,
            "--idempotency-key",
            "k1",
            "--retries",
            "0",
            "--timeout",
            "30s",
        ])
        .ok();
    assert!(human.stdout.contains("existing run"), "{human:#?}");

    let conflict = db
        .run(&[
            "--json",
            "submit",
            "t",
            "--input",
            r#"{"n":2}"#,
            "--idempotency-key",
            "k1",
            "--retries",
            "0",
            "--timeout",
            "30s",
        ])
        .refused("idempotency_conflict");
    assert!(conflict.error()["message"].as_str().unwrap().contains("k1"));
    let page = db.run(&["--json", "list"]).ok().json();
    assert_eq!(page["runs"].as_array().unwrap().len(), 1);
}

#[test]
fn out_of_range_priority_is_refused_and_names_the_field() {
    let db = Db::new();
    let out = db
        .run(&[
            "--json",
            "submit",
            "t",
            "--priority",
            "11",
            "--retries",
            "0",
            "--timeout",
            "30s",
        ])
        .refused("invalid_input");
    assert!(
        out.error()["message"]
            .as_str()
            .unwrap()
            .contains("priority"),
        "{out:#?}"
    );
    // Nothing was stored.
    let page = db.run(&["--json", "list"]).ok().json();
    assert_eq!(page["runs"], json!([]));
}

#[test]
fn unregistered_task_without_retries_and_timeout_is_refused_with_a_hint() {
    let db = Db::new();
    let out = db
        .run(&["--json", "submit", "nobody-serves-this"])
        .refused("not_found");
    let message = out.error()["message"].as_str().unwrap().to_owned();
    assert!(message.contains("nobody-serves-this"), "{message}");
    assert!(message.contains("--retries"), "{message}");
}

#[test]
fn another_users_run_is_forbidden() {
    let db = Db::new();
    let id = db.submit("t", "1", &["--user", "alice"]);
    let status = db.run(&["--json", "status", &id]).ok().json();
    assert_eq!(status["owner"], "alice");

    db.run(&["--json", "--user", "bob", "status", &id])
        .refused("forbidden");
    db.run(&["--json", "events", &id, "--user", "bob"])
        .refused("forbidden");
    db.run(&["--json", "cancel", &id, "--user", "bob"])
        .refused("forbidden");
    db.run(&["--json", "--user", "bob", "list", "--owner", "alice"])
        .refused("forbidden");
    let mine = db
        .run(&["--json", "--user", "alice", "status", &id])
        .ok()
        .json();
    assert_eq!(mine["status"], "queued");
    let cancelled = db
        .run(&["--json", "--user", "alice", "cancel", &id])
        .ok()
        .json();
    assert_eq!(cancelled["status"], "cancelled");
}

#[test]
fn unknown_run_is_not_found() {
    let db = Db::new();
    db.submit("t", "1", &[]);
    let missing = "0192f0c1-7b1e-7c3a-9d2e-5f0a1b2c3d4e";
    for command in ["status", "events", "cancel", "retry"] {
        let out = db.run(&["--json", command, missing]).refused("not_found");
        assert!(out.stderr.contains(missing), "{out:#?}");
    }
    let human = db.run(&["status", missing]);
    assert_eq!(human.code, 1);
    assert_eq!(human.stderr, format!("error: run not found: {missing}\n"));
}

#[test]
fn malformed_values_are_usage_errors_naming_the_flag_and_value() {
    let db = Db::new();
    db.submit("t", "1", &[]);
    let cases: [(&[&str], &str, &str); 6] = [
        (&["status", "not-a-uuid"], "<RUN>", "not-a-uuid"),
        // RUN is optional for cancel (a filter may replace it): clap writes it `[RUN]`.
        (&["cancel", "1234"], "[RUN]", "1234"),
        (&["submit", "t", "--input", "{oops"], "--input", "{oops"),
        (&["submit", "t", "--delay", "10"], "--delay", "10"),
        (&["submit", "t", "--timeout", "soon"], "--timeout", "soon"),
        (&["submit", "t", "--at", "tomorrow"], "--at", "tomorrow"),
    ];
    for (args, flag, value) in cases {
        let out = db.run(args);
        assert_eq!(out.code, 2, "{args:?}: {out:#?}");
        assert!(out.stdout.is_empty(), "{out:#?}");
        assert!(
            out.stderr.contains(flag) && out.stderr.contains(&format!("'{value}'")),
            "{args:?}: {out:#?}"
        );
    }
    // Under --json, usage errors are JSON too.
    let out = db.run(&["status", "not-a-uuid", "--json"]);
    assert_eq!(out.code, 2);
    assert_eq!(out.error()["code"], "usage");
    assert!(out.error()["message"]
        .as_str()
        .unwrap()
        .contains("not-a-uuid"));
    // Nothing was submitted by the refused commands.
    let page = db.run(&["--json", "list"]).ok().json();
    assert_eq!(page["runs"].as_array().unwrap().len(), 1);
    // Unknown flags and commands keep clap's exit code.
    assert_eq!(db.run(&["status", "--bogus"]).code, 2);
    assert_eq!(db.run(&["frobnicate"]).code, 2);
    assert_eq!(
        db.run(&[
            "submit",
            "t",
            "--delay",
            "1s",
            "--at",
            "2030-01-01T00:00:00Z"
        ])
        .code,
        2
    );
}

#[test]
fn read_commands_do_not_create_a_missing_database() {
    let db = Db::new();
    for args in [
        &["status", "0192f0c1-7b1e-7c3a-9d2e-5f0a1b2c3d4e"][..],
        &["list"],
        &["events", "0192f0c1-7b1e-7c3a-9d2e-5f0a1b2c3d4e"],
        &["cancel", "0192f0c1-7b1e-7c3a-9d2e-5f0a1b2c3d4e"],
        &["crons"],
        &["workers"],
    ] {
        let out = db.run(args);
        assert_eq!(out.code, 1, "{args:?}: {out:#?}");
        assert_eq!(
            out.stderr,
            format!(
                "error: no OwlClaw database at {} (start a lite-mode program first, or pass \
                 --database)\n",
                db.path().display()
            )
        );
        assert!(!db.path().exists());
    }
    let json = db.run(&["--json", "list"]).refused("connection");
    assert!(json.error()["message"]
        .as_str()
        .unwrap()
        .contains("no OwlClaw database"));

    // The default database, relative to the working directory.
    let out = owlclaw(db.dir.path(), &["list"], &[]);
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(out.stderr.contains(".owlclaw/owlclaw.db"), "{out:#?}");
    assert!(!db.dir.path().join(".owlclaw").exists());
}

#[test]
fn migrate_and_submit_create_the_database() {
    let db = Db::new();
    let out = db.run(&["migrate"]).ok();
    assert_eq!(out.stdout, format!("migrated {}\n", db.url()));
    assert!(db.path().exists());
    let json = db.run(&["migrate", "--json"]).ok().json();
    assert_eq!(json, json!({"migrated": true, "database": db.url()}));

    // The default location, directories included.
    let dir = tempfile::tempdir().unwrap();
    owlclaw(
        dir.path(),
        &["submit", "t", "--retries", "0", "--timeout", "1s"],
        &[],
    )
    .ok();
    assert!(dir.path().join(".owlclaw/owlclaw.db").exists());
    let page = owlclaw(dir.path(), &["--json", "list"], &[]).ok().json();
    assert_eq!(page["runs"].as_array().unwrap().len(), 1);
}

#[test]
fn crons_and_workers_of_an_empty_database_are_empty() {
    let db = Db::new();
    db.run(&["migrate"]).ok();
    assert_eq!(db.run(&["--json", "crons"]).ok().json(), json!([]));
    assert_eq!(db.run(&["workers", "--json"]).ok().json(), json!([]));
    let crons = db.run(&["crons"]).ok().stdout;
    assert_eq!(
        crons.split_whitespace().collect::<Vec<_>>(),
        [
            "ID",
            "TASK",
            "EXPR",
            "TIMEZONE",
            "PAUSED",
            "NEXT",
            "TICK",
            "LAST",
            "TICK",
            "OVERLAP/CATCH-UP"
        ]
    );
    let workers = db.run(&["workers"]).ok().stdout;
    assert_eq!(workers.lines().count(), 1);
    assert!(workers.starts_with("ID  NAME  SLOTS"), "{workers}");
}

#[test]
fn ratelimit_set_creates_and_changes_a_limit_that_list_shows() {
    let db = Db::new();
    db.run(&["migrate"]).ok();
    assert_eq!(
        db.run(&["--json", "ratelimit", "list"]).ok().json(),
        json!([])
    );
    let set = db
        .run(&[
            "ratelimit",
            "set",
            "stripe",
            "--limit",
            "100",
            "--per",
            "1s",
        ])
        .ok()
        .stdout;
    assert_eq!(
        set.split_whitespace().collect::<Vec<_>>(),
        ["NAME", "LIMIT", "PER", "stripe", "100", "1s"]
    );
    db.run(&["ratelimit", "set", "stripe", "--limit", "20", "--per", "1m"])
        .ok();
    db.run(&["ratelimit", "set", "mail", "--limit", "5", "--per", "500ms"])
        .ok();
    assert_eq!(
        db.run(&["--json", "ratelimit", "list"]).ok().json(),
        json!([
            {"name": "mail", "limit": 5, "per": "500ms"},
            {"name": "stripe", "limit": 20, "per": "1m"},
        ])
    );
}

#[test]
fn event_push_stores_an_event_once_per_id() {
    let db = Db::new();
    db.run(&["migrate"]).ok();
    let first = db
        .run(&[
            "--json",
            "event",
            "push",
            "order.paid",
            "--data",
            r#"{"order":7}"#,
            "--id",
            "e-1",
        ])
        .ok()
        .json();
    assert_eq!(first["id"], "e-1");
    assert_eq!(first["key"], "order.paid");
    assert_eq!(first["payload"], json!({"order": 7}));
    assert_eq!(first["created"], true);
    assert_eq!(first["runs"], json!([]));
    let again = db
        .run(&[
            "event",
            "push",
            "order.paid",
            "--data",
            r#"{"order":7}"#,
            "--id",
            "e-1",
        ])
        .ok()
        .stdout;
    assert_eq!(
        again.trim(),
        "event e-1 (order.paid): pushed before: nothing new started"
    );
    let other = db.run(&["event", "push", "order.paid", "--data", "8", "--id", "e-1"]);
    assert_eq!(other.code, 1, "{other:?}");
    assert!(other.stderr.contains("id"), "{other:?}");
}

/// `http://127.0.0.1:PORT` where nothing listens (a port just bound and released).
fn closed_server_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

#[test]
fn server_and_store_options_are_checked_before_connecting() {
    let db = Db::new();
    db.run(&["migrate"]).ok();
    let dir = db.dir.path();
    let url = db.url();
    // Bad combinations and values of typed options are usage errors naming the flag.
    for (args, flag) in [
        (
            &["--server", "http://h:7070", "--database", &url, "list"][..],
            "--server",
        ),
        (&["list", "--token", "t", "--database", &url], "--token"),
        (&["--token", "t", "list"], "--token"),
        (&["--server", "h:7070", "list"], "--server"),
        (&["--server", "ftp://h", "list"], "--server"),
        (
            &["--server", "http://h", "--token", "a b", "list"],
            "--token",
        ),
        (&["migrate", "--server", "http://h:7070"], "--server"),
        (
            &["token", "create", "--tenant", "a", "--server", "http://h"],
            "--server",
        ),
        (&["serve", "--token", "t"], "--token"),
    ] {
        let out = owlclaw(dir, args, &[]);
        assert_eq!(out.code, 2, "{args:?}: {out:#?}");
        assert!(
            out.stderr.starts_with("error: ") && out.stderr.contains(flag),
            "{args:?}: {out:#?}"
        );
        assert!(
            !out.stderr.contains("a b"),
            "the token is never quoted: {out:#?}"
        );
        let mut json_args = args.to_vec();
        json_args.push("--json");
        let out = owlclaw(dir, &json_args, &[]);
        assert_eq!(out.code, 2, "{out:#?}");
        assert_eq!(out.error()["code"], "usage", "{out:#?}");
    }
    // `migrate` refuses a server named by the environment: it works on a store.
    let server = closed_server_url();
    let out = owlclaw(dir, &["migrate"], &[("OWLCLAW_SERVER_URL", &server)]);
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(
        out.stderr.contains("works on a store") && out.stderr.contains("--database"),
        "{out:#?}"
    );
    // ...but a typed --database wins over the environment's server, for every command.
    owlclaw(
        dir,
        &["--database", &url, "migrate"],
        &[("OWLCLAW_SERVER_URL", &server)],
    )
    .ok();
    owlclaw(
        dir,
        &["--database", &url, "list"],
        &[("OWLCLAW_SERVER_URL", &server), ("OWLCLAW_MODE", "server")],
    )
    .ok();
    // OWLCLAW_MODE=lite keeps the store even when a server URL is set.
    owlclaw(
        dir,
        &["list"],
        &[
            ("OWLCLAW_SERVER_URL", &server),
            ("OWLCLAW_MODE", "lite"),
            ("OWLCLAW_DATABASE_URL", &url),
        ],
    )
    .ok();
    // A server URL alone in the environment means server mode: here, an unreachable one.
    let out =
        owlclaw(dir, &["--json", "list"], &[("OWLCLAW_SERVER_URL", &server)]).refused("connection");
    assert!(
        out.error()["message"].as_str().unwrap().contains(&server),
        "{out:#?}"
    );
}

#[test]
fn purge_deletes_finished_runs_older_than_the_duration_and_keeps_the_rest() {
    let db = Db::new();
    let help = db.run(&["--help"]).ok().stdout;
    for command in [
        "serve", "purge", "token", "submit", "status", "list", "events", "migrate",
    ] {
        assert!(
            help.contains(&format!("  {command} ")),
            "{command} in\n{help}"
        );
    }
    let done = db.submit("t", "1", &[]);
    let waiting = db.submit("t", "2", &[]);
    db.run(&["cancel", &done]).ok();
    let out = db.run(&["purge", "--older-than", "1h"]).ok();
    assert!(
        out.stdout
            .contains("purged 0 finished run(s) older than 1h"),
        "{out:#?}"
    );
    let out = db.run(&["purge", "--older-than", "0s", "--json"]).ok();
    assert_eq!(out.json()["purged"], 1, "{out:#?}");
    db.run(&["status", &done, "--json"]).refused("not_found");
    db.run(&["status", &waiting]).ok();
    let out = db.run(&["purge"]);
    assert_eq!(out.code, 2, "--older-than is required: {out:#?}");
}

#[test]
fn database_comes_from_the_environment_or_a_config_file() {
    let db = Db::new();
    let id = db.submit("t", "1", &[]);
    let url = db.url();
    let elsewhere = tempfile::tempdir().unwrap();

    let out = owlclaw(
        elsewhere.path(),
        &["--json", "status", &id],
        &[("OWLCLAW_DATABASE_URL", &url)],
    )
    .ok();
    assert_eq!(out.json()["id"], id.as_str());

    let config = elsewhere.path().join("owlclaw.yaml");
    std::fs::write(&config, format!("mode: lite\ndatabase_url: \"{url}\"\n")).unwrap();
    let config = config.display().to_string();
    let out = owlclaw(
        elsewhere.path(),
        &["--json", "--config", &config, "status", &id],
        &[],
    )
    .ok();
    assert_eq!(out.json()["id"], id.as_str());

    let server = closed_server_url();
    std::fs::write(&config, format!("mode: server\nserver_url: {server}\n")).unwrap();
    let out = owlclaw(
        elsewhere.path(),
        &["--json", "--config", &config, "list"],
        &[],
    )
    .refused("connection");
    assert!(out.error()["message"].as_str().unwrap().contains(&server));
    // ...unless --database is typed.
    owlclaw(
        elsewhere.path(),
        &["--json", "--config", &config, "--database", &url, "list"],
        &[],
    )
    .ok();

    std::fs::write(&config, "worker:\n  slots: 0\n").unwrap();
    let bad = owlclaw(
        elsewhere.path(),
        &["--json", "--config", &config, "list"],
        &[],
    )
    .refused("config");
    assert!(bad.error()["message"]
        .as_str()
        .unwrap()
        .contains("worker.slots"));
    let missing = owlclaw(elsewhere.path(), &["--config", "nope.yaml", "list"], &[]);
    assert_eq!(missing.code, 1, "{missing:#?}");
    assert!(missing.stderr.contains("nope.yaml"), "{missing:#?}");
}

#[test]
fn wait_gives_up_after_the_wait_timeout_and_prints_the_last_snapshot() {
    let db = Db::new();
    let out = db.run(&[
        "--json",
        "submit",
        "t",
        "--retries",
        "0",
        "--timeout",
        "30s",
        "--wait",
        "--wait-timeout",
        "300ms",
    ]);
    assert_eq!(out.code, 1, "{out:#?}");
    assert_eq!(out.json()["status"], "queued");
    assert_eq!(out.error()["code"], "timeout");
    // --wait-timeout alone is a usage error.
    assert_eq!(db.run(&["submit", "t", "--wait-timeout", "1s"]).code, 2);
}

// ---------------------------------------------------------------------------------------------
// With a worker: a lite-mode program in this process, the CLI in another.

#[task(name = "cli-double", retries = 0, timeout = "30s")]
async fn double(_ctx: Context, n: i64) -> Result<i64, String> {
    Ok(n * 2)
}

#[task(
    name = "cli-fail",
    retries = 1,
    timeout = "30s",
    backoff_initial = "10ms"
)]
async fn always_fails(_ctx: Context, reason: String) -> Result<(), String> {
    Err(reason)
}

/// Runs the binary without blocking the runtime that drives the worker.
async fn owlclaw_async(db: &Db, args: &[&str]) -> Out {
    let dir = db.dir.path().to_path_buf();
    let url = db.url();
    let args: Vec<String> = ["--database", url.as_str()]
        .iter()
        .chain(args)
        .map(|s| s.to_string())
        .collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        owlclaw(&dir, &args, &[])
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_wait_follows_a_run_served_by_a_running_program() {
    let db = Db::new();
    let mut config = Config::lite();
    config.database_url = db.url();
    let client = Client::connect(config).await.unwrap();
    let worker = client.worker("cli-test-worker").start().await.unwrap();

    // The worker registered its tasks: no --retries/--timeout needed.
    let out = owlclaw_async(
        &db,
        &[
            "--json",
            "submit",
            "cli-double",
            "--input",
            "21",
            "--wait",
            "--wait-timeout",
            "30s",
        ],
    )
    .await
    .ok();
    let run = out.json();
    assert_eq!(run["status"], "succeeded");
    assert_eq!(run["output"], 42);
    assert_eq!(run["attempt"], 1);
    let id = run["id"].as_str().unwrap().to_owned();

    let events = owlclaw_async(&db, &["--json", "events", &id])
        .await
        .ok()
        .json();
    let path: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["to"].as_str().unwrap())
        .collect();
    assert_eq!(path, ["queued", "running", "succeeded"]);
    assert!(events[1]["worker"].is_string(), "{events}");

    let human = owlclaw_async(&db, &["submit", "cli-double", "--input", "5", "--wait"])
        .await
        .ok();
    assert!(
        human
            .stdout
            .lines()
            .any(|l| l == "status:           succeeded"),
        "{human:#?}"
    );
    assert!(
        human.stdout.lines().any(|l| l == "output:           10"),
        "{human:#?}"
    );

    let failed = owlclaw_async(
        &db,
        &[
            "--json",
            "submit",
            "cli-fail",
            "--input",
            r#""disk full""#,
            "--wait",
            "--wait-timeout",
            "30s",
        ],
    )
    .await;
    assert_eq!(failed.code, 1, "{failed:#?}");
    let run = failed.json();
    assert_eq!(run["status"], "failed");
    assert_eq!(run["attempt"], 2);
    assert_eq!(run["errors"].as_array().unwrap().len(), 2);
    assert_eq!(failed.error()["code"], "task_failed");
    assert!(failed.error()["message"]
        .as_str()
        .unwrap()
        .contains("disk full"));
    let human = owlclaw_async(&db, &["status", run["id"].as_str().unwrap()])
        .await
        .ok()
        .stdout;
    assert!(human.contains("error:            disk full"), "{human}");
    assert!(human.contains("attempt 1 at "), "{human}");

    let workers = owlclaw_async(&db, &["--json", "workers"]).await.ok().json();
    let names: Vec<&str> = workers
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["cli-test-worker"]);
    let tasks = workers[0]["tasks"].as_array().unwrap();
    assert!(tasks.contains(&json!("cli-double")), "{workers}");

    worker.shutdown().await.unwrap();
    client.disconnect().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedules_create_an_interval_or_a_cron_with_its_policies_and_delete_it() {
    let db = Db::new();
    let mut config = Config::lite();
    config.database_url = db.url();
    let client = Client::connect(config).await.unwrap();
    let worker = client.worker("cli-test-worker").start().await.unwrap();

    let created = owlclaw_async(
        &db,
        &[
            "--json",
            "schedules",
            "create",
            "cli-double",
            "--every",
            "30s",
            "--input",
            "2",
            "--overlap",
            "skip",
            "--catch-up",
            "none",
        ],
    )
    .await
    .ok()
    .json();
    assert_eq!(created["expr"], "@every 30s");
    assert_eq!(created["overlap"], "skip");
    assert_eq!(created["catch_up"], "none");
    assert_eq!(created["input"], 2);
    let ticks = created["next_ticks"].as_array().unwrap();
    assert_eq!(ticks.len(), 3);
    for t in ticks {
        let t = chrono::DateTime::parse_from_rfc3339(t.as_str().unwrap()).unwrap();
        assert_eq!(t.timestamp() % 30, 0, "{t}");
    }
    let id = created["id"].as_str().unwrap().to_owned();
    let cron = owlclaw_async(
        &db,
        &[
            "schedules",
            "create",
            "cli-double",
            "--cron",
            "0 9 * * *",
            "--timezone",
            "Europe/Paris",
        ],
    )
    .await
    .ok()
    .stdout;
    assert!(
        cron.starts_with("schedule ") && cron.contains(" created; next tick: "),
        "{cron}"
    );
    let listed = owlclaw_async(&db, &["schedules", "list"]).await.ok().stdout;
    assert!(
        listed.contains("skip/none") && listed.contains("allow/latest"),
        "{listed}"
    );

    // Bad flags are usage errors naming the flag and the value; nothing is created.
    for args in [
        &["schedules", "create", "cli-double"][..],
        &[
            "schedules",
            "create",
            "cli-double",
            "--every",
            "1s",
            "--cron",
            "* * * * *",
        ],
        &[
            "schedules",
            "create",
            "cli-double",
            "--every",
            "1s",
            "--overlap",
            "queue",
        ],
        &[
            "schedules",
            "create",
            "cli-double",
            "--every",
            "1s",
            "--catch-up",
            "some",
        ],
    ] {
        let out = owlclaw_async(&db, args).await;
        assert_eq!(out.code, 2, "{args:?}: {out:#?}");
    }
    let out = owlclaw_async(&db, &["schedules", "create", "cli-double", "--every", "0s"]).await;
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(
        out.stderr.contains("expr") && out.stderr.contains("@every 0s"),
        "{out:#?}"
    );

    owlclaw_async(&db, &["schedules", "delete", &id]).await.ok();
    let after = owlclaw_async(&db, &["--json", "schedules", "list"])
        .await
        .ok()
        .json();
    assert_eq!(after.as_array().unwrap().len(), 1, "{after}");
    worker.shutdown().await.unwrap();
}
