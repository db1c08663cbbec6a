//! Who can reach the broker without credentials: the ACL and the metrics endpoint's bind address.
//!
//! The broker's listeners (shard ports, VIP ports, the name server) bind `0.0.0.0`, so they are
//! reachable on every address of every interface that is up. Without an ACL anyone who reaches a port
//! can read any topic, reset offsets, delete topics and register brokers with the name server; the
//! `acl` check warns when that is so on a host with any non-loopback address. The metrics endpoint has
//! no authentication at all; `metrics_bind` warns when it is bound beyond loopback.

use std::net::{IpAddr, SocketAddr};

use super::{CheckResult, Ctx};

const ACL_FIX: &str = "write a plain_acl.yml (docs/OPERATIONS.md, \"Hardening\") and start the broker with \
     `--acl-file FILE` (or `aclEnable=true` in broker.conf); until then keep the ports behind a firewall";
const METRICS_FIX: &str = "bind the metrics endpoint to loopback (`metrics_addr = \"127.0.0.1:5557\"`) and scrape it through a proxy \
     or an agent on the host";

/// Non-loopback, non-link-local-v6 addresses of the interfaces that are up (those other hosts can use).
fn reachable_addrs(ctx: &Ctx<'_>) -> Result<Vec<IpAddr>, String> {
    let mut addrs: Vec<IpAddr> = ctx
        .host
        .interface_addrs()
        .map_err(|e| format!("could not list interface addresses: {e}"))?
        .into_iter()
        .filter(|a| !a.is_loopback() && !a.is_unspecified())
        .collect();
    addrs.sort();
    addrs.dedup();
    Ok(addrs)
}

fn shown(addrs: &[IpAddr]) -> String {
    const SHOWN: usize = 4;
    let mut s = addrs.iter().take(SHOWN).map(ToString::to_string).collect::<Vec<_>>().join(", ");
    if addrs.len() > SHOWN {
        s.push_str(&format!(" and {} more", addrs.len() - SHOWN));
    }
    s
}

/// ACL on and loadable → Pass; on but unloadable → Fail (the broker refuses to start); off with a
/// non-loopback address up → Warn.
pub(crate) fn acl(ctx: &Ctx<'_>) -> CheckResult {
    const NAME: &str = "acl";
    if let Some(path) = &ctx.opts.acl_file {
        return match crate::security::acl::load(path) {
            Ok(file) => {
                CheckResult::pass(NAME, format!("ACL on: {} ({} accounts)", path.display(), file.accounts.len()))
            }
            Err(e) => {
                CheckResult::fail(NAME, format!("ACL file does not load, the broker will not start: {e}"), ACL_FIX)
            }
        };
    }
    match reachable_addrs(ctx) {
        Err(e) => CheckResult::warn(NAME, format!("ACL off; {e}"), ACL_FIX),
        Ok(addrs) if addrs.is_empty() => {
            CheckResult::pass(NAME, "ACL off, but only loopback addresses are up: no other host can connect")
        }
        Ok(addrs) => CheckResult::warn(
            NAME,
            format!(
                "ACL off while the listeners (bound to 0.0.0.0) are reachable at {}: anyone who reaches a port \
                 can read any topic, reset offsets, delete topics and register brokers",
                shown(&addrs)
            ),
            ACL_FIX,
        ),
    }
}

/// Metrics endpoint off or on loopback → Pass; on a wildcard or non-loopback address → Warn.
pub(crate) fn metrics_bind(ctx: &Ctx<'_>) -> CheckResult {
    const NAME: &str = "metrics_bind";
    let Some(addr) = &ctx.opts.metrics_addr else {
        return CheckResult::pass(NAME, "metrics endpoint off");
    };
    match addr.parse::<SocketAddr>() {
        Ok(sa) if sa.ip().is_loopback() => CheckResult::pass(NAME, format!("metrics endpoint on {sa} (loopback only)")),
        Ok(sa) => CheckResult::warn(
            NAME,
            format!("metrics endpoint on {sa}: it has no authentication and other hosts can reach it"),
            METRICS_FIX,
        ),
        Err(_) => CheckResult::warn(
            NAME,
            format!("metrics endpoint on {addr:?}: not an ip:port, so the broker will refuse it"),
            METRICS_FIX,
        ),
    }
}
