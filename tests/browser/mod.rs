//! Headless Chromium for the dashboard tests, driven over the DevTools protocol
//! (`headless_chrome`, blocking API): launching it, evaluating JavaScript in the page,
//! waiting for conditions with a deadline, and saving screenshots. The binary is found by
//! `common::require_program(&common::CHROMIUM)`.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use headless_chrome::protocol::cdp::Page::CaptureScreenshotFormatOption;
use headless_chrome::{Browser, LaunchOptions, Tab};
use serde_json::Value;

/// A headless browser with one tab. Chromium is killed when this is dropped.
pub struct Page {
    /// Kept alive for the tab; its drop kills the Chromium process.
    _browser: Browser,
    pub tab: Arc<Tab>,
}

impl Page {
    /// Launches `chromium` headless (without its sandbox, which cannot run as root) and opens
    /// `url` in a 1440x1200 window.
    pub fn open(chromium: &Path, url: &str) -> Page {
        let options = LaunchOptions::default_builder()
            .path(Some(chromium.to_path_buf()))
            .headless(true)
            .sandbox(false)
            .window_size(Some((1440, 1200)))
            .idle_browser_timeout(Duration::from_secs(600))
            .args(vec![OsStr::new("--hide-scrollbars")])
            .build()
            .expect("launch options");
        let browser = Browser::new(options).expect("launch chromium");
        let tab = browser.new_tab().expect("new tab");
        tab.navigate_to(url).expect("navigate");
        tab.wait_until_navigated().expect("page load");
        Page {
            _browser: browser,
            tab,
        }
    }

    /// Evaluates a JavaScript expression in the page and returns its JSON value.
    pub fn eval(&self, js: &str) -> Value {
        let obj = self
            .tab
            .evaluate(js, false)
            .unwrap_or_else(|e| panic!("evaluate {js}: {e}"));
        obj.value.unwrap_or(Value::Null)
    }

    /// Evaluates `js` until it returns `true`; panics with `what` and the page's status
    /// after `limit`.
    pub fn wait_for(&self, what: &str, js: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            if self.eval(js) == Value::Bool(true) {
                return;
            }
            if Instant::now() > deadline {
                let status = self.eval("document.getElementById('status').textContent");
                panic!("timed out waiting for {what} (`{js}`); page status: {status}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Saves a PNG screenshot of the viewport to `path` (creating its folder).
    pub fn screenshot(&self, path: &Path) {
        let png = self
            .tab
            .capture_screenshot(CaptureScreenshotFormatOption::Png, None, None, true)
            .expect("screenshot");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("create screenshot folder");
        }
        std::fs::write(path, png).expect("write screenshot");
        println!("screenshot: {}", path.display());
    }
}

/// Where tests write artifacts: `$CARGO_TARGET_DIR/test-output` (default `target/`).
pub fn output_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("test-output")
}
