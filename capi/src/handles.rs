//! Handle registries: a handle is a never-reused id, cast to a pointer and never dereferenced;
//! each call looks it up. A NULL, freed or wrong handle is an error, not a crash.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};

use lav2_core::{Engine, Session};

use crate::error::{Failure, Res};
use crate::lav2_status::*;

/// Ids for every handle kind from one counter, so a handle of one kind is never valid as another.
static NEXT_ID: AtomicUsize = AtomicUsize::new(1);

pub(crate) struct Registry<T> {
    kind: &'static str,
    live: Mutex<BTreeMap<usize, Arc<T>>>,
}

pub(crate) static ENGINES: Registry<Engine> = Registry::new("engine");
pub(crate) static SESSIONS: Registry<Mutex<Session>> = Registry::new("session");

impl<T> Registry<T> {
    const fn new(kind: &'static str) -> Registry<T> {
        Registry {
            kind,
            live: Mutex::new(BTreeMap::new()),
        }
    }

    fn map(&self) -> MutexGuard<'_, BTreeMap<usize, Arc<T>>> {
        // Nothing panics while the map is locked; a poisoned lock still holds a sound map.
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn len(&self) -> usize {
        self.map().len()
    }

    /// Registers `value`; returns its new handle id.
    pub(crate) fn insert(&self, value: T) -> usize {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        self.map().insert(id, Arc::new(value));
        id
    }

    /// The value of handle `id` (the registry's lock is not held while it is used).
    pub(crate) fn get(&self, id: usize) -> Res<Arc<T>> {
        if id == 0 {
            return Err(self.invalid("NULL"));
        }
        self.map()
            .get(&id)
            .cloned()
            .ok_or_else(|| self.invalid("freed or not a valid one"))
    }

    /// Unregisters handle `id`; the value lives on while a running call still holds it.
    pub(crate) fn remove(&self, id: usize) -> Res<()> {
        if id == 0 {
            return Err(self.invalid("NULL"));
        }
        match self.map().remove(&id) {
            Some(_) => Ok(()),
            None => Err(self.invalid("already freed or not a valid one")),
        }
    }

    fn invalid(&self, why: &str) -> Failure {
        Failure::new(
            LAV2_ERR_INVALID_HANDLE,
            format!("the {} handle is {why}", self.kind),
        )
    }
}

/// Runs `f` on the session of handle `id`, refusing it while another call uses it.
pub(crate) fn with_session<R>(id: usize, f: impl FnOnce(&mut Session) -> Res<R>) -> Res<R> {
    let session = SESSIONS.get(id)?;
    let mut guard = match session.try_lock() {
        Ok(g) => g,
        Err(TryLockError::WouldBlock) => {
            return Err(Failure::new(
                LAV2_ERR_BUSY,
                "the session is busy: another call on it is running (on another thread, or \
                 this is a call from inside its own token callback)",
            ))
        }
        Err(TryLockError::Poisoned(_)) => {
            return Err(Failure::new(
                LAV2_ERR_INTERNAL,
                "the session is unusable after an internal error in an earlier call: free it",
            ))
        }
    };
    f(&mut guard)
}

/// Strings lav2 handed out (by address), so that `lav2_string_free` refuses anything else.
static STRINGS: Mutex<BTreeSet<usize>> = Mutex::new(BTreeSet::new());

pub(crate) fn strings() -> MutexGuard<'static, BTreeSet<usize>> {
    STRINGS.lock().unwrap_or_else(|e| e.into_inner())
}
