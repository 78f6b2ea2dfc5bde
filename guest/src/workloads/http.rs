//! `http`: a minimal HTTP/1.1 keep-alive server for the throughput and latency scenarios.
//!
//! It does as little per request as a server can, so the load generator measures the network
//! path of each backend (veth, bridge, tap, virtio-net) rather than the application. Every
//! response is prebuilt and sent with one `write` on a `TCP_NODELAY` socket: with the header and
//! body in two writes, Nagle's algorithm and delayed ACKs added about 40 ms to each request.
//! `GET /cvm/count` reports how many other requests were served, so the load generator's own
//! count can be checked against the server's. One thread per connection keeps it simple; the
//! scenarios use tens of connections, not thousands.

use std::ffi::OsString;
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use cvm_proto::applet::Applet as AppletName;

use cvm_proto::applet::HTTP_LISTEN_DELAY_OPTION;
use cvm_proto::metric::Metric;

use crate::markers::Markers;
use crate::{signals, AppletResult, Failure};

/// `cvm-guest http --help`.
pub const USAGE: &str =
    "usage: cvm-guest http [--port P] [--body BYTES] [--bind ADDR] [--listen-delay-ms MS]\n\n\
     Serves HTTP/1.1 with keep-alive on ADDR:P (default 0.0.0.0:8080). Every path answers 200\n\
     with a body of BYTES bytes (default 1024) except GET /cvm/count, which answers the number\n\
     of other requests served. --port 0 picks a free port and reports it first as\n\
     CVM:result http_port <port> 1. --listen-delay-ms waits MS milliseconds before it binds and\n\
     listens (a server slow to start). Exits 0 on SIGTERM or SIGINT.\n";

/// The path that reports the request count instead of the fixed body; it is not counted itself.
use cvm_proto::applet::HTTP_COUNT_PATH as STATS_PATH;
/// Longest request head (request line and headers) accepted before answering 400.
pub const MAX_HEAD: usize = 16 * 1024;
/// Largest `--body`: a benchmark body, not a file server; keeps the allocation reasonable.
const MAX_BODY: usize = 1 << 30;
const READ_CHUNK: usize = 16 * 1024;
/// Connection threads need little stack: one read buffer and a little formatting.
const CONNECTION_STACK: usize = 256 * 1024;
const BAD_REQUEST: &[u8] =
    b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

/// Runs the applet.
pub fn run(markers: &Markers, argv: &[OsString]) -> AppletResult {
    let parsed = AppletName::Http.parse(argv)?;
    let port: u16 = parsed.number("port", 8080)?;
    let body: usize = parsed.number("body", 1024)?;
    if body > MAX_BODY {
        return Err(Failure::Usage(format!("--body must be at most {MAX_BODY}")));
    }
    let bind = match parsed.value("bind") {
        None => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        Some(raw) => raw
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .map_err(|_| Failure::Usage(format!("invalid address '{raw}' for '--bind'")))?,
    };

    let listen_delay: u64 = parsed.number(HTTP_LISTEN_DELAY_OPTION, 0)?;

    // Before the first thread is spawned, so every thread inherits the mask.
    let stop = signals::block_termination().map_err(Failure::Runtime)?;
    std::thread::sleep(std::time::Duration::from_millis(listen_delay));
    let listener = TcpListener::bind((bind, port))
        .map_err(|e| Failure::Runtime(format!("binding {bind} port {port}: {e}")))?;
    let local = listener
        .local_addr()
        .map_err(|e| Failure::Runtime(format!("reading the bound address: {e}")))?;
    let server = Arc::new(Server::new(body));
    thread::Builder::new()
        .name("accept".into())
        .spawn(move || accept_loop(listener, server))
        .map_err(|e| Failure::Runtime(format!("starting the accept thread: {e}")))?;
    if port == 0 {
        markers.result(Metric::HttpPort, f64::from(local.port()));
    }
    markers.ready();
    signals::wait(&stop).map_err(Failure::Runtime)?;
    Ok(0)
}

fn accept_loop(listener: TcpListener, server: Arc<Server>) {
    for stream in listener.incoming() {
        match stream {
            Ok(stream) => {
                let server = Arc::clone(&server);
                // If no thread can be had, dropping the stream closes it: the client sees a reset
                // and counts an error, which is the honest outcome under that load.
                let _ = thread::Builder::new()
                    .stack_size(CONNECTION_STACK)
                    .spawn(move || serve_tcp(stream, &server));
            }
            // Out of descriptors or a connection reset before accept: back off briefly rather
            // than spin, and keep serving.
            Err(e) if e.kind() != ErrorKind::Interrupted => thread::sleep(Duration::from_millis(5)),
            Err(_) => {}
        }
    }
}

fn serve_tcp(stream: TcpStream, server: &Server) {
    if stream.set_nodelay(true).is_err() {
        return;
    }
    server.serve(stream);
}

