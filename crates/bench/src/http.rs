//! A minimal HTTP/1.1 client on one kept-alive connection (hyper's connection-level API, no
//! pooling, no TLS), and counting of newline-delimited watch events as they stream in.
//!
//! The benchmarks use this instead of `kube::Client` so that the client side costs as little
//! CPU as possible and the numbers describe the server.

use std::net::SocketAddr;

use bytes::Bytes;
use http::{Method, Request, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};

use crate::BenchError;

/// One HTTP/1.1 connection, reused for sequential requests (keep-alive).
#[derive(Debug)]
pub struct Conn {
    sender: SendRequest<Full<Bytes>>,
    host: String,
    token: Option<String>,
}

fn transport(method: &Method, path: &str, detail: impl std::fmt::Display) -> BenchError {
    BenchError::Http {
        method: method.to_string(),
        path: path.to_string(),
        detail: detail.to_string(),
    }
}

impl Conn {
    /// Opens a connection (with `TCP_NODELAY`) to `addr`.
    pub async fn connect(addr: SocketAddr) -> Result<Self, BenchError> {
        let err = |e: &dyn std::fmt::Display| {
            transport(&Method::GET, "/", format!("connect {addr}: {e}"))
        };
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| err(&e))?;
        tcp.set_nodelay(true).map_err(|e| err(&e))?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .map_err(|e| err(&e))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Self {
            sender,
            host: addr.to_string(),
            token: None,
        })
    }

    /// Sends `Authorization: Bearer <token>` with every request.
    #[must_use]
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Sends a request and returns the response with its body still streaming.
    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<http::Response<Incoming>, BenchError> {
        let mut b = Request::builder()
            .method(method.clone())
            .uri(path)
            .header(header::HOST, &self.host)
            .header(header::ACCEPT, "application/json");
        if body.is_some() {
            b = b.header(header::CONTENT_TYPE, "application/json");
        }
        if let Some(t) = &self.token {
            b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let req = b
            .body(Full::new(body.unwrap_or_default()))
            .map_err(|e| transport(&method, path, e))?;
        self.sender
            .ready()
            .await
            .map_err(|e| transport(&method, path, e))?;
        self.sender
            .send_request(req)
            .await
            .map_err(|e| transport(&method, path, e))
    }

    /// Sends a request and reads the whole response body.
    pub async fn call(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<(u16, Bytes), BenchError> {
        let resp = self.send(method.clone(), path, body).await?;
        let status = resp.status().as_u16();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| transport(&method, path, e))?
            .to_bytes();
        Ok((status, bytes))
    }

    /// Like [`Self::call`], failing unless the status is `expected`.
    pub async fn call_expect(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
        expected: u16,
    ) -> Result<Bytes, BenchError> {
        let (status, bytes) = self.call(method.clone(), path, body).await?;
        if status == expected {
            Ok(bytes)
        } else {
            Err(BenchError::Status {
                method: method.to_string(),
                path: path.to_string(),
                status,
                expected,
                body: String::from_utf8_lossy(&bytes[..bytes.len().min(300)]).into_owned(),
            })
        }
    }
}

/// Counts of watch events by type.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventCounts {
    /// `ADDED` events.
    pub added: u64,
    /// `MODIFIED` events.
    pub modified: u64,
    /// `DELETED` events.
    pub deleted: u64,
    /// `BOOKMARK` events.
    pub bookmark: u64,
    /// `ERROR` events.
    pub error: u64,
    /// Lines that are not a watch event of a known type.
    pub other: u64,
}

impl EventCounts {
    /// Object events (added, modified, deleted).
    pub fn objects(&self) -> u64 {
        self.added + self.modified + self.deleted
    }

    /// Adds another set of counts.
    pub fn add(&mut self, o: &Self) {
        self.added += o.added;
        self.modified += o.modified;
        self.deleted += o.deleted;
        self.bookmark += o.bookmark;
        self.error += o.error;
        self.other += o.other;
    }
}

