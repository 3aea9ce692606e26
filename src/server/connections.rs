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

/// A connection whose writes fail with `TimedOut` once the peer has taken nothing for
/// `timeout`: a client that never reads its responses (or its WebSocket frames) does not
/// hold the connection and its buffers for ever.
pub struct WriteTimeout<S> {
    inner: S,
    timeout: Duration,
    stalled: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl<S> WriteTimeout<S> {
    pub fn new(inner: S, timeout: Duration) -> WriteTimeout<S> {
        WriteTimeout {
            inner,
            timeout,
            stalled: None,
        }
    }

    /// After a write that made no progress: an error once the stall has lasted too long.
    fn pending<T>(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<T>> {
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

    fn progressed<T>(&mut self, result: std::io::Result<T>) -> std::task::Poll<std::io::Result<T>> {
        self.stalled = None;
        std::task::Poll::Ready(result)
    }
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for WriteTimeout<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for WriteTimeout<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match std::pin::Pin::new(&mut self.inner).poll_write(cx, buf) {
            std::task::Poll::Ready(result) => self.progressed(result),
            std::task::Poll::Pending => self.pending(cx),
        }
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs) {
            std::task::Poll::Ready(result) => self.progressed(result),
            std::task::Poll::Pending => self.pending(cx),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match std::pin::Pin::new(&mut self.inner).poll_flush(cx) {
            std::task::Poll::Ready(result) => self.progressed(result),
            std::task::Poll::Pending => self.pending(cx),
        }
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
