//! A workload's annotations as the store keeps them: sorted by key in one allocation. A
//! `BTreeMap<String, String>` spends a 544-byte node on the first entry, and most workloads
//! carry a handful of annotations, so the map was a third of what a stored workload cost.

use std::collections::BTreeMap;

/// Annotations sorted by key, each key once; reads like the `BTreeMap` it replaces (same order,
/// same last-one-wins on duplicate keys), with lookups by binary search. Only what the decisions
/// and tests use is offered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Annotations(Vec<(String, String)>);

impl Annotations {
    fn find(&self, key: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(k, _)| k.as_str().cmp(key))
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&String> {
        self.find(key).ok().map(|i| &self.0[i].1)
    }

    /// Whether `key` is present.
    pub fn contains_key(&self, key: &str) -> bool {
        self.find(key).is_ok()
    }

    /// Sets `key` to `value`; returns the value it replaced.
    pub fn insert(&mut self, key: String, value: String) -> Option<String> {
        match self.find(&key) {
            Ok(i) => Some(std::mem::replace(&mut self.0[i].1, value)),
            Err(i) => {
                self.0.insert(i, (key, value));
                None
            }
        }
    }

    /// The keys, in order.
    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.0.iter().map(|(k, _)| k)
    }

    /// The same entries as a `BTreeMap` (for object metadata we write).
    pub fn to_map(&self) -> BTreeMap<String, String> {
        self.0.iter().cloned().collect()
    }
}

impl FromIterator<(String, String)> for Annotations {
    fn from_iter<I: IntoIterator<Item = (String, String)>>(entries: I) -> Self {
        let mut entries: Vec<(String, String)> = entries.into_iter().collect();
        // Reversed, then sorted stably: of equal keys the last given comes first, and dedup
        // keeps the first of a run, so the last one wins, as in a map built by inserting.
        entries.reverse();
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        entries.dedup_by(|later, earlier| later.0 == earlier.0);
        entries.shrink_to_fit();
        Self(entries)
    }
}

impl From<BTreeMap<String, String>> for Annotations {
    fn from(map: BTreeMap<String, String>) -> Self {
        let mut entries: Vec<(String, String)> = map.into_iter().collect();
        entries.shrink_to_fit();
        Self(entries)
    }
}

impl<const N: usize> From<[(String, String); N]> for Annotations {
    fn from(entries: [(String, String); N]) -> Self {
        entries.into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(entries: &[(&str, &str)]) -> Vec<(String, String)> {
        entries
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn reads_like_the_map_it_replaces() {
        let entries = pairs(&[("b", "1"), ("a", "2"), ("c", "3"), ("a", "4")]);
        let map: BTreeMap<String, String> = entries.iter().cloned().collect();
        let annotations: Annotations = entries.into_iter().collect();
        assert_eq!(
            annotations.to_map(),
            map,
            "same entries, the last of duplicate keys wins"
        );
        assert_eq!(annotations, Annotations::from(map.clone()));
        assert_eq!(
            annotations.keys().collect::<Vec<_>>(),
            map.keys().collect::<Vec<_>>(),
            "same order"
        );
        for key in ["a", "b", "c", "d", ""] {
            assert_eq!(annotations.get(key), map.get(key), "{key}");
            assert_eq!(annotations.contains_key(key), map.contains_key(key));
        }
        assert_eq!(Annotations::default().to_map(), BTreeMap::new());
    }

    #[test]
    fn insert_keeps_the_order_and_replaces_a_value() {
        let mut annotations = Annotations::default();
        let mut map = BTreeMap::new();
        for (k, v) in pairs(&[("m", "1"), ("a", "2"), ("z", "3"), ("m", "4"), ("b", "5")]) {
            assert_eq!(annotations.insert(k.clone(), v.clone()), map.insert(k, v));
        }
        assert_eq!(annotations.to_map(), map);
        assert_eq!(
            annotations.keys().collect::<Vec<_>>(),
            map.keys().collect::<Vec<_>>()
        );
    }
}
