//! A shutdown signal that threads can wait on with a timeout and tasks can await.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

/// Cloneable handle: trigger once, observed everywhere.
#[derive(Clone, Default)]
pub struct Shutdown {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    flag: AtomicBool,
    lock: Mutex<()>,
    condvar: Condvar,
    notify: Notify,
}

impl Shutdown {
    pub fn new() -> Shutdown {
        Shutdown::default()
    }

    pub fn trigger(&self) {
        self.inner.flag.store(true, Ordering::SeqCst);
        let _guard = self.inner.lock.lock();
        self.inner.condvar.notify_all();
        self.inner.notify.notify_waiters();
    }

    pub fn is_triggered(&self) -> bool {
        self.inner.flag.load(Ordering::SeqCst)
    }

    /// Blocks up to `timeout`; returns whether shutdown was triggered.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        let Ok(guard) = self.inner.lock.lock() else {
            return self.is_triggered();
        };
        if self.is_triggered() {
            return true;
        }
        let _ = self
            .inner
            .condvar
            .wait_timeout_while(guard, timeout, |_| !self.is_triggered());
        self.is_triggered()
    }

    /// Resolves once shutdown is triggered.
    pub async fn triggered(&self) {
        loop {
            let notified = self.inner.notify.notified();
            if self.is_triggered() {
                return;
            }
            notified.await;
        }
    }
}

/// Resolves on Ctrl-C (SIGINT) or SIGTERM; false if signals cannot be watched.
pub async fn stop_signal() -> bool {
    let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    else {
        return tokio::signal::ctrl_c().await.is_ok();
    };
    tokio::select! {
        result = tokio::signal::ctrl_c() => result.is_ok(),
        _ = term.recv() => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wakes_waiting_threads() {
        let s = Shutdown::new();
        let waiter = {
            let s = s.clone();
            std::thread::spawn(move || s.wait_timeout(Duration::from_secs(60)))
        };
        s.trigger();
        assert!(waiter.join().unwrap());
        assert!(s.wait_timeout(Duration::ZERO));
    }
}
