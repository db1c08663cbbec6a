//! A command's `extFields`: the header's string-to-string map, built for the unbatched send path.
//!
//! Every key and value of one command lives in a single text buffer, indexed by a vector of spans
//! sorted by key: decoding a Java client's SEND_MESSAGE_V2 header (13 fields) costs two allocations
//! instead of 26 strings and a growing hash table (the header decode was ~13 % of broker CPU per
//! unbatched send in the 2026-12-07 profile, docs/BENCHMARKS.md). Lookups are binary searches over
//! a dozen entries; iteration is in key order, the order Java writes them in.
//!
//! Bounds: a decoded frame's fields are sorted once at the end (O(n log n) however many keys a
//! hostile frame repeats), and replaced values leave their old bytes in the buffer, which holds at
//! most what was inserted — for a decoded header, at most the header's own size.

use std::fmt;

/// Where one key and its value lie in [`ExtFields::text`].
#[derive(Clone, Copy, Debug)]
struct Span {
    key: (usize, usize),
    value: (usize, usize),
}

/// A command's `extFields` (see the module documentation). Lives with its command on the shard
/// that decoded it.
#[derive(Clone, Default)]
pub struct ExtFields {
    text: String,
    /// Sorted by key, one per key (except between [`Self::push_unordered`] and
    /// [`Self::restore_order`] inside a decoder).
    spans: Vec<Span>,
}

impl ExtFields {
    /// Room for `text_bytes` of keys and values and `fields` entries.
    pub fn with_capacity(text_bytes: usize, fields: usize) -> ExtFields {
        ExtFields { text: String::with_capacity(text_bytes), spans: Vec::with_capacity(fields) }
    }

    fn key_of(&self, s: &Span) -> &str {
        self.text.get(s.key.0..s.key.1).unwrap_or_default()
    }

    fn value_of(&self, s: &Span) -> &str {
        self.text.get(s.value.0..s.value.1).unwrap_or_default()
    }

    fn key_bytes(&self, s: &Span) -> &[u8] {
        self.text.as_bytes().get(s.key.0..s.key.1).unwrap_or_default()
    }

    fn find(&self, key: &str) -> Result<usize, usize> {
        let key = key.as_bytes();
        self.spans.binary_search_by(|s| key_order(self.key_bytes(s), key))
    }

    fn store(&mut self, text: &str) -> (usize, usize) {
        let start = self.text.len();
        self.text.push_str(text);
        (start, self.text.len())
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.find(key).ok().and_then(|i| self.spans.get(i)).map(|s| self.value_of(s))
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.find(key).is_ok()
    }

    /// Sets `key` to `value`, replacing an earlier value.
    pub fn insert(&mut self, key: &str, value: &str) {
        match self.find(key) {
            Ok(i) => {
                let value = self.store(value);
                if let Some(s) = self.spans.get_mut(i) {
                    s.value = value;
                }
            }
            Err(i) => {
                let key = self.store(key);
                let value = self.store(value);
                self.spans.insert(i, Span { key, value });
            }
        }
    }

    /// Removes `key`; whether it was there.
    pub fn remove(&mut self, key: &str) -> bool {
        match self.find(key) {
            Ok(i) => {
                self.spans.remove(i);
                true
            }
            Err(_) => false,
        }
    }

    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// The fields in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.spans.iter().map(|s| (self.key_of(s), self.value_of(s)))
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> + '_ {
        self.spans.iter().map(|s| self.key_of(s))
    }

    /// Appends a field without keeping the order (a decoder's fast path); the decoder calls
    /// [`Self::restore_order`] once it has read every field.
    pub(super) fn push_unordered(&mut self, key: &str, value: &str) {
        let key = self.store(key);
        let value = self.store(value);
        self.spans.push(Span { key, value });
    }

    /// Sorts the fields by key; of a repeated key the last value stays (as a JSON object's last
    /// member wins).
    pub(super) fn restore_order(&mut self) {
        let ordered = self.spans.iter().zip(self.spans.iter().skip(1));
        if ordered.into_iter().all(|(a, b)| self.key_of(a) < self.key_of(b)) {
            return;
        }
        let mut spans = std::mem::take(&mut self.spans);
        spans.sort_by(|a, b| self.key_of(a).cmp(self.key_of(b))); // stable: repeats keep their order
        let mut kept: Vec<Span> = Vec::with_capacity(spans.len());
        for s in spans {
            match kept.last_mut() {
                Some(last) if self.key_of(last) == self.key_of(&s) => *last = s,
                _ => kept.push(s),
            }
        }
        self.spans = kept;
    }
}

/// Byte order of two keys (`str`'s order), deciding on the first byte inline: the keys of a send
/// header are one letter each, and a call to `memcmp` per probe was most of a lookup's cost.
fn key_order(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    match (a.first(), b.first()) {
        (Some(x), Some(y)) if x != y => x.cmp(y),
        _ => a.cmp(b),
    }
}

impl PartialEq for ExtFields {
    fn eq(&self, other: &ExtFields) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for ExtFields {}

impl fmt::Debug for ExtFields {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<'a> FromIterator<(&'a str, &'a str)> for ExtFields {
    fn from_iter<I: IntoIterator<Item = (&'a str, &'a str)>>(pairs: I) -> ExtFields {
        let mut out = ExtFields::default();
        for (k, v) in pairs {
            out.push_unordered(k, v);
        }
        out.restore_order();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_inserts_replacements_and_removals() {
        let mut e = ExtFields::default();
        assert!(e.is_empty() && e.get("a").is_none());
        e.insert("topic", "T");
        e.insert("a", "1");
        e.insert("queueId", "3");
        e.insert("a", "2");
        assert_eq!(e.get("a"), Some("2"));
        assert_eq!(e.len(), 3);
        assert_eq!(e.keys().collect::<Vec<_>>(), ["a", "queueId", "topic"]);
        assert!(e.remove("queueId") && !e.remove("queueId"));
        assert!(!e.contains_key("queueId") && e.contains_key("topic"));
        assert_eq!(e.iter().collect::<Vec<_>>(), [("a", "2"), ("topic", "T")]);
    }

    #[test]
    fn unordered_fields_are_sorted_once_and_the_last_repeat_wins() {
        let mut e = ExtFields::with_capacity(64, 4);
        for (k, v) in [("m", "1"), ("b", "x"), ("m", "2"), ("a", ""), ("m", "3")] {
            e.push_unordered(k, v);
        }
        e.restore_order();
        assert_eq!(e.iter().collect::<Vec<_>>(), [("a", ""), ("b", "x"), ("m", "3")]);
        assert_eq!(e, [("m", "3"), ("a", ""), ("b", "x")].into_iter().collect::<ExtFields>());
    }

    #[test]
    fn many_repeats_of_one_key_sort_in_n_log_n_and_keep_the_last() {
        let mut e = ExtFields::default();
        let values: Vec<String> = (0..100_000).map(|i| i.to_string()).collect();
        for v in &values {
            e.push_unordered("k", v);
        }
        e.restore_order();
        assert_eq!((e.len(), e.get("k")), (1, Some("99999")));
    }
}
