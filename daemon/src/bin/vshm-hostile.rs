//! A hostile vshmd client for the daemon's tests (`daemon/tests/daemon_hostile.rs`,
//! `daemon_limits.rs`). It registers through the real handshake, then
//! drives its own segment through raw ring operations and raw pointers:
//!
//! * `scenarios`: one fresh registration per lie, each printing one
//!   `scenario NAME outcome=...` line:
//!   `bad-magic` (header scribbled, then valid requests: the daemon keeps
//!   its private copy of the layout, so they are served), `lying-length`
//!   (a record longer than `max_record`), `past-tail` (a record that
//!   extends past the published tail), `tail-past-end` (a tail beyond the
//!   ring's capacity), `tail-backwards` (a tail moved back over consumed
//!   records), `head-backwards` (the completion ring's head moved back,
//!   seen when the daemon needs ring space), `huge-total` (a first
//!   fragment announcing 1 TiB: one error completion, the rest skipped, the
//!   client stays), `huge-counts` (every 32-bit word of a valid request in
//!   turn set to 0xFFFF_FFFF: one completion each), `interleave` (a
//!   refused message's fragments interleaved with another message).
//! * `random`: registrations whose rings get random bytes, tails and
//!   heads (seed printed), each until the daemon disconnects it or 300 ms.
//! * `flood`: valid PINGs as fast as the ring takes them, the doorbell
//!   rung for every record and junk on the registration socket.
//! * `slow`: submits PINGs and never reads a completion; prints how far
//!   the daemon got, then waits to be killed.
//! * `idle`: registers N clients and holds them until stdin closes.
//!
//! Exit status: 0 when every expectation held, 1 otherwise (with reasons
//! on stderr).

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use memmap2::{MmapOptions, MmapRaw};
use nix::sys::socket::{connect, socket, AddressFamily, SockFlag, SockType, UnixAddr};
use rand::{Rng, RngCore, SeedableRng};
use vshm_client::endpoint::ring_doorbell;
use vshm_protocol::frame::{FragmentWriter, Reassembler};
use vshm_protocol::layout::{state, HEADER_SIZE};
use vshm_protocol::msg::{self, Completion, ErrorKind, Op, Request, Route};
use vshm_protocol::register::{self, HandshakeReply, Hello, Settings, PROTOCOL_VERSION};
use vshm_protocol::ring::{kind, rflags, Consumer, DataArea, Producer, RecordHeader};
use vshm_protocol::segment::Segment;

