//! The cap on open connections, in all and per client address. Each accepted connection
//! holds a [`Slot`] until it closes (a WebSocket it turns into holds it on); past the cap a
//! connection is answered 503 with the JSON error shape and closed.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncWriteExt as _;
use tokio::sync::Semaphore;

use crate::metrics::metrics;

/// Refusals being written at once at most; past it, a connection is just closed.
const REFUSING: usize = 64;

pub struct Connections {
    max: usize,
    max_per_client: usize,
    open: Mutex<Counts>,
    refusing: Arc<Semaphore>,
}

#[derive(Default)]
struct Counts {
    total: usize,
    by_client: HashMap<IpAddr, usize>,
}

/// One open connection; dropping it frees its place.
pub struct Slot {
    connections: Arc<Connections>,
    client: IpAddr,
}

impl Slot {
    /// The address of the client holding it.
    pub fn client(&self) -> IpAddr {
        self.client
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut open) = self.connections.open.lock() {
            open.total = open.total.saturating_sub(1);
            if let Some(n) = open.by_client.get_mut(&self.client) {
                *n -= 1;
                if *n == 0 {
                    open.by_client.remove(&self.client);
                }
            }
        }
    }
}

impl Connections {
    pub fn new(max: usize, max_per_client: usize) -> Connections {
        Connections {
            max: max.max(1),
            max_per_client: max_per_client.max(1),
            open: Mutex::default(),
            refusing: Arc::new(Semaphore::new(REFUSING)),
        }
    }

    /// A place for a connection from `client`, if it is within both caps.
    pub fn open(self: &Arc<Self>, client: IpAddr) -> Option<Arc<Slot>> {
        let mut open = self.open.lock().ok()?;
        let of_client = open.by_client.get(&client).copied().unwrap_or(0);
        if open.total >= self.max || of_client >= self.max_per_client {
            let cap = if open.total >= self.max {
                "total"
            } else {
                "per_client"
            };
            metrics()
                .http_connections_refused
                .with_label_values(&[cap])
                .inc();
            return None;
        }
        open.total += 1;
        *open.by_client.entry(client).or_default() += 1;
        Some(Arc::new(Slot {
            connections: self.clone(),
            client,
        }))
    }
}

/// Answers a connection over the cap with 503 and closes it, without reading its request.
pub fn refuse(connections: &Connections, mut stream: tokio::net::TcpStream) {
    let Ok(permit) = connections.refusing.clone().try_acquire_owned() else {
        return; // dropping the stream closes it
    };
    tokio::spawn(async move {
        let body = br#"{"error":{"code":"too_many_connections","message":"the server holds as many connections as it allows; retry later"}}"#;
        let head = format!(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n",
            body.len()
        );
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            stream.write_all(head.as_bytes()).await?;
            stream.write_all(body).await?;
            stream.shutdown().await
        })
        .await;
        drop(permit);
    });
}

/// A client connection as the server writes to it:
/// - writes fail with `TimedOut` once the peer has taken nothing for `timeout`, so a client
///   that never reads its responses (or its WebSocket frames) does not hold the connection
///   and its buffers for ever;
/// - the answers hyper writes by itself to requests it cannot parse (400, 414, 431, with an
///   empty body) get the JSON error shape of every other error.
pub struct ClientIo<S> {
    inner: S,
    timeout: Duration,
    stalled: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
    /// A rewritten answer still to be written, and how much of it is.
    rewritten: Option<(Vec<u8>, usize)>,
}

type Poll<T> = std::task::Poll<std::io::Result<T>>;

impl<S: tokio::io::AsyncWrite + Unpin> ClientIo<S> {
    pub fn new(inner: S, timeout: Duration) -> ClientIo<S> {
        ClientIo {
            inner,
            timeout,
            stalled: None,
            rewritten: None,
        }
    }

    /// After a write that made no progress: an error once the stall has lasted too long.
    fn pending<T>(&mut self, cx: &mut std::task::Context<'_>) -> Poll<T> {
        use std::future::Future as _;
        let timeout = self.timeout;
        let sleep = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        if sleep.as_mut().poll(cx).is_ready() {
            metrics().http_write_timeouts.inc();
            return std::task::Poll::Ready(Err(std::io::ErrorKind::TimedOut.into()));
        }
        std::task::Poll::Pending
    }

