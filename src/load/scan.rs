//! Finds `topic`, `seq` and `ts` in a broadcast message by scanning its text, without
//! building a JSON tree, so measuring a message costs the client far less than the server
//! spent producing it.
//!
//! The server writes the envelope fields first (`{"topic":"t","seq":1,"ts":2,"data":...}`),
//! so the first occurrence of each key is the envelope's: a `seq` key inside `data` comes
//! later and is never mistaken for it. Topic names are restricted by the server to
//! `[A-Za-z0-9._:/-]` and `*`, so they hold no escapes.

use memchr::memmem::Finder;

/// The envelope fields of one message, borrowed from its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Envelope<'a> {
    /// The topic name, if the message has one.
    pub topic: Option<&'a [u8]>,
    /// The per-topic sequence number.
    pub seq: Option<u64>,
    /// The server's stamp, µs since the Unix epoch.
    pub ts: Option<u64>,
}

/// Precompiled searchers, built once per thread.
#[derive(Debug)]
pub struct Scanner {
    topic: Finder<'static>,
    seq: Finder<'static>,
    ts: Finder<'static>,
    sent: Finder<'static>,
    error: Finder<'static>,
}

impl Default for Scanner {
    fn default() -> Self {
        Scanner {
            topic: Finder::new(b"\"topic\":\""),
            seq: Finder::new(b"\"seq\":"),
            ts: Finder::new(b"\"ts\":"),
            sent: Finder::new(b"\"sent_us\":"),
            error: Finder::new(b"\"type\":\"error\""),
        }
    }
}

impl Scanner {
    /// The envelope fields of `text`.
    #[inline]
    pub fn envelope<'a>(&self, text: &'a [u8]) -> Envelope<'a> {
        in_server_order(text).unwrap_or_else(|| self.searched(text))
    }

    /// The envelope fields of `text`, wherever they are: the first occurrence of each key.
    fn searched<'a>(&self, text: &'a [u8]) -> Envelope<'a> {
        let topic = self.topic.find(text).and_then(|i| {
            let start = i + self.topic.needle().len();
            let len = memchr::memchr(b'"', &text[start..])?;
            Some(&text[start..start + len])
        });
        Envelope {
            topic,
            seq: self.number_after(&self.seq, text),
            ts: self.number_after(&self.ts, text),
        }
    }

    /// The `sent_us` stamp a publisher embedded in its data, if any.
    pub fn sent_us(&self, text: &[u8]) -> Option<u64> {
        self.number_after(&self.sent, text)
    }

    /// Whether the message is an error frame (`"type":"error"`).
    pub fn is_error(&self, text: &[u8]) -> bool {
        self.error.find(text).is_some()
    }

    fn number_after(&self, key: &Finder<'_>, text: &[u8]) -> Option<u64> {
        let at = key.find(text)? + key.needle().len();
        parse_u64(&text[at..])
    }
}

/// The envelope when `text` starts exactly as the server writes it,
/// `{"topic":"<t>","seq":<n>,"ts":<n>`: checked in one pass over its first bytes, where the
/// general path runs three substring searches (together a fifth of the client's CPU). Gives
/// what the general path would: a topic holds no quote, so these are the first occurrences.
#[inline]
fn in_server_order(text: &[u8]) -> Option<Envelope<'_>> {
    let rest = text.strip_prefix(b"{\"topic\":\"")?;
    let end = memchr::memchr(b'"', rest)?;
    let (topic, rest) = rest.split_at(end);
    let (seq, rest) = leading_u64(rest.strip_prefix(b"\",\"seq\":")?)?;
    let (ts, _) = leading_u64(rest.strip_prefix(b",\"ts\":")?)?;
    Some(Envelope {
        topic: Some(topic),
        seq: Some(seq),
        ts: Some(ts),
    })
}

/// The unsigned decimal at the start of `bytes` (no spaces) and what follows it; `None` when
/// there is no digit or it overflows. The first 19 digits cannot overflow and skip the checked
/// multiply (it made this loop the client's hottest); only a 20th digit pays for the check.
#[inline]
fn leading_u64(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let mut n: u64 = 0;
    let mut digits = 0;
    for &b in bytes {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            break;
        }
        n = if digits < 19 {
            n * 10 + u64::from(d)
        } else {
            n.checked_mul(10)?.checked_add(u64::from(d))?
        };
        digits += 1;
    }
    (digits > 0).then(|| (n, &bytes[digits..]))
}

