//! The messages carried in ring records, archived with rkyv 0.8.
//!
//! * A submission record carries one [`Request`].
//! * A completion record carries one [`Completion`]: a [`Value`] (the whole
//!   RESP3 value model) or a typed [`ClientError`]; push records (pub/sub)
//!   carry a `Completion::Push`.
//!
//! Keys, values and arguments are byte strings (`Vec<u8>`), never `String`.
//!
//! Writers may serialize a borrowed argument list ([`ArgsRef`]) straight into
//! ring memory: it archives to exactly the same bytes as the owned
//! [`Args`], so the reader always accesses `ArchivedRequest<Args>`.
//!
//! Readers validate with bytecheck ([`access_request`], [`access_completion`])
//! before use. The core never runs these over bytes a client can still
//! change: it copies the record into private, aligned memory first.

use rkyv::rancor::Fallible;
use rkyv::ser::{Allocator, Writer};
use rkyv::util::AlignedVec;
use rkyv::vec::{ArchivedVec, VecResolver};
use rkyv::{Archive, Deserialize, Place, Serialize};

use crate::ProtocolError;

mod direct;

/// One command's arguments, owned: `["SET", "k", "v"]`.
pub type Args = Vec<Vec<u8>>;

/// Where a request goes. `Auto` routes by key slot (keyless commands go to a
/// random node, or to every node where the command's policy says so).
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
#[rkyv(derive(Debug))]
pub enum Route {
    #[default]
    Auto,
    AllNodes,
    AllPrimaries,
    Random,
    /// The node serving `key`'s slot (its primary, or a replica).
    SlotKey {
        key: Vec<u8>,
        replica: bool,
    },
    /// The node serving `slot` (0..16383).
    SlotId {
        slot: u16,
        replica: bool,
    },
    /// One node by address.
    Address {
        host: String,
        port: u16,
    },
}

/// Request flags (bit set in [`Request::flags`]).
pub mod flags {
    /// Batch: stop reporting at the first error (raise-on-error): the
    /// completion is the first error instead of the array of results.
    pub const RAISE_ON_ERROR: u32 = 1 << 0;
}

/// What a request asks for.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub enum Op<A> {
    /// One command, argv style.
    Command { args: A },
    /// A pipeline (`atomic = false`) or a MULTI/EXEC transaction
    /// (`atomic = true`, all keys in one slot). `watch` keys are WATCHed on
    /// the same connection before the transaction.
    Batch {
        atomic: bool,
        watch: Vec<Vec<u8>>,
        commands: Vec<A>,
    },
    /// Cancel the in-flight request with this id (best effort: the target
    /// still gets exactly one completion).
    Cancel { target: u64 },
    /// Run a Lua script by its SHA1 (EVALSHA), loading it on NOSCRIPT.
    /// `code` is the script body; the core computes and caches the hash.
    Script {
        code: Vec<u8>,
        keys: Vec<Vec<u8>>,
        args: Vec<Vec<u8>>,
    },
    /// Subscribe this client to channels (exact, pattern or sharded).
    /// Messages arrive as push records on the completion ring.
    Subscribe {
        kind: SubKind,
        channels: Vec<Vec<u8>>,
    },
    /// Unsubscribe (an empty list: from every channel of that kind).
    Unsubscribe {
        kind: SubKind,
        channels: Vec<Vec<u8>>,
    },
    /// One step of a cluster-wide SCAN. `cursor` 0 starts a scan; the
    /// reply is `[next_cursor, [keys...]]`, `next_cursor` 0 when done.
    /// Cursors are handles to scan state kept by the core.
    ClusterScan {
        cursor: u64,
        pattern: Option<Vec<u8>>,
        count: u32,
        type_filter: Option<Vec<u8>>,
    },
}

/// The kind of a pub/sub subscription.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[rkyv(derive(Debug, PartialEq, Eq))]
#[repr(u8)]
pub enum SubKind {
    /// SUBSCRIBE / PUBLISH.
    Exact = 0,
    /// PSUBSCRIBE.
    Pattern = 1,
    /// SSUBSCRIBE / SPUBLISH (cluster: the channel's slot owner).
    Sharded = 2,
}