/// Splits a streamed watch body into lines and classifies each by its `type`, keeping only
/// the first bytes of a line that spans chunks (the event type is at its start).
#[derive(Debug, Default, Clone)]
pub struct EventScanner {
    head: Vec<u8>,
    counts: EventCounts,
}

/// Bytes of a line needed to read the event type: `{"type":"BOOKMARK"`.
const HEAD: usize = 24;

impl EventScanner {
    /// Feeds one chunk; returns how many complete lines it finished.
    pub fn feed(&mut self, mut chunk: &[u8]) -> u64 {
        let mut lines = 0;
        while let Some(pos) = chunk.iter().position(|&b| b == b'\n') {
            self.take_head(&chunk[..pos]);
            if !self.head.iter().all(u8::is_ascii_whitespace) {
                self.classify();
                lines += 1;
            }
            self.head.clear();
            chunk = &chunk[pos + 1..];
        }
        self.take_head(chunk);
        lines
    }

    fn take_head(&mut self, part: &[u8]) {
        let room = HEAD.saturating_sub(self.head.len());
        self.head.extend_from_slice(&part[..part.len().min(room)]);
    }

    fn classify(&mut self) {
        let h = &self.head;
        let c = &mut self.counts;
        let slot = if h.starts_with(br#"{"type":"ADDED""#) {
            &mut c.added
        } else if h.starts_with(br#"{"type":"MODIFIED""#) {
            &mut c.modified
        } else if h.starts_with(br#"{"type":"DELETED""#) {
            &mut c.deleted
        } else if h.starts_with(br#"{"type":"BOOKMARK""#) {
            &mut c.bookmark
        } else if h.starts_with(br#"{"type":"ERROR""#) {
            &mut c.error
        } else {
            &mut c.other
        };
        *slot += 1;
    }

    /// Counts so far.
    pub fn counts(&self) -> EventCounts {
        self.counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(kind: &str, name: &str) -> String {
        format!(
            "{{\"type\":\"{kind}\",\"object\":{{\"kind\":\"ConfigMap\",\"metadata\":{{\"name\":\"{name}\"}}}}}}\n"
        )
    }

    #[test]
    fn counts_events_split_across_chunks() {
        let text = [
            ev("ADDED", "a"),
            ev("MODIFIED", "a"),
            ev("BOOKMARK", ""),
            ev("DELETED", "a"),
            ev("ADDED", "b"),
            ev("ERROR", ""),
            "{\"kind\":\"Status\"}\n".to_string(),
            "\n".to_string(),
        ]
        .concat();
        let bytes = text.as_bytes();
        // Every split size, including one byte at a time.
        for size in [1usize, 2, 7, 23, 24, 25, 64, bytes.len()] {
            let mut s = EventScanner::default();
            let mut lines = 0;
            for chunk in bytes.chunks(size) {
                lines += s.feed(chunk);
            }
            let c = s.counts();
            assert_eq!(lines, 7, "chunk size {size}");
            assert_eq!(
                c,
                EventCounts {
                    added: 2,
                    modified: 1,
                    deleted: 1,
                    bookmark: 1,
                    error: 1,
                    other: 1
                },
                "chunk size {size}"
            );
            assert_eq!(c.objects(), 4);
        }
    }

    #[test]
    fn an_unfinished_line_is_not_counted() {
        let mut s = EventScanner::default();
        assert_eq!(s.feed(b"{\"type\":\"ADDED\",\"object\":{"), 0);
        assert_eq!(s.counts().added, 0);
        assert_eq!(s.feed(b"}}\n"), 1);
        assert_eq!(s.counts().added, 1);
    }

    #[test]
    fn adds_counts() {
        let mut a = EventCounts {
            added: 1,
            ..EventCounts::default()
        };
        a.add(&EventCounts {
            added: 2,
            deleted: 3,
            ..EventCounts::default()
        });
        assert_eq!(a.added, 3);
        assert_eq!(a.objects(), 6);
    }
}
