//! bench-receiver: the webhook receiver of `make bench`'s "log every request" rows
//! (bench/run.py), as cheap as a receiver that checks everything can be.
//!
//! `bench-receiver SECRET` listens on 127.0.0.1, on a port the kernel picks (the first line of
//! its stdout: `listening 127.0.0.1:PORT`), and speaks HTTP/1.1 with keep-alive, a thread per
//! connection:
//!
//! * `POST` (any path) is a webhook call. It is **verified** when its `x-kong-signature` is
//!   `sha1=` and the hex HMAC-SHA1 of its exact body under SECRET, it carries a `webhook-id`,
//!   and its body is a JSON object, or a JSON array of objects, each holding a string
//!   `request.id` (the event's request id: Envoy's `x-request-id`, a new UUID per request).
//!   Verified: answered 200, and each event counted and its request id added to the ids seen
//!   since the last reset (an id seen before counts as a duplicate). Otherwise: 401 for a
//!   missing or wrong signature, 400 for the rest, counted as such.
//! * `GET /stats`: the counts, as JSON. `GET /reset`: zeroes them and forgets the ids.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;

use hmac::{Hmac, KeyInit, Mac};
use serde::Deserialize;
use sha1::Sha1;

/// What the receiver reads of an event: its request id. serde skips every other field
/// (the body is still parsed whole: a malformed one fails).
#[derive(Deserialize)]
struct Event<'a> {
    #[serde(borrow)]
    request: Request<'a>,
}

#[derive(Deserialize)]
struct Request<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
}

#[derive(Default)]
struct Counts {
    /// POSTs received.
    calls: u64,
    /// Calls verified (signature, webhook-id, body): answered 200.
    verified_calls: u64,
    /// Of the verified calls, those whose body is an array (a batch).
    arrays: u64,
    /// Events in verified calls.
    events: u64,
    /// Events whose request id was seen before, since the last reset.
    duplicates: u64,
    /// Body bytes of verified calls.
    bytes: u64,
    unsigned: u64,
    bad_signature: u64,
    no_webhook_id: u64,
    bad_body: u64,
    /// Verified calls by their number of events.
    sizes: BTreeMap<usize, u64>,
    ids: HashSet<Box<str>>,
}

struct Receiver {
    secret: Vec<u8>,
    counts: Mutex<Counts>,
}

/// A request's head, as far as the receiver reads it.
#[derive(Default)]
struct Head {
    method: Vec<u8>,
    target: Vec<u8>,
    length: usize,
    chunked: bool,
    close: bool,
    signature: Option<Vec<u8>>,
    webhook_id: bool,
}

impl Receiver {
    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether `signature` is `sha1=` and the hex HMAC-SHA1 of `body`.
    fn signed(&self, body: &[u8], signature: &[u8]) -> bool {
        let Ok(mut mac) = <Hmac<Sha1> as KeyInit>::new_from_slice(&self.secret) else {
            return false;
        };
        mac.update(body);
        let tag = mac.finalize().into_bytes();
        let Some(hex) = signature.strip_prefix(b"sha1=") else {
            return false;
        };
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        hex.len() == tag.len() * 2
            && tag.iter().zip(hex.chunks(2)).all(|(byte, pair)| {
                pair[0] == DIGITS[usize::from(byte >> 4)]
                    && pair[1] == DIGITS[usize::from(byte & 15)]
            })
    }

    /// A webhook call: its answer's status.
    fn webhook(&self, head: &Head, body: &[u8]) -> u16 {
        let signed = head
            .signature
            .as_deref()
            .map(|signature| self.signed(body, signature));
        let events = match signed {
            Some(true) if head.webhook_id => parse(body),
            _ => None,
        };
        let mut counts = self.counts();
        counts.calls += 1;
        match (signed, head.webhook_id, events) {
            (None, _, _) => {
                counts.unsigned += 1;
                401
            }
            (Some(false), _, _) => {
                counts.bad_signature += 1;
                401
            }
            (Some(true), false, _) => {
                counts.no_webhook_id += 1;
                400
            }
            (Some(true), true, None) => {
                counts.bad_body += 1;
                400
            }
            (Some(true), true, Some((array, events))) => {
                counts.verified_calls += 1;
                counts.arrays += u64::from(array);
                counts.events += events.len() as u64;
                counts.bytes += body.len() as u64;
                *counts.sizes.entry(events.len()).or_default() += 1;
                for event in events {
                    if !counts.ids.insert(event.request.id.into()) {
                        counts.duplicates += 1;
                    }
                }
                200
            }
        }
    }

    fn stats(&self) -> Vec<u8> {
        let counts = self.counts();
        let sizes: BTreeMap<String, u64> = counts
            .sizes
            .iter()
            .map(|(size, calls)| (size.to_string(), *calls))
            .collect();
        let stats = serde_json::json!({
            "calls": counts.calls, "verified_calls": counts.verified_calls, "arrays": counts.arrays,
            "events": counts.events, "distinct": counts.ids.len(), "duplicates": counts.duplicates,
            "bytes": counts.bytes, "unsigned": counts.unsigned, "bad_signature": counts.bad_signature,
            "no_webhook_id": counts.no_webhook_id, "bad_body": counts.bad_body, "sizes": sizes,
        });
        stats.to_string().into_bytes()
    }