impl<'a> Op<ArgsRef<'a>> {
    /// A conservative upper bound of this op's archived size (excluding
    /// the route), for reserving ring space before serializing in place.
    pub fn size_bound(&self) -> usize {
        let lens = |v: &Vec<Vec<u8>>| v.iter().map(|x| x.len() + 16).sum::<usize>();
        match self {
            Op::Command { args } => request_size_bound(args.0.iter().map(|a| a.0.len()), 0),
            Op::Batch {
                watch, commands, ..
            } => {
                let mut n = request_size_bound(watch.iter().map(|w| w.len()), 0);
                for c in commands {
                    n += request_size_bound(c.0.iter().map(|a| a.0.len()), 0);
                }
                n
            }
            Op::Cancel { .. } => 128,
            Op::Script { code, keys, args } => 160 + code.len() + lens(keys) + lens(args),
            Op::Subscribe { channels, .. } | Op::Unsubscribe { channels, .. } => {
                128 + lens(channels)
            }
            Op::ClusterScan {
                pattern,
                type_filter,
                ..
            } => {
                160 + pattern.as_ref().map_or(0, |p| p.len())
                    + type_filter.as_ref().map_or(0, |t| t.len())
            }
        }
    }
}

/// One request, as written by the client into the submission ring.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Request<A = Args> {
    /// Must equal the record header's id.
    pub id: u64,
    /// Per-request timeout in milliseconds; 0 = the client's default.
    pub timeout_ms: u32,
    /// See [`flags`].
    pub flags: u32,
    pub route: Route,
    pub op: Op<A>,
}

/// A borrowed argument: archives exactly like `Vec<u8>`.
#[derive(Debug, Clone, Copy)]
pub struct ArgRef<'a>(pub &'a [u8]);

/// A borrowed argument list: archives exactly like [`Args`], so a client can
/// serialize C `argv` straight into the ring without copying it first.
#[derive(Debug, Clone, Copy)]
pub struct ArgsRef<'a>(pub &'a [ArgRef<'a>]);

impl Archive for ArgRef<'_> {
    type Archived = ArchivedVec<u8>;
    type Resolver = VecResolver;

    fn resolve(&self, resolver: Self::Resolver, out: Place<Self::Archived>) {
        ArchivedVec::resolve_from_len(self.0.len(), resolver, out);
    }
}

impl<S: Fallible + Allocator + Writer + ?Sized> Serialize<S> for ArgRef<'_> {
    fn serialize(&self, serializer: &mut S) -> Result<Self::Resolver, S::Error> {
        ArchivedVec::<u8>::serialize_from_slice(self.0, serializer)
    }
}

impl Archive for ArgsRef<'_> {
    type Archived = ArchivedVec<ArchivedVec<u8>>;
    type Resolver = VecResolver;

    fn resolve(&self, resolver: Self::Resolver, out: Place<Self::Archived>) {
        ArchivedVec::resolve_from_len(self.0.len(), resolver, out);
    }
}

impl<S: Fallible + Allocator + Writer + ?Sized> Serialize<S> for ArgsRef<'_> {
    fn serialize(&self, serializer: &mut S) -> Result<Self::Resolver, S::Error> {
        ArchivedVec::<ArchivedVec<u8>>::serialize_from_slice(self.0, serializer)
    }
}

/// The kind of a [`ClientError`]; the C API mirrors these as status codes.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[rkyv(derive(Debug, PartialEq, Eq))]
#[repr(u8)]
pub enum ErrorKind {
    /// The server answered with an error reply (WRONGTYPE, NOSCRIPT, ...).
    Request = 1,
    /// The request did not complete within its timeout.
    Timeout = 2,
    /// The connection to the server (or to the daemon) failed.
    Connection = 3,
    /// The client or the core is shutting down.
    Closing = 4,
    /// A transaction was aborted (EXECABORT, or WATCH made EXEC return nil
    /// where the caller asked for an error).
    ExecAbort = 5,
    /// The request is malformed or refused before it was sent (bad record,
    /// unsupported connection-state command, cross-slot transaction).
    InvalidRequest = 6,
    /// A per-client limit was hit (in-flight requests, bytes).
    Overloaded = 7,
}

/// A typed error with the server's or the cause's message.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct ClientError {
    pub kind: ErrorKind,
    pub message: String,
}

impl ClientError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ClientError {
            kind,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}: {}", self.kind, self.message)
    }
}

impl std::error::Error for ClientError {}

/// A map entry (RESP3 map and attribute).
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[rkyv(serialize_bounds(
    __S: rkyv::ser::Writer + rkyv::ser::Allocator,
    __S::Error: rkyv::rancor::Source,
))]
#[rkyv(deserialize_bounds(__D::Error: rkyv::rancor::Source))]
#[rkyv(bytecheck(bounds(
    __C: rkyv::validation::ArchiveContext,
    __C::Error: rkyv::rancor::Source,
)))]
pub struct Pair {
    #[rkyv(omit_bounds)]
    pub key: Value,
    #[rkyv(omit_bounds)]
    pub value: Value,
}

