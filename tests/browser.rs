//! The pages in a real browser: headless Chromium (Debian's `chromium` and `chromium-driver`,
//! which `.ci/run` installs) driven over WebDriver, scripts running as a person's browser runs
//! them.
//!
//! The verification link of a mail must survive what happens to links in real mailboxes: a mail
//! scanner fetching it, the person opening it twice or on a second device. Only pressing
//! "Verify" uses the key; a lead whose link is spent can ask for a new one.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use fantoccini::{Client, ClientBuilder, Locator};
use mailparse::MailHeaderMap;
use tempfile::TempDir;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// How long the page may take to show what a step leads to.
const PATIENCE: Duration = Duration::from_secs(20);

/// A running chromedriver, stopped when dropped.
struct Driver {
    child: Child,
    port: u16,
}

impl Driver {
    /// Starts chromedriver, or says why it cannot (a skip outside CI, a failure under it).
    async fn start(test: &str) -> Option<Driver> {
        let missing = [CHROMIUM, CHROMEDRIVER]
            .into_iter()
            .find(|program| !std::path::Path::new(program).exists());
        let available = match missing {
            None => Ok(()),
            Some(program) => Err(format!(
                "{program} is missing (apt-get install chromium chromium-driver)"
            )),
        };
        if !needs(test, "chromium", available) {
            return None;
        }
        let port = SmtpSink::free_port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start chromedriver");
        let deadline = Instant::now() + PATIENCE;
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Some(Driver { child, port })
    }

    /// A new headless browser (its own profile: a second device, as far as the page knows).
    async fn browser(&self, profile: &TempDir) -> Client {
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": CHROMIUM,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--no-first-run", "--disable-quic",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            }),
        );
        ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .expect("cannot open a browser session")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The status line of the page once it says something containing `expected`.
