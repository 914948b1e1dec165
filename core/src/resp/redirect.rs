//! Cluster error replies the connection layer acts on: redirections
//! (`MOVED`, `ASK`) and "not executed, try again" errors.

/// Where a cluster error reply sends a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redirect {
    /// The slot lives on another node for good: update the slot map.
    Moved { slot: u16, host: String, port: u16 },
    /// The slot is migrating: send `ASKING` then the command to that node,
    /// this once.
    Ask { slot: u16, host: String, port: u16 },
}

impl Redirect {
    pub fn slot(&self) -> u16 {
        match self {
            Redirect::Moved { slot, .. } | Redirect::Ask { slot, .. } => *slot,
        }
    }

    /// The target host; empty means "the node that answered" (the caller
    /// substitutes its address).
    pub fn host(&self) -> &str {
        match self {
            Redirect::Moved { host, .. } | Redirect::Ask { host, .. } => host,
        }
    }

    pub fn port(&self) -> u16 {
        match self {
            Redirect::Moved { port, .. } | Redirect::Ask { port, .. } => *port,
        }
    }
}

/// Number of cluster hash slots.
const SLOTS: u16 = 16384;

fn parse_u16(s: &[u8]) -> Option<u16> {
    if s.is_empty() || s.len() > 5 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(s).ok()?.parse().ok()
}

/// Parse a redirection error text (`"MOVED 3999 127.0.0.1:6381"`,
/// `"ASK 3999 host:port"`).
///
/// The host may be empty (`"MOVED 3999 :6381"`: the node that answered;
/// the caller substitutes its host) or an IPv6 literal (`"MOVED 1
/// ::1:6379"`: the last `:` separates the port; `[::1]:6379` is accepted
/// too and unbracketed). `None` for any other error, a slot outside
/// 0..16383, port 0, a non-UTF-8 host or extra fields.
pub fn parse_redirect(err: &[u8]) -> Option<Redirect> {
    let mut fields = err.split(|&b| b == b' ');
    let code = fields.next()?;
    let slot = parse_u16(fields.next()?).filter(|&s| s < SLOTS)?;
    let addr = fields.next()?;
    if fields.next().is_some() {
        return None;
    }
    let colon = memchr::memrchr(b':', addr)?;
    let port = parse_u16(&addr[colon + 1..]).filter(|&p| p != 0)?;
    let mut host = &addr[..colon];
    if let [b'[', inner @ .., b']'] = host {
        host = inner;
    }
    let host = std::str::from_utf8(host).ok()?.to_owned();
    match code {
        b"MOVED" => Some(Redirect::Moved { slot, host, port }),
        b"ASK" => Some(Redirect::Ask { slot, host, port }),
        _ => None,
    }
}

/// Which redirects can come from the server for a command, by its keys.
/// A server redirects a command by the slot of its keys, and never one
/// without keys; any other redirect text can only be the command's own
/// error (a script returning `redis.error_reply("MOVED ...")`), and
/// following it would run the command again elsewhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Redirectable {
    /// Its keys hash to this slot: a redirect for that slot only.
    Slot(u16),
    /// It has no keys (`EVAL` with no keys, `PING`, ...): none.
    Never,
    /// Sent to a node chosen by the caller, keys not known: any.
    #[default]
    Any,
}

/// [`parse_redirect`] of a reply to a command that can get `which`
/// redirects; `None` for any other text.
pub fn parse_redirect_for(err: &[u8], which: Redirectable) -> Option<Redirect> {
    let r = parse_redirect(err)?;
    match which {
        Redirectable::Slot(s) => (r.slot() == s).then_some(r),
        Redirectable::Never => None,
        Redirectable::Any => Some(r),
    }
}

/// An error reply meaning the command was not executed and may be sent
/// again after a short wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RetryClass {
    /// `TRYAGAIN`: a multi-key command during a slot migration.
    TryAgain,
    /// `CLUSTERDOWN`: the cluster cannot serve the slot right now.
    ClusterDown,
    /// `MASTERDOWN`: a replica lost its primary and does not serve stale
    /// data.
    MasterDown,
    /// `LOADING`: the server is loading its dataset.
    Loading,
    /// `READONLY`: a write reached a replica (e.g. a demoted primary).
    ReadOnly,
}

impl RetryClass {
    /// Whether the slot map is probably stale (re-read the topology before
    /// retrying) rather than the node being momentarily busy (just wait).
    pub fn refresh_topology(self) -> bool {
        matches!(self, RetryClass::ReadOnly | RetryClass::ClusterDown)
    }
}

/// Classify an error reply text by its code (its first word): `TRYAGAIN`,
/// `CLUSTERDOWN`, `MASTERDOWN`, `LOADING`, `READONLY`; `None` for any other
/// error.
pub fn retry_class(err: &[u8]) -> Option<RetryClass> {
    let code = match memchr::memchr(b' ', err) {
        Some(i) => &err[..i],
        None => err,
    };
    Some(match code {
        b"TRYAGAIN" => RetryClass::TryAgain,
        b"CLUSTERDOWN" => RetryClass::ClusterDown,
        b"MASTERDOWN" => RetryClass::MasterDown,
        b"LOADING" => RetryClass::Loading,
        b"READONLY" => RetryClass::ReadOnly,
        _ => return None,
    })
}
