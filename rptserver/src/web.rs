//! The fleet over HTTP: the live web page, `/status.json` (whole, only
//! problems, or only what changed since a generation, with an `ETag` so
//! that an unchanged fleet costs a 304) and `/metrics`, gzip-compressed
//! for clients that accept it. `answer` decides each response from the
//! request and the fleet; `server.rs` carries them.

use std::io::Write as _;
use std::sync::Mutex;

use flate2::write::GzEncoder;
use flate2::Compression;

use crate::fleet::Fleet;
use crate::metrics::MetricsJobs;
use crate::views::Query;

const PAGE: &str = include_str!("page.html");

/// Bodies smaller than this are sent as they are: compressing them saves
/// less than the header costs.
const COMPRESS_ABOVE: usize = 1024;

/// A request as `answer` needs it.
#[derive(Debug, Default)]
pub struct Request<'a> {
    /// Path and query, as in the request line.
    pub url: &'a str,
    pub if_none_match: Option<&'a str>,
    pub accepts_gzip: bool,
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

/// How the collector serves.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    pub metrics_jobs: MetricsJobs,
}

/// The response to `request`, at `now`. Settles the fleet first, so that
/// a host gone stale is a change the viewer is told of.
pub fn answer(fleet: &Mutex<Fleet>, request: &Request, now: f64, options: Options) -> Response {
    let (path, query) = request.url.split_once('?').unwrap_or((request.url, ""));
    let Ok(mut fleet) = fleet.lock() else {
        return plain(500, "the collector's state is unavailable\n");
    };
    match path {
        "/" | "/index.html" => body(
            200,
            "text/html; charset=utf-8",
            PAGE.as_bytes().to_vec(),
            request,
        ),
        "/status.json" => {
            let query = parse_query(query);
            fleet.settle(now);
            let tag = format!(
                "\"{}{}\"",
                fleet.generation(),
                if query.problems { "p" } else { "" }
            );
            if request.if_none_match == Some(tag.as_str()) {
                return Response {
                    status: 304,
                    headers: vec![("ETag", tag), ("Cache-Control", "no-cache".into())],
                    body: Vec::new(),
                };
            }
            let view = fleet.view(now, &query);
            // Reports wait while the lock is held: serialize without it.
            drop(fleet);
            let json = serde_json::to_vec(&view)
                .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}").into_bytes());
            let mut response = body(200, "application/json", json, request);
            response.headers.push(("ETag", tag));
            response
        }
        "/metrics" => {
            fleet.settle(now);
            let text = fleet.metrics(now, options.metrics_jobs);
            drop(fleet);
            body(200, "text/plain; version=0.0.4", text.into_bytes(), request)
        }
        _ => plain(404, "not found\n"),
    }
}

fn parse_query(query: &str) -> Query {
    let mut parsed = Query::default();
    for pair in query.split('&') {
        match pair.split_once('=').unwrap_or((pair, "")) {
            ("since", value) => parsed.since = value.parse().ok(),
            ("problems", value) => parsed.problems = !matches!(value, "0" | "false"),
            _ => {}
        }
    }
    parsed
}

fn plain(status: u16, text: &str) -> Response {
    Response {
        status,
        headers: vec![("Content-Type", "text/plain".into())],
        body: text.as_bytes().to_vec(),
    }
}

/// A 200 (or other) with `content`, compressed when the client takes it.
fn body(status: u16, content_type: &str, content: Vec<u8>, request: &Request) -> Response {
    let mut headers = vec![
        ("Content-Type", content_type.to_string()),
        ("Cache-Control", "no-cache".into()),
        ("Vary", "Accept-Encoding".into()),
    ];
    if request.accepts_gzip && content.len() > COMPRESS_ABOVE {
        if let Some(compressed) = gzip(&content) {
            headers.push(("Content-Encoding", "gzip".into()));
            return Response {
                status,
                headers,
                body: compressed,
            };
        }
    }
    Response {
        status,
        headers,
        body: content,
    }
}

/// The fastest level: the JSON of a large fleet is repetitive, and
/// level 1 takes most of what higher levels would, for a fraction of the
/// CPU.
fn gzip(content: &[u8]) -> Option<Vec<u8>> {
    let mut encoder = GzEncoder::new(Vec::with_capacity(content.len() / 8), Compression::fast());
    encoder.write_all(content).ok()?;
    encoder.finish().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use pmtr_core::proto::report::decode;

    fn fleet() -> Mutex<Fleet> {
        let mut fleet = Fleet::starting_at(7);
        let mut report = String::from("report web01\n");
        for i in 0..50 {
            report.push_str(&format!("job{i} e 10 {} /usr/bin/job{i}\n", 100 + i));
        }
        fleet.record(decode(report.as_bytes()).unwrap(), "10.0.0.5:1", 0.0);
        Mutex::new(fleet)
    }

    fn ask(
        fleet: &Mutex<Fleet>,
        url: &str,
        if_none_match: Option<&str>,
        gzip: bool,
        now: f64,
    ) -> Response {
        let request = Request {
            url,
            if_none_match,
            accepts_gzip: gzip,
        };
        answer(fleet, &request, now, Options::default())
    }

    fn header<'a>(response: &'a Response, name: &str) -> Option<&'a str> {
        response
            .headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn an_unchanged_fleet_is_a_304() {
        let fleet = fleet();
        let first = ask(&fleet, "/status.json", None, false, 1.0);
        assert_eq!(first.status, 200);
        let tag = header(&first, "ETag").unwrap().to_string();
        assert_eq!(tag, "\"8\"");
        let again = ask(&fleet, "/status.json?since=8", Some(&tag), false, 2.0);
        assert_eq!((again.status, again.body.len()), (304, 0));
        // With problems, another tag: the same generation, another body.
        let problems = ask(&fleet, "/status.json?problems=1", Some(&tag), false, 2.0);
        assert_eq!(problems.status, 200);
        assert_eq!(header(&problems, "ETag"), Some("\"8p\""));
        // Stale: a change, so a 200.
        let later = ask(&fleet, "/status.json?since=8", Some(&tag), false, 30.0);
        assert_eq!(later.status, 200);
        let json: serde_json::Value = serde_json::from_slice(&later.body).unwrap();
        assert_eq!(json["hosts"][0]["stale"], true);
        assert_eq!(json["complete"], false);
    }

    #[test]
    fn large_bodies_are_gzipped_for_clients_that_accept_it() {
        let fleet = fleet();
        let plain = ask(&fleet, "/status.json", None, false, 1.0);
        let packed = ask(&fleet, "/status.json", None, true, 1.0);
        assert_eq!(header(&packed, "Content-Encoding"), Some("gzip"));
        assert_eq!(header(&plain, "Content-Encoding"), None);
        assert!(packed.body.len() * 4 < plain.body.len());
        let mut unpacked = Vec::new();
        std::io::Read::read_to_end(
            &mut flate2::read::GzDecoder::new(packed.body.as_slice()),
            &mut unpacked,
        )
        .unwrap();
        assert_eq!(unpacked, plain.body);
        let small = ask(&fleet, "/nowhere", None, true, 1.0);
        assert_eq!(
            (small.status, header(&small, "Content-Encoding")),
            (404, None)
        );
    }

    #[test]
    fn queries_are_read_leniently() {
        assert_eq!(
            parse_query("since=12&problems=1&other"),
            Query {
                since: Some(12),
                problems: true
            }
        );
        assert_eq!(parse_query("since=x&problems=0"), Query::default());
        assert_eq!(parse_query(""), Query::default());
    }
}