async fn status_saying(browser: &Client, expected: &str) -> String {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let text = browser
            .find(Locator::Id("status"))
            .await
            .expect("the page has a status line")
            .text()
            .await
            .unwrap_or_default();
        if text.contains(expected) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "the page said {text:?}, not {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether the form with this id is shown.
async fn shown(browser: &Client, form: &str) -> bool {
    let element = browser.find(Locator::Id(form)).await.expect("the form");
    element.is_displayed().await.expect("its visibility")
}

/// Waits until the form with this id is shown.
async fn wait_shown(browser: &Client, form: &str) {
    let deadline = Instant::now() + PATIENCE;
    while !shown(browser, form).await {
        assert!(Instant::now() < deadline, "the {form} form is not shown");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The `.eml` files of the server's mail outbox.
fn mails(app: &TestApp) -> Vec<Vec<u8>> {
    let Ok(entries) = std::fs::read_dir(app.data_dir.join("outbox")) else {
        return Vec::new();
    };
    entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .map(|p| std::fs::read(p).unwrap())
        .collect()
}

/// The verification links (on this server) of the mails written so far, once there are `n`.
async fn links_in_mails(app: &TestApp, n: usize) -> Vec<String> {
    let deadline = Instant::now() + PATIENCE;
    let mut all = mails(app);
    while all.len() < n {
        assert!(Instant::now() < deadline, "mail {n} was not written");
        tokio::time::sleep(Duration::from_millis(100)).await;
        all = mails(app);
    }
    all.iter()
        .flat_map(|raw| {
            let mail = mailparse::parse_mail(raw).unwrap();
            assert!(mail.headers.get_first_value("Subject").is_some());
            let text = mail
                .subparts
                .iter()
                .find(|p| p.ctype.mimetype == "text/plain")
                .map(|p| p.get_body().unwrap())
                .unwrap_or_default();
            text.split_whitespace()
                .filter_map(|w| w.split_once("/verify?").map(|(_, q)| q.to_string()))
                .collect::<Vec<_>>()
        })
        .map(|query| app.url(&format!("/verify?{query}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verification_link_survives_scanners_reloads_and_second_devices() {
    let test = "a_verification_link_survives_scanners_reloads_and_second_devices";
    let Some(driver) = Driver::start(test).await else {
        return;
    };
    let app = TestApp::spawn_with(Db::Sqlite, &[]).await;
    let admin = app.admin_token();
    let (status, lead) = app
        .post(
            "/leads",
            None,
            &json!({"firstName": "Ada", "lastName": "Lovelace", "email": "ada@engines.io",
                    "companyName": "Analytical Engines"}),
        )
        .await;
    assert_eq!(status, 200, "{lead}");
    let lead_id = lead["id"].as_str().unwrap().to_string();
    let link = links_in_mails(&app, 1).await.remove(0);

    // A mail security scanner fetches the link: nothing is spent.
    let scanned = app.client.get(&link).send().await.unwrap();
    assert_eq!(scanned.status(), 200);

    // The person opens the link, and again (a reload); then on a second device.
    let first_profile = tempfile::tempdir().unwrap();
    let first = driver.browser(&first_profile).await;
    first.goto(&link).await.unwrap();
    wait_shown(&first, "verify").await;
    first.refresh().await.unwrap();
    wait_shown(&first, "verify").await;
    let second_profile = tempfile::tempdir().unwrap();
    let second = driver.browser(&second_profile).await;
    second.goto(&link).await.unwrap();
    wait_shown(&second, "verify").await;
    let (_, body) = app.get(&format!("/leads/{lead_id}"), Some(&admin)).await;
    assert_eq!(
        body["isValidated"], false,
        "loading the page verified nothing"
    );

    // Verify on the second device; a reload there keeps the session.
    second
        .find(Locator::Id("verify-button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    status_saying(&second, "Your email address is verified.").await;
    wait_shown(&second, "onboard").await;
    second.refresh().await.unwrap();
    wait_shown(&second, "onboard").await;
    let (_, body) = app.get(&format!("/leads/{lead_id}"), Some(&admin)).await;
    assert_eq!(body["isValidated"], true);

    // Onboard the tenant from the page.
    for (field, value) in [("key", "engines"), ("domains", "engines.io")] {
        second
            .find(Locator::Id(field))
            .await
            .unwrap()
            .send_keys(value)
            .await
            .unwrap();
    }
    second
        .find(Locator::Id("onboard-button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    status_saying(&second, "is created and waits for provisioning").await;
    let tenants = app
        .get(
            &format!(
                "/tenants?filter={}",
                rest_filter(&json!({"where": {"leadId": lead_id}}))
            ),
            Some(&admin),
        )
        .await
        .1;
    assert_eq!(tenants.as_array().map(Vec::len), Some(1), "{tenants}");
    assert_eq!(tenants[0]["key"], "engines");

    // The first device's page, now with a spent link: it says so and offers a new one, which
    // is not sent (this lead is done: it has its tenant), with the same answer as ever.
    first
        .find(Locator::Id("verify-button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    status_saying(&first, "This link has been used or has expired.").await;
    wait_shown(&first, "resend").await;
    first
        .find(Locator::Id("email"))
        .await
        .unwrap()
        .send_keys("ada@engines.io")
        .await
        .unwrap();
    first
        .find(Locator::Id("resend-button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    status_saying(&first, "a new verification link is on its way").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(mails(&app).len(), 1, "no new link for a lead with a tenant");
    first.close().await.unwrap();
    second.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spent_link_is_replaced_by_a_new_one_from_the_page() {
    let test = "a_spent_link_is_replaced_by_a_new_one_from_the_page";
    let Some(driver) = Driver::start(test).await else {
        return;
    };
    let app = TestApp::spawn_with(Db::Sqlite, &[]).await;
    let (status, _) = app
        .post(
            "/leads",
            None,
            &json!({"firstName": "Bo", "lastName": "Brown", "email": "bo@brown.io",
                    "companyName": "Brown"}),
        )
        .await;
    assert_eq!(status, 200);
    let link = links_in_mails(&app, 1).await.remove(0);
    // Spent elsewhere (verified, then the lead token was lost: no tenant yet).
    let profile = tempfile::tempdir().unwrap();
    let browser = driver.browser(&profile).await;
    browser.goto(&link).await.unwrap();
    wait_shown(&browser, "verify").await;
    browser
        .execute("sessionStorage.clear()", vec![])
        .await
        .unwrap();
    let (lead, code) = {
        let url = url::Url::parse(&link).unwrap();
        let q: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
        (q["leadId"].clone(), q["code"].clone())
    };
    let (status, _) = app
        .request(
            Method::POST,
            &format!("/leads/{lead}/verify"),
            Some(&code),
            None,
        )
        .await;
    assert_eq!(status, 200);

    // The page says the link is spent and mails a new one on request.
    browser.goto(&link).await.unwrap();
    browser
        .find(Locator::Id("verify-button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    status_saying(&browser, "This link has been used or has expired.").await;
    browser
        .find(Locator::Id("email"))
        .await
        .unwrap()
        .send_keys("bo@brown.io")
        .await
        .unwrap();
    browser
        .find(Locator::Id("resend-button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    status_saying(&browser, "a new verification link is on its way").await;

    // The new link works end to end.
    let links = links_in_mails(&app, 2).await;
    assert_eq!(links.len(), 2, "{links:?}");
    let fresh = links.into_iter().find(|l| *l != link).expect("a new link");
    browser.goto(&fresh).await.unwrap();
    browser
        .find(Locator::Id("verify-button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    status_saying(&browser, "Your email address is verified.").await;
    wait_shown(&browser, "onboard").await;
    browser.close().await.unwrap();
}

/// A filter as a query parameter value.
fn rest_filter(filter: &Value) -> String {
    url::form_urlencoded::byte_serialize(filter.to_string().as_bytes()).collect()
}
