//! A loopback HTTP receiver standing in for the server: records every
//! request, answers what its policy says, and can be taken down (the port
//! refuses connections) and brought back on the same port.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A request as received.
#[derive(Clone, Debug)]
pub struct Request {
    /// Path without the query.
    pub path: String,
    /// Decoded query parameters, in order.
    pub query: Vec<(String, String)>,
    /// Headers, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
    /// When it arrived.
    pub at: Instant,
}

impl Request {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A query parameter's value.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// An answer.
pub struct Response {
    /// HTTP status.
    pub status: u16,
    /// JSON body.
    pub body: String,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
}

impl Response {
    /// `200 {"stored": true}`.
    pub fn stored() -> Response {
        Response {
            status: 200,
            body: "{\"stored\": true}".into(),
            headers: Vec::new(),
        }
    }

    /// An error status with `{"error": message}`.
    pub fn error(status: u16, message: &str) -> Response {
        Response {
            status,
            body: format!("{{\"error\": \"{message}\"}}"),
            headers: Vec::new(),
        }
    }
}

type Policy = Box<dyn FnMut(&Request) -> Response + Send>;

struct State {
    requests: Vec<Request>,
    up: bool,
    policy: Policy,
}

/// The receiver; stops its thread when dropped.
pub struct Receiver {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Receiver {
    /// A receiver that stores everything.
    pub fn new() -> Receiver {
        Receiver::with_policy(|_| Response::stored())
    }

    /// A receiver answering with `policy`.
    pub fn with_policy(policy: impl FnMut(&Request) -> Response + Send + 'static) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let addr = listener.local_addr().expect("local address");
        let state = Arc::new(Mutex::new(State {
            requests: Vec::new(),
            up: true,
            policy: Box::new(policy),
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (state, stop) = (Arc::clone(&state), Arc::clone(&stop));
            std::thread::spawn(move || serve(listener, addr, &state, &stop))
        };
        Receiver {
            addr,
            state,
            stop,
            thread: Some(thread),
        }
    }

    /// Base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Takes the server down (connections refused) or brings it back.
    pub fn set_up(&self, up: bool) {
        self.state.lock().expect("receiver state").up = up;
        // Let the serving thread close or reopen the port.
        std::thread::sleep(Duration::from_millis(50));
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Request> {
        self.state.lock().expect("receiver state").requests.clone()
    }

    /// Waits until `n` requests arrived (at most `timeout`).
    pub fn wait_for(&self, n: usize, timeout: Duration) -> bool {
        super::support::wait_until(timeout, || self.requests().len() >= n)
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(first: TcpListener, addr: SocketAddr, state: &Mutex<State>, stop: &AtomicBool) {
    let mut listener = Some(first);
    while !stop.load(Ordering::Relaxed) {
        let up = state.lock().map(|s| s.up).unwrap_or(false);
        if !up {
            listener = None;
            std::thread::sleep(Duration::from_millis(5));
            continue;
        }
        let Some(l) = &listener else {
            match TcpListener::bind(addr) {
                Ok(l) => {
                    let _ = l.set_nonblocking(true);
                    listener = Some(l);
                }
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
            continue;
        };
        match l.accept() {
            Ok((stream, _)) => handle(stream, state),
            Err(_) => std::thread::sleep(Duration::from_millis(2)),
        }
    }
}

fn handle(stream: TcpStream, state: &Mutex<State>) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(read_half);
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let target = line.split_whitespace().nth(1).unwrap_or("").to_owned();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
    }
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_owned(), parse_query(q)),
        None => (target.clone(), Vec::new()),
    };
    let req = Request {
        path,
        query,
        headers,
        body,
        at: Instant::now(),
    };
    let response = {
        let Ok(mut s) = state.lock() else {
            return;
        };
        if !s.up {
            // Went down while this request was in flight: reset it.
            return;
        }
        let r = (s.policy)(&req);
        s.requests.push(req);
        r
    };
    let reason = if response.status == 200 {
        "OK"
    } else {
        "Error"
    };
    let mut out = format!(
        "HTTP/1.1 {} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        response.status,
        response.body.len()
    );
    for (k, v) in &response.headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    out.push_str(&response.body);
    let mut stream = stream;
    let _ = stream.write_all(out.as_bytes());
    let _ = stream.flush();
}

fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (unescape(k), unescape(v))
        })
        .collect()
}

fn unescape(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(b) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
