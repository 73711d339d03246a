//! What a leader remembers of each object between reconciles, by uid, in bounded memory.
//!
//! Reconcilers keep a small record per object (the resourceVersion of the Secret they last
//! wrote, a force-sync value) so that the events their own writes cause cost nothing. Entries of
//! deleted objects are never looked at again, so the map is bounded: when it reaches its limit it
//! starts over, and the next reconcile of each object falls back to what the API server says
//! (one GET, never a wrong answer). A poisoned lock is recovered: every entry is a cache that
//! the next reconcile rebuilds.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// Entries kept before starting over: far more objects than one cluster has, and at about 100
/// bytes an entry, some 20 MiB at most.
pub const LIMIT: usize = 200_000;

/// Per-uid records of type `V`, at most `limit` of them.
pub struct BoundedMemory<V> {
    entries: Mutex<HashMap<String, V>>,
    limit: usize,
}

impl<V: Clone> Default for BoundedMemory<V> {
    fn default() -> Self {
        Self::with_limit(LIMIT)
    }
}

impl<V: Clone> BoundedMemory<V> {
    /// An empty memory that starts over at `limit` entries.
    pub fn with_limit(limit: usize) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            limit: limit.max(1),
        }
    }

    /// The record of `uid`, if any.
    pub fn get(&self, uid: &str) -> Option<V> {
        self.lock().get(uid).cloned()
    }

    /// Records `value` for `uid`, first forgetting everything if the memory is full.
    pub fn remember(&self, uid: &str, value: V) {
        let mut entries = self.lock();
        if entries.len() >= self.limit && !entries.contains_key(uid) {
            entries.clear();
        }
        entries.insert(uid.to_owned(), value);
    }

    /// Forgets `uid`.
    pub fn forget(&self, uid: &str) {
        self.lock().remove(uid);
    }

    /// How many records are held.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no record is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, V>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_remembers_forgets_and_starts_over_when_full() {
        let memory = BoundedMemory::with_limit(2);
        assert!(memory.is_empty());
        memory.remember("a", 1);
        memory.remember("b", 2);
        assert_eq!((memory.get("a"), memory.get("b")), (Some(1), Some(2)));
        // Updating a known uid never empties the memory.
        memory.remember("a", 3);
        assert_eq!((memory.get("a"), memory.len()), (Some(3), 2));
        // A third uid starts over.
        memory.remember("c", 4);
        assert_eq!(
            (memory.get("a"), memory.get("c"), memory.len()),
            (None, Some(4), 1)
        );
        memory.forget("c");
        assert_eq!(memory.get("c"), None);
    }

    #[test]
    fn a_poisoned_lock_is_recovered() {
        let memory = std::sync::Arc::new(BoundedMemory::with_limit(4));
        memory.remember("a", 1);
        let poisoner = std::sync::Arc::clone(&memory);
        let _ = std::thread::spawn(move || {
            let _guard = poisoner.lock();
            panic!("poison the lock");
        })
        .join();
        assert_eq!(memory.get("a"), Some(1));
    }
}
