//! Recently read records, kept briefly so that a hot read (GetRunner, which
//! every dashboard and SDK poll makes) does not cost a database round trip
//! each time.
//!
//! Correctness rests on two rules. Every write the store makes to a kept
//! record forgets it before the write returns, so this replica reads its own
//! writes. And an entry lives at most [`RECENT_TTL`], which bounds how stale
//! a read on one replica can be after another replica (or `corral admin`)
//! changed the record. A read that raced a write (read before the write,
//! finished after it) is not kept: reads note the write count before they go
//! to the database and keep their result only if no write came in between.

use std::hash::Hash;
use std::sync::Mutex;
use std::time::Duration;

/// How long a record read from the database is served from memory.
pub const RECENT_TTL: Duration = Duration::from_secs(1);

/// How many records of one kind are kept.
const CAPACITY: u64 = 20_000;

pub struct Recent<K, V> {
    entries: moka::sync::Cache<K, V>,
    /// Writes so far; guarded so that "no write since the read began, keep
    /// it" and "a write, forget it" cannot interleave.
    writes: Mutex<u64>,
}

/// What a read noted before going to the database.
#[derive(Debug, Clone, Copy)]
pub struct ReadTicket(u64);

impl<K, V> Recent<K, V>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    pub fn new() -> Self {
        Self {
            entries: moka::sync::Cache::builder()
                .max_capacity(CAPACITY)
                .time_to_live(RECENT_TTL)
                .build(),
            writes: Mutex::new(0),
        }
    }

    /// The kept value of `key`, or a ticket to read it from the database with.
    pub fn get(&self, key: &K) -> Result<V, ReadTicket> {
        match self.entries.get(key) {
            Some(value) => Ok(value),
            None => Err(ReadTicket(*self.lock())),
        }
    }

    /// Keeps what a read found, unless a write came in since its ticket.
    pub fn keep(&self, ticket: ReadTicket, key: K, value: V) {
        let writes = self.lock();
        if *writes == ticket.0 {
            self.entries.insert(key, value);
        }
    }

    /// Forgets `key` (it was written or deleted); also voids every read in
    /// flight, which may have read it before the write.
    pub fn forget(&self, key: &K) {
        let mut writes = self.lock();
        *writes += 1;
        self.entries.invalidate(key);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, u64> {
        self.writes.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl<K, V> Default for Recent<K, V>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_is_kept_until_its_record_is_written() {
        let recent: Recent<u32, &str> = Recent::new();
        let ticket = recent.get(&1).unwrap_err();
        recent.keep(ticket, 1, "first");
        assert_eq!(recent.get(&1).ok(), Some("first"));
        recent.forget(&1);
        assert!(recent.get(&1).is_err());
    }

    #[test]
    fn a_read_that_raced_a_write_is_not_kept() {
        let recent: Recent<u32, &str> = Recent::new();
        let ticket = recent.get(&1).unwrap_err();
        // A write lands between the read's database query and its keep.
        recent.forget(&1);
        recent.keep(ticket, 1, "read before the write");
        assert!(recent.get(&1).is_err());
        // A write to another record voids reads in flight too (cheaply safe).
        let ticket = recent.get(&1).unwrap_err();
        recent.forget(&2);
        recent.keep(ticket, 1, "also not kept");
        assert!(recent.get(&1).is_err());
    }
}