    /// Writes through the stall timer.
    fn write_inner(&mut self, cx: &mut std::task::Context<'_>, buf: &[u8]) -> Poll<usize> {
        match std::pin::Pin::new(&mut self.inner).poll_write(cx, buf) {
            std::task::Poll::Ready(result) => {
                self.stalled = None;
                std::task::Poll::Ready(result)
            }
            std::task::Poll::Pending => self.pending(cx),
        }
    }

    /// Writes what is left of a rewritten answer.
    fn drain(&mut self, cx: &mut std::task::Context<'_>) -> Poll<()> {
        while let Some((bytes, done)) = self.rewritten.take() {
            if done == bytes.len() {
                break;
            }
            match self.write_inner(cx, &bytes[done..]) {
                std::task::Poll::Ready(Ok(0)) => {
                    return std::task::Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()))
                }
                std::task::Poll::Ready(Ok(n)) => self.rewritten = Some((bytes, done + n)),
                std::task::Poll::Ready(Err(e)) => return std::task::Poll::Ready(Err(e)),
                std::task::Poll::Pending => {
                    self.rewritten = Some((bytes, done));
                    return std::task::Poll::Pending;
                }
            }
        }
        std::task::Poll::Ready(Ok(()))
    }

    fn write_or_rewrite(&mut self, cx: &mut std::task::Context<'_>, buf: &[u8]) -> Poll<usize> {
        std::task::ready!(self.drain(cx))?;
        if let Some(answer) = json_error_answer(buf) {
            // Taken whole now; what the socket does not take yet, flush and shutdown write.
            self.rewritten = Some((answer, 0));
            if let std::task::Poll::Ready(Err(e)) = self.drain(cx) {
                return std::task::Poll::Ready(Err(e));
            }
            return std::task::Poll::Ready(Ok(buf.len()));
        }
        self.write_inner(cx, buf)
    }
}

/// hyper's own answer to a request it could not parse (`HTTP/1.1 4xx`, `connection: close`,
/// an empty body), rewritten with a JSON error body.
fn json_error_answer(head: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(head).ok()?;
    let rest = text.strip_prefix("HTTP/1.1 4")?;
    let lower = text.to_ascii_lowercase();
    if !(lower.contains("\r\nconnection: close\r\n")
        && lower.contains("\r\ncontent-length: 0\r\n")
        && text.ends_with("\r\n\r\n"))
    {
        return None;
    }
    let status = format!("4{}", rest.get(..2)?);
    let (code, message) = match status.as_str() {
        "414" => ("uri_too_long", "the request target is too long"),
        "431" => ("headers_too_large", "the request headers are too large"),
        _ => ("bad_request", "the request is not valid HTTP/1.1"),
    };
    let body = format!(r#"{{"error":{{"code":"{code}","message":"{message}"}}}}"#);
    let status_line = text.split("\r\n").next()?;
    let mut out = format!(
        "{status_line}\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    out.push_str(&body);
    Some(out.into_bytes())
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for ClientIo<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<()> {
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for ClientIo<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> Poll<usize> {
        self.write_or_rewrite(cx, buf)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<usize> {
        std::task::ready!(self.drain(cx))?;
        // An answer to rewrite is a lone head.
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        if let Some(first) = bufs.first().filter(|b| b.len() == total) {
            return self.write_or_rewrite(cx, first);
        }
        match std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs) {
            std::task::Poll::Ready(result) => {
                self.stalled = None;
                std::task::Poll::Ready(result)
            }
            std::task::Poll::Pending => self.pending(cx),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<()> {
        std::task::ready!(self.drain(cx))?;
        match std::pin::Pin::new(&mut self.inner).poll_flush(cx) {
            std::task::Poll::Ready(result) => {
                self.stalled = None;
                std::task::Poll::Ready(result)
            }
            std::task::Poll::Pending => self.pending(cx),
        }
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<()> {
        std::task::ready!(self.drain(cx))?;
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_hypers_empty_error_answers_are_rewritten() {
        let hyper_400 = b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\ndate: Sun, 29 Nov 2026 20:30:38 GMT\r\n\r\n";
        let out = String::from_utf8(json_error_answer(hyper_400).unwrap()).unwrap();
        assert!(out.starts_with("HTTP/1.1 400 Bad Request\r\ncontent-type: application/json"));
        assert!(out.ends_with(
            r#"{"error":{"code":"bad_request","message":"the request is not valid HTTP/1.1"}}"#
        ));
        let ours = b"HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: 30\r\n\r\n";
        assert!(json_error_answer(ours).is_none());
        assert!(json_error_answer(
            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
        )
        .is_none());
    }
}
