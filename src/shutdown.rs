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

/// Watches SIGINT and SIGTERM from `runtime`: the first calls `on_first`; a second exits
/// at once with status 130, whatever is still draining. The signal streams exist before
/// the first signal, so none is missed between the two.
pub fn watch_signals(runtime: &tokio::runtime::Runtime, on_first: impl FnOnce() + Send + 'static) {
    use tokio::signal::unix::{signal, SignalKind};
    let _entered = runtime.enter();
    let (Ok(mut interrupt), Ok(mut terminate)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        tracing::warn!("cannot watch signals");
        return;
    };
    runtime.spawn(async move {
        let mut on_first = Some(on_first);
        loop {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
            match on_first.take() {
                Some(first) => first(),
                None => std::process::exit(130),
            }
        }
    });
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
