//! The read side of a `wss://` connection: ciphertext in, plaintext out to the same frame
//! handling as a plain connection.
//!
//! One big socket read into the thread's `cipher` buffer, then, from memory, rustls takes
//! the records, decrypts them, and the plaintext is copied into the thread's `scratch` and
//! handed to [`LoadConn::on_bytes`] (upgrade response or frames). During the TLS handshake
//! the same loop carries handshake records; rustls's answers are written by the flush that
//! follows every event. A TLS error (an untrusted certificate above all) fails the
//! connection under a `tls_*` reason.

use super::{Ctx, LoadConn, MAX_READS_PER_EVENT, Phase};
use crate::frame::close_code;
use crate::load::tls;
use crate::load::transport::{Cipher, Transport};

impl LoadConn {
    /// [`LoadConn::on_readable`] over TLS. Returns true when the read budget ran out with
    /// data possibly left.
    pub(super) fn read_tls(
        &mut self,
        ctx: &mut Ctx<'_>,
        scratch: &mut [u8],
        cipher: &mut [u8],
    ) -> bool {
        for _ in 0..MAX_READS_PER_EVENT {
            let Transport::Tls(stream) = &mut self.transport else {
                return false;
            };
            let n = match stream.read_cipher(cipher) {
                Cipher::Read(n) => n,
                Cipher::WouldBlock => return false,
                Cipher::Eof | Cipher::Broken => {
                    self.lost(ctx);
                    return false;
                }
            };
            if ctx.stats.measuring {
                ctx.stats.window.bytes += n as u64;
            }
            let mut rest = &cipher[..n];
            while !rest.is_empty() && self.phase != Phase::Closed {
                let Transport::Tls(stream) = &mut self.transport else {
                    return false;
                };
                if let Err(e) = stream.feed(&mut rest) {
                    log::debug!("TLS connection failed: {e}");
                    self.tls_failed(ctx, tls::failure_reason(&e));
                    return false;
                }
                self.take_plaintext(ctx, scratch);
            }
            if self.phase == Phase::Closed || n < cipher.len() {
                return false;
            }
        }
        true
    }

    /// Hands every decrypted byte to the frame handling.
    fn take_plaintext(&mut self, ctx: &mut Ctx<'_>, scratch: &mut [u8]) {
        while self.phase != Phase::Closed {
            let Transport::Tls(stream) = &mut self.transport else {
                return;
            };
            match stream.take_plaintext(scratch) {
                Ok(0) => return,
                Ok(n) => {
                    let now_us = crate::clock::unix_micros();
                    self.on_bytes(ctx, &scratch[..n], now_us);
                }
                // The stream ended without close_notify (after the bytes before it).
                Err(_) => return self.lost(ctx),
            }
        }
    }

    /// A TLS failure: counted under `reason` whenever it happens; after the upgrade it also
    /// ends the WebSocket abnormally (1006).
    fn tls_failed(&mut self, ctx: &mut Ctx<'_>, reason: &str) {
        match self.phase {
            Phase::Connecting | Phase::Upgrading => self.fail(ctx, reason),
            Phase::Open => {
                ctx.stats.fail(reason);
                ctx.stats.close(close_code::ABNORMAL);
                self.phase = Phase::Closed;
            }
            Phase::Closed => {}
        }
    }
}
