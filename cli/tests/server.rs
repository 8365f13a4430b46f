//! End-to-end tests of server mode: `owlclaw serve` runs as a child process on a SQLite file in a
//! temporary directory (on a free port, read from the line it prints), `owlclaw token create`
//! writes tokens into the same file, and the run commands reach the runs through the server, by
//! flags, by environment variables and by a configuration file.
//!
//! Every server is killed when its guard is dropped, so a failing test never leaves one running.

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod common;
use common::{command, owlclaw, Out};

/// A temporary directory and the URL of `owlclaw.db` in it (not created).
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

    /// `owlclaw token create --tenant TENANT --database URL`: the token.
    fn token(&self, tenant: &str) -> String {
        let url = self.url();
        let out = owlclaw(
            self.dir.path(),
            &["token", "create", "--tenant", tenant, "--database", &url],
            &[],
        )
        .ok();
        let token = out.stdout.trim_end_matches('\n');
        assert_eq!(
            out.stdout,
            format!("{token}\n"),
            "the token alone: {out:#?}"
        );
        assert!(
            !token.is_empty() && !token.contains(char::is_whitespace),
            "{out:#?}"
        );
        token.to_owned()
    }
}

/// `owlclaw serve` in a child process; killed on drop.
struct Server {
    child: Child,
    /// `127.0.0.1:PORT`, as printed.
    addr: String,
    /// Everything the server printed on stderr so far.
    stderr: Arc<Mutex<String>>,
}

const LISTENING: &str = "owlclaw engine listening on http://";

impl Server {
    /// Starts `owlclaw serve --listen 127.0.0.1:0 --database URL EXTRA...` and waits for the line
    /// that announces its address.
    fn start(db: &Db, extra: &[&str]) -> Server {
        Server::launch(db, &["serve", "--listen", "127.0.0.1:0"], extra)
    }

    /// Starts `owlclaw COMMAND... --database URL EXTRA...` (`serve` or `dashboard`) and waits
    /// for the line that announces its address.
    fn launch(db: &Db, command_args: &[&str], extra: &[&str]) -> Server {
        let url = db.url();
        let mut args = command_args.to_vec();
        args.extend_from_slice(&["--database", &url]);
        args.extend_from_slice(extra);
        let mut child = command(db.dir.path(), &args, &[])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn owlclaw serve");
        let pipe = child.stderr.take().expect("stderr");
        let stderr = Arc::new(Mutex::new(String::new()));
        let (lines, announced) = mpsc::channel::<String>();
        let log = stderr.clone();
        // Drains stderr for the whole life of the server, so that it never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                log.lock().unwrap().push_str(&format!("{line}\n"));
                if line.starts_with(LISTENING) {
                    let _ = lines.send(line);
                }
            }
        });
        let mut server = Server {
            child,
            addr: String::new(),
            stderr,
        };
        let line = match announced.recv_timeout(Duration::from_secs(30)) {
            Ok(line) => line,
            Err(_) => panic!(
                "the server did not announce its address; stderr:\n{}",
                server.stderr()
            ),
        };
        server.addr = line[LISTENING.len()..]
            .split_whitespace()
            .next()
            .expect("an address")
            .to_owned();
        assert_eq!(
            line,
            format!("{LISTENING}{} (database: {url})", server.addr),
            "the listening line"
        );
        assert!(
            server.addr.starts_with("127.0.0.1:") && !server.addr.ends_with(":0"),
            "the bound port is printed: {line}"
        );
        server
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Sends SIGTERM and waits (at most `limit`) for the process to exit.
    fn terminate(&mut self, limit: Duration) -> ExitStatus {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                start.elapsed() < limit,
                "the server did not exit within {limit:?} of SIGTERM; stderr:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A client of one server: `owlclaw --server URL [--token T] ARGS...`.
struct Remote<'a> {
    server: &'a Server,
    dir: &'a Path,
    token: Option<&'a str>,
}

