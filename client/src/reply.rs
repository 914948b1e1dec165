//! Replies: one completion, read in place from the completion ring (zero
//! copy, pinned until dropped) or from private memory.

use rkyv::util::AlignedVec;

use vshm_protocol::msg::{self, ArchivedCompletion, ClientError, Completion, ErrorKind, Value};

use crate::completion::Store;

/// One completion: an archived [`Completion`], validated, either in place
/// in the completion ring (zero copy) or in heap memory.
pub struct Reply {
    pub(crate) id: u64,
    pub(crate) store: Store,
}

// SAFETY: the ring pointer refers to memory kept mapped by the Arc<CqSide>
// (which owns an Arc<Segment>) and not written by the core while pinned;
// the bytes are only read through shared references. CqSide is Sync.
unsafe impl Send for Reply {}
// SAFETY: as above: every access through &Reply is a read.
unsafe impl Sync for Reply {}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reply")
            .field("id", &self.id)
            .field("in_ring", &self.in_ring())
            .field("len", &self.bytes().len())
            .finish()
    }
}

impl Reply {
    /// A heap reply holding `c` (errors made on the client side).
    pub fn from_completion(id: u64, c: &Completion) -> Reply {
        let v = msg::encode_completion(c);
        let mut bytes = AlignedVec::<16>::with_capacity(v.len());
        bytes.extend_from_slice(&v);
        Reply {
            id,
            store: Store::Heap(bytes),
        }
    }

    pub(crate) fn from_bytes_or_error(id: u64, bytes: &[u8]) -> Reply {
        let mut v = AlignedVec::<16>::with_capacity(bytes.len());
        v.extend_from_slice(bytes);
        if msg::access_completion(&v).is_ok() {
            return Reply {
                id,
                store: Store::Heap(v),
            };
        }
        Reply::from_completion(
            id,
            &Completion::Err(ClientError::new(
                ErrorKind::Connection,
                "undecodable completion from the core",
            )),
        )
    }

    /// The request id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// True while the reply is read in place from the completion ring.
    pub fn in_ring(&self) -> bool {
        matches!(self.store, Store::Ring { .. })
    }

    /// The archived completion's bytes. In a child forked while the reply
    /// was held in the ring: the bytes of a `Connection` error instead
    /// (see [`held_across_fork`]).
    pub fn bytes(&self) -> &[u8] {
        match &self.store {
            Store::Ring { cq, .. } if cq.fork_gen != crate::daemon::fork_generation() => {
                held_across_fork()
            }
            Store::Ring { ptr, len, .. } => {
                // SAFETY: a pinned, published record kept mapped by `cq`, in the process that
                // pinned it (checked above): the core writes there only after we unpin it.
                unsafe { std::slice::from_raw_parts(ptr.as_ptr(), *len) }
            }
            Store::Heap(v) => v,
        }
    }

    /// The archived completion.
    pub fn completion(&self) -> &ArchivedCompletion {
        // SAFETY: a Reply's bytes were validated by `msg::access_completion` when it was made (or
        // come from our own serializer), are 16-byte aligned, and do not change while it lives
        // (pinned ring bytes or private heap memory).
        unsafe { rkyv::access_unchecked::<ArchivedCompletion>(self.bytes()) }
    }

    /// Deserialize into an owned completion.
    pub fn to_completion(&self) -> Completion {
        rkyv::deserialize::<Completion, rkyv::rancor::Error>(self.completion()).unwrap_or_else(
            |e| {
                Completion::Err(ClientError::new(
                    ErrorKind::Connection,
                    format!("undecodable completion: {e}"),
                ))
            },
        )
    }

    /// Copy the reply into private memory and release its ring space now.
    /// References obtained from the reply before are invalidated (the
    /// borrow checker enforces it).
    pub fn detach(&mut self) {
        if let Store::Ring { .. } = self.store {
            let mut v = AlignedVec::<16>::with_capacity(self.bytes().len());
            v.extend_from_slice(self.bytes());
            let old = std::mem::replace(&mut self.store, Store::Heap(v));
            drop(old);
        }
    }
}

/// What a reply read in place from the ring reads as in a child forked
/// while it was held: a `Connection` error. The segment is shared memory,
/// and the pin that keeps the core from reusing the reply's bytes is the
/// parent's: once the parent frees its copy, the core writes other
/// completions there, which the child's copy would read as this one (not
/// even a valid archive). A reply detached before the fork is private
/// memory and stays readable.
fn held_across_fork() -> &'static [u8] {
    static BYTES: std::sync::OnceLock<AlignedVec<16>> = std::sync::OnceLock::new();
    BYTES.get_or_init(|| {
        let v = msg::encode_completion(&Completion::Err(ClientError::new(
            ErrorKind::Connection,
            "reply held in the shared ring across fork(): its memory is the parent's \
             (detach replies before fork() to keep them in the child)",
        )));
        let mut b = AlignedVec::<16>::with_capacity(v.len());
        b.extend_from_slice(&v);
        b
    })
}

/// The value of a push reply (None if the reply is not a push).
pub(crate) fn push_value(r: &Reply) -> Option<Value> {
    match r.to_completion() {
        Completion::Push(v) => Some(v),
        _ => None,
    }
}

/// A completion as a Result.
pub fn into_result(c: Completion) -> Result<Value, ClientError> {
    match c {
        Completion::Ok(v) | Completion::Push(v) => Ok(v),
        Completion::Err(e) => Err(e),
    }
}
