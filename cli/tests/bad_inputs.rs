//! Bad input as a table: every row of `bad_inputs.json` is a request to a real `owlclaw serve`
//! engine on loopback, an `owlclaw` command line, or a configuration file (or variable), with
//! the status or exit code and the error code it must get, and what its message must name. After
//! each row, nothing may have been stored: the runs, crons and workers of the tenant are as before
//! (and a configuration error creates no database).

mod common;

use common::owlclaw;
use owlclaw_engine::http::{self, ServerConfig};
use owlclaw_engine::{Engine, EngineConfig};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::Path;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TENANT: &str = "default";
const UNKNOWN_RUN: &str = "00000000-0000-4000-8000-000000000000";

/// Sends one HTTP/1.1 request and reads the whole answer: (status, body).
async fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: Option<Vec<u8>>,
) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    let body = body.unwrap_or_default();
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    stream.write_all(head.as_bytes()).await.unwrap();
    // The server may answer (413) before reading a large body: a failed write is fine then.
    let _ = stream.write_all(&body).await;
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

/// What the tenant has stored: its runs (with their status), crons, workers and rate limits.
async fn stored(engine: &Engine) -> Value {
    let runs = engine
        .list_runs(TENANT, Default::default())
        .await
        .unwrap()
        .runs
        .into_iter()
        .map(|r| json!([r.id, r.status, r.owner]))
        .collect::<Vec<_>>();
    let crons = engine.list_crons(TENANT).await.unwrap().len();
    let workers = engine
        .list_workers(TENANT)
        .await
        .unwrap()
        .into_iter()
        .map(|w| w.id)
        .collect::<Vec<_>>();
    let rate_limits = engine.rate_limits(TENANT).await.unwrap();
    json!({"runs": runs, "crons": crons, "workers": workers, "rate_limits": rate_limits})
}

fn fill(text: &str, vars: &[(&str, &str)]) -> String {
    vars.iter().fold(text.to_string(), |t, (k, v)| {
        t.replace(&format!("{{{k}}}"), v)
    })
}

/// Checks one row; returns what went wrong, if anything.
async fn check_row(
    row: &Value,
    addr: SocketAddr,
    token: &str,
    db_url: &str,
    dir: &Path,
    vars: &[(&str, &str)],
) -> Option<String> {
    let kind = row["kind"].as_str().unwrap();
    let code = row["code"].as_str().unwrap();
    match kind {
        "http" => {
            let mut headers: Vec<(&str, String)> = Vec::new();
            match row["auth"].as_str() {
                Some("none") => {}
                Some("wrong") => headers.push(("Authorization", "Bearer owc_wrong".into())),
                _ => headers.push(("Authorization", format!("Bearer {token}"))),
            }
            if let Some(u) = row["user"].as_str() {
                headers.push(("OwlClaw-User", u.to_string()));
            }
            let body = if let Some(raw) = row["raw"].as_str() {
                Some(raw.as_bytes().to_vec())
            } else if row.get("body").is_some() {
                let big = "y".repeat(1_100_000);
                let text = fill(&row["body"].to_string(), vars).replace("{big}", &big);
                Some(text.into_bytes())
            } else {
                None
            };
            if body.is_some() {
                let ct = row["content_type"].as_str().unwrap_or("application/json");
                headers.push(("Content-Type", ct.to_string()));
            }
            let method = row["method"].as_str().unwrap();
            let path = fill(row["path"].as_str().unwrap(), vars);
            let (status, text) = call(addr, method, &path, &headers, body).await;
            let want = row["status"].as_u64().unwrap() as u16;
            let Ok(answer) = serde_json::from_str::<Value>(&text) else {
                return Some(format!("got {status}, body not JSON: {text:?}"));
            };
            let err = &answer["error"];
            if status != want || err["code"] != code {
                return Some(format!("got {status} {}, want {want} {code}", err));
            }
            if let Some(field) = row["field"].as_str() {
                if err["field"] != field {
                    return Some(format!(
                        "field {} instead of {field:?}: {err}",
                        err["field"]
                    ));
                }
            }
            if text.contains("postgres://") || text.contains("sqlite://") {
                return Some(format!("the answer shows a database URL: {text}"));
            }
            None
        }
        "cli" | "config" => {
            let mut args: Vec<String> = vec!["--json".into()];
            let config = dir.join("owlclaw.yaml");
            let config_db = dir.join("from-config.db");
            if kind == "config" {
                let yaml = format!(
                    "database_url: sqlite://{}\n{}",
                    config_db.display(),
                    fill(row["yaml"].as_str().unwrap(), vars)
                );
                // A row that sets `database_url` itself replaces the first line's.
                let yaml = if row["yaml"].as_str().unwrap().contains("database_url") {
                    fill(row["yaml"].as_str().unwrap(), vars)
                } else {
                    yaml
                };
                std::fs::write(&config, yaml).unwrap();
                args.extend([
                    "--config".into(),
                    config.display().to_string(),
                    "list".into(),
                ]);
            } else {
                let own: Vec<String> = row["args"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|a| fill(a.as_str().unwrap(), vars))
                    .collect();
                let needs_store = !matches!(own[0].as_str(), "serve" | "frobnicate");
                if needs_store {
                    args.extend(["--database".into(), db_url.to_string()]);
                } else if own[0] == "serve" {
                    args.extend([
                        "--database".into(),
                        format!("sqlite://{}", dir.join("serve.db").display()),
                    ]);
                }
                args.extend(own);
            }
            let env: Vec<(String, String)> = row["env"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                        .collect()
                })
                .unwrap_or_default();
            let dir_owned = dir.to_path_buf();
            let out = tokio::task::spawn_blocking(move || {
                let env: Vec<(&str, &str)> =
                    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                owlclaw(&dir_owned, &args, &env)
            })
            .await
            .unwrap();
            let want = row["exit"].as_i64().unwrap() as i32;
            let Ok(err) = serde_json::from_str::<Value>(out.stderr.trim()) else {
                return Some(format!(
                    "exit {}, stderr not a JSON error: {out:?}",
                    out.code
                ));
            };
            let err = &err["error"];
            if out.code != want || err["code"] != code {
                return Some(format!("exit {} {}, want {want} {code}", out.code, err));
            }
            if !out.stdout.is_empty() {
                return Some(format!("printed on stdout: {:?}", out.stdout));
            }
            if let Some(says) = row["says"].as_str() {
                let message = err["message"].as_str().unwrap_or_default();
                if !message.contains(says) {
                    return Some(format!("message does not name {says:?}: {message}"));
                }
            }
            if kind == "config" && config_db.exists() {
                return Some("the refused configuration created its database".into());
            }
            if dir.join("serve.db").exists() {
                return Some("the refused serve command created its database".into());
            }
            None
        }
        other => Some(format!("unknown kind {other:?}")),
    }
}

