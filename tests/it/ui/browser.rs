//! Headless Chromium driven over WebDriver (Debian's `chromium` and
//! `chromedriver`), with the few gestures the UI tests need: run a script,
//! wait for a condition, move and click the real mouse at page coordinates,
//! press keys, and save screenshots for a reviewer.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::actions::{
    InputSource, KeyAction, KeyActions, MOUSE_BUTTON_LEFT, MouseActions, PointerAction,
};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

pub struct Browser {
    pub client: Client,
    driver: Child,
    shots: PathBuf,
    prefix: &'static str,
}

/// Where screenshots go: `FIREWATCH_SCREENSHOTS`, else `target/ui-screenshots`.
pub fn screenshot_dir() -> PathBuf {
    std::env::var_os("FIREWATCH_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/ui-screenshots")
        })
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Browser {
    /// Starts chromedriver and a headless Chromium of 1400x1000 CSS pixels;
    /// screenshots are named `<prefix>-NN-<name>.png`.
    pub async fn start(prefix: &'static str) -> Browser {
        let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
        let port = free_port();
        let driver =
            Command::new(std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into()))
                .arg(format!("--port={port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("chromedriver (Debian: apt-get install chromium chromium-driver)");
        let caps = json!({
            "goog:chromeOptions": {
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1400,1000", "--force-device-scale-factor=1"]
            }
        });
        let caps = match caps {
            Value::Object(map) => map,
            _ => unreachable!(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(caps.clone())
                .connect(&format!("http://127.0.0.1:{port}"))
                .await
            {
                Ok(c) => break c,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("no WebDriver session with {chromium}: {e}"),
            }
        };
        let shots = screenshot_dir();
        std::fs::create_dir_all(&shots).expect("screenshot folder");
        Browser {
            client,
            driver,
            shots,
            prefix,
        }
    }

    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.expect("navigate");
    }

    /// Runs `script` (a function body: `return ...`) in the page.
    pub async fn js(&self, script: &str) -> Value {
        self.client
            .execute(script, vec![])
            .await
            .unwrap_or_else(|e| panic!("script {script:?}: {e}"))
    }

    /// Waits until `expr` is truthy in the page; panics with `what` and the
    /// page's status line after 20 s.
    pub async fn wait(&self, expr: &str, what: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        let script = format!("return ({expr});");
        loop {
            let v = self
                .client
                .execute(&script, vec![])
                .await
                .unwrap_or(Value::Null);
            if !(v.is_null() || v == json!(false) || v == json!("") || v == json!(0)) {
                return v;
            }
            if Instant::now() > deadline {
                let status = self.text("#status").await;
                let url = self
                    .client
                    .current_url()
                    .await
                    .map(|u| u.to_string())
                    .unwrap_or_default();
                panic!("timed out waiting for {what} ({expr}); status: {status:?}; url: {url}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits for the page to finish loading what its state asks for.
    pub async fn settled(&self) -> String {
        let v = self
            .wait(
                "['ready','empty','error'].includes(document.body.dataset.status) && document.body.dataset.status",
                "the page to settle",
            )
            .await;
        v.as_str().unwrap_or_default().to_owned()
    }

    pub async fn text(&self, css: &str) -> String {
        match self.client.find(Locator::Css(css)).await {
            Ok(e) => e.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    pub async fn click(&self, css: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("find {css}: {e}"))
            .click()
            .await
            .unwrap_or_else(|e| panic!("click {css}: {e}"));
    }

    pub async fn type_into(&self, css: &str, text: &str) {
        let e = self
            .client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("find {css}: {e}"));
        e.clear().await.expect("clear");
        e.send_keys(text).await.expect("type");
    }

    pub async fn select(&self, css: &str, value: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("find {css}: {e}"))
            .select_by_value(value)
            .await
            .unwrap_or_else(|e| panic!("select {value} in {css}: {e}"));
    }

    /// Moves the real mouse to page point (x, y).
    pub async fn hover(&self, x: f64, y: f64) {
        let mouse = MouseActions::new("mouse".into()).then(PointerAction::MoveTo {
            duration: None,
            x,
            y,
        });
        self.client
            .perform_actions(mouse)
            .await
            .expect("move the mouse");
    }

    /// Clicks the real mouse at page point (x, y).
    pub async fn click_at(&self, x: f64, y: f64) {
        let mouse = MouseActions::new("mouse".into())
            .then(PointerAction::MoveTo {
                duration: None,
                x,
                y,
            })
            .then(PointerAction::Down {
                button: MOUSE_BUTTON_LEFT,
            })
            .then(PointerAction::Up {
                button: MOUSE_BUTTON_LEFT,
            });
        self.client
            .perform_actions(mouse)
            .await
            .expect("click the mouse");
    }

    /// Drags the real mouse from (x0, y) to (x1, y).
    pub async fn drag(&self, x0: f64, x1: f64, y: f64) {
        let mouse = MouseActions::new("mouse".into())
            .then(PointerAction::MoveTo {
                duration: None,
                x: x0,
                y,
            })
            .then(PointerAction::Down {
                button: MOUSE_BUTTON_LEFT,
            })
            .then(PointerAction::MoveTo {
                duration: Some(Duration::from_millis(100)),
                x: (x0 + x1) / 2.0,
                y,
            })
            .then(PointerAction::MoveTo {
                duration: Some(Duration::from_millis(100)),
                x: x1,
                y,
            })
            .then(PointerAction::Up {
                button: MOUSE_BUTTON_LEFT,
            });
        self.client
            .perform_actions(mouse)
            .await
            .expect("drag the mouse");
    }

    /// Presses keys (WebDriver key codes, e.g. "\u{E015}" for ArrowDown).
    pub async fn keys(&self, keys: &[char]) {
        let mut k = KeyActions::new("keyboard".into());
        for &c in keys {
            k = k
                .then(KeyAction::Down { value: c })
                .then(KeyAction::Up { value: c });
        }
        self.client.perform_actions(k).await.expect("press keys");
    }

    /// The page box of the widest visible node named `name` in flamegraph
    /// `which` (flame, callers, callees, diff): its centre.
    pub async fn node(&self, which: &str, name: &str) -> Option<(f64, f64)> {
        let v = self
            .js(&format!(
                "return window.firewatch.box({}, {});",
                json!(which),
                json!(name)
            ))
            .await;
        let x = v.get("x")?.as_f64()? + v.get("w")?.as_f64()? / 2.0;
        let y = v.get("y")?.as_f64()? + v.get("h")?.as_f64()? / 2.0;
        Some((x, y))
    }

    pub async fn state(&self, key: &str) -> String {
        self.js(&format!("return window.firewatch.state[{}];", json!(key)))
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Saves a screenshot as `<prefix>-<name>.png` and returns its path.
    pub async fn shot(&self, name: &str) -> PathBuf {
        let png = self.client.screenshot().await.expect("screenshot");
        let path = self.shots.join(format!("{}-{name}.png", self.prefix));
        std::fs::write(&path, png).expect("write screenshot");
        path
    }

    pub async fn close(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
    }
}
