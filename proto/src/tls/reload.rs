//! A TLS value made from files, and made again when their bytes change: a certificate
//! renewed in place, or a CA bundle rotated (cert-manager rewriting the Secret, the
//! kubelet swapping the mounted files), is used from the next handshake on, without a
//! restart. The files are compared at most every `recheck`, during a handshake; a
//! change that cannot be used (half-written, a mismatched key, no certificate) keeps
//! the previous value.

use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::TlsError;

/// Files that make one TLS value.
pub(super) trait FromFiles {
    /// The files' bytes, compared to tell a change.
    type Bytes: PartialEq;
    type Value: Clone;
    /// What the files hold, for the log ("certificate", "CA").
    const WHAT: &'static str;

    /// The file the log names.
    fn path(&self) -> &Path;

    /// The files' bytes as they are now.
    fn read(&self) -> Result<Self::Bytes, TlsError>;

    /// Reads the files and makes the value, naming the first file that does not do.
    fn load(&self) -> Result<(Self::Bytes, Self::Value), TlsError>;
}

pub(super) struct Reloading<F: FromFiles> {
    pub(super) files: F,
    recheck: Duration,
    state: Mutex<Loaded<F>>,
}

struct Loaded<F: FromFiles> {
    value: F::Value,
    /// The files' bytes it was made from.
    bytes: F::Bytes,
    checked: Instant,
}

impl<F: FromFiles> Reloading<F> {
    /// The value the files make now: an error names the file that does not do.
    pub(super) fn load(files: F, recheck: Duration) -> Result<Self, TlsError> {
        let (bytes, value) = files.load()?;
        Ok(Self {
            files,
            recheck,
            state: Mutex::new(Loaded {
                value,
                bytes,
                checked: Instant::now(),
            }),
        })
    }

    /// The value to use now, made again first if the files changed.
    pub(super) fn current(&self) -> F::Value {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.checked.elapsed() >= self.recheck {
            state.checked = Instant::now();
            let path = self.files.path().display();
            match self.files.read() {
                Ok(bytes) if bytes != state.bytes => match self.files.load() {
                    Ok((bytes, value)) => {
                        tracing::info!(file = %path, "gRPC TLS {} reloaded", F::WHAT);
                        state.value = value;
                        state.bytes = bytes;
                    }
                    Err(err) => {
                        tracing::warn!(%err, "gRPC TLS {} changed but cannot be used; keeping the previous one", F::WHAT);
                    }
                },
                Ok(_) => {}
                Err(err) => {
                    tracing::warn!(%err, "gRPC TLS {} cannot be read; keeping the previous one", F::WHAT);
                }
            }
        }
        state.value.clone()
    }
}

impl<F: FromFiles> std::fmt::Debug for Reloading<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloading")
            .field("what", &F::WHAT)
            .field("file", &self.files.path())
            .field("recheck", &self.recheck)
            .finish_non_exhaustive()
    }
}
