//! The pages in a real browser. The chat: two headless Chromium pages join the same room, one
//! sends a message, the other shows it; then the same with each page on its own chat
//! process, the two sharing a `redis-server` (skipped where none is installed, as the
//! backplane's other tests are). The dashboard: its numbers and lines follow a scripted load
//! of chat clients. Screenshots are saved under `target/`.
//!
//! Needs `chromium` and `chromedriver` (Debian: `chromium`, `chromium-driver`). Without
//! them the test says so loudly and passes, unless `TIDINGS_REQUIRE_BROWSER` is set (as
//! `.ci/run` sets it): then a missing browser fails it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use tidings_smol::ClientEvent;

/// Where a program is, from `PATH` or the Debian locations.
fn find(name: &str, debian: &str) -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    });
    on_path.or_else(|| Some(PathBuf::from(debian)).filter(|p| p.is_file()))
}

struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

async fn page(driver: &str, chromium: &Path) -> Client {
    let profile = std::env::temp_dir().join(format!("tidings-chromium-{}", free_port()));
    let options = json!({
        "binary": chromium,
        "args": [
            "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--window-size=1100,760",
            format!("--user-data-dir={}", profile.display()),
        ],
    });
    let mut caps = serde_json::Map::new();
    caps.insert("goog:chromeOptions".into(), options);
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector)
        .capabilities(caps)
        .connect(driver)
        .await
        .expect("a browser session")
}

async fn enter(page: &Client, url: &str, name: &str) {
    page.goto(url).await.expect("open the chat");
    let input = page.find(Locator::Id("name")).await.expect("name field");
    input.send_keys(name).await.expect("type a name");
    page.find(Locator::Id("connect"))
        .await
        .expect("button")
        .click()
        .await
        .expect("enter");
    // The page joins #lobby by itself once connected.
    page.wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::XPath(
            "//li[contains(@class,'current') and contains(., 'lobby')]",
        ))
        .await
        .expect("in the lobby");
}

#[test]
fn chat_and_dashboard_pages_in_a_real_browser() {
    let required = std::env::var_os("TIDINGS_REQUIRE_BROWSER").is_some();
    let (Some(chromium), Some(chromedriver)) = (
        find("chromium", "/usr/bin/chromium"),
        find("chromedriver", "/usr/bin/chromedriver"),
    ) else {
        assert!(
            !required,
            "TIDINGS_REQUIRE_BROWSER is set but chromium/chromedriver are missing"
        );
        eprintln!(
            "\n*** SKIPPED the browser test: install chromium and chromium-driver to run it ***\n"
        );
        return;
    };
    let chat = common::start(env!("CARGO_BIN_EXE_chat"));
    let port = free_port();
    let _driver = Driver(
        Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts"),
    );
    let driver_url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "chromedriver did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        two_pages_chat(
            &driver_url,
            &chromium,
            &chat.url,
            &chat.url,
            "chat-browser-test",
        )
        .await;
        // Two chat processes over one Redis: a page on each, and the messages cross.
        if let Some(redis) = tidings_redis::testing::RedisServer::start_or_skip() {
            let flags = ["--redis", &redis.url()].map(str::to_owned);
            let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
            let one = common::start_with(env!("CARGO_BIN_EXE_chat"), &flags);
            let two = common::start_with(env!("CARGO_BIN_EXE_chat"), &flags);
            two_pages_chat(&driver_url, &chromium, &one.url, &two.url, "chat-two-nodes").await;
        }
        let dashboard = common::start(env!("CARGO_BIN_EXE_dashboard"));
        dashboard_follows_a_load(&driver_url, &chromium, &dashboard).await;
    });
}

/// Types `text` into the page's message field and sends it.
async fn say(page: &Client, text: &str) {
    let field = page.find(Locator::Id("text")).await.expect("message field");
    field.send_keys(text).await.expect("type");
    page.find(Locator::Id("send"))
        .await
        .expect("send")
        .click()
        .await
        .expect("send");
}

/// The message list's items that contain `text`.
fn containing(text: &str) -> String {
    format!("//ul[@id='messages']/li[contains(., '{text}')]")
}

/// Whether any message item contains `text` now.
async fn shown(page: &Client, text: &str) -> bool {
    let found = page.find_all(Locator::XPath(&containing(text))).await;
    found.is_ok_and(|items| !items.is_empty())
}

/// Waits until a message item contains `text`, then checks it is the only one.
async fn shown_once(page: &Client, text: &str) {
    page.wait()
        .at_most(Duration::from_secs(15))
        .for_element(Locator::XPath(&containing(text)))
        .await
        .unwrap_or_else(|e| panic!("{text:?} is not shown: {e}"));
    // A duplicate from the replay would come right behind it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let items = page
        .find_all(Locator::XPath(&containing(text)))
        .await
        .expect("items");
    assert_eq!(items.len(), 1, "{text:?} shown {} times", items.len());
}

/// Saves a screenshot of `page` as `target/{shot}.png`.
async fn screenshot(page: &Client, shot: &str) {
    let png = page.screenshot().await.expect("screenshot");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target");
    std::fs::create_dir_all(&dir).expect("target dir");
    let path = dir.join(format!("{shot}.png"));
    std::fs::write(&path, png).expect("save the screenshot");
    eprintln!("screenshot: {}", path.display());
}

