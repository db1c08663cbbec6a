//! Remote address patterns of `plain_acl.yml` (RocketMQ's `RemoteAddressStrategy`): `*` (every
//! address), an exact IPv4 or IPv6 address, or IPv4 with per-part patterns — `*`, a range `1-10`,
//! or a set `{1,2,3}` — as in `192.168.*.*`, `192.168.1.1-10`, `192.168.0.{1,2}`. Several patterns
//! may be given separated by commas outside braces.

use std::net::IpAddr;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Any,
    Range(u8, u8),
    Set(Vec<u8>),
}

impl Part {
    fn matches(&self, v: u8) -> bool {
        match self {
            Part::Any => true,
            Part::Range(lo, hi) => (*lo..=*hi).contains(&v),
            Part::Set(s) => s.contains(&v),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum One {
    All,
    Exact(IpAddr),
    V4([Part; 4]),
}

/// A parsed pattern (one or more alternatives).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddrPattern(Vec<One>);

fn octet(s: &str) -> Result<u8, String> {
    s.trim().parse::<u8>().map_err(|_| format!("{s:?} is not a number from 0 to 255"))
}

fn part(s: &str) -> Result<Part, String> {
    let s = s.trim();
    if s == "*" {
        return Ok(Part::Any);
    }
    if let Some(inner) = s.strip_prefix('{').and_then(|r| r.strip_suffix('}')) {
        return inner.split(',').map(octet).collect::<Result<Vec<_>, _>>().map(Part::Set);
    }
    if let Some((lo, hi)) = s.split_once('-') {
        let (lo, hi) = (octet(lo)?, octet(hi)?);
        if lo > hi {
            return Err(format!("range {s:?} is empty"));
        }
        return Ok(Part::Range(lo, hi));
    }
    octet(s).map(|v| Part::Range(v, v))
}

fn one(s: &str) -> Result<One, String> {
    let s = s.trim();
    if s == "*" || s == "*.*.*.*" {
        return Ok(One::All);
    }
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(One::Exact(ip));
    }
    let parts: Vec<&str> = s.split('.').collect();
    let [a, b, c, d] = parts.as_slice() else { return Err(format!("{s:?} is not an address pattern")) };
    let p = |x: &str| part(x).map_err(|e| format!("{s:?}: {e}"));
    Ok(One::V4([p(a)?, p(b)?, p(c)?, p(d)?]))
}

/// Splits at commas outside braces.
fn alternatives(s: &str) -> Vec<&str> {
    let (mut out, mut depth, mut start) = (Vec::new(), 0i32, 0);
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

impl AddrPattern {
    pub fn parse(s: &str) -> Result<AddrPattern, String> {
        let all: Result<Vec<One>, String> =
            alternatives(s).into_iter().filter(|a| !a.trim().is_empty()).map(one).collect();
        let all = all?;
        if all.is_empty() {
            return Err("empty address pattern".into());
        }
        Ok(AddrPattern(all))
    }

    pub fn matches(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        self.0.iter().any(|p| match (p, ip) {
            (One::All, _) => true,
            (One::Exact(e), ip) => *e == ip,
            (One::V4(parts), IpAddr::V4(v4)) => parts.iter().zip(v4.octets()).all(|(p, o)| p.matches(o)),
            (One::V4(_), IpAddr::V6(_)) => false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, ip: &str) -> bool {
        AddrPattern::parse(p).unwrap().matches(ip.parse().unwrap())
    }

    #[test]
    fn patterns_match_as_rocketmq_documents_them() {
        assert!(m("*", "10.1.2.3") && m("*", "::1"));
        assert!(m("192.168.0.1", "192.168.0.1") && !m("192.168.0.1", "192.168.0.2"));
        assert!(m("192.168.*.*", "192.168.7.9") && !m("192.168.*.*", "192.169.7.9"));
        assert!(m("192.168.1.1-10", "192.168.1.10") && !m("192.168.1.1-10", "192.168.1.11"));
        assert!(m("192.168.0.{1,2}", "192.168.0.2") && !m("192.168.0.{1,2}", "192.168.0.3"));
        assert!(m("127.0.0.1,10.0.0.*", "10.0.0.5"));
        assert!(m("127.0.0.1", "::ffff:127.0.0.1"));
        assert!(m("::1", "::1") && !m("10.*.*.*", "::1"));
    }

    #[test]
    fn malformed_patterns_are_refused() {
        for p in ["300.1.1.1", "1.2.3", "1.2.3.9-2", "a.b.c.d", "", "1.2.3.{1,x}"] {
            assert!(AddrPattern::parse(p).is_err(), "{p}");
        }
    }
}
