//! An engine that commits a claim and then fails to deliver the answer (it died, or the
//! connection broke) must not leave the run leased to a worker that never received it. The
//! worker sends the request again with the same id and gets the run back at once: the run
//! succeeds in its first attempt, claimed once, long before its lease could expire.
//!
//! A proxy between the worker and the engine cuts the first answer that hands out a run: the
//! engine has committed the claim, the worker sees a broken connection.

use owlclaw::{task, Client, Context, RunStatus};
use owlclaw_tests::{config_for, TestDb};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};

/// A lease far longer than the test's deadline: recovering through its expiry fails the test.
const LONG_LEASE: Duration = Duration::from_secs(120);
/// Generous: the machine may be loaded, and still far below [`LONG_LEASE`].
const DEADLINE: Duration = Duration::from_secs(60);

#[task(timeout = "1m")]
async fn handed(_ctx: Context, n: u32) -> anyhow::Result<u32> {
    Ok(n + 1)
}

/// A TCP proxy to `upstream` that, while armed, cuts the first answer handing out a run: it
/// closes both connections instead of forwarding it.
struct Proxy {
    url: String,
    armed: Arc<AtomicBool>,
    cut: Arc<AtomicU32>,
}

impl Proxy {
    async fn start(upstream: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let armed = Arc::new(AtomicBool::new(false));
        let cut = Arc::new(AtomicU32::new(0));
        let (a, c) = (armed.clone(), cut.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let server = TcpStream::connect(&upstream)
                    .await
                    .expect("reach the engine");
                tokio::spawn(relay(client, server, a.clone(), c.clone()));
            }
        });
        Proxy { url, armed, cut }
    }
}

async fn relay(client: TcpStream, server: TcpStream, armed: Arc<AtomicBool>, cut: Arc<AtomicU32>) {
    const HANDS_OUT: &[u8] = b"\"assignments\":[{";
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let up = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut cr, &mut sw).await;
    });
    let mut buf = vec![0u8; 64 * 1024];
    // The end of the previous read, so that a marker split across two reads is still seen.
    let mut tail: Vec<u8> = Vec::new();
    loop {
        let n = match sr.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut window = std::mem::take(&mut tail);
        window.extend_from_slice(&buf[..n]);
        if armed.load(Ordering::SeqCst)
            && window.windows(HANDS_OUT.len()).any(|w| w == HANDS_OUT)
            && armed.swap(false, Ordering::SeqCst)
        {
            cut.fetch_add(1, Ordering::SeqCst);
            break; // both connections close: the answer is lost
        }
        if cw.write_all(&buf[..n]).await.is_err() {
            break;
        }
        tail = window[window.len().saturating_sub(HANDS_OUT.len())..].to_vec();
    }
    up.abort();
}

/// An engine server in a child process, killed when dropped.
async fn engine(database_url: &str) -> (Child, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_owlclaw-test-engine"));
    cmd.arg(database_url)
        .args(["--listen", "127.0.0.1:0"])
        .args(["--lease-ms", &LONG_LEASE.as_millis().to_string()])
        .args(["--token-tenant", owlclaw_engine::LITE_TENANT])
        .stdout(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().expect("spawn owlclaw-test-engine");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(DEADLINE, lines.next_line())
        .await
        .expect("the engine ready in time")
        .unwrap()
        .expect("the engine's ready line");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let mut parts = line.strip_prefix("ready ").expect(&line).split_whitespace();
    let url = parts.next().unwrap().to_string();
    let token = parts.next().expect("a token").to_string();
    (child, url, token)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_whose_answer_is_lost_comes_back_to_the_worker_at_once() {
    owlclaw_tests::init_tracing();
    let db = TestDb::new();
    let (_engine, url, token) = engine(&db.url()).await;
    let proxy = Proxy::start(url.strip_prefix("http://").unwrap().to_string()).await;
    // The client schedules straight to the engine; the worker goes through the proxy.
    let client = Client::connect(config_for(&url, Some(&token)))
        .await
        .unwrap();
    let through = Client::connect(config_for(&proxy.url, Some(&token)))
        .await
        .unwrap();
    let worker = through
        .worker("behind-proxy")
        .task::<handed>()
        .start()
        .await
        .unwrap();

    proxy.armed.store(true, Ordering::SeqCst);
    let started = Instant::now();
    let run = handed::enqueue(&client, 41).await.unwrap();
    assert_eq!(run.result_timeout(DEADLINE).await.unwrap(), 42);
    assert!(
        started.elapsed() < LONG_LEASE / 2,
        "recovered at once, not by the lease's expiry: {:?}",
        started.elapsed()
    );
    assert_eq!(
        proxy.cut.load(Ordering::SeqCst),
        1,
        "an answer was really cut"
    );

    let snap = client.status(run.id()).await.unwrap();
    assert_eq!((snap.status, snap.attempt), (RunStatus::Succeeded, 1));
    let events = client.events(run.id()).await.unwrap();
    let reasons: Vec<(RunStatus, &str)> =
        events.iter().map(|e| (e.to, e.reason.as_str())).collect();
    assert_eq!(
        reasons,
        [
            (RunStatus::Queued, "scheduled"),
            (RunStatus::Running, "claimed"),
            (RunStatus::Succeeded, "succeeded"),
        ],
        "claimed once, no lease expiry"
    );
    worker.shutdown().await.unwrap();
}