/// The RESP3 value model. RESP2 replies map onto the subset they can express
/// (RESP2 has no map, set, double, boolean, big number or verbatim string:
/// the server sends arrays, bulk strings and integers instead).
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[rkyv(serialize_bounds(
    __S: rkyv::ser::Writer + rkyv::ser::Allocator,
    __S::Error: rkyv::rancor::Source,
))]
#[rkyv(deserialize_bounds(__D::Error: rkyv::rancor::Source))]
#[rkyv(bytecheck(bounds(
    __C: rkyv::validation::ArchiveContext,
    __C::Error: rkyv::rancor::Source,
)))]
pub enum Value {
    Nil,
    Int(i64),
    Bulk(Vec<u8>),
    /// Simple string (`+OK`).
    Simple(Vec<u8>),
    /// An error reply nested in an aggregate (pipelines, EXEC results).
    Error(Vec<u8>),
    Array(#[rkyv(omit_bounds)] Vec<Value>),
    Map(#[rkyv(omit_bounds)] Vec<Pair>),
    Set(#[rkyv(omit_bounds)] Vec<Value>),
    Double(f64),
    Boolean(bool),
    /// Decimal digits, with an optional leading '-'.
    BigNumber(Vec<u8>),
    Verbatim {
        /// Three bytes, e.g. `txt` or `mkd`.
        format: Vec<u8>,
        text: Vec<u8>,
    },
    Push {
        kind: Vec<u8>,
        #[rkyv(omit_bounds)]
        data: Vec<Value>,
    },
    Attribute {
        #[rkyv(omit_bounds)]
        data: Box<Value>,
        #[rkyv(omit_bounds)]
        attributes: Vec<Pair>,
    },
}

/// What the core writes into the completion ring.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub enum Completion {
    /// The request's reply.
    Ok(Value),
    /// The request's typed error.
    Err(ClientError),
    /// An out-of-band push (pub/sub message); its record id is 0.
    Push(Value),
}

type RkyvError = rkyv::rancor::Error;

fn bad<E: std::fmt::Display>(e: E) -> ProtocolError {
    ProtocolError::BadMessage(e.to_string())
}

/// Serialize a request into `out` (which must be 16-byte aligned, as the
/// ring guarantees for record payloads). Returns the bytes written, or
/// `None` when `out` is too small.
pub fn encode_request_into<'o, A>(req: &Request<A>, out: &'o mut [u8]) -> Option<usize>
where
    A: Archive
        + for<'a> Serialize<
            rkyv::api::high::HighSerializer<
                rkyv::ser::writer::Buffer<'o>,
                rkyv::ser::allocator::ArenaHandle<'a>,
                RkyvError,
            >,
        >,
{
    let buf = rkyv::ser::writer::Buffer::from(out);
    rkyv::api::high::to_bytes_in::<_, RkyvError>(req, buf)
        .ok()
        .map(|b| b.len())
}

/// Serialize a request into a fresh aligned buffer.
pub fn encode_request<A>(req: &Request<A>) -> AlignedVec
where
    A: Archive
        + for<'a> Serialize<
            rkyv::api::high::HighSerializer<
                AlignedVec,
                rkyv::ser::allocator::ArenaHandle<'a>,
                RkyvError,
            >,
        >,
{
    rkyv::to_bytes::<RkyvError>(req).expect("serializing into a Vec cannot fail")
}

/// Serialize a completion into a fresh aligned buffer.
pub fn encode_completion(c: &Completion) -> AlignedVec {
    encode_completion_in(c, AlignedVec::new())
}

/// Serialize a completion into `buf` (cleared first; its allocation is
/// reused when large enough), and return it.
pub fn encode_completion_in(c: &Completion, mut buf: AlignedVec) -> AlignedVec {
    // Nil, integers and strings: the same bytes, without the serializer.
    if direct::encode(c, &mut buf) {
        return buf;
    }
    buf.clear();
    // Sized up front: growing from empty reallocates (and, for a large
    // value, faults in fresh pages) once per doubling.
    buf.reserve(completion_size_hint(c));
    rkyv::api::high::to_bytes_in::<_, RkyvError>(c, buf)
        .expect("serializing into a Vec cannot fail")
}

/// A completion's archive in three pieces, `head ++ big ++ tail`: the
/// same bytes as [`encode_completion`], with one large byte string (the
/// reply's value) left where it lies instead of copied into the archive.
#[derive(Debug, Default)]
pub struct SplitArchive {
    pub head: Vec<u8>,
    pub tail: Vec<u8>,
}

/// Archive `c`, leaving `big` (a byte string inside `c`, by address) out
/// of the buffers: the archive is `head ++ big ++ tail`. `None` when the
/// serializer never wrote `big` as one piece (then use
/// [`encode_completion`]).
pub fn encode_completion_split(c: &Completion, big: &[u8]) -> Option<SplitArchive> {
    struct SplitWriter<'a> {
        big: &'a [u8],
        out: SplitArchive,
        seen: bool,
    }
    impl rkyv::ser::Positional for SplitWriter<'_> {
        fn pos(&self) -> usize {
            if self.seen {
                self.out.head.len() + self.big.len() + self.out.tail.len()
            } else {
                self.out.head.len()
            }
        }
    }
    impl<E> Writer<E> for SplitWriter<'_> {
        fn write(&mut self, bytes: &[u8]) -> Result<(), E> {
            if !self.seen && bytes.len() == self.big.len() && bytes.as_ptr() == self.big.as_ptr() {
                self.seen = true;
            } else if self.seen {
                self.out.tail.extend_from_slice(bytes);
            } else {
                self.out.head.extend_from_slice(bytes);
            }
            Ok(())
        }
    }
    let w = SplitWriter {
        big,
        out: SplitArchive {
            head: Vec::new(),
            tail: Vec::with_capacity(2 * NODE_BYTES),
        },
        seen: false,
    };
    let w = rkyv::api::high::to_bytes_in::<_, RkyvError>(c, w).ok()?;
    w.seen.then_some(w.out)
}

