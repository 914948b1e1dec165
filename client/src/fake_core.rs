//! A fake core for the unit tests of the client: a segment in anonymous
//! memory, a [`Client`] on it, and a producer that writes completions
//! straight into its completion ring.

use std::sync::Arc;
use std::time::{Duration, Instant};

use vshm_protocol::layout::Layout;
use vshm_protocol::msg::{self, Completion, Value};
use vshm_protocol::ring::{kind, Producer, RecordHeader};
use vshm_protocol::segment::Segment;
use vshm_protocol::wake::{self, Side};

use crate::client::{Client, ClientOptions};
use crate::endpoint::WaitStrategy;

/// A fake core: writes completions straight into the completion ring.
pub(crate) struct FakeCore {
    pub(crate) seg: Arc<Segment>,
    pub(crate) prod: Producer,
}

impl FakeCore {
    pub(crate) fn new(cq: u64) -> (FakeCore, Client) {
        FakeCore::with_rings(4096, cq)
    }

    pub(crate) fn with_rings(sq: u64, cq: u64) -> (FakeCore, Client) {
        let layout = Layout::new(sq, cq, 0).unwrap();
        let seg = Arc::new(Segment::create_anonymous(layout).unwrap());
        let l = *seg.layout();
        let client = Client::new(
            seg.clone(),
            None,
            ClientOptions {
                strategy: WaitStrategy::PARK,
                ..ClientOptions::default()
            },
        );
        (
            FakeCore {
                seg,
                prod: Producer::new(l.cq_capacity, l.max_record),
            },
            client,
        )
    }

    /// Write one completion; false when the ring is full.
    pub(crate) fn complete(&mut self, id: u64, c: &Completion) -> bool {
        let (ctl, area) = self.seg.cq();
        let bytes = msg::encode_completion(c);
        let mut w = vshm_protocol::frame::FragmentWriter::new(id, kind::MSG);
        let done = w.pump(&mut self.prod, ctl, &area, &bytes).unwrap();
        if self.prod.publish(ctl) {
            wake::wake(ctl, Side::Consumer);
        }
        assert!(done || !w.started());
        done
    }

    pub(crate) fn raw(&mut self, id: u64, payload: &[u8]) {
        let (ctl, area) = self.seg.cq();
        let res = self
            .prod
            .try_reserve(ctl, &area, payload.len() as u64)
            .unwrap();
        self.prod.write_payload(&area, &res, payload);
        self.prod.commit(
            &area,
            res,
            RecordHeader {
                len: payload.len() as u32,
                kind: kind::MSG,
                flags: 0,
                id,
            },
        );
        self.prod.publish(ctl);
    }
}

pub(crate) fn bulk(n: usize, fill: u8) -> Completion {
    Completion::Ok(Value::Bulk(vec![fill; n]))
}

pub(crate) fn soon() -> Instant {
    Instant::now() + Duration::from_secs(5)
}