/// Everything a connection needs: the prebuilt responses and the shared request count.
pub struct Server {
    keep_alive: Prebuilt,
    close: Prebuilt,
    served: AtomicU64,
}

/// A complete response, header and body in one buffer so it goes out in one write.
struct Prebuilt {
    bytes: Vec<u8>,
    head_len: usize,
}

impl Prebuilt {
    fn new(body: &[u8], connection: &str) -> Prebuilt {
        let mut bytes = response_head(body.len(), connection).into_bytes();
        let head_len = bytes.len();
        bytes.extend_from_slice(body);
        Prebuilt { bytes, head_len }
    }
}

fn response_head(content_length: usize, connection: &str) -> String {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {content_length}\r\nConnection: {connection}\r\n\r\n"
    )
}

impl Server {
    /// A server whose fixed body is `body_len` bytes.
    pub fn new(body_len: usize) -> Server {
        // Printable and fixed, so a body can be checked by eye and by length.
        let body: Vec<u8> = (0..body_len)
            .map(|i| b"abcdefghijklmnopqrstuvwxyz"[i % 26])
            .collect();
        Server {
            keep_alive: Prebuilt::new(&body, "keep-alive"),
            close: Prebuilt::new(&body, "close"),
            served: AtomicU64::new(0),
        }
    }

    /// Serves one connection until the client closes it, asks to close, or misbehaves.
    pub fn serve<S: Read + Write>(&self, mut stream: S) {
        let mut pending: Vec<u8> = Vec::with_capacity(READ_CHUNK);
        let mut chunk = [0u8; READ_CHUNK];
        // Bytes of a request body still to arrive and be thrown away.
        let mut skip: usize = 0;
        loop {
            let n = match stream.read(&mut chunk) {
                Ok(0) => return,
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return,
            };
            let mut data = &chunk[..n];
            let skipped = skip.min(data.len());
            skip -= skipped;
            data = &data[skipped..];
            pending.extend_from_slice(data);

            let mut start = 0;
            while start < pending.len() {
                let request = match parse_request(&pending[start..]) {
                    Ok(Some(request)) => request,
                    Ok(None) => break,
                    Err(_) => {
                        let _ = stream.write_all(BAD_REQUEST);
                        return;
                    }
                };
                let available = pending.len() - start - request.head_len;
                let body_here = request.body_len.min(available);
                skip = request.body_len - body_here;
                let keep_alive = request.keep_alive;
                if self.respond(&mut stream, &request).is_err() || !keep_alive {
                    return;
                }
                start += request.head_len + body_here;
            }
            pending.drain(..start);
        }
    }

    fn respond<W: Write>(&self, out: &mut W, request: &Request<'_>) -> std::io::Result<()> {
        let head_only = request.method == "HEAD";
        if request.path() == STATS_PATH {
            let count = self.served.load(Ordering::Relaxed).to_string();
            let connection = if request.keep_alive {
                "keep-alive"
            } else {
                "close"
            };
            let mut response = response_head(count.len(), connection).into_bytes();
            if !head_only {
                response.extend_from_slice(count.as_bytes());
            }
            return out.write_all(&response);
        }
        // Counted before the write, so a client that reads the count right after its last
        // response never sees that response missing.
        self.served.fetch_add(1, Ordering::Relaxed);
        let prebuilt = if request.keep_alive {
            &self.keep_alive
        } else {
            &self.close
        };
        let bytes = if head_only {
            &prebuilt.bytes[..prebuilt.head_len]
        } else {
            &prebuilt.bytes[..]
        };
        out.write_all(bytes)
    }
}

/// The parts of a request the server acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request<'a> {
    /// `GET`, `HEAD`, ...
    pub method: &'a str,
    /// The request target as sent (path and query).
    pub target: &'a str,
    /// Whether the connection stays open after the response.
    pub keep_alive: bool,
    /// Bytes of the request line and headers, up to and including the blank line (and any empty
    /// lines before the request line).
    pub head_len: usize,
    /// Bytes of body that follow (from Content-Length), to be skipped.
    pub body_len: usize,
}

impl Request<'_> {
    /// The target without its query string.
    pub fn path(&self) -> &str {
        self.target
            .split_once('?')
            .map_or(self.target, |(path, _)| path)
    }
}

/// Why a request was answered with 400.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// No end of headers within [`MAX_HEAD`] bytes.
    HeadTooLarge,
    /// Not a request this server understands.
    Malformed(&'static str),
}

