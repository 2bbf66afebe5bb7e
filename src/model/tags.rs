//! An instance's tags: a small sorted map, shared between the instance and its server.
//!
//! A `BTreeMap` allocates a whole node (11 slots, about 540 bytes) for a single tag, and every
//! rendered server used to carry a copy of its instance's map: a kilobyte per server, a tenth of
//! a gigabyte at 100,000. Here the pairs live in one sorted vector behind an `Arc`, so cloning an
//! instance's tags into its server copies a pointer. Writes (tests, the unsafe-value probe) copy
//! on write.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, Serializer};

/// Tag keys to values, sorted by key, each key once. Serializes as a JSON object.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Tags(Arc<Vec<(String, String)>>);

impl Tags {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn find(&self, key: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(k, _)| k.as_str().cmp(key))
    }

    pub fn get(&self, key: &str) -> Option<&String> {
        self.find(key).ok().map(|index| &self.0[index].1)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.find(key).is_ok()
    }

    /// Sets `key` to `value`; returns the value it replaces.
    pub fn insert(&mut self, key: String, value: String) -> Option<String> {
        match self.find(&key) {
            Ok(index) => Some(std::mem::replace(
                &mut Arc::make_mut(&mut self.0)[index].1,
                value,
            )),
            Err(index) => {
                Arc::make_mut(&mut self.0).insert(index, (key, value));
                None
            }
        }
    }

    pub fn remove(&mut self, key: &str) -> Option<String> {
        let index = self.find(key).ok()?;
        Some(Arc::make_mut(&mut self.0).remove(index).1)
    }

    pub fn clear(&mut self) {
        self.0 = Arc::default();
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &String)> {
        self.0.iter().map(|(key, value)| (key, value))
    }

    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.0.iter().map(|(key, _)| key)
    }

    /// The pairs with their values writable (keys are not: they keep the order).
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&String, &mut String)> {
        Arc::make_mut(&mut self.0)
            .iter_mut()
            .map(|(key, value)| (&*key, value))
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Tags {
    /// As a map would: a key given twice keeps its last value.
    fn from_iter<I: IntoIterator<Item = (K, V)>>(pairs: I) -> Self {
        let mut pairs: Vec<(String, String)> = pairs
            .into_iter()
            .map(|(key, value)| (key.into(), value.into()))
            .collect();
        // Stable: equal keys stay in the given order, so the last of each is the one kept.
        pairs.sort_by(|a, b| a.0.cmp(&b.0));
        let mut unique: Vec<(String, String)> = Vec::with_capacity(pairs.len());
        for pair in pairs {
            match unique.last_mut() {
                Some(last) if last.0 == pair.0 => *last = pair,
                _ => unique.push(pair),
            }
        }
        Tags(Arc::new(unique))
    }
}

impl<K: Into<String>, V: Into<String>, const N: usize> From<[(K, V); N]> for Tags {
    fn from(pairs: [(K, V); N]) -> Self {
        pairs.into_iter().collect()
    }
}

impl From<BTreeMap<String, String>> for Tags {
    fn from(map: BTreeMap<String, String>) -> Self {
        // Already sorted and unique.
        Tags(Arc::new(map.into_iter().collect()))
    }
}

impl<'a> IntoIterator for &'a Tags {
    type Item = (&'a String, &'a String);
    type IntoIter = Box<dyn Iterator<Item = (&'a String, &'a String)> + 'a>;

    fn into_iter(self) -> Self::IntoIter {
        Box::new(self.iter())
    }
}

impl fmt::Debug for Tags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl Serialize for Tags {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.len()))?;
        for (key, value) in self.iter() {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Tags {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PairsVisitor;

        impl<'de> Visitor<'de> for PairsVisitor {
            type Value = Tags;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of string keys to string values")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Tags, A::Error> {
                let mut pairs: Vec<(String, String)> =
                    Vec::with_capacity(access.size_hint().unwrap_or(0));
                while let Some(pair) = access.next_entry()? {
                    pairs.push(pair);
                }
                Ok(pairs.into_iter().collect())
            }
        }

        deserializer.deserialize_map(PairsVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use proptest::prelude::*;

    #[test]
    fn a_key_given_twice_keeps_its_last_value_as_a_map_would() {
        let tags = Tags::from([("b", "1"), ("a", "2"), ("b", "3")]);
        assert_eq!(
            tags.iter().collect::<Vec<_>>(),
            [
                (&"a".to_owned(), &"2".to_owned()),
                (&"b".to_owned(), &"3".to_owned())
            ]
        );
        let parsed: Tags = serde_json::from_str(r#"{"b": "1", "a": "2", "b": "3"}"#).unwrap();
        assert_eq!(parsed, tags);
        assert_eq!(
            serde_json::to_string(&tags).unwrap(),
            r#"{"a":"2","b":"3"}"#
        );
    }

    #[test]
    fn a_write_to_a_clone_leaves_the_original_alone() {
        let original = Tags::from([("Name", "web-1")]);
        let mut copy = original.clone();
        copy.insert("Name".into(), "web-2".into());
        copy.insert("Owner".into(), "ops".into());
        assert_eq!(original.get("Name").unwrap(), "web-1");
        assert!(!original.contains_key("Owner"));
        assert_eq!(copy.get("Name").unwrap(), "web-2");
        for (_, value) in copy.iter_mut() {
            value.push('!');
        }
        assert_eq!(original.get("Name").unwrap(), "web-1");
        assert_eq!(copy.get("Owner").unwrap(), "ops!");
    }

    #[test]
    fn a_non_string_value_is_refused() {
        let error = serde_json::from_str::<Tags>(r#"{"a": 1}"#).unwrap_err();
        assert!(error.to_string().contains("expected a string"), "{error}");
    }

    proptest! {
        /// Any sequence of writes leaves the same content as a `BTreeMap` given the same writes.
        #[test]
        fn behaves_as_a_btreemap(
            writes in proptest::collection::vec((0u8..3, "[a-e]{1,2}", "[a-z]{0,3}"), 0..40),
        ) {
            let mut tags = Tags::new();
            let mut map = BTreeMap::new();
            for (operation, key, value) in writes {
                match operation {
                    0 => prop_assert_eq!(
                        tags.insert(key.clone(), value.clone()),
                        map.insert(key, value)
                    ),
                    1 => prop_assert_eq!(tags.remove(&key), map.remove(&key)),
                    _ => prop_assert_eq!(tags.get(&key), map.get(&key)),
                }
                prop_assert_eq!(tags.len(), map.len());
            }
            prop_assert_eq!(tags.clone(), Tags::from(map.clone()));
            prop_assert_eq!(
                serde_json::to_string(&tags).unwrap(),
                serde_json::to_string(&map).unwrap()
            );
        }
    }
}