/// Waits up to 15 s until the text of the element `id` on `page` satisfies `check`.
async fn until_text(page: &Client, id: &str, what: &str, check: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let text = page
            .find(Locator::Id(id))
            .await
            .expect("element")
            .text()
            .await
            .expect("text");
        if check(&text) {
            return text;
        }
        assert!(Instant::now() < deadline, "#{id} is {text:?}, not {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Members of a chat room, each reading until it has `said` messages.
const BOTS: usize = 10;

/// The scripted load: `BOTS` chat clients join `load`, say `said` messages between them,
/// and each reads them all; then they stay connected until `release` is closed.
async fn chat_load(
    ws: String,
    said: usize,
    loaded: smol::channel::Sender<()>,
    release: smol::channel::Receiver<()>,
) {
    let mut bots = Vec::new();
    for n in 0..BOTS {
        let bot = tidings_smol::connect(&format!("{ws}?name=bot{n}"))
            .await
            .expect("connect");
        bot.subscribe("load").await.expect("subscribe");
        bots.push(bot);
    }
    // Spread over the bots: each stays under the default rate limit (100 messages a second).
    for n in 0..said {
        bots[n % BOTS]
            .emit(
                "say",
                json!({"room": "load", "text": format!("message {n}")}),
            )
            .await
            .expect("say");
    }
    for bot in &bots {
        let mut heard = 0;
        while heard < said {
            match bot.next_timeout(Duration::from_secs(10)).await {
                Some(ClientEvent::Event(e)) if e.event == "message" => heard += 1,
                Some(_) => {}
                None => panic!("a bot heard {heard} of {said}"),
            }
        }
    }
    let _ = loaded.send(()).await;
    let _ = release.recv().await;
    for bot in &bots {
        let _ = bot.close().await;
    }
}

/// The dashboard page shows its own connection, then the load's: connections, deliveries
/// (total and a rate above zero on the chart), and the connections gone again after it.
async fn dashboard_follows_a_load(driver_url: &str, chromium: &Path, dashboard: &common::Running) {
    let page = page(driver_url, chromium).await;
    page.goto(&dashboard.url).await.expect("open the dashboard");
    until_text(&page, "connections", "1", |t| t == "1").await;

    let said = 200;
    let (loaded_tx, loaded) = smol::channel::bounded(1);
    let (release_tx, release) = smol::channel::bounded::<()>(1);
    let ws = dashboard.ws("/ws");
    let load = std::thread::spawn(move || smol::block_on(chat_load(ws, said, loaded_tx, release)));
    loaded.recv().await.expect("the load ran");

    let watchers_and_bots = (BOTS + 1).to_string();
    until_text(&page, "connections", &watchers_and_bots, |t| {
        t == watchers_and_bots
    })
    .await;
    let least = BOTS * said;
    until_text(
        &page,
        "deliveries-total",
        &format!("at least {least}"),
        |t| t.parse::<usize>().is_ok_and(|n| n >= least),
    )
    .await;
    let peak = page
        .execute("return Math.max(0, ...rates('deliveries'));", vec![])
        .await
        .expect("the page's rates");
    assert!(
        peak.as_f64().is_some_and(|p| p > 0.0),
        "the deliveries chart stayed at {peak}"
    );
    until_text(&page, "cuts", "0", |t| t == "0").await;
    screenshot(&page, "dashboard").await;

    drop(release_tx);
    load.join().expect("the load's thread");
    until_text(&page, "connections", "1 again", |t| t == "1").await;
    let plotted: Value = page
        .execute("return samples.length;", vec![])
        .await
        .expect("the page's samples");
    assert!(
        plotted.as_u64().is_some_and(|n| n >= 3),
        "{plotted} samples"
    );
    page.close().await.expect("close");
}

/// Ann opens `url_ann`, bob `url_bob`; bob sees ann join the lobby and then her message. A
/// screenshot of bob's page is saved as `target/{shot}.png`.
async fn two_pages_chat(
    driver_url: &str,
    chromium: &Path,
    url_ann: &str,
    url_bob: &str,
    shot: &str,
) {
    let ann = page(driver_url, chromium).await;
    let bob = page(driver_url, chromium).await;
    enter(&ann, url_ann, "ann").await;
    enter(&bob, url_bob, "bob").await;
    ann.wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::XPath(
            "//ul[@id='messages']/li[contains(., 'bob joined')]",
        ))
        .await
        .expect("ann sees bob join");

    say(&ann, "hello from ann").await;
    let item = bob
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::XPath(&containing("hello from ann")))
        .await
        .expect("bob sees ann's message");
    let line = item.text().await.expect("text");
    assert!(
        line.starts_with("ann") && line.contains("hello from ann"),
        "{line}"
    );

    // Bob's socket drops, then his tab is reloaded; ann speaks each time. Bob's page
    // reconnects and subscribes again from where it stood: each message shows, once.
    bob.execute("ws.close(); return true;", vec![])
        .await
        .expect("cut bob's socket");
    say(&ann, "said while bob was cut off").await;
    shown_once(&bob, "said while bob was cut off").await;
    bob.refresh().await.expect("reload");
    say(&ann, "said while bob reloaded").await;
    shown_once(&bob, "said while bob reloaded").await;
    // The reloaded page asked for the room's recent history: what it showed before is
    // back, above, once.
    shown_once(&bob, "hello from ann").await;
    shown_once(&bob, "said while bob was cut off").await;
    assert!(
        !shown(&bob, "could not be recovered").await,
        "recovered, not told it could not be"
    );

    screenshot(&bob, shot).await;
    ann.close().await.expect("close");
    bob.close().await.expect("close");
}
