//! The fleet over HTTP: a live web page (it polls `/status.json`),
//! `/status.json`, and `/metrics` in the Prometheus text format. Served
//! from a thread of its own; the fleet is shared with the UDP receiver.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use tiny_http::{Header, Response, Server};

use crate::fleet::Fleet;

const PAGE: &str = include_str!("page.html");

/// Starts serving on `address` (`ADDR:PORT`) in a thread.
pub fn serve(address: &str, fleet: Arc<Mutex<Fleet>>, started: Instant) -> Result<(), String> {
    let server =
        Server::http(address).map_err(|e| format!("unable to serve HTTP on {address}: {e}"))?;
    std::thread::Builder::new()
        .name("http".into())
        .spawn(move || {
            for request in server.incoming_requests() {
                let now = started.elapsed().as_secs_f64();
                let (body, content_type, status) =
                    match request.url().split('?').next().unwrap_or("") {
                        "/" | "/index.html" => (PAGE.to_string(), "text/html; charset=utf-8", 200),
                        "/status.json" => match fleet.lock() {
                            Ok(fleet) => (
                                serde_json::to_string(&fleet.view(now))
                                    .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}")),
                                "application/json",
                                200,
                            ),
                            Err(_) => (
                                "{\"error\":\"unavailable\"}".to_string(),
                                "application/json",
                                500,
                            ),
                        },
                        "/metrics" => match fleet.lock() {
                            Ok(fleet) => (fleet.metrics(now), "text/plain; version=0.0.4", 200),
                            Err(_) => (String::new(), "text/plain", 500),
                        },
                        _ => ("not found\n".to_string(), "text/plain", 404),
                    };
                let mut response = Response::from_string(body).with_status_code(status);
                if let Ok(header) = Header::from_bytes("Content-Type", content_type) {
                    response = response.with_header(header);
                }
                if let Ok(header) = Header::from_bytes("Cache-Control", "no-store") {
                    response = response.with_header(header);
                }
                let _ = request.respond(response);
            }
        })
        .map_err(|e| format!("unable to start the HTTP thread: {e}"))?;
    Ok(())
}