impl Remote<'_> {
    fn run(&self, args: &[&str]) -> Out {
        let url = self.server.url();
        let mut all = vec!["--server", url.as_str()];
        if let Some(token) = self.token {
            all.extend(["--token", token]);
        }
        all.extend_from_slice(args);
        owlclaw(self.dir, &all, &[])
    }

    /// Schedules a queued run of `task` (no worker needed) and returns its snapshot.
    fn submit(&self, task: &str, input: &str, extra: &[&str]) -> Value {
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
        self.run(&args).ok().json()
    }
}

/// `http://127.0.0.1:PORT` where nothing listens (a port just bound and released).
fn closed_server_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

/// A hand-written `GET path` over HTTP/1.1: the status code and the body.
fn http_get(addr: &str, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {response}"));
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// The shape of a JSON value: objects become their sorted keys (recursively), arrays the shape of
/// their first element, scalars their type.
fn shape(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<_> = map.iter().collect();
            keys.sort_by(|a, b| a.0.cmp(b.0));
            Value::Object(
                keys.into_iter()
                    .map(|(k, v)| (k.clone(), shape(v)))
                    .collect(),
            )
        }
        Value::Array(items) => json!([items.first().map(shape)]),
        Value::Null => json!("null"),
        Value::Bool(_) => json!("bool"),
        Value::Number(_) => json!("number"),
        Value::String(_) => json!("string"),
    }
}

fn ids(page: &Value) -> Vec<String> {
    page["runs"]
        .as_array()
        .expect("runs")
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect()
}

/// A snapshot without its times (stored to the microsecond) and without the reason a queued
/// run waits (computed by reads only).
fn without_times(v: &Value) -> Value {
    let mut v = v.clone();
    for field in ["run_at", "created_at", "finished_at", "waiting"] {
        v.as_object_mut().unwrap().remove(field);
    }
    v
}

