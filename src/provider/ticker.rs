//! `ticker`: a synthetic market feed, the built-in provider.
//!
//! Each feed owns a few symbols whose prices follow a random walk and publishes one tick on
//! the `ticks` topic per interval (or at a fixed rate, in small bursts, for stress). The tick
//! body can be padded to a target size for benchmarks. Feeds are independent threads, so
//! `--providers 4` exercises the mixer's fan-in. Each tick's `ts` is the time it was due, not
//! the time the mixer got to it, so a late mixer shows in the measured latency.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::value::RawValue;

use super::{Provider, ProviderCtx};
use crate::clock::unix_micros;
use crate::config::{TickerConfig, TickerPace};
use crate::protocol::TICKS_TOPIC as TOPIC;

/// Names handed out to symbols, feed after feed.
const NAMES: [&str; 24] = [
    "ACME", "BOLT", "CRUX", "DYNA", "EPIC", "FLUX", "GRID", "HALO", "IONX", "JADE", "KITE", "LUMA",
    "MESA", "NOVA", "ORCA", "PIXL", "QUAD", "RUNE", "SOLR", "TERA", "UNIX", "VOLT", "WAVE", "XENO",
];

/// Most ticks one burst emits under `--rate`, so a stalled clock cannot produce a flood.
const MAX_BURST: u64 = 10_000;
/// Sleep between bursts under `--rate`.
const RATE_STEP: Duration = Duration::from_millis(1);

struct Symbol {
    name: String,
    price: f64,
}

#[derive(Serialize)]
struct Tick<'a> {
    feed: usize,
    symbol: &'a str,
    price: f64,
    bid: f64,
    ask: f64,
    size: u32,
    #[serde(skip_serializing_if = "str::is_empty")]
    pad: &'a str,
}

/// `len` bytes of filler that read like an order book's levels (`bid 101.25 x 1200;`, one
/// tick apart, sizes in round lots drawn at random), so a padded message compresses about
/// as market data does, not like a run of one byte. Plain ASCII, nothing to escape in JSON.
fn book_filler(len: usize, seed: u64) -> String {
    let mut rng = fastrand::Rng::with_seed(0xb00c_0000 + seed);
    let mid = 50.0 + rng.f64() * 200.0;
    let mut out = String::with_capacity(len + 40);
    let mut level = 1u32;
    while out.len() < len {
        let (side, px) = if level % 2 == 1 {
            ("bid", mid - 0.01 * f64::from(level / 2 + 1))
        } else {
            ("ask", mid + 0.01 * f64::from(level / 2))
        };
        out.push_str(&format!("{side} {px:.2} x {};", 100 * (1 + rng.u32(..50))));
        level += 1;
    }
    out.truncate(len);
    out
}

/// One synthetic feed.
pub struct Ticker {
    feed: usize,
    symbols: Vec<Symbol>,
    pace: TickerPace,
    /// Filler that brings each tick to `payload_bytes`.
    pad: String,
    rng: fastrand::Rng,
    topic: Arc<str>,
}

impl Ticker {
    /// Feed number `feed` of the configured set.
    pub fn new(feed: usize, cfg: &TickerConfig) -> Self {
        let symbols = (0..cfg.symbols_per_feed)
            .map(|i| {
                let n = feed * cfg.symbols_per_feed + i;
                let base = NAMES[n % NAMES.len()];
                let name = if n < NAMES.len() {
                    base.to_string()
                } else {
                    format!("{base}{}", n / NAMES.len())
                };
                Symbol {
                    name,
                    price: 50.0 + (n % 17) as f64 * 12.5,
                }
            })
            .collect();
        let mut ticker = Ticker {
            feed,
            symbols,
            pace: cfg.pace,
            pad: String::new(),
            rng: fastrand::Rng::with_seed(0x5eed_0000 + feed as u64),
            topic: Arc::from(TOPIC),
        };
        let natural = ticker.next_tick().get().len();
        // `,"pad":""` costs 9 bytes before the first padding byte.
        if cfg.payload_bytes > natural + 9 {
            ticker.pad = book_filler(cfg.payload_bytes - natural - 9, feed as u64);
        }
        ticker
    }