#[derive(Parser, Debug)]
#[command(name = "vshm-hostile", about = "A hostile vshmd client (tests)")]
struct Cli {
    /// The vshmd socket.
    #[arg(long)]
    socket: PathBuf,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Every single-lie scenario, one registration each.
    Scenarios,
    /// Random scribbles.
    Random {
        #[arg(long)]
        seed: Option<u64>,
        #[arg(long, default_value_t = 100)]
        iterations: u32,
    },
    /// Valid requests as fast as possible.
    Flood {
        #[arg(long, default_value_t = 2)]
        secs: u64,
    },
    /// Submit and never read a completion.
    Slow {
        #[arg(long, default_value_t = 4096)]
        cq: u64,
        #[arg(long, default_value_t = 100_000)]
        requests: u64,
    },
    /// Register N clients and hold them until stdin closes.
    Idle {
        #[arg(long, default_value_t = 250)]
        count: u32,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let r = match cli.cmd {
        Cmd::Scenarios => scenarios(&cli.socket),
        Cmd::Random { seed, iterations } => random(&cli.socket, seed, iterations),
        Cmd::Flood { secs } => flood(&cli.socket, secs),
        Cmd::Slow { cq, requests } => slow(&cli.socket, cq, requests),
        Cmd::Idle { count } => idle(&cli.socket, count),
    };
    let _ = std::io::stdout().flush();
    match r {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vshm-hostile: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// One registration, driven by hand.
struct Session {
    sock: OwnedFd,
    doorbell: OwnedFd,
    seg: Arc<Segment>,
    /// Our own mapping of the whole memfd (header scribbles).
    raw: MmapRaw,
    prod: Producer,
    cons: Consumer,
    reasm: Reassembler,
    next_id: u64,
}

fn register(path: &Path, name: &str, sq: u64, cq: u64) -> Result<Session, String> {
    let sock = socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| format!("socket: {e}"))?;
    connect(
        sock.as_raw_fd(),
        &UnixAddr::new(path).map_err(|e| e.to_string())?,
    )
    .map_err(|e| format!("connect: {e}"))?;
    register::set_timeouts(&sock, Duration::from_secs(10)).map_err(|e| e.to_string())?;
    let hello = Hello::Register {
        protocol_version: PROTOCOL_VERSION,
        pid: std::process::id(),
        settings: Settings {
            client_name: Some(name.into()),
            sq_capacity: sq,
            cq_capacity: cq,
            ..Settings::default()
        },
    };
    register::send_with_fds(sock.as_raw_fd(), &register::encode_hello(&hello), &[])
        .map_err(|e| e.to_string())?;
    let (bytes, mut fds) = register::recv_with_fds(sock.as_raw_fd())
        .map_err(|e| e.to_string())?
        .ok_or("vshmd hung up during registration")?;
    match register::decode_reply(&bytes).map_err(|e| e.to_string())? {
        HandshakeReply::Welcome { .. } if fds.len() == 2 => {}
        HandshakeReply::Refused { reason, .. } => return Err(format!("refused: {reason}")),
        r => return Err(format!("unexpected reply {r:?} with {} fds", fds.len())),
    }
    let doorbell = fds.pop().expect("two fds");
    let memfd = fds.pop().expect("two fds");
    let raw = MmapOptions::new()
        .map_raw(&memfd)
        .map_err(|e| format!("mmap: {e}"))?;
    let seg = Arc::new(Segment::attach(memfd).map_err(|e| e.to_string())?);
    let l = *seg.layout();
    Ok(Session {
        sock,
        doorbell,
        raw,
        prod: Producer::new(l.sq_capacity, l.max_record),
        cons: Consumer::new(l.cq_capacity, l.max_record),
        reasm: Reassembler::new(l.max_message),
        seg,
        next_id: 1,
    })
}

fn ping(id: u64) -> Vec<u8> {
    let req: Request = Request {
        id,
        timeout_ms: 0,
        flags: 0,
        route: Route::Auto,
        op: Op::Command {
            args: vec![b"PING".to_vec()],
        },
    };
    msg::encode_request(&req).to_vec()
}

impl Session {
    fn ring(&self) {
        ring_doorbell(self.doorbell.as_raw_fd());
    }

    /// Write one message (fragmented if needed) with a bound; false when
    /// the ring stayed full.
    fn send_bytes(&mut self, id: u64, bytes: &[u8], bound: Duration) -> bool {
        let deadline = Instant::now() + bound;
        let mut w = FragmentWriter::new(id, kind::MSG);
        loop {
            let (ctl, area) = self.seg.sq();
            let done = w.pump(&mut self.prod, ctl, &area, bytes).unwrap_or(false);
            self.prod.publish(ctl);
            self.ring();
            if done {
                return true;
            }
            if Instant::now() > deadline || self.seg.state() != state::OPEN {
                return false;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    fn send_ping(&mut self, bound: Duration) -> Option<u64> {
        let id = self.next_id;
        self.next_id += 1;
        self.send_bytes(id, &ping(id), bound).then_some(id)
    }

    /// The next completion, waiting up to `bound`.
    fn recv(&mut self, bound: Duration) -> Result<Option<(u64, Completion)>, String> {
        let deadline = Instant::now() + bound;
        loop {
            let (ctl, area) = self.seg.cq();
            match self.cons.peek(ctl, &area).map_err(|e| e.to_string())? {
                Some(rec) => {
                    let r = self.reasm.push(&area, &rec);
                    self.cons.advance(&rec);
                    if self.cons.release(ctl) {
                        self.ring();
                    }
                    match r.map_err(|e| format!("{:?}", e.error))? {
                        Some(m) if m.kind == kind::MSG => {
                            let c = msg::decode_completion(&m.bytes).map_err(|e| e.to_string())?;
                            return Ok(Some((m.id, c)));
                        }
                        _ => continue,
                    }
                }
                None => {
                    if Instant::now() > deadline {
                        return Ok(None);
                    }
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
        }
    }

    /// Publish a raw record header + payload at the current tail (no
    /// padding: callers use fresh rings) and move the tail by `advance`.
    fn raw_record(&mut self, hdr: RecordHeader, payload: &[u8], advance: u64) {
        let (ctl, area) = self.seg.sq();
        let tail = ctl.prod.tail.load(vshm_protocol::sync::Ordering::Relaxed);
        let off = tail & (area.capacity() - 1);
        let n = (payload.len() as u64).min(area.capacity() - off - 16);
        // SAFETY: off + 16 + n <= capacity (n was clamped), inside our own
        // mapping; the daemon only reads this memory.
        unsafe {
            area.write(off, &hdr.to_bytes());
            area.write(off + 16, &payload[..n as usize]);
        }
        self.set_sq_tail(tail.wrapping_add(advance));
    }

    /// A record with a header of our choosing, written with correct
    /// ring mechanics (the lie is in the framing, not the ring).
    fn framed_record(&mut self, hdr: RecordHeader, payload: &[u8]) {
        let (ctl, area) = self.seg.sq();
        if let Ok(res) = self.prod.try_reserve(ctl, &area, payload.len() as u64) {
            self.prod.write_payload(&area, &res, payload);
            self.prod.commit(&area, res, hdr);
            self.prod.publish(ctl);
            self.ring();
        }
    }

    /// Fill the free space with empty continuation fragments of message
    /// `id`, publish them together, ring; returns how many.
    fn fill_empty_fragments(&mut self, id: u64) -> u64 {
        let (ctl, area) = self.seg.sq();
        let mut n = 0;
        while let Ok(res) = self.prod.try_reserve(ctl, &area, 0) {
            let h = RecordHeader {
                len: 0,
                kind: kind::MSG,
                flags: rflags::MORE,
                id,
            };
            self.prod.commit(&area, res, h);
            n += 1;
        }
        self.prod.publish(ctl);
        self.ring();
        n
    }

    fn set_sq_tail(&self, t: u64) {
        // Release: pairs with the daemon's Acquire tail load in
        // `Consumer::refresh_tail` (the record bytes above are visible
        // before the tail).
        self.seg
            .ctl()
            .sq
            .prod
            .tail
            .store(t, vshm_protocol::sync::Ordering::Release);
        self.ring();
    }

    fn sq_tail_head(&self) -> (u64, u64) {
        let sq = &self.seg.ctl().sq;
        // Acquire: pair with the Release stores of the tail (`set_sq_tail`,
        // `Producer::publish`) and of the head (the daemon's
        // `Consumer::release_to`); only the two words are read.
        (
            sq.prod.tail.load(vshm_protocol::sync::Ordering::Acquire),
            sq.cons.head.load(vshm_protocol::sync::Ordering::Acquire),
        )
    }

    /// Until the daemon hangs up (socket EOF) or `bound` passes; returns
    /// the segment state and whether the socket closed.
    fn wait_hangup(&self, bound: Duration) -> (u32, bool) {
        let mut p = libc::pollfd {
            fd: self.sock.as_raw_fd(),
            events: libc::POLLRDHUP,
            revents: 0,
        };
        let ms = bound.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: one valid pollfd for a descriptor we own.
        let r = unsafe { libc::poll(&mut p, 1, ms) };
        (self.seg.state(), r > 0 && p.revents != 0)
    }

    /// Scribble over the shared header (magic, sizes, capacities).
    fn scribble_header(&self, bytes: &[u8]) {
        let n = bytes.len().min(HEADER_SIZE as usize);
        // SAFETY: our own shared mapping is at least HEADER_SIZE bytes;
        // the daemon never reads the header after creating it.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.raw.as_mut_ptr(), n) };
    }
}

fn state_name(s: u32) -> &'static str {
    match s {
        state::OPEN => "OPEN",
        state::CLOSED => "CLOSED",
        state::BROKEN => "BROKEN",
        state::PEER_LOST => "PEER_LOST",
        _ => "?",
    }
}

/// Expect a disconnect; print the scenario line.
fn expect_disconnect(name: &str, s: &Session, problems: &mut Vec<String>) {
    let (st, hung_up) = s.wait_hangup(Duration::from_secs(5));
    println!(
        "scenario {name} outcome={} state={}",
        if hung_up {
            "disconnected"
        } else {
            "still-connected"
        },
        state_name(st)
    );
    if !hung_up || st != state::BROKEN {
        problems.push(format!(
            "{name}: expected BROKEN and a hang-up, got {} hung_up={hung_up}",
            state_name(st)
        ));
    }
}

fn scenarios(path: &Path) -> Result<(), String> {
    let mut problems = Vec::new();
    let short = Duration::from_secs(5);
    let hdr = |len: u32, flags: u8, id: u64| RecordHeader {
        len,
        kind: kind::MSG,
        flags,
        id,
    };

    // bad-magic: the shared header is garbage; requests still work.
    {
        let mut s = register(path, "hostile-bad-magic", 0, 0)?;
        s.scribble_header(&[0xA5; 256]);
        let mut ok = 0;
        for _ in 0..10 {
            let id = s.send_ping(short).ok_or("bad-magic: ring full")?;
            match s.recv(short)? {
                Some((got, Completion::Ok(_))) if got == id => ok += 1,
                other => problems.push(format!("bad-magic: {other:?}")),
            }
        }
        println!("scenario bad-magic outcome=served ok={ok}/10");
    }
    // lying-length: a record header claiming 4 GiB.
    {
        let mut s = register(path, "hostile-lying-length", 0, 0)?;
        s.raw_record(hdr(0xFFFF_FFF0, 0, 1), &ping(1), 64);
        expect_disconnect("lying-length", &s, &mut problems);
    }
    // past-tail: a 4 KiB record with only 32 bytes published.
    {
        let mut s = register(path, "hostile-past-tail", 0, 0)?;
        s.raw_record(hdr(4096, 0, 1), &ping(1), 32);
        expect_disconnect("past-tail", &s, &mut problems);
    }
    // tail-past-end: a tail three capacities ahead.
    {
        let s = register(path, "hostile-tail-past-end", 0, 0)?;
        let cap = s.seg.layout().sq_capacity;
        s.set_sq_tail(cap * 3);
        expect_disconnect("tail-past-end", &s, &mut problems);
    }
    // tail-backwards: one good request, then the tail moves back over it.
    {
        let mut s = register(path, "hostile-tail-backwards", 0, 0)?;
        let id = s.send_ping(short).ok_or("tail-backwards: ring full")?;
        match s.recv(short)? {
            Some((got, Completion::Ok(_))) if got == id => {}
            other => problems.push(format!("tail-backwards first request: {other:?}")),
        }
        let (tail, _) = s.sq_tail_head();
        s.set_sq_tail(tail - 16);
        expect_disconnect("tail-backwards", &s, &mut problems);
    }
    // head-backwards: the completion ring's head moves back (before 0);
    // the daemon sees it once it needs ring space.
    {
        let mut s = register(path, "hostile-head-backwards", 0, 4096)?;
        // Release: pairs with the daemon's Acquire head load in
        // `Producer::refresh_head`, as a real consumer's head store would.
        s.seg.ctl().cq.cons.head.store(
            0u64.wrapping_sub(16),
            vshm_protocol::sync::Ordering::Release,
        );
        for _ in 0..400 {
            if s.seg.state() != state::OPEN || s.send_ping(Duration::from_millis(200)).is_none() {
                break;
            }
        }
        expect_disconnect("head-backwards", &s, &mut problems);
    }
    // huge-total: a first fragment announcing 1 TiB gets one error
    // completion, its continuation is skipped, and the client stays.
    {
        let mut s = register(path, "hostile-huge-total", 0, 0)?;
        let mut p = (1u64 << 40).to_le_bytes().to_vec();
        p.extend_from_slice(&[7u8; 24]);
        s.framed_record(hdr(32, rflags::FIRST | rflags::MORE, 9), &p);
        s.framed_record(hdr(16, 0, 9), &[7u8; 16]);
        s.next_id = 10;
        let first = s.recv(short)?;
        let id = s.send_ping(short).ok_or("huge-total: ring full")?;
        let second = s.recv(short)?;
        let refused = matches!(&first, Some((9, Completion::Err(e)))
            if e.kind == ErrorKind::InvalidRequest || e.kind == ErrorKind::Overloaded);
        let served = matches!(&second, Some((got, Completion::Ok(_))) if *got == id);
        println!(
            "scenario huge-total outcome={} error={:?} state={}",
            if refused && served {
                "refused-and-served"
            } else {
                "unexpected"
            },
            first.as_ref().map(|(_, c)| c),
            state_name(s.seg.state())
        );
        if !(refused && served) {
            problems.push(format!("huge-total: {first:?} then {second:?}"));
        }
    }
    // huge-counts: every 32-bit word of a valid request set to
    // 0xFFFF_FFFF in turn; each gets exactly one completion.
    {
        let mut s = register(path, "hostile-huge-counts", 0, 0)?;
        let base = ping(1);
        let (mut invalid, mut other) = (0, 0);
        // Word 0 holds the argument bytes ("PING"): a command name of
        // non-UTF-8 bytes makes Redis echo it in an error reply, which the
        // redis crate's parser rejects and the shared server connection is
        // replaced (a known issue outside the ring protocol, reported
        // separately); every other word is framing.
        for w in 1..base.len() / 4 {
            let id = s.next_id;
            s.next_id += 1;
            let mut b = ping(id);
            b[w * 4..w * 4 + 4].copy_from_slice(&[0xFF; 4]);
            if !s.send_bytes(id, &b, short) {
                problems.push("huge-counts: ring full".into());
                break;
            }
            match s.recv(short)? {
                Some((got, Completion::Err(e)))
                    if got == id && e.kind == ErrorKind::InvalidRequest =>
                {
                    invalid += 1
                }
                Some((got, c)) if got == id => {
                    println!("huge-counts word {w}: {c:?}");
                    other += 1
                }
                c => problems.push(format!("huge-counts word {w}: {c:?}")),
            }
        }
        println!(
            "scenario huge-counts outcome=one-completion-each invalid={invalid} other={other} state={}",
            state_name(s.seg.state())
        );
        if s.seg.state() != state::OPEN {
            problems.push("huge-counts: disconnected".into());
        }
    }
    // empty-fragments: a message begun, then empty continuation fragments
    // without end, each valid framing. The daemon keeps reading them but
    // must yield to its other clients after a bounded number of records;
    // 6 s, longer than the good clients' 5 s request timeout.
    {
        let mut s = register(path, "hostile-empty-fragments", 0, 0)?;
        let mut p = 100u64.to_le_bytes().to_vec();
        p.extend_from_slice(&[1u8; 8]);
        s.framed_record(hdr(16, rflags::FIRST | rflags::MORE, 7), &p);
        let until = Instant::now() + Duration::from_secs(6);
        let mut records = 0u64;
        while Instant::now() < until && s.seg.state() == state::OPEN {
            let n = s.fill_empty_fragments(7);
            if n == 0 {
                std::thread::sleep(Duration::from_micros(50));
            }
            records += n;
        }
        println!(
            "scenario empty-fragments outcome=written records={records} state={}",
            state_name(s.seg.state())
        );
    }
    // interleave: a refused message's fragments interleaved with another.
    {
        let mut s = register(path, "hostile-interleave", 0, 0)?;
        let mut p = (1u64 << 40).to_le_bytes().to_vec();
        p.extend_from_slice(&[1u8; 24]);
        s.framed_record(hdr(32, rflags::FIRST | rflags::MORE, 5), &p);
        s.framed_record(hdr(16, 0, 6), &[1u8; 16]);
        expect_disconnect("interleave", &s, &mut problems);
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

fn random(path: &Path, seed: Option<u64>, iterations: u32) -> Result<(), String> {
    let seed = seed.unwrap_or_else(|| rand::rng().next_u64());
    println!("random seed={seed} iterations={iterations}");
    let _ = std::io::stdout().flush();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let (mut disconnected, mut survived) = (0u32, 0u32);
    for i in 0..iterations {
        let s = register(
            path,
            "hostile-random",
            0,
            if rng.random_bool(0.5) { 4096 } else { 0 },
        )
        .map_err(|e| format!("iteration {i}: {e}"))?;
        let (sq_ctl, sq) = s.seg.sq();
        let (cq_ctl, _) = s.seg.cq();
        let cap = sq.capacity();
        for _ in 0..rng.random_range(1..6) {
            match rng.random_range(0..7) {
                0 => {
                    // Random bytes somewhere in the ring.
                    let off = rng.random_range(0..cap - 64) & !15;
                    let mut b = vec![0u8; rng.random_range(16..64)];
                    rng.fill_bytes(&mut b);
                    // SAFETY: off + 64 <= cap, inside our own mapping.
                    unsafe { sq.write(off, &b) };
                }
                1 => {
                    // A random record header at the start.
                    let mut b = [0u8; 16];
                    rng.fill_bytes(&mut b);
                    // SAFETY: 16 bytes at offset 0 of our own ring.
                    unsafe { sq.write(0, &b) };
                }
                // 2-4 store the words with the Release of the real ring
                // (pairing with the daemon's Acquire loads in
                // `Consumer::refresh_tail` and `Producer::refresh_head`).
                2 => {
                    let t = rng.random_range(0..cap * 2) & !15;
                    sq_ctl
                        .prod
                        .tail
                        .store(t, vshm_protocol::sync::Ordering::Release);
                }
                3 => {
                    sq_ctl
                        .prod
                        .tail
                        .store(rng.random(), vshm_protocol::sync::Ordering::Release);
                }
                4 => {
                    cq_ctl
                        .cons
                        .head
                        .store(rng.random(), vshm_protocol::sync::Ordering::Release);
                }
                5 => {
                    let mut b = [0u8; 256];
                    rng.fill_bytes(&mut b);
                    s.scribble_header(&b);
                }
                _ => {
                    // Random wake words and state.
                    let w = &sq_ctl.wake;
                    w.cons_waiting
                        .store(rng.random(), vshm_protocol::sync::Ordering::Relaxed);
                    w.prod_waiting
                        .store(rng.random(), vshm_protocol::sync::Ordering::Relaxed);
                }
            }
            s.ring();
        }
        let (_, hung_up) = s.wait_hangup(Duration::from_millis(300));
        if hung_up {
            disconnected += 1;
        } else {
            survived += 1;
        }
    }
    println!("random done seed={seed} disconnected={disconnected} survived={survived}");
    Ok(())
}

fn flood(path: &Path, secs: u64) -> Result<(), String> {
    let mut s = register(path, "hostile-flood", 0, 0)?;
    let deadline = Instant::now() + Duration::from_secs(secs);
    let (mut sent, mut done, mut errors) = (0u64, 0u64, 0u64);
    let junk = vec![0x5Au8; 4096];
    while Instant::now() < deadline {
        // Fill the ring as far as it goes, ringing for every record.
        for _ in 0..256 {
            let id = s.next_id;
            let b = ping(id);
            let (ctl, area) = s.seg.sq();
            let mut w = FragmentWriter::new(id, kind::MSG);
            match w.pump(&mut s.prod, ctl, &area, &b) {
                Ok(true) => {
                    s.next_id += 1;
                    sent += 1;
                    s.prod.publish(ctl);
                    s.ring();
                }
                _ => break,
            }
        }
        // Junk on the registration socket (ignored by the daemon).
        let _ = register::send_with_fds(s.sock.as_raw_fd(), &junk, &[]);
        while let Some((_, c)) = s.recv(Duration::ZERO)? {
            done += 1;
            if !matches!(c, Completion::Ok(_)) {
                errors += 1;
            }
        }
    }
    // Collect the rest.
    let tail_deadline = Instant::now() + Duration::from_secs(10);
    while done < sent && Instant::now() < tail_deadline {
        if let Some((_, c)) = s.recv(Duration::from_millis(100))? {
            done += 1;
            if !matches!(c, Completion::Ok(_)) {
                errors += 1;
            }
        }
    }
    println!("flood sent={sent} completed={done} errors={errors}");
    if done != sent {
        return Err(format!("flood: {sent} sent, {done} completed"));
    }
    Ok(())
}

fn slow(path: &Path, cq: u64, requests: u64) -> Result<(), String> {
    let mut s = register(path, "hostile-slow", 0, cq)?;
    let mut sent = 0;
    while sent < requests && s.send_ping(Duration::from_secs(1)).is_some() {
        sent += 1;
    }
    // Wait until the daemon stops taking (the head stops moving).
    let mut last = s.sq_tail_head().1;
    loop {
        std::thread::sleep(Duration::from_millis(300));
        let h = s.sq_tail_head().1;
        if h == last {
            break;
        }
        last = h;
    }
    let (tail, head) = s.sq_tail_head();
    println!(
        "slow submitted={sent} unconsumed_bytes={} state={}",
        tail - head,
        state_name(s.seg.state())
    );
    let _ = std::io::stdout().flush();
    // Hold everything until killed (or stdin closes).
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    Ok(())
}

fn idle(path: &Path, count: u32) -> Result<(), String> {
    let mut held = Vec::with_capacity(count as usize);
    for i in 0..count {
        let s = register(path, &format!("idle-{i}"), 0, 0)
            .map_err(|e| format!("registration {i}: {e}"))?;
        held.push(s);
    }
    println!("idle registered={count}");
    let _ = std::io::stdout().flush();
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    drop(held);
    Ok(())
}