    fn reset(&self) {
        *self.counts() = Counts::default();
    }
}

/// The events of a body: (whether it is an array, its events); None unless it is an event
/// object or an array of them.
fn parse(body: &[u8]) -> Option<(bool, Vec<Event<'_>>)> {
    match body.iter().find(|byte| !byte.is_ascii_whitespace()) {
        Some(b'[') => serde_json::from_slice(body)
            .ok()
            .map(|events| (true, events)),
        Some(b'{') => serde_json::from_slice(body)
            .ok()
            .map(|event| (false, vec![event])),
        _ => None,
    }
}

fn trim(line: &[u8]) -> &[u8] {
    line.trim_ascii()
}

/// Reads one line (through `\n`) into `line`; false at the end of the stream.
fn read_line(reader: &mut impl BufRead, line: &mut Vec<u8>) -> io::Result<bool> {
    line.clear();
    Ok(reader.read_until(b'\n', line)? > 0)
}

/// Reads a request's head; None at the end of the stream.
fn read_head(reader: &mut impl BufRead, line: &mut Vec<u8>) -> io::Result<Option<Head>> {
    let mut head = Head::default();
    loop {
        if !read_line(reader, line)? {
            return Ok(None);
        }
        if !trim(line).is_empty() {
            break;
        }
    }
    let mut parts = trim(line).split(|byte| *byte == b' ');
    head.method = parts.next().unwrap_or_default().to_vec();
    head.target = parts.next().unwrap_or_default().to_vec();
    loop {
        if !read_line(reader, line)? {
            return Ok(None);
        }
        let header = trim(line);
        if header.is_empty() {
            return Ok(Some(head));
        }
        let Some(colon) = header.iter().position(|byte| *byte == b':') else {
            continue;
        };
        let (name, value) = (
            header[..colon].to_ascii_lowercase(),
            trim(&header[colon + 1..]),
        );
        match name.as_slice() {
            b"content-length" => {
                head.length = std::str::from_utf8(value)
                    .ok()
                    .and_then(|text| text.parse().ok())
                    .unwrap_or(0);
            }
            b"transfer-encoding" => head.chunked = value.eq_ignore_ascii_case(b"chunked"),
            b"connection" => head.close = value.eq_ignore_ascii_case(b"close"),
            b"x-kong-signature" => head.signature = Some(value.to_vec()),
            b"webhook-id" => head.webhook_id = !value.is_empty(),
            _ => {}
        }
    }
}

/// Reads a chunked body into `body`.
fn read_chunked(
    reader: &mut impl BufRead,
    line: &mut Vec<u8>,
    body: &mut Vec<u8>,
) -> io::Result<()> {
    let invalid = || io::Error::new(io::ErrorKind::InvalidData, "bad chunk size");
    loop {
        if !read_line(reader, line)? {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let size = trim(line)
            .split(|byte| *byte == b';')
            .next()
            .unwrap_or_default();
        let size = usize::from_str_radix(std::str::from_utf8(size).map_err(|_| invalid())?, 16)
            .map_err(|_| invalid())?;
        if size == 0 {
            // Trailers, up to the empty line.
            while read_line(reader, line)? && !trim(line).is_empty() {}
            return Ok(());
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..])?;
        read_line(reader, line)?; // the chunk's CRLF
    }
}

fn serve(stream: TcpStream, receiver: &Receiver) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut reader = BufReader::with_capacity(256 * 1024, stream.try_clone()?);
    let mut writer = stream;
    let (mut line, mut body, mut answer) =
        (Vec::with_capacity(256), Vec::new(), Vec::with_capacity(256));
    while let Some(head) = read_head(&mut reader, &mut line)? {
        body.clear();
        if head.chunked {
            read_chunked(&mut reader, &mut line, &mut body)?;
        } else {
            body.resize(head.length, 0);
            reader.read_exact(&mut body)?;
        }
        let (status, payload) = match (head.method.as_slice(), head.target.as_slice()) {
            (b"POST", _) => (receiver.webhook(&head, &body), Vec::new()),
            (b"GET", b"/stats") => (200, receiver.stats()),
            (b"GET", b"/reset") => {
                receiver.reset();
                (200, Vec::new())
            }
            _ => (404, Vec::new()),
        };
        let reason = match status {
            200 => "OK",
            400 => "Bad Request",
            401 => "Unauthorized",
            _ => "Not Found",
        };
        answer.clear();
        write!(
            answer,
            "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            payload.len()
        )?;
        answer.extend_from_slice(&payload);
        writer.write_all(&answer)?;
        if head.close {
            return Ok(());
        }
    }
    Ok(())
}

fn main() -> io::Result<()> {
    let Some(secret) = std::env::args().nth(1) else {
        eprintln!("usage: bench-receiver SECRET");
        std::process::exit(2);
    };
    let receiver = Arc::new(Receiver {
        secret: secret.into_bytes(),
        counts: Mutex::default(),
    });
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let mut stdout = io::stdout();
    writeln!(stdout, "listening {}", listener.local_addr()?)?;
    stdout.flush()?;
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let receiver = Arc::clone(&receiver);
        thread::spawn(move || {
            let _ = serve(stream, &receiver);
        });
    }
    Ok(())
}