/// Parses the request at the start of `buf`: `Ok(None)` while its head is incomplete.
pub fn parse_request(buf: &[u8]) -> Result<Option<Request<'_>>, ParseError> {
    // RFC 9112 section 2.2: ignore empty lines before the request line.
    let mut start = 0;
    while buf[start..].starts_with(b"\r\n") {
        start += 2;
    }
    let rest = &buf[start..];
    let Some(end) = rest.windows(4).position(|w| w == b"\r\n\r\n") else {
        return if rest.len() > MAX_HEAD {
            Err(ParseError::HeadTooLarge)
        } else {
            Ok(None)
        };
    };
    if end > MAX_HEAD {
        return Err(ParseError::HeadTooLarge);
    }
    let head = std::str::from_utf8(&rest[..end])
        .map_err(|_| ParseError::Malformed("head is not UTF-8"))?;
    if head.split("\r\n").any(|line| line.contains(['\r', '\n'])) {
        return Err(ParseError::Malformed("bare CR or LF"));
    }
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or("");
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ParseError::Malformed("request line"));
    };
    if method.is_empty() || !method.bytes().all(is_token_byte) {
        return Err(ParseError::Malformed("method"));
    }
    if target.is_empty() || target.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        return Err(ParseError::Malformed("target"));
    }
    let mut keep_alive = match version {
        "HTTP/1.1" => true,
        "HTTP/1.0" => false,
        _ => return Err(ParseError::Malformed("version")),
    };
    let mut close = false;
    let mut body_len: Option<usize> = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Err(ParseError::Malformed("header without ':'"));
        };
        if name.is_empty() || !name.bytes().all(is_token_byte) {
            return Err(ParseError::Malformed("header name"));
        }
        let value = value.trim_matches([' ', '\t']);
        if name.eq_ignore_ascii_case("connection") {
            for option in value.split(',').map(|o| o.trim_matches([' ', '\t'])) {
                if option.eq_ignore_ascii_case("close") {
                    close = true;
                } else if option.eq_ignore_ascii_case("keep-alive") {
                    keep_alive = true;
                }
            }
        } else if name.eq_ignore_ascii_case("content-length") {
            if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
                return Err(ParseError::Malformed("content-length"));
            }
            let length: usize = value
                .parse()
                .map_err(|_| ParseError::Malformed("content-length"))?;
            if body_len.is_some_and(|previous| previous != length) {
                return Err(ParseError::Malformed("conflicting content-length"));
            }
            body_len = Some(length);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(ParseError::Malformed("transfer-encoding is not supported"));
        }
    }
    Ok(Some(Request {
        method,
        target,
        keep_alive: keep_alive && !close,
        head_len: start + end + 4,
        body_len: body_len.unwrap_or(0),
    }))
}