#[test]
fn run_commands_work_through_a_server_by_flags_env_and_config() {
    let db = Db::new();
    let token = db.token("acme");
    let server = Server::start(&db, &[]);
    let dir = db.dir.path();
    let remote = Remote {
        server: &server,
        dir,
        token: Some(&token),
    };

    let submitted = remote.submit("resize", r#"{"w":640}"#, &["--priority", "7"]);
    let id = submitted["id"].as_str().unwrap().to_owned();
    assert_eq!(submitted["status"], "queued");
    assert_eq!(submitted["priority"], 7);
    assert_eq!(submitted["input"], json!({"w": 640}));

    // By flags. No worker runs: a read says so (the answer to submit does not look).
    let status = remote.run(&["--json", "status", &id]).ok().json();
    assert_eq!(status["waiting"], "no live worker serves task `resize`");
    assert_eq!(without_times(&status), without_times(&submitted));
    let human = remote.run(&["status", &id]).ok().stdout;
    assert!(
        human.lines().any(|l| l == "status:           queued"),
        "{human}"
    );

    // By environment variables (OWLCLAW_MODE is not needed, but allowed).
    let url = server.url();
    let env = [
        ("OWLCLAW_SERVER_URL", url.as_str()),
        ("OWLCLAW_API_TOKEN", token.as_str()),
    ];
    let by_env = owlclaw(dir, &["--json", "status", &id], &env).ok().json();
    assert_eq!(without_times(&by_env), without_times(&status));
    let with_mode = [env[0], env[1], ("OWLCLAW_MODE", "server")];
    let page = owlclaw(dir, &["--json", "list"], &with_mode).ok().json();
    assert_eq!(ids(&page), [id.as_str()]);
    assert_eq!(page["next_cursor"], Value::Null);
    // A typed token wins over the environment's.
    owlclaw(dir, &["--token", "nope", "list", "--json"], &env).refused("unauthorized");

    // By a configuration file, the token substituted from the environment.
    let config = dir.join("owlclaw.yaml");
    std::fs::write(
        &config,
        format!("mode: server\nserver_url: \"{url}\"\napi_token: \"${{ACME_TOKEN}}\"\n"),
    )
    .unwrap();
    let config = config.display().to_string();
    let by_config = owlclaw(
        dir,
        &["--json", "--config", &config, "events", &id],
        &[("ACME_TOKEN", &token)],
    )
    .ok()
    .json();
    let events = by_config.as_array().unwrap();
    assert_eq!(events.len(), 1, "{by_config}");
    assert_eq!(events[0]["run_id"], id.as_str());
    assert_eq!(events[0]["to"], "queued");
    // --server typed wins over the file's server_url.
    let closed = closed_server_url();
    let out = owlclaw(
        dir,
        &["--json", "--config", &config, "--server", &closed, "list"],
        &[("ACME_TOKEN", &token)],
    )
    .refused("connection");
    assert!(out.message().contains(&closed), "{out:#?}");

    // cancel, cancel again, retry.
    let cancelled = remote.run(&["--json", "cancel", &id]).ok().json();
    assert_eq!(cancelled["status"], "cancelled");
    let again = remote
        .run(&["--json", "cancel", &id])
        .refused("invalid_transition");
    assert!(again.message().contains("cancelled"), "{again:#?}");
    let retried = remote.run(&["retry", &id]).ok();
    assert_eq!(retried.stdout, format!("run {id}: queued (attempt 0/1)\n"));
    remote
        .run(&["--json", "retry", &id])
        .refused("invalid_transition");
    let events = remote.run(&["--json", "events", &id]).ok().json();
    let path: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["to"].as_str().unwrap())
        .collect();
    assert_eq!(path, ["queued", "cancelled", "queued"]);

    // list: filters, pages and the table.
    let other = remote.submit("thumb", "1", &["--user", "alice"]);
    let other_id = other["id"].as_str().unwrap();
    let all = remote.run(&["--json", "list"]).ok().json();
    assert_eq!(ids(&all), [other_id, id.as_str()]);
    let resize = remote
        .run(&["--json", "list", "--task", "resize"])
        .ok()
        .json();
    assert_eq!(ids(&resize), [id.as_str()]);
    let page1 = remote.run(&["--json", "list", "--limit", "1"]).ok().json();
    assert_eq!(ids(&page1), [other_id]);
    let cursor = page1["next_cursor"].as_str().expect("a cursor");
    let page2 = remote
        .run(&["--json", "list", "--limit", "1", "--cursor", cursor])
        .ok()
        .json();
    assert_eq!(ids(&page2), [id.as_str()]);
    let table = remote.run(&["list"]).ok().stdout;
    assert!(table.starts_with("ID "), "{table}");
    assert_eq!(table.lines().count(), 3, "{table}");

    // Owners, through the OwlClaw-User header.
    remote
        .run(&["--json", "--user", "bob", "status", other_id])
        .refused("forbidden");
    remote
        .run(&["--json", "--user", "alice", "status", other_id])
        .ok();

    // Errors of the engine come back with their codes.
    let missing = "0192f0c1-7b1e-7c3a-9d2e-5f0a1b2c3d4e";
    let out = remote
        .run(&["--json", "status", missing])
        .refused("not_found");
    assert!(out.message().contains(missing), "{out:#?}");
    let out = remote
        .run(&[
            "--json",
            "submit",
            "t",
            "--priority",
            "11",
            "--retries",
            "0",
            "--timeout",
            "1s",
        ])
        .refused("invalid_input");
    assert!(out.message().contains("priority"), "{out:#?}");
    let out = remote
        .run(&["--json", "submit", "nobody-serves-this"])
        .refused("not_found");
    assert!(out.message().contains("--retries"), "{out:#?}");
    let out = remote.run(&[
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

    assert_eq!(remote.run(&["--json", "crons"]).ok().json(), json!([]));
    assert_eq!(remote.run(&["--json", "workers"]).ok().json(), json!([]));
}

#[test]
fn json_output_has_the_same_shape_through_a_server_and_a_store() {
    let lite = Db::new();
    let served = Db::new();
    let token = served.token("acme");
    let server = Server::start(&served, &[]);
    let remote = Remote {
        server: &server,
        dir: served.dir.path(),
        token: Some(&token),
    };
    let url = lite.url();
    let local = |args: &[&str]| {
        let mut all = vec!["--database", url.as_str()];
        all.extend_from_slice(args);
        owlclaw(lite.dir.path(), &all, &[]).ok()
    };
    let submit = [
        "--json",
        "submit",
        "t",
        "--input",
        r#"{"n":1}"#,
        "--retries",
        "0",
        "--timeout",
        "30s",
        "--idempotency-key",
        "k",
    ];
    let a = local(&submit).json();
    let b = remote.run(&submit).ok().json();
    assert_eq!(shape(&a), shape(&b));
    let (a_id, b_id) = (a["id"].as_str().unwrap(), b["id"].as_str().unwrap());
    for (lite_args, server_args) in [
        (
            vec!["--json", "status", a_id],
            vec!["--json", "status", b_id],
        ),
        (vec!["--json", "list"], vec!["--json", "list"]),
        (
            vec!["--json", "events", a_id],
            vec!["--json", "events", b_id],
        ),
        (
            vec!["--json", "cancel", a_id],
            vec!["--json", "cancel", b_id],
        ),
        (vec!["--json", "retry", a_id], vec!["--json", "retry", b_id]),
        (vec!["--json", "crons"], vec!["--json", "crons"]),
        (vec!["--json", "workers"], vec!["--json", "workers"]),
    ] {
        let a = local(&lite_args).json();
        let b = remote.run(&server_args).ok().json();
        assert_eq!(shape(&a), shape(&b), "{server_args:?}: {a} vs {b}");
    }
    // The same errors too.
    let conflict = [
        "--json",
        "submit",
        "t",
        "--input",
        "2",
        "--idempotency-key",
        "k",
        "--retries",
        "0",
        "--timeout",
        "30s",
    ];
    let a = owlclaw(
        lite.dir.path(),
        &[&["--database", url.as_str()][..], &conflict].concat(),
        &[],
    )
    .refused("idempotency_conflict");
    let b = remote.run(&conflict).refused("idempotency_conflict");
    assert_eq!(
        a.message().replace(a_id, "ID"),
        b.message().replace(b_id, "ID")
    );
}

#[test]
fn tokens_are_checked_and_tenants_never_see_each_other() {
    let db = Db::new();
    let acme = db.token("acme");
    let server = Server::start(&db, &[]);
    let dir = db.dir.path();
    let url = server.url();
    let as_acme = Remote {
        server: &server,
        dir,
        token: Some(&acme),
    };
    let run = as_acme.submit("t", "1", &[]);
    let id = run["id"].as_str().unwrap();

    // A wrong token, and no token at all.
    let wrong = Remote {
        server: &server,
        dir,
        token: Some("owc_not-a-real-token"),
    };
    let out = wrong.run(&["--json", "status", id]).refused("unauthorized");
    assert!(out.message().contains("token"), "{out:#?}");
    assert!(!out.stderr.contains("owc_not-a-real-token"), "{out:#?}");
    let human = wrong.run(&["list"]);
    assert_eq!(human.code, 1, "{human:#?}");
    assert!(
        human.stderr.starts_with("error: unauthorized"),
        "{human:#?}"
    );
    let tokenless = Remote {
        server: &server,
        dir,
        token: None,
    };
    let out = tokenless.run(&["--json", "list"]).refused("unauthorized");
    assert!(out.message().contains("--token"), "{out:#?}");
    owlclaw(dir, &["--json", "list"], &[("OWLCLAW_SERVER_URL", &url)]).refused("unauthorized");
    owlclaw(
        dir,
        &["--json", "submit", "t", "--retries", "0", "--timeout", "1s"],
        &[("OWLCLAW_SERVER_URL", &url)],
    )
    .refused("unauthorized");

    // A token created while the server runs works at once; its tenant sees nothing of acme's.
    let beta = db.token("beta");
    let as_beta = Remote {
        server: &server,
        dir,
        token: Some(&beta),
    };
    for command in ["status", "events", "cancel", "retry"] {
        as_beta.run(&["--json", command, id]).refused("not_found");
    }
    assert_eq!(ids(&as_beta.run(&["--json", "list"]).ok().json()), [""; 0]);
    let theirs = as_beta.submit("t", "1", &[]);
    assert_eq!(ids(&as_acme.run(&["--json", "list"]).ok().json()), [id]);
    as_acme
        .run(&["--json", "status", theirs["id"].as_str().unwrap()])
        .refused("not_found");
    // The same idempotency key in two tenants gives two runs.
    let a = as_acme.submit("t", "1", &["--idempotency-key", "same"]);
    let b = as_beta.submit("t", "1", &["--idempotency-key", "same"]);
    assert_ne!(a["id"], b["id"]);
}

#[test]
fn token_create_prints_the_token_once_and_checks_the_tenant() {
    let db = Db::new();
    let url = db.url();
    let dir = db.dir.path();
    let out = owlclaw(
        dir,
        &["token", "create", "--tenant", "acme", "--database", &url],
        &[],
    )
    .ok();
    assert!(db.path().exists(), "the database is created");
    assert!(out.stderr.contains("shown only once"), "{out:#?}");
    assert!(out.stderr.contains("hash"), "{out:#?}");
    let token = out.stdout.trim().to_owned();
    assert!(!out.stderr.contains(&token), "{out:#?}");

    let json_out = owlclaw(
        dir,
        &["--json", "token", "create", "--tenant", "acme"],
        &[("OWLCLAW_DATABASE_URL", &url)],
    )
    .ok();
    let created = json_out.json();
    assert_eq!(created["tenant"], "acme");
    let second = created["token"].as_str().unwrap();
    assert_ne!(second, token, "a new token each time");
    assert_eq!(created.as_object().unwrap().len(), 2, "{created}");

    // Both tokens work.
    let server = Server::start(&db, &[]);
    for t in [token.as_str(), second] {
        let remote = Remote {
            server: &server,
            dir,
            token: Some(t),
        };
        remote.run(&["--json", "list"]).ok();
    }

    let elsewhere = Db::new();
    let elsewhere_url = elsewhere.url();
    for tenant in ["a b", "", "tenant\u{e9}"] {
        let out = owlclaw(
            elsewhere.dir.path(),
            &[
                "--json",
                "token",
                "create",
                "--tenant",
                tenant,
                "--database",
                &elsewhere_url,
            ],
            &[],
        )
        .refused("invalid_input");
        assert!(out.message().contains("tenant"), "{out:#?}");
    }
    assert!(
        !elsewhere.path().exists(),
        "a refused token creates nothing"
    );
    // --tenant is required.
    assert_eq!(owlclaw(dir, &["token", "create"], &[]).code, 2);
}

#[test]
fn an_unreachable_server_is_a_connection_error_naming_its_url() {
    let dir = tempfile::tempdir().unwrap();
    let closed = closed_server_url();
    for command in [
        &["list"][..],
        &["status", "0192f0c1-7b1e-7c3a-9d2e-5f0a1b2c3d4e"],
        &["workers"],
    ] {
        let out = owlclaw(
            dir.path(),
            &[
                &["--json", "--server", closed.as_str(), "--token", "t"][..],
                command,
            ]
            .concat(),
            &[],
        )
        .refused("connection");
        assert!(out.message().contains(&closed), "{out:#?}");
        assert!(!out.message().contains("\"t\""), "{out:#?}");
    }
    let out = owlclaw(
        dir.path(),
        &["submit", "t", "--retries", "0", "--timeout", "1s"],
        &[("OWLCLAW_SERVER_URL", &closed), ("OWLCLAW_API_TOKEN", "t")],
    );
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(
        out.stderr
            .starts_with("error: cannot reach the OwlClaw engine at ")
            && out.stderr.contains(&closed),
        "{out:#?}"
    );
    // Nothing was created locally.
    assert!(!dir.path().join(".owlclaw").exists());
}

#[test]
fn insecure_dev_warns_loudly_and_needs_no_token() {
    let db = Db::new();
    let server = Server::start(&db, &["--insecure-dev"]);
    // The banner follows the listening line; wait for its last rule.
    let start = Instant::now();
    let stderr = loop {
        let text = server.stderr();
        if text.matches(&"!".repeat(78)).count() >= 2 || start.elapsed() > Duration::from_secs(10) {
            break text;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(stderr.contains("WARNING"), "{stderr}");
    assert!(stderr.contains("AUTHENTICATION IS OFF"), "{stderr}");
    assert!(stderr.contains(&server.addr), "{stderr}");
    let dir = db.dir.path();
    let tokenless = Remote {
        server: &server,
        dir,
        token: None,
    };
    let run = tokenless.submit("t", "1", &[]);
    let id = run["id"].as_str().unwrap();
    tokenless.run(&["--json", "status", id]).ok();
    // Every caller is the `default` tenant, that of lite mode: the store shows the same run.
    let url = db.url();
    let local = owlclaw(dir, &["--json", "--database", &url, "status", id], &[])
        .ok()
        .json();
    assert_eq!(local["id"], id);
    let url = server.url();
    owlclaw(dir, &["--json", "list"], &[("OWLCLAW_SERVER_URL", &url)]).ok();
}

/// `owlclaw dashboard` serves the dashboard and the API of a store without sign-in, on a
/// loopback address only: another address is refused before anything is created.
#[test]
fn the_dashboard_serves_a_store_on_loopback_only_without_sign_in() {
    let db = Db::new();
    let refused = owlclaw(
        db.dir.path(),
        &[
            "dashboard",
            "--listen",
            "0.0.0.0:0",
            "--database",
            &db.url(),
        ],
        &[],
    );
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("--listen 0.0.0.0:0: the dashboard has no sign-in, so it listens on a loopback address only"),
        "{}",
        refused.stderr
    );
    assert!(!db.path().exists(), "nothing was created");

    let server = Server::launch(&db, &["dashboard", "--listen", "127.0.0.1:0"], &[]);
    let stderr = server.stderr();
    assert!(
        stderr.contains(&format!("owlclaw dashboard at http://{}/", server.addr)),
        "{stderr}"
    );
    assert!(!stderr.contains("AUTHENTICATION IS OFF"), "{stderr}");
    let (status, page) = http_get(&server.addr, "/");
    assert_eq!(status, 200);
    assert!(page.contains("/dashboard/app.js"), "{page}");
    let (status, body) = http_get(&server.addr, "/v1/runs");
    assert_eq!(status, 200, "no token needed: {body}");
    assert!(body.contains("\"runs\":[]"), "{body}");
}

#[test]
fn serve_answers_health_and_openapi_and_stops_on_sigterm() {
    let db = Db::new();
    assert!(!db.path().exists());
    let mut server = Server::start(&db, &["--body-limit", "65536", "--lease", "20s"]);
    assert!(db.path().exists(), "serve creates the database");

    let (status, body) = http_get(&server.addr, "/healthz");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("ok"), "{body}");
    let (status, body) = http_get(&server.addr, "/v1/openapi.json");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"openapi\""), "{body}");
    let (status, _) = http_get(&server.addr, "/v1/runs");
    assert_eq!(status, 401);

    // Logs at info by default (read from the pipe by another thread: give it time).
    let start = Instant::now();
    while !server.stderr().contains("INFO") && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(server.stderr().contains("INFO"), "{}", server.stderr());

    // The port is taken: a second server fails, naming the address.
    let addr = server.addr.clone();
    let url = db.url();
    let busy = owlclaw(
        db.dir.path(),
        &["--json", "serve", "--listen", &addr, "--database", &url],
        &[],
    )
    .refused("listen");
    assert!(busy.message().contains(&addr), "{busy:#?}");

    let status = server.terminate(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "{}", server.stderr());
    assert!(
        server.stderr().contains("owlclaw engine stopped"),
        "{}",
        server.stderr()
    );
    assert!(TcpStream::connect(&addr).is_err(), "the port is closed");
}
