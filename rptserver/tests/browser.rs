//! A real browser for the tests: headless Chromium driven through the
//! DevTools protocol over its WebSocket, in real time (virtual time stops
//! the clocks the page's own timing reads). Chromium leads a process group
//! of its own, killed when the test ends.

use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use base64::Engine as _;
use serde_json::{json, Value};
use tungstenite::WebSocket;

use crate::harness::{wait_until, Background, Sandbox, SHORT};

/// The Chromium installed here, if any.
pub fn chromium() -> Option<&'static str> {
    ["chromium", "chromium-browser"]
        .into_iter()
        .find(|c| Command::new(c).arg("--version").output().is_ok())
}

pub struct Browser {
    _process: Background,
    socket: WebSocket<TcpStream>,
    session: String,
    next_id: u64,
}

impl Browser {
    /// Chromium with one page of `width`×`height`, at `url`.
    pub fn open(sandbox: &Sandbox, chromium: &str, url: &str, width: u32, height: u32) -> Browser {
        let profile = sandbox.path("chromium-profile");
        let process = Background::start_group(
            sandbox,
            chromium,
            &[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--remote-debugging-port=0",
                "--remote-debugging-address=127.0.0.1",
                &format!("--user-data-dir={}", profile.display()),
                "about:blank",
            ],
        );
        let port_file = profile.join("DevToolsActivePort");
        let mut endpoint = None;
        let ready = wait_until(SHORT, || {
            endpoint = read_endpoint(&port_file);
            endpoint.is_some()
        });
        assert!(
            ready,
            "chromium did not open DevTools:\n{}",
            process.transcript()
        );
        let (port, path) = endpoint.unwrap();
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        // A browser that stops answering fails the test instead of
        // holding it.
        stream.set_read_timeout(Some(SHORT)).unwrap();
        let (socket, _) = tungstenite::client(format!("ws://127.0.0.1:{port}{path}"), stream)
            .unwrap_or_else(|e| panic!("DevTools WebSocket: {e}"));
        let mut browser = Browser {
            _process: process,
            socket,
            session: String::new(),
            next_id: 0,
        };
        let target = browser.call("Target.createTarget", json!({"url": "about:blank"}));
        let attached = browser.call(
            "Target.attachToTarget",
            json!({"targetId": target["targetId"], "flatten": true}),
        );
        browser.session = attached["sessionId"].as_str().unwrap().to_string();
        browser.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": false}),
        );
        browser.call("Page.navigate", json!({"url": url}));
        browser
    }

    /// Calls `method`, on the page once there is one; its result.
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({"id": id, "method": method, "params": params});
        if !self.session.is_empty() {
            message["sessionId"] = json!(self.session);
        }
        self.socket
            .send(tungstenite::Message::text(message.to_string()))
            .unwrap_or_else(|e| panic!("{method}: {e}"));
        loop {
            let reply = self
                .socket
                .read()
                .unwrap_or_else(|e| panic!("{method}: no answer: {e}"));
            let Ok(text) = reply.to_text() else { continue };
            let Ok(value) = serde_json::from_str::<Value>(text) else {
                continue;
            };
            if value["id"] == id {
                assert!(value["error"].is_null(), "{method}: {value}");
                return value["result"].clone();
            }
        }
    }

    /// The value of a JavaScript expression in the page (awaited if a
    /// promise); null when it throws.
    pub fn eval(&mut self, expression: &str) -> Value {
        let result = self.call(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
        );
        result["result"]["value"].clone()
    }

    /// Waits until `expression` is true in the page.
    pub fn wait_for(&mut self, timeout: Duration, expression: &str) -> bool {
        wait_until(timeout, || self.eval(expression) == json!(true))
    }

    /// A PNG of what the page shows.
    pub fn screenshot(&mut self, path: &Path) {
        let shot = self.call("Page.captureScreenshot", json!({"format": "png"}));
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap_or(""))
            .unwrap_or_else(|e| panic!("screenshot: {e}"));
        std::fs::write(path, png).unwrap();
    }
}

fn read_endpoint(port_file: &Path) -> Option<(u16, String)> {
    let text = std::fs::read_to_string(port_file).ok()?;
    let mut lines = text.lines();
    let port = lines.next()?.trim().parse().ok()?;
    let path = lines.next()?.trim().to_string();
    Some((port, path))
}