    /// Moves one symbol's price and returns its tick as JSON (public for the benchmarks).
    pub fn next_tick(&mut self) -> Box<RawValue> {
        let i = self.rng.usize(..self.symbols.len());
        let sym = &mut self.symbols[i];
        let step = (self.rng.f64() - 0.5) * 0.002;
        sym.price = (sym.price * (1.0 + step)).max(0.01);
        let round = |x: f64| (x * 10_000.0).round() / 10_000.0;
        let spread = (sym.price * 0.0002).max(0.0001);
        let tick = Tick {
            feed: self.feed,
            symbol: &sym.name,
            price: round(sym.price),
            bid: round(sym.price - spread),
            ask: round(sym.price + spread),
            size: 1 + self.rng.u32(..1000),
            pad: &self.pad,
        };
        // A struct of numbers and plain strings always serializes to valid JSON.
        serde_json::value::to_raw_value(&tick).expect("tick serializes")
    }

    fn run_interval(&mut self, ctx: &ProviderCtx, interval: Duration) {
        let (start, start_us) = (Instant::now(), unix_micros());
        let mut next = start + interval;
        while ctx.sleep_until(next) {
            let tick = self.next_tick();
            let due_us = start_us + next.duration_since(start).as_micros() as u64;
            if !ctx.publish_made(&self.topic, tick, due_us) {
                return;
            }
            next += interval;
            let now = Instant::now();
            if now > next + interval * 10 {
                // Far behind (suspended, overloaded): skip ahead rather than burst.
                next = now + interval;
            }
        }
    }

    fn run_rate(&mut self, ctx: &ProviderCtx, per_sec: f64) {
        let (start, start_us) = (Instant::now(), unix_micros());
        let mut sent: u64 = 0;
        let mut next = start;
        while ctx.sleep_until(next) {
            let due = (start.elapsed().as_secs_f64() * per_sec) as u64;
            if due.saturating_sub(sent) > MAX_BURST {
                // Far behind (suspended, overloaded): skip ahead rather than flood.
                sent = due - MAX_BURST;
            }
            while sent < due {
                let tick = self.next_tick();
                // Tick n (from 1) was due n / rate after the start.
                let due_us = start_us + ((sent + 1) as f64 * 1e6 / per_sec) as u64;
                if !ctx.publish_made(&self.topic, tick, due_us) {
                    return;
                }
                sent += 1;
            }
            next += RATE_STEP;
        }
    }
}

impl Provider for Ticker {
    fn name(&self) -> String {
        format!("ticker-{}", self.feed)
    }

    fn run(&mut self, ctx: &ProviderCtx) {
        match self.pace {
            TickerPace::Interval(d) => self.run_interval(ctx, d),
            TickerPace::Rate(r) => self.run_rate(ctx, r),
        }
    }
}

/// The configured set of ticker feeds.
pub fn feeds(cfg: &TickerConfig) -> Vec<Box<dyn Provider>> {
    (0..cfg.feeds)
        .map(|i| Box::new(Ticker::new(i, cfg)) as Box<dyn Provider>)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_json_with_the_feed_symbols() {
        let cfg = TickerConfig::default();
        let mut t = Ticker::new(1, &cfg);
        let v: serde_json::Value = serde_json::from_str(t.next_tick().get()).unwrap();
        assert_eq!(v["feed"], 1);
        let names: Vec<_> = t.symbols.iter().map(|s| s.name.clone()).collect();
        assert!(names.contains(&v["symbol"].as_str().unwrap().to_string()));
        assert!(v["bid"].as_f64().unwrap() < v["ask"].as_f64().unwrap());
    }

    #[test]
    fn padding_reaches_the_requested_size() {
        for target in [200, 512, 4096] {
            let cfg = TickerConfig {
                payload_bytes: target,
                ..TickerConfig::default()
            };
            let mut t = Ticker::new(0, &cfg);
            let len = t.next_tick().get().len();
            // Prices vary in printed width by a few bytes.
            assert!(len.abs_diff(target) <= 8, "target {target}, got {len}");
        }
    }

    #[test]
    fn symbols_are_distinct_across_feeds() {
        let cfg = TickerConfig {
            feeds: 8,
            ..TickerConfig::default()
        };
        let mut all: Vec<String> = (0..8)
            .flat_map(|f| Ticker::new(f, &cfg).symbols)
            .map(|s| s.name)
            .collect();
        let n = all.len();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), n);
    }
}
