//! Where a node listens. A port given as 0 (`--listen-port 0`, `--namesrv-port 0`, `--metrics-addr
//! host:0`) is chosen by the kernel when first bound, and the choice is kept in
//! `<data_dir>/listening.json`, so a restart over the same data directory binds the same addresses: a
//! broker's address is its identity in name-server routes, client caches and offset message ids.
//! The file is rewritten at every start with what was actually bound (explicit ports included), so
//! tools and tests read a node's addresses from it instead of guessing them. With port 0 shards' ports
//! are not at the `+ 4·i` stride, so clients that derive the VIP port as port − 2 must not use VIP
//! channels (RocketMQ's clients default to VIP off since 4.x).

use crate::store::files::{OsFiles, read_optional, write_atomic};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The bound ports of one node.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Listening {
    pub namesrv: Option<u16>,
    pub metrics: Option<u16>,
    /// Per shard: (main port, VIP port).
    pub shards: Vec<(u16, u16)>,
}

fn path(data_dir: &Path) -> PathBuf {
    data_dir.join("listening.json")
}

/// What the last start bound (empty when the file is missing or unreadable: ports are chosen anew).
pub fn load(data_dir: &Path) -> Listening {
    match read_optional(&OsFiles, &path(data_dir)) {
        Ok(Some(bytes)) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "listening.json unreadable: ports given as 0 are chosen anew");
            Listening::default()
        }),
        _ => Listening::default(),
    }
}

pub fn save(data_dir: &Path, l: &Listening) -> std::io::Result<()> {
    let json = serde_json::to_vec_pretty(l).map_err(std::io::Error::other)?;
    write_atomic(&OsFiles, &path(data_dir), &json)
}

/// The port to bind: the configured one, or for 0 the one the last start chose (0 again when none).
pub fn sticky(configured: u16, last: Option<u16>) -> u16 {
    if configured == 0 { last.unwrap_or(0) } else { configured }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chosen_ports_are_kept_for_the_next_start() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path()), Listening::default());
        let l = Listening { namesrv: Some(40001), metrics: None, shards: vec![(40002, 40003)] };
        save(dir.path(), &l).unwrap();
        assert_eq!(load(dir.path()), l);
        assert_eq!(sticky(0, l.namesrv), 40001);
        assert_eq!(sticky(9876, l.namesrv), 9876, "an explicit port wins");
        assert_eq!(sticky(0, None), 0);
        std::fs::write(dir.path().join("listening.json"), "{garbage").unwrap();
        assert_eq!(load(dir.path()), Listening::default());
    }
}
