//! A bounded in-memory map whose entries expire: the one shape of the
//! server's caches (recently read records, resolved callers).
//!
//! Built on `quick_cache` rather than `moka`: a lookup is a hash and a
//! shard's read lock, where moka's also queued bookkeeping that later calls
//! had to run (perf: moka took ~10 % of a ListRunners page's CPU, for its 25
//! lookups, and ~5 % of a GetRunner's). quick_cache has no expiry of its
//! own, so each entry carries its deadline, checked on every lookup; an
//! expired entry stays until it is overwritten or evicted, which the bound
//! on entries limits.

use std::hash::Hash;
use std::time::{Duration, Instant};

pub struct Expiring<K, V> {
    entries: quick_cache::sync::Cache<K, Entry<V>, Weigh<V>>,
    ttl: Duration,
}

#[derive(Clone)]
struct Entry<V> {
    value: V,
    until: Instant,
}

/// What an entry counts against the capacity: 1 each, or (for
/// [`Expiring::weighted`]) about the bytes its value holds.
struct Weigh<V>(fn(&V) -> u64);

impl<V> Clone for Weigh<V> {
    fn clone(&self) -> Self {
        Self(self.0)
    }
}

impl<K, V> quick_cache::Weighter<K, Entry<V>> for Weigh<V> {
    fn weight(&self, _key: &K, entry: &Entry<V>) -> u64 {
        // quick_cache never evicts an entry of weight 0.
        (self.0)(&entry.value).max(1)
    }
}

impl<K, V> Expiring<K, V>
where
    K: Hash + Eq + Clone,
    V: Clone,
{
    /// At most about `capacity` entries (the least used go first), each
    /// served for `ttl` after it was inserted.
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        Self {
            entries: quick_cache::sync::Cache::with_weighter(
                capacity.max(1),
                capacity.max(1) as u64,
                Weigh(|_| 1),
            ),
            ttl,
        }
    }

    /// Entries whose `weigh`ts (about the bytes each holds) add up to at
    /// most about `budget`; `typical` is a value's usual weight, which sizes
    /// the table. Each entry is served for `ttl` after it was inserted.
    pub fn weighted(budget: u64, typical: u64, ttl: Duration, weigh: fn(&V) -> u64) -> Self {
        let budget = budget.max(1);
        let items = (budget / typical.max(1)).clamp(1, usize::MAX as u64) as usize;
        Self {
            entries: quick_cache::sync::Cache::with_weighter(items, budget, Weigh(weigh)),
            ttl,
        }
    }

    /// The value inserted for `key` less than the TTL ago, if still kept.
    pub fn get(&self, key: &K) -> Option<V> {
        self.entries
            .get(key)
            .filter(|entry| entry.until > Instant::now())
            .map(|entry| entry.value)
    }

    pub fn insert(&self, key: K, value: V) {
        let until = Instant::now() + self.ttl;
        self.entries.insert(key, Entry { value, until });
    }

    pub fn remove(&self, key: &K) {
        self.entries.remove(key);
    }

    pub fn clear(&self) {
        self.entries.clear();
    }

    /// The weights of the entries kept (their number, if unweighted).
    #[cfg(test)]
    pub fn weight(&self) -> u64 {
        self.entries.weight()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_after_the_ttl() {
        let cache = Expiring::new(10, Duration::from_millis(50));
        cache.insert(1, "one");
        assert_eq!(cache.get(&1), Some("one"));
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(cache.get(&1), None);
        // Inserting again starts a new lifetime.
        cache.insert(1, "again");
        assert_eq!(cache.get(&1), Some("again"));
    }

    #[test]
    fn removed_and_cleared_entries_are_gone() {
        let cache = Expiring::new(10, Duration::from_secs(60));
        cache.insert(1, "one");
        cache.insert(2, "two");
        cache.remove(&1);
        assert_eq!(cache.get(&1), None);
        assert_eq!(cache.get(&2), Some("two"));
        cache.clear();
        assert_eq!(cache.get(&2), None);
    }

    #[test]
    fn holds_about_its_capacity() {
        let cache = Expiring::new(100, Duration::from_secs(60));
        for key in 0..10_000 {
            cache.insert(key, key);
        }
        let kept = (0..10_000).filter(|key| cache.get(key).is_some()).count();
        assert!(kept <= 200, "{kept} entries kept of a capacity of 100");
        assert!(kept > 0);
    }

    #[test]
    fn a_weighted_map_holds_about_its_budget() {
        let cache: Expiring<u32, Vec<u8>> =
            Expiring::weighted(10_000, 100, Duration::from_secs(60), |v| v.len() as u64);
        for key in 0..1_000 {
            cache.insert(key, vec![0; 100]);
        }
        assert!(cache.weight() <= 10_000, "{} bytes kept", cache.weight());
        let kept = (0..1_000).filter(|key| cache.get(key).is_some()).count();
        assert!(
            (50..=100).contains(&kept),
            "{kept} values of 100 bytes kept"
        );
        // A value larger than the whole budget is not kept at all.
        cache.insert(5_000, vec![0; 20_000]);
        assert_eq!(cache.get(&5_000), None);
    }
}