/// The unsigned decimal at the start of `bytes`, after optional spaces.
fn parse_u64(bytes: &[u8]) -> Option<u64> {
    let spaces = bytes.iter().take_while(|b| **b == b' ').count();
    leading_u64(&bytes[spaces..]).map(|(n, _)| n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_envelope_of_a_broadcast() {
        let s = Scanner::default();
        let msg = br#"{"topic":"ticks","seq":42,"ts":1700000000123456,"data":{"seq":7,"ts":1}}"#;
        let e = s.envelope(msg);
        assert_eq!(e.topic, Some(&b"ticks"[..]));
        assert_eq!(e.seq, Some(42));
        assert_eq!(e.ts, Some(1_700_000_000_123_456));
    }

    #[test]
    fn the_mixer_output_scans_like_json_parses() {
        // The exact bytes the mixer broadcasts, with a `data` that repeats the keys.
        let data =
            serde_json::value::to_raw_value(&serde_json::json!({"seq": 1, "ts": 2})).unwrap();
        let mut builder = crate::frame::FrameBuilder::new();
        let frame =
            crate::mixer::frame_envelope(&mut builder, "room.a/b", 9, 123, Some("c1"), &data);
        let info = crate::load::wire::parse_header(&frame, 1 << 20)
            .unwrap()
            .unwrap();
        let text = &frame[info.header_len..];
        let e = Scanner::default().envelope(text);
        let v: serde_json::Value = serde_json::from_slice(text).unwrap();
        assert_eq!(e.topic, v["topic"].as_str().map(str::as_bytes));
        assert_eq!((e.seq, e.ts), (v["seq"].as_u64(), v["ts"].as_u64()));
        assert_eq!((e.seq, e.ts), (Some(9), Some(123)));
    }

    #[test]
    fn the_server_order_shortcut_agrees_with_the_search() {
        let s = Scanner::default();
        let texts: [&[u8]; 8] = [
            br#"{"topic":"ticks","seq":42,"ts":1700000000123456,"data":{"seq":7}}"#,
            br#"{"topic":"room.a/b","seq":0,"ts":1,"from":"c1","data":null}"#,
            br#"{"topic":"t","seq":1,"ts":99999999999999999999999}"#,
            br#"{"topic":"t","seq":18446744073709551615,"ts":2}"#,
            br#"{"topic":"t","seq": 5,"ts":2}"#,
            br#"{"seq":5,"topic":"t","ts":2}"#,
            br#"{"topic":"t","ts":2,"seq":5}"#,
            br#"{"topic":"t","seq":5,"ts":"#,
        ];
        let mut shortcut = 0;
        for text in texts {
            if let Some(e) = in_server_order(text) {
                shortcut += 1;
                assert_eq!(e, s.searched(text), "{}", String::from_utf8_lossy(text));
            }
            assert_eq!(s.envelope(text), s.searched(text));
        }
        // The first four start in the server's order; the third's ts overflows, and there
        // the shortcut gives way to the search.
        assert_eq!(shortcut, 3);
        assert_eq!(
            s.envelope(texts[3]).seq,
            Some(u64::MAX),
            "20 digits still fit"
        );
        assert_eq!(leading_u64(b"18446744073709551616"), None, "u64::MAX + 1");
    }

    #[test]
    fn other_messages_have_no_envelope() {
        let s = Scanner::default();
        let welcome = br#"{"type":"welcome","shard":0,"topics":["ticks"]}"#;
        assert_eq!(s.envelope(welcome), Envelope::default());
        let err = br#"{"type":"error","code":"unknown_op","message":"x"}"#;
        assert!(s.is_error(err));
        assert!(!s.is_error(welcome));
    }

    #[test]
    fn malformed_numbers_are_none() {
        let s = Scanner::default();
        let e = s.envelope(br#"{"topic":"t","seq":"x","ts":99999999999999999999999}"#);
        assert_eq!((e.seq, e.ts), (None, None));
        let e = s.envelope(br#"{"topic":"unterminated"#);
        assert_eq!(e.topic, None);
        assert_eq!(s.sent_us(br#"{"data":{"sent_us": 55}}"#), Some(55));
    }
}