/// Bytes per value node in an archive, an upper bound for every variant
/// (tag, relative pointer and length, padding).
const NODE_BYTES: usize = 32;

/// About how many bytes `c` archives to (at least as many, within a few
/// tens of bytes per node): payload bytes plus [`NODE_BYTES`] per node.
/// Iterative, so any nesting depth is fine.
pub fn completion_size_hint(c: &Completion) -> usize {
    let v = match c {
        Completion::Ok(v) | Completion::Push(v) => v,
        Completion::Err(e) => return 2 * NODE_BYTES + e.message.len(),
    };
    let mut total = NODE_BYTES;
    // A scalar reply (most of them) never pushes, so never allocates.
    let mut stack: Vec<&Value> = Vec::new();
    let mut next = Some(v);
    while let Some(v) = next.take().or_else(|| stack.pop()) {
        total += NODE_BYTES;
        match v {
            Value::Nil | Value::Int(_) | Value::Double(_) | Value::Boolean(_) => {}
            Value::Bulk(b) | Value::Simple(b) | Value::Error(b) | Value::BigNumber(b) => {
                total += b.len()
            }
            Value::Verbatim { format, text } => total += format.len() + text.len(),
            Value::Array(items) | Value::Set(items) => stack.extend(items),
            Value::Push { kind, data } => {
                total += kind.len();
                stack.extend(data);
            }
            Value::Map(pairs) => stack.extend(pairs.iter().flat_map(|p| [&p.key, &p.value])),
            Value::Attribute { data, attributes } => {
                stack.push(data);
                stack.extend(attributes.iter().flat_map(|p| [&p.key, &p.value]));
            }
        }
    }
    total
}

/// Validate and access an archived request. `bytes` must be private (not
/// shared memory a client can still write) and 16-byte aligned.
pub fn access_request(bytes: &[u8]) -> Result<&ArchivedRequest<Args>, ProtocolError> {
    rkyv::access::<ArchivedRequest<Args>, RkyvError>(bytes).map_err(bad)
}

/// Validate and access an archived completion (16-byte aligned bytes).
pub fn access_completion(bytes: &[u8]) -> Result<&ArchivedCompletion, ProtocolError> {
    rkyv::access::<ArchivedCompletion, RkyvError>(bytes).map_err(bad)
}

/// Validate and deserialize a request into owned memory.
pub fn decode_request(bytes: &[u8]) -> Result<Request, ProtocolError> {
    let a = access_request(bytes)?;
    rkyv::deserialize::<Request, RkyvError>(a).map_err(bad)
}

