//! Records read or written, kept in memory until they change so that a hot
//! read (GetRunner, which every dashboard and SDK poll makes) does not cost a
//! database round trip each time.
//!
//! Correctness rests on two rules. Every write the store makes to a kept
//! record forgets it before the write returns, so this replica reads its own
//! writes. And the store hears of writes made elsewhere (another replica,
//! `corral admin`) and forgets what they changed: on SQLite everything, once
//! SQLite says another process wrote the file (`sqlite::watch`); on
//! PostgreSQL the record named by a notice its tables send on every change
//! (`postgres::hear`). While it cannot hear (the notices' connection was
//! lost), nothing is kept ([`Recent::deafen`]). A read that raced a write (read before the write,
//! finished after it) is not kept: reads note the write count before they go
//! to the database and keep their result only if no write came in between.
//! Writes are counted per stripe of keys, so that writes to other records
//! (under a write load, all the time) do not void most reads.

use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher, Hash};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::expiring::Expiring;

/// How long a record read or written is served from memory. Changes are
/// heard of, so this is a backstop (a change somehow not heard of shows
/// within it) and lets records nobody reads go; the bound on memory does
/// the rest. Long enough that a fleet read in turn (100,000 runners, each
/// every few minutes) is read from memory: at one minute, reads of the
/// benchmark's 100,000 runners after its list scenarios all went to the
/// database again.
pub const RECENT_TTL: Duration = Duration::from_secs(600);

/// How many stripes the keys' write counts are kept in.
const STRIPES: usize = 64;

pub struct Recent<K, V> {
    entries: Expiring<K, V>,
    /// Writes so far, per stripe of keys; guarded so that "no write since
    /// the read began, keep it" and "a write, forget it" cannot interleave.
    writes: Mutex<[u64; STRIPES]>,
    /// Which stripe a key is in (the same in every run, for tests).
    stripes: BuildHasherDefault<DefaultHasher>,
    /// Set while writes made elsewhere may go unheard: nothing is kept.
    deaf: AtomicBool,
}

/// What a read noted before going to the database: its key's stripe and
/// the writes counted there.
#[derive(Debug, Clone, Copy)]
pub struct ReadTicket {
    stripe: usize,
    writes: u64,
}