#[test]
fn every_bad_input_of_the_table_is_refused_as_listed_and_stores_nothing() {
    let table: Vec<Value> =
        serde_json::from_str(include_str!("bad_inputs.json")).expect("bad_inputs.json");
    assert!(table.len() >= 80, "the table has {} rows", table.len());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let db_url = format!("sqlite://{}", dir.path().join("owlclaw.db").display());
        let engine = Engine::start(EngineConfig {
            database_url: db_url.clone(),
            // Workers stay listed for the whole walk through the table.
            lease: std::time::Duration::from_secs(3600),
            ..EngineConfig::default()
        })
        .await
        .unwrap();
        let token = engine.create_token(TENANT).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(http::serve(
            listener,
            engine.clone(),
            ServerConfig::default(),
            async move {
                let _ = stopped.await;
            },
        ));
        // The world the rows act on: a worker serving send-email, and alice's queued run.
        let auth = ("Authorization", format!("Bearer {token}"));
        let json_ct = ("Content-Type", "application/json".to_string());
        let reg = json!({"name": "table", "slots": 2, "tasks": [{"name": "send-email", "retries": 0,
            "timeout": "10s", "priority": 5, "backoff": {"initial": "1s", "factor": 2.0, "max": "5m"}}]});
        let (status, text) = call(addr, "POST", "/v1/workers", &[auth.clone(), json_ct.clone()],
            Some(reg.to_string().into_bytes())).await;
        assert_eq!(status, 201, "{text}");
        let worker: Value = serde_json::from_str(&text).unwrap();
        let worker = worker["worker_id"].as_str().unwrap().to_string();
        let (status, text) = call(addr, "POST", "/v1/runs",
            &[auth.clone(), json_ct.clone(), ("OwlClaw-User", "alice".into())],
            Some(br#"{"task": "send-email"}"#.to_vec())).await;
        assert_eq!(status, 201, "{text}");
        let run: Value = serde_json::from_str(&text).unwrap();
        let run = run["id"].as_str().unwrap().to_string();
        let dir_text = dir.path().display().to_string();
        let vars = [
            ("run", run.as_str()),
            ("unknown", UNKNOWN_RUN),
            ("worker", worker.as_str()),
            ("dir", dir_text.as_str()),
        ];
        let before = stored(&engine).await;
        let mut failures = Vec::new();
        for row in &table {
            let name = row["name"].as_str().unwrap();
            if let Some(problem) =
                check_row(row, addr, &token, &db_url, dir.path(), &vars).await
            {
                failures.push(format!("{} {name:?}: {problem}", row["kind"]));
            }
            let now = stored(&engine).await;
            if now != before {
                failures.push(format!("{name:?} stored something: {before} -> {now}"));
                break;
            }
        }
        let _ = stop.send(());
        let _ = server.await;
        assert!(
            failures.is_empty(),
            "{} of {} rows failed:\n{}",
            failures.len(),
            table.len(),
            failures.join("\n")
        );
    });
}
