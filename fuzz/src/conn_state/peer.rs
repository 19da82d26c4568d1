//! The peer's side of the `conn_state` target: the socket pair the connection runs on, and
//! what the peer receives, checked as it arrives (one HTTP answer; after a 101, well framed
//! server frames; nothing after the close frame or a plain answer's body; valid close codes).

use std::os::fd::FromRawFd;

use tickcast::frame::is_valid_received_close_code;
use tickcast::load::wire;
use tungstenite::protocol::frame::coding::{Control, OpCode};

use super::Outcome;

/// What the peer has received, checked as it arrives.
#[derive(Default)]
pub(super) struct Wire {
    /// Bytes not yet parsed.
    buf: Vec<u8>,
    phase: Phase,
    pub(super) outcome: Outcome,
}

#[derive(Default, PartialEq, Eq, Debug)]
enum Phase {
    /// Waiting for the HTTP answer's head.
    #[default]
    Head,
    /// A plain answer's body, with this many bytes left.
    Body(usize),
    /// Server frames after a 101.
    Frames,
    /// After a close frame or a complete plain answer: nothing more may come.
    Done,
}

impl Wire {
    pub(super) fn take(&mut self, bytes: &[u8]) {
        assert!(
            self.phase != Phase::Done,
            "{} bytes written after the end",
            bytes.len()
        );
        self.buf.extend_from_slice(bytes);
        loop {
            match self.phase {
                Phase::Head => {
                    let Some(end) = find(&self.buf, b"\r\n\r\n") else {
                        assert!(self.buf.len() < 64 * 1024, "an answer head that never ends");
                        return;
                    };
                    let head = String::from_utf8(self.buf[..end].to_vec()).expect("ASCII head");
                    self.buf.drain(..end + 4);
                    let status: u16 = head
                        .strip_prefix("HTTP/1.1 ")
                        .and_then(|s| s.get(..3))
                        .and_then(|s| s.parse().ok())
                        .unwrap_or_else(|| panic!("bad status line in {head:?}"));
                    self.outcome.status = Some(status);
                    if status == 101 {
                        self.phase = Phase::Frames;
                    } else {
                        let length = head
                            .lines()
                            .find_map(|l| {
                                let (name, value) = l.split_once(':')?;
                                name.eq_ignore_ascii_case("content-length")
                                    .then(|| value.trim().parse::<usize>().ok())?
                            })
                            .unwrap_or_else(|| panic!("no Content-Length in {head:?}"));
                        self.phase = Phase::Body(length);
                    }
                }
                Phase::Body(left) => {
                    let n = left.min(self.buf.len());
                    self.buf.drain(..n);
                    self.phase = if n == left {
                        Phase::Done
                    } else {
                        Phase::Body(left - n)
                    };
                    if n < left {
                        return;
                    }
                }
                Phase::Frames => {
                    let info = match wire::parse_header(&self.buf, usize::MAX) {
                        Ok(Some(info)) => info,
                        Ok(None) => return,
                        Err(e) => panic!("bad server frame: {e:?}"),
                    };
                    if self.buf.len() < info.total_len() {
                        return;
                    }
                    let payload = &self.buf[info.header_len..info.total_len()];
                    self.outcome.frames += 1;
                    if info.opcode == OpCode::Control(Control::Close) {
                        let code = wire::close_code(payload);
                        assert!(
                            is_valid_received_close_code(code),
                            "close {code} on the wire"
                        );
                        assert!(std::str::from_utf8(&payload[2..]).is_ok(), "close reason");
                        self.outcome.close_on_wire = Some(code);
                        self.phase = Phase::Done;
                    }
                    self.buf.drain(..info.total_len());
                }
                Phase::Done => {
                    assert!(
                        self.buf.is_empty(),
                        "{} bytes written after the end",
                        self.buf.len()
                    );
                    return;
                }
            }
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A connected pair of non-blocking Unix stream sockets: the server's end as the
/// `mio::net::TcpStream` a `Conn` holds, the peer's as a blocking-free `UnixStream`. The
/// server end's send buffer is small, so a peer that does not read fills it soon.
pub(super) fn socket_pair() -> (mio::net::TcpStream, std::os::unix::net::UnixStream) {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors socketpair writes.
    let rc = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    assert_eq!(rc, 0, "socketpair: {}", std::io::Error::last_os_error());
    let small: libc::c_int = 4096;
    // SAFETY: fds[0] is an open socket; the option value is a c_int of the size given.
    unsafe {
        libc::setsockopt(
            fds[0],
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            (&small as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
    // SAFETY: both descriptors were just created and are owned by nothing else.
    let server = unsafe { std::net::TcpStream::from_raw_fd(fds[0]) };
    let peer = unsafe { std::os::unix::net::UnixStream::from_raw_fd(fds[1]) };
    (mio::net::TcpStream::from_std(server), peer)
}