/// What the core does with a message taken from a submission ring (its
/// private, aligned copy, see `frame::Reassembler`): validate it and check
/// that the request's id is the id of the record(s) it came in
/// ([`access_submitted`]), deserialize it into owned memory
/// ([`deserialize_submitted`]). An error is answered with an
/// `InvalidRequest` completion for `record_id`.
pub fn decode_submitted(bytes: &[u8], record_id: u64) -> Result<Request, ProtocolError> {
    deserialize_submitted(access_submitted(bytes, record_id)?)
}

/// The first half of [`decode_submitted`]: the validated archive, whose id
/// is `record_id`. The core plans and encodes most commands straight from
/// it, without the owned copy.
pub fn access_submitted(bytes: &[u8], record_id: u64) -> Result<&ArchivedRequest, ProtocolError> {
    let a = access_request(bytes)?;
    let id = a.id.to_native();
    if id != record_id {
        return Err(ProtocolError::BadMessage(format!(
            "request id {id} does not match its record id {record_id}"
        )));
    }
    Ok(a)
}

/// The second half of [`decode_submitted`].
pub fn deserialize_submitted(a: &ArchivedRequest) -> Result<Request, ProtocolError> {
    rkyv::deserialize::<Request, RkyvError>(a).map_err(bad)
}

/// Validate and deserialize a completion into owned memory.
pub fn decode_completion(bytes: &[u8]) -> Result<Completion, ProtocolError> {
    let a = access_completion(bytes)?;
    rkyv::deserialize::<Completion, RkyvError>(a).map_err(bad)
}

