//! How the collector's HTTP is carried: hyper on a current-thread tokio
//! runtime in a thread of its own, with every client bounded — a cap on
//! connections, on header size, on the time to send the headers and on a
//! connection's whole life — so that a client that stalls, never reads or
//! sends an endless header holds only its own connection. What is served
//! is decided by `web::answer`.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::Semaphore;

use crate::fleet::Fleet;
use crate::web::{answer, Options, Request};

/// Connections served at once; more are closed at once (and counted).
/// An idle connection costs a task and a small buffer, so the cap is set
/// for a thousand clients that stall (a slowloris) to leave room for the
/// rest; the descriptor limit is raised to fit it.
pub const MAX_CONNECTIONS: usize = 2048;
/// Time a client has to send a request's headers (also the idle time of
/// a kept-alive connection).
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest a connection lives, to bound a client that never reads.
const CONNECTION_LIFE: Duration = Duration::from_secs(120);
/// The largest request head read (hyper answers 431 beyond it).
const MAX_HEAD: usize = 16 * 1024;
/// After a failed accept (out of descriptors), wait this long rather
/// than spin on a listener that stays readable.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Binds `address` (`ADDR:PORT`) now, so that an error is the caller's,
/// and serves in a thread.
pub fn serve(
    address: &str,
    fleet: Arc<Mutex<Fleet>>,
    started: Instant,
    options: Options,
) -> Result<(), String> {
    raise_descriptor_limit();
    let listener = std::net::TcpListener::bind(address)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .map_err(|e| format!("unable to serve HTTP on {address}: {e}"))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(|e| format!("unable to start the HTTP runtime: {e}"))?;
    std::thread::Builder::new()
        .name("http".into())
        .spawn(move || runtime.block_on(accept(listener, fleet, started, options)))
        .map_err(|e| format!("unable to start the HTTP thread: {e}"))?;
    Ok(())
}

/// Raises the soft limit on descriptors to what the connections need (the
/// hard limit allowing): the usual soft limit of 1 024 would fail accepts
/// first.
fn raise_descriptor_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let wanted = MAX_CONNECTIONS as u64 + 64;
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < wanted {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, wanted.min(hard), hard);
        }
    }
}

async fn accept(
    listener: std::net::TcpListener,
    fleet: Arc<Mutex<Fleet>>,
    started: Instant,
    options: Options,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("pmtr-rptserver: unable to serve HTTP: {error}");
            return;
        }
    };
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(_) => {
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            if let Ok(mut fleet) = fleet.lock() {
                fleet.connections_refused += 1;
            }
            drop(stream);
            continue;
        };
        let fleet = Arc::clone(&fleet);
        tokio::spawn(async move {
            let service = service_fn(move |request: hyper::Request<Incoming>| {
                let response = respond(&fleet, &request, started, options);
                async move { Ok::<_, Infallible>(response) }
            });
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .max_buf_size(MAX_HEAD)
                .serve_connection(TokioIo::new(stream), service);
            let _ = tokio::time::timeout(CONNECTION_LIFE, connection).await;
            drop(slot);
        });
    }
}

fn respond(
    fleet: &Mutex<Fleet>,
    request: &hyper::Request<Incoming>,
    started: Instant,
    options: Options,
) -> hyper::Response<Full<Bytes>> {
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
    };
    let accepts_gzip = header("accept-encoding").is_some_and(|v| {
        v.split(',')
            .any(|coding| coding.trim().split(';').next() == Some("gzip"))
    });
    let url = request.uri().path_and_query().map_or("/", |p| p.as_str());
    let decided =
        if request.method() == hyper::Method::GET || request.method() == hyper::Method::HEAD {
            answer(
                fleet,
                &Request {
                    url,
                    if_none_match: header("if-none-match"),
                    accepts_gzip,
                },
                started.elapsed().as_secs_f64(),
                options,
            )
        } else {
            crate::web::Response {
                status: 405,
                headers: vec![("Allow", "GET, HEAD".into())],
                body: Vec::new(),
            }
        };
    // A whole-fleet answer was built and freed: give its memory back.
    let whole = matches!(url.split('?').next(), Some("/status.json" | "/metrics"))
        && !url.contains("since=");
    if whole && decided.status == 200 {
        pmtr_common::memory::release_free_memory();
    }
    let mut response = hyper::Response::new(Full::new(Bytes::from(decided.body)));
    *response.status_mut() = hyper::StatusCode::from_u16(decided.status)
        .unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    for (name, value) in decided.headers {
        if let Ok(value) = hyper::header::HeaderValue::from_str(&value) {
            response.headers_mut().insert(name, value);
        }
    }
    response
}
