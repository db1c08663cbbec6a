//! The JSON files of a shard's broker state under `config/` (topics, groups, offsets, delay progress):
//! loaded at start (a missing or unreadable file is an empty table, logged), replaced atomically when
//! they change.

use crate::store::checkpoint::write_atomic;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::path::Path;

/// Reads `path`, or `field` of it when given (RocketMQ wraps some tables, e.g. `offsetTable`).
pub fn load<T: DeserializeOwned + Default>(path: &Path, field: Option<&str>) -> T {
    let Ok(data) = std::fs::read(path) else { return T::default() };
    let parsed = serde_json::from_slice::<serde_json::Value>(&data)
        .and_then(|v| serde_json::from_value(field.map_or(v.clone(), |f| v[f].clone())));
    parsed.unwrap_or_else(|e| {
        tracing::error!(file = %path.display(), error = %e, "unreadable config file; starting with an empty table");
        T::default()
    })
}

/// Writes `value` (under `field` when given) to `path` atomically; logs and returns false on failure.
pub fn save<T: Serialize>(path: &Path, field: Option<&str>, value: &T) -> bool {
    let json = match field {
        Some(f) => serde_json::json!({ f: value }),
        None => serde_json::to_value(value).unwrap_or(serde_json::Value::Null),
    };
    let result = std::fs::create_dir_all(path.parent().unwrap_or(Path::new(".")))
        .and_then(|_| serde_json::to_vec_pretty(&json).map_err(std::io::Error::other))
        .and_then(|data| write_atomic(path, &data));
    if let Err(e) = &result {
        tracing::error!(file = %path.display(), error = %e, "cannot persist config file");
    }
    result.is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn round_trip_with_and_without_wrapper_and_corrupt_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.json");
        let m: BTreeMap<String, u64> = [("a".to_string(), 1)].into();
        assert!(save(&p, Some("offsetTable"), &m));
        assert_eq!(load::<BTreeMap<String, u64>>(&p, Some("offsetTable")), m);
        assert!(save(&p, None, &m));
        assert_eq!(load::<BTreeMap<String, u64>>(&p, None), m);
        std::fs::write(&p, b"{not json").unwrap();
        assert!(load::<BTreeMap<String, u64>>(&p, None).is_empty());
    }
}