/// RFC 9110 `tchar`: what methods and header names are made of.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    fn parse(text: &str) -> Result<Option<Request<'_>>, ParseError> {
        parse_request(text.as_bytes())
    }

    #[test]
    fn parses_a_simple_get() {
        let text = "GET /index?x=1 HTTP/1.1\r\nHost: a\r\n\r\n";
        let req = parse(text).unwrap().unwrap();
        assert_eq!(req.method, "GET");
        assert_eq!(req.target, "/index?x=1");
        assert_eq!(req.path(), "/index");
        assert!(req.keep_alive);
        assert_eq!(req.head_len, text.len());
        assert_eq!(req.body_len, 0);
    }

    #[test]
    fn waits_for_the_whole_head() {
        assert_eq!(parse(""), Ok(None));
        assert_eq!(parse("GET / HTTP/1.1\r\nHost: a\r\n"), Ok(None));
        assert_eq!(parse("GET / HTTP/1.1\r\nHost: a\r\n\r"), Ok(None));
        assert_eq!(parse("\r\n"), Ok(None));
    }

    #[test]
    fn stops_at_the_first_of_pipelined_requests() {
        let first = "GET /a HTTP/1.1\r\n\r\n";
        let both = format!("{first}GET /b HTTP/1.1\r\n\r\n");
        let req = parse(&both).unwrap().unwrap();
        assert_eq!(req.target, "/a");
        assert_eq!(req.head_len, first.len());
        let second = parse(&both[req.head_len..]).unwrap().unwrap();
        assert_eq!(second.target, "/b");
    }

    #[test]
    fn skips_empty_lines_before_the_request_line() {
        let text = "\r\n\r\nGET / HTTP/1.1\r\n\r\n";
        assert_eq!(parse(text).unwrap().unwrap().head_len, text.len());
    }

    #[test]
    fn honours_connection_semantics() {
        assert!(
            !parse("GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
                .unwrap()
                .unwrap()
                .keep_alive
        );
        assert!(
            !parse("GET / HTTP/1.1\r\nconnection: Keep-Alive, CLOSE\r\n\r\n")
                .unwrap()
                .unwrap()
                .keep_alive
        );
        assert!(!parse("GET / HTTP/1.0\r\n\r\n").unwrap().unwrap().keep_alive);
        assert!(
            parse("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
                .unwrap()
                .unwrap()
                .keep_alive
        );
    }

    #[test]
    fn reports_content_length() {
        let req = parse("POST / HTTP/1.1\r\nContent-Length: 12\r\n\r\nhello")
            .unwrap()
            .unwrap();
        assert_eq!(req.body_len, 12);
        assert!(parse("POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n").is_ok());
    }

    #[test]
    fn refuses_malformed_requests() {
        for bad in [
            "GET\r\n\r\n",
            "GET /\r\n\r\n",
            "GET / HTTP/1.1 extra\r\n\r\n",
            "GET  / HTTP/1.1\r\n\r\n",
            "GET / HTTP/2.0\r\n\r\n",
            "G(T / HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\r\nno colon\r\n\r\n",
            "GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
            "GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
            "GET / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n",
            "GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET / HTTP/1.1\r\nX: a\nb\r\n\r\n",
        ] {
            assert!(
                matches!(parse(bad), Err(ParseError::Malformed(_))),
                "{bad:?}"
            );
        }
        assert!(matches!(
            parse_request(b"GET /\xff HTTP/1.1\r\n\r\n"),
            Err(ParseError::Malformed(_))
        ));
    }

    #[test]
    fn refuses_oversized_heads() {
        let long = format!("GET / HTTP/1.1\r\nX: {}", "a".repeat(MAX_HEAD));
        assert_eq!(parse(&long), Err(ParseError::HeadTooLarge));
        let complete = format!("{long}\r\n\r\n");
        assert_eq!(parse(&complete), Err(ParseError::HeadTooLarge));
    }

    /// A connection that hands out scripted reads and records each write call separately.
    struct Script {
        reads: VecDeque<Vec<u8>>,
        writes: Vec<Vec<u8>>,
    }

    impl Script {
        fn new(reads: &[&str]) -> Script {
            Script {
                reads: reads.iter().map(|r| r.as_bytes().to_vec()).collect(),
                writes: Vec::new(),
            }
        }
    }

    impl Read for Script {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let Some(mut next) = self.reads.pop_front() else {
                return Ok(0);
            };
            let n = next.len().min(buf.len());
            buf[..n].copy_from_slice(&next[..n]);
            if n < next.len() {
                self.reads.push_front(next.split_off(n));
            }
            Ok(n)
        }
    }

    impl Write for Script {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.writes.push(buf.to_vec());
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn body_of(response: &[u8]) -> &[u8] {
        let at = response.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        &response[at + 4..]
    }

    #[test]
    fn serves_split_and_pipelined_requests_one_write_each() {
        let server = Server::new(100);
        let mut conn = Script::new(&[
            "GE",
            "T / HTTP/1.1\r\nHo",
            "st: x\r\n\r\nGET /a HTTP/1.1\r\n\r\nGET /cvm/count HTTP/1.1\r\n",
            "\r\n",
        ]);
        server.serve(&mut conn);
        assert_eq!(conn.writes.len(), 3);
        for response in &conn.writes[..2] {
            assert!(response.starts_with(b"HTTP/1.1 200 OK\r\n"));
            assert!(String::from_utf8_lossy(response).contains("Content-Length: 100\r\n"));
            assert_eq!(body_of(response).len(), 100);
        }
        assert_eq!(body_of(&conn.writes[2]), b"2");
        assert_eq!(server.served.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn skips_request_bodies_across_reads_and_closes_on_request() {
        let server = Server::new(5);
        let mut conn = Script::new(&[
            "POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\n12345",
            "678",
            "90GET / HTTP/1.1\r\nConnection: close\r\n\r\nGET / HTTP/1.1\r\n\r\n",
        ]);
        server.serve(&mut conn);
        assert_eq!(conn.writes.len(), 2, "nothing after Connection: close");
        assert!(String::from_utf8_lossy(&conn.writes[1]).contains("Connection: close\r\n"));
        assert_eq!(body_of(&conn.writes[1]), b"abcde");
    }

    #[test]
    fn answers_head_without_a_body() {
        let server = Server::new(5);
        let mut conn = Script::new(&["HEAD / HTTP/1.1\r\n\r\n"]);
        server.serve(&mut conn);
        assert!(String::from_utf8_lossy(&conn.writes[0]).contains("Content-Length: 5\r\n"));
        assert_eq!(body_of(&conn.writes[0]), b"");
    }

    #[test]
    fn answers_garbage_with_400_and_closes() {
        let server = Server::new(5);
        let mut conn =
            Script::new(&["GET / HTTP/1.1\r\n\r\nnonsense\r\n\r\nGET / HTTP/1.1\r\n\r\n"]);
        server.serve(&mut conn);
        assert_eq!(conn.writes.len(), 2);
        assert_eq!(conn.writes[1], BAD_REQUEST);
        assert_eq!(server.served.load(Ordering::Relaxed), 1);
    }
}