/// A conservative upper bound of the archived size of a command request
/// with these argument lengths (used to reserve ring space before
/// serializing in place).
pub fn request_size_bound(arg_lens: impl Iterator<Item = usize>, route_extra: usize) -> usize {
    let mut n = 128 + route_extra;
    for len in arg_lens {
        // ArchivedVec header (8) + bytes + up to 8 of alignment padding.
        n += 16 + len;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_archive_is_the_same_bytes() {
        for n in [1usize, 7, 8, 9, 100, 4096, 1 << 20] {
            let big: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
            let cases = [
                Completion::Ok(Value::Bulk(big.clone())),
                Completion::Ok(Value::Array(vec![
                    Value::Int(3),
                    Value::Bulk(b"x".to_vec()),
                    Value::Bulk(big.clone()),
                    Value::Simple(b"after".to_vec()),
                ])),
                Completion::Push(Value::Push {
                    kind: b"message".to_vec(),
                    data: vec![Value::Bulk(b"ch".to_vec()), Value::Bulk(big.clone())],
                }),
            ];
            for c in cases {
                let inner = find_big(&c, n).expect("a value of that length");
                let split = encode_completion_split(&c, inner).expect("written in one piece");
                let joined = [split.head.as_slice(), inner, split.tail.as_slice()].concat();
                assert_eq!(joined, encode_completion(&c).as_slice(), "n = {n}");
            }
        }
        // A slice that is not inside the completion: no split.
        let other = vec![1u8; 64];
        let c = Completion::Ok(Value::Bulk(vec![1u8; 64]));
        assert!(encode_completion_split(&c, &other).is_none());
    }

    /// The (last) byte string of length `n` inside `c`.
    fn find_big(c: &Completion, n: usize) -> Option<&[u8]> {
        fn walk(v: &Value, n: usize) -> Option<&[u8]> {
            match v {
                Value::Bulk(b) if b.len() == n => Some(b),
                Value::Array(items) => items.iter().rev().find_map(|x| walk(x, n)),
                Value::Push { data, .. } => data.iter().rev().find_map(|x| walk(x, n)),
                _ => None,
            }
        }
        match c {
            Completion::Ok(v) | Completion::Push(v) => walk(v, n),
            Completion::Err(_) => None,
        }
    }

    #[test]
    fn completion_size_hint_covers_the_archive() {
        let b = |s: &[u8]| Value::Bulk(s.to_vec());
        let mut deep = b(b"x");
        for _ in 0..300 {
            deep = Value::Array(vec![deep, Value::Int(1)]);
        }
        let cases = vec![
            Completion::Ok(Value::Nil),
            Completion::Ok(Value::Int(-1)),
            Completion::Ok(b(b"")),
            Completion::Ok(b(&[7u8; 100_000])),
            Completion::Ok(Value::Simple(b"OK".to_vec())),
            Completion::Err(ClientError::new(ErrorKind::Request, "ERR wrong type")),
            Completion::Ok(Value::Array((0..1000).map(|i| b(&[i as u8; 3])).collect())),
            Completion::Ok(Value::Map(vec![Pair {
                key: b(b"k"),
                value: Value::Set(vec![Value::Double(1.5), Value::Boolean(true)]),
            }])),
            Completion::Ok(Value::Attribute {
                data: Box::new(Value::Verbatim {
                    format: b"txt".to_vec(),
                    text: b"hello".to_vec(),
                }),
                attributes: vec![Pair {
                    key: Value::BigNumber(b"123".to_vec()),
                    value: Value::Nil,
                }],
            }),
            Completion::Push(Value::Push {
                kind: b"message".to_vec(),
                data: vec![b(b"ch"), b(b"payload")],
            }),
            Completion::Ok(deep),
        ];
        for c in cases {
            let hint = completion_size_hint(&c);
            let real = encode_completion(&c).len();
            assert!(hint >= real, "hint {hint} < archive {real} for {c:?}");
            assert!(
                hint <= 2 * real + 128,
                "hint {hint} far above archive {real}"
            );
        }
    }

    #[test]
    fn decode_submitted_checks_the_record_id() {
        let r = Request {
            id: 9,
            timeout_ms: 0,
            flags: 0,
            route: Route::Auto,
            op: Op::Command {
                args: vec![b"GET".to_vec(), b"k".to_vec()],
            },
        };
        let b = encode_request(&r);
        assert_eq!(decode_submitted(&b, 9).unwrap(), r);
        let e = decode_submitted(&b, 10).unwrap_err();
        assert!(e
            .to_string()
            .contains("request id 9 does not match its record id 10"));
        assert!(matches!(
            decode_submitted(&b[..b.len() - 4], 9),
            Err(ProtocolError::BadMessage(_))
        ));
    }

    #[test]
    fn borrowed_args_archive_like_owned() {
        let owned: Args = vec![b"SET".to_vec(), b"key".to_vec(), vec![0u8, 1, 2, 255]];
        let refs: Vec<ArgRef<'_>> = owned.iter().map(|a| ArgRef(a)).collect();
        let r1 = Request {
            id: 7,
            timeout_ms: 100,
            flags: 0,
            route: Route::SlotKey {
                key: b"k".to_vec(),
                replica: true,
            },
            op: Op::Command {
                args: owned.clone(),
            },
        };
        let r2 = Request {
            id: 7,
            timeout_ms: 100,
            flags: 0,
            route: r1.route.clone(),
            op: Op::Command {
                args: ArgsRef(&refs),
            },
        };
        let b1 = encode_request(&r1);
        let b2 = encode_request(&r2);
        assert_eq!(b1.as_slice(), b2.as_slice());
        assert_eq!(decode_request(&b2).unwrap(), r1);

        let mut ring = AlignedVec::<16>::with_capacity(1024);
        ring.resize(1024, 0);
        let n = encode_request_into(&r2, &mut ring).unwrap();
        assert_eq!(&ring[..n], b1.as_slice());
        let bound = request_size_bound(owned.iter().map(|a| a.len()), 1);
        assert!(n <= bound, "{n} > {bound}");
        assert!(encode_request_into(&r2, &mut ring[..8]).is_none());
    }

    #[test]
    fn completion_round_trip_all_types() {
        let v = Value::Array(vec![
            Value::Nil,
            Value::Int(-5),
            Value::Bulk(vec![0, 1, 2]),
            Value::Simple(b"OK".to_vec()),
            Value::Error(b"ERR x".to_vec()),
            Value::Map(vec![Pair {
                key: Value::Bulk(b"a".to_vec()),
                value: Value::Double(1.5),
            }]),
            Value::Set(vec![Value::Boolean(true)]),
            Value::BigNumber(b"-12345678901234567890".to_vec()),
            Value::Verbatim {
                format: b"txt".to_vec(),
                text: b"hi".to_vec(),
            },
            Value::Push {
                kind: b"message".to_vec(),
                data: vec![Value::Bulk(b"ch".to_vec())],
            },
            Value::Attribute {
                data: Box::new(Value::Int(1)),
                attributes: vec![],
            },
        ]);
        for c in [
            Completion::Ok(v.clone()),
            Completion::Push(v),
            Completion::Err(ClientError::new(ErrorKind::Timeout, "t")),
        ] {
            let b = encode_completion(&c);
            assert_eq!(decode_completion(&b).unwrap(), c);
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut b = AlignedVec::<16>::new();
        for i in 0..200u32 {
            b.clear();
            b.extend_from_slice(&i.to_le_bytes().repeat(i as usize % 17 + 1));
            let _ = decode_request(&b);
            let _ = decode_completion(&b);
        }
    }
}