impl<K, V> Recent<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// An unweighted map of a few entries (the store weighs its records:
    /// `sql::runners_in_memory`).
    #[cfg(test)]
    pub fn new() -> Self {
        Self::in_map(Expiring::new(100, RECENT_TTL))
    }

    /// Keeps records in `entries`, which says how many and for how long.
    pub fn in_map(entries: Expiring<K, V>) -> Self {
        Self {
            entries,
            writes: Mutex::new([0; STRIPES]),
            stripes: BuildHasherDefault::default(),
            deaf: AtomicBool::new(false),
        }
    }

    fn stripe(&self, key: &K) -> usize {
        (self.stripes.hash_one(key) % STRIPES as u64) as usize
    }

    /// The kept value of `key`, or a ticket to read it from the database with.
    pub fn get(&self, key: &K) -> Result<V, ReadTicket> {
        let kept = match self.deaf.load(Ordering::Relaxed) {
            true => None,
            false => self.entries.get(key),
        };
        match kept {
            Some(value) => Ok(value),
            None => {
                let stripe = self.stripe(key);
                Err(ReadTicket {
                    stripe,
                    writes: self.lock()[stripe],
                })
            }
        }
    }

    /// Keeps what a read found, unless a write came in since its ticket.
    pub fn keep(&self, ticket: ReadTicket, key: K, value: V) {
        let writes = self.lock();
        if writes[ticket.stripe] == ticket.writes && !self.deaf.load(Ordering::Relaxed) {
            self.entries.insert(key, value);
        }
    }

    /// A ticket for a write of `key` about to be sent, for [`Self::written`].
    pub fn ticket(&self, key: &K) -> ReadTicket {
        let stripe = self.stripe(key);
        ReadTicket {
            stripe,
            writes: self.lock()[stripe],
        }
    }

    /// After a write of `key` that left it `value` (the write's own result,
    /// exactly as a read would find it): forgets as [`Self::forget`] does,
    /// and keeps `value` unless another write came in since `ticket`, taken
    /// before the write was sent (that write may be the later one). So the
    /// read that follows a write, commonly the writer's own, need not go to
    /// the database.
    pub fn written(&self, ticket: ReadTicket, key: K, value: V) {
        let mut writes = self.lock();
        let alone = writes[ticket.stripe] == ticket.writes && !self.deaf.load(Ordering::Relaxed);
        writes[ticket.stripe] += 1;
        if alone {
            self.entries.insert(key, value);
        } else {
            self.entries.remove(&key);
        }
    }

    /// Forgets `key` (it was written or deleted); also voids the reads in
    /// flight of its stripe, which may have read it before the write.
    pub fn forget(&self, key: &K) {
        let stripe = self.stripe(key);
        let mut writes = self.lock();
        writes[stripe] += 1;
        self.entries.remove(key);
    }

    /// Forgets everything and voids every read in flight (records were
    /// written elsewhere, which ones unknown).
    pub fn forget_all(&self) {
        let mut writes = self.lock();
        Self::void_all(&mut writes);
        self.entries.clear();
    }

    /// Forgets everything and keeps nothing until [`Self::hear`]: writes
    /// made elsewhere may go unheard from now on.
    pub fn deafen(&self) {
        let mut writes = self.lock();
        self.deaf.store(true, Ordering::Relaxed);
        Self::void_all(&mut writes);
        self.entries.clear();
    }

    /// Keeps records again, forgetting whatever was kept before (writes
    /// made elsewhere are heard of again from now on).
    pub fn hear(&self) {
        let mut writes = self.lock();
        Self::void_all(&mut writes);
        self.entries.clear();
        self.deaf.store(false, Ordering::Relaxed);
    }

    fn void_all(writes: &mut [u64; STRIPES]) {
        for stripe in writes.iter_mut() {
            *stripe += 1;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, [u64; STRIPES]> {
        self.writes.lock().unwrap_or_else(|e| e.into_inner())
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
        // A write to another record of its stripe voids it too (cheaply
        // safe); one of another stripe does not.
        let same = (2..)
            .find(|k| recent.stripe(k) == recent.stripe(&1))
            .unwrap();
        let other = (2..)
            .find(|k| recent.stripe(k) != recent.stripe(&1))
            .unwrap();
        let ticket = recent.get(&1).unwrap_err();
        recent.forget(&same);
        recent.keep(ticket, 1, "also not kept");
        assert!(recent.get(&1).is_err());
        let ticket = recent.get(&1).unwrap_err();
        recent.forget(&other);
        recent.keep(ticket, 1, "kept");
        assert_eq!(recent.get(&1).ok(), Some("kept"));
    }

    #[test]
    fn a_write_keeps_its_result_unless_another_write_came_meanwhile() {
        let recent: Recent<u32, &str> = Recent::new();
        let ticket = recent.get(&1).unwrap_err();
        recent.keep(ticket, 1, "read");
        // A read in flight when the write lands is voided by it.
        let (same, _) = (2..)
            .map(|k| (k, recent.stripe(&k)))
            .find(|(_, s)| *s == recent.stripe(&1))
            .unwrap();
        let in_flight = recent.ticket(&same);
        let writing = recent.ticket(&1);
        recent.written(writing, 1, "written");
        assert_eq!(recent.get(&1).ok(), Some("written"));
        recent.keep(in_flight, same, "read before the write");
        assert!(recent.get(&same).is_err());
        // Another write of the stripe between the ticket and the result:
        // which of the two landed last is unknown, so neither is kept.
        let writing = recent.ticket(&1);
        recent.forget(&same);
        recent.written(writing, 1, "maybe overtaken");
        assert!(recent.get(&1).is_err());
    }

    #[test]
    fn forgetting_all_voids_every_read_in_flight() {
        let recent: Recent<u32, &str> = Recent::new();
        let ticket = recent.get(&1).unwrap_err();
        recent.keep(ticket, 1, "kept");
        let in_flight = recent.get(&2).unwrap_err();
        recent.forget_all();
        assert!(recent.get(&1).is_err());
        recent.keep(in_flight, 2, "read before the writes elsewhere");
        assert!(recent.get(&2).is_err());
    }

    #[test]
    fn nothing_is_kept_while_deaf() {
        let recent: Recent<u32, &str> = Recent::new();
        let ticket = recent.get(&1).unwrap_err();
        recent.keep(ticket, 1, "kept");
        let in_flight = recent.get(&2).unwrap_err();
        recent.deafen();
        assert!(recent.get(&1).is_err());
        let ticket = recent.get(&1).unwrap_err();
        recent.keep(ticket, 1, "read while deaf");
        assert!(recent.get(&1).is_err());
        let writing = recent.ticket(&3);
        recent.written(writing, 3, "written while deaf");
        assert!(recent.get(&3).is_err());
        recent.hear();
        // A read begun while deaf may have missed a change: not kept.
        recent.keep(in_flight, 2, "read before hearing again");
        assert!(recent.get(&2).is_err());
        let ticket = recent.get(&1).unwrap_err();
        recent.keep(ticket, 1, "kept again");
        assert_eq!(recent.get(&1).ok(), Some("kept again"));
    }
}
