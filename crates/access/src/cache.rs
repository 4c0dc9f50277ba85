//! A small map whose entries expire, bounded in size: when full, it is emptied (the entries
//! are cheap to recompute, and a flood of distinct keys must not grow memory).

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

pub struct TtlCache<K, V> {
    entries: Mutex<HashMap<K, (V, Instant)>>,
    capacity: usize,
}

impl<K: Eq + Hash, V: Clone> TtlCache<K, V> {
    pub fn new(capacity: usize) -> Self {
        TtlCache {
            entries: Mutex::new(HashMap::new()),
            capacity,
        }
    }

    pub fn get(&self, key: &K) -> Option<V> {
        let mut entries = self.entries.lock();
        match entries.get(key) {
            Some((value, until)) if Instant::now() < *until => Some(value.clone()),
            Some(_) => {
                entries.remove(key);
                None
            }
            None => None,
        }
    }

    pub fn insert(&self, key: K, value: V, ttl: Duration) {
        let mut entries = self.entries.lock();
        if entries.len() >= self.capacity {
            entries.clear();
        }
        entries.insert(key, (value, Instant::now() + ttl));
    }

    pub fn remove(&self, key: &K) {
        self.entries.lock().remove(key);
    }

    pub fn retain(&self, mut keep: impl FnMut(&K, &V) -> bool) {
        self.entries.lock().retain(|k, (v, _)| keep(k, v));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_and_the_size_stays_bounded() {
        let cache = TtlCache::new(3);
        cache.insert(1, "a", Duration::from_secs(60));
        cache.insert(2, "b", Duration::ZERO);
        assert_eq!(cache.get(&1), Some("a"));
        assert_eq!(cache.get(&2), None, "expired");
        for k in 10..20 {
            cache.insert(k, "x", Duration::from_secs(60));
        }
        assert!(cache.entries.lock().len() <= 3);
        cache.retain(|k, _| *k != 19);
        assert_eq!(cache.get(&19), None);
        cache.insert(5, "y", Duration::from_secs(60));
        cache.remove(&5);
        assert_eq!(cache.get(&5), None);
    }
}
