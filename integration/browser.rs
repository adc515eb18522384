//! A real headless Chromium for the UI tests, driven through WebDriver (`yurt_chromium`:
//! Debian's `chromium` and `chromium-driver`, which `scripts/test` installs): each [`Browser`]
//! has its own `chromedriver` and browser profile, stopped when dropped. Its calls are
//! synchronous like the rest of the harness and bounded by [`timeout`]. Screenshots go to
//! `target/tmp/ui/` (and, with `YURT_UI_SCREENSHOTS=DIR`, to `DIR` too: `docs/ui/` is made
//! that way).

use std::path::PathBuf;

use fantoccini::{Client, Locator};
use yurt_chromium::Chromium;

use crate::harness::{timeout, wait_for};

pub struct Browser {
    rt: tokio::runtime::Runtime,
    /// What the browser's console said at level SEVERE, read so far.
    console: std::cell::RefCell<Vec<String>>,
    chromium: Option<Chromium>,
}

impl Browser {
    /// A browser window of `width` x `height` pixels.
    pub fn start(width: u32, height: u32) -> Browser {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let chromium = rt.block_on(Chromium::start(width, height, timeout()));
        Browser {
            rt,
            console: Default::default(),
            chromium: Some(chromium),
        }
    }

    fn c(&self) -> &Client {
        &self.chromium.as_ref().unwrap().client
    }

    /// Opens `url` and waits for the UI's frame to be there.
    pub fn goto(&self, url: &str) {
        self.rt
            .block_on(self.c().goto(url))
            .expect("the page opens");
        self.wait_css("main#page");
    }

    /// Waits for an element matching `css`.
    pub fn wait_css(&self, css: &str) {
        wait_for(&format!("an element {css}"), || {
            self.rt
                .block_on(self.c().find(Locator::Css(css)))
                .map(|_| ())
                .map_err(|e| e.to_string())
        });
    }

    /// The text of the first element matching `css` (empty when there is none).
    pub fn text(&self, css: &str) -> String {
        self.rt.block_on(async {
            match self.c().find(Locator::Css(css)).await {
                Ok(e) => e.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            }
        })
    }

    /// Waits until the text of `css` contains `want`; returns it.
    pub fn wait_text(&self, css: &str, want: &str) -> String {
        wait_for(&format!("{css} to say {want:?}"), || {
            let t = self.text(css);
            if t.contains(want) {
                Ok(t)
            } else {
                Err(format!("{t}\n(the banner says: {:?})", self.text("#error")))
            }
        })
    }

    /// Waits until the text of `css` no longer contains `gone`.
    pub fn wait_text_gone(&self, css: &str, gone: &str) {
        wait_for(&format!("{css} to no longer say {gone:?}"), || {
            let t = self.text(css);
            if t.contains(gone) {
                Err(t)
            } else {
                Ok(())
            }
        });
    }

    /// Clicks the element `css`, once there; again if the page drew it anew meanwhile (a live
    /// page replaces its elements when the cluster changes).
    pub fn click(&self, css: &str) {
        wait_for(&format!("a click on {css}"), || {
            self.rt
                .block_on(async { self.c().find(Locator::Css(css)).await?.click().await })
                .map_err(|e| e.to_string())
        });
    }

    /// Replaces the value of the input or text area `css` with `text` (as if typed).
    pub fn fill(&self, css: &str, text: &str) {
        self.wait_css(css);
        self.rt
            .block_on(async {
                let e = self.c().find(Locator::Css(css)).await?;
                e.clear().await?;
                e.send_keys(text).await
            })
            .unwrap_or_else(|e| panic!("type into {css}: {e}"));
    }

    /// Presses `keys` on the focused element (WebDriver's key codes: `\u{E004}` is Tab,
    /// `\u{E007}` Enter).
    pub fn press(&self, keys: &str) {
        self.rt
            .block_on(async { self.c().active_element().await?.send_keys(keys).await })
            .unwrap_or_else(|e| panic!("press {keys:?}: {e}"));
    }

    /// The text of the focused element.
    pub fn focused(&self) -> String {
        let v =
            self.script("return document.activeElement ? document.activeElement.textContent : ''");
        v.as_str().unwrap_or_default().trim().to_string()
    }

    /// Runs a script in the page; returns its value.
    pub fn script(&self, js: &str) -> serde_json::Value {
        self.rt
            .block_on(self.c().execute(js, vec![]))
            .unwrap_or_else(|e| panic!("script {js}: {e}"))
    }

    /// Whether the element `css` is enabled (a button).
    pub fn enabled(&self, css: &str) -> bool {
        self.rt
            .block_on(async { self.c().find(Locator::Css(css)).await?.is_enabled().await })
            .unwrap_or(false)
    }

    /// The errors the page met: what the UI kept in `window.yurtErrors` as it showed them
    /// (scripts failing, content refused by its policy), and every error on the browser's
    /// console since it started (failed loads included).
    pub fn errors(&self) -> Vec<String> {
        let v = self.script("return window.yurtErrors || []");
        let mut errors: Vec<String> = serde_json::from_value(v).unwrap_or_default();
        let log = self.rt.block_on(yurt_chromium::console_errors(self.c()));
        let mut console = self.console.borrow_mut();
        console.extend(log.unwrap_or_else(|e| panic!("{e}")));
        errors.extend(console.iter().cloned());
        errors
    }

    /// Saves a screenshot named `name` (see the module's note).
    pub fn screenshot(&self, name: &str) -> PathBuf {
        let png = self
            .rt
            .block_on(self.c().screenshot())
            .expect("a screenshot");
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ui");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, &png).unwrap();
        if let Some(docs) = std::env::var_os("YURT_UI_SCREENSHOTS") {
            let docs = PathBuf::from(docs);
            std::fs::create_dir_all(&docs).unwrap();
            std::fs::write(docs.join(format!("{name}.png")), &png).unwrap();
        }
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(c) = self.chromium.take() {
            self.rt.block_on(c.close());
        }
    }
}
