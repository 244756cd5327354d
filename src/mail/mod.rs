//! Mail (`docs/mail.md`): [`Mailer::queue`] renders a template and writes the finished message
//! to the transactional outbox (topic [`TOPIC`]) in the caller's transaction; the outbox relay
//! hands it back to the [`Mailer`] (it implements [`Deliver`]), which sends it as a
//! multipart/alternative message over SMTP or, in the embedded mode, writes it as an `.eml` file.

pub mod render;
pub mod transport;

use std::sync::Arc;

use anyhow::{Context, anyhow};
use lettre::Message;
use lettre::message::header::ContentTransferEncoding;
use lettre::message::{Body, Mailbox, MultiPart, SinglePart};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::config::Config;
use crate::events::{self, Deliver};
use crate::store::Conn;
pub use render::{Rendered, Template, Templates};
pub use transport::{SmtpSettings, SmtpTls, Transport};

/// The outbox topic of mail.
pub const TOPIC: &str = "mail";

/// The outbox payload of a mail: the finished message, rendered at queue time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailPayload {
    pub to: String,
    pub from: String,
    pub subject: String,
    pub html: String,
    pub text: String,
}

/// Renders, queues and delivers the service's mail. Cheap to clone.
#[derive(Clone)]
pub struct Mailer {
    inner: Arc<Inner>,
}

struct Inner {
    templates: Templates,
    from: Mailbox,
    app_name: String,
    transport: Transport,
}

impl Mailer {
    /// The mailer of `config`: templates (built-in, overridden from `MAIL_TEMPLATE_DIR`, each
    /// checked), sender `APP_NAME <FROM_EMAIL>`, and the transport: SMTP when `SMTP_URL` is set,
    /// else `.eml` files in `<TMS_DATA_DIR>/outbox/`. Errors name the variable or file at fault.
    pub fn from_config(config: &Config) -> anyhow::Result<Self> {
        let templates = Templates::load(config.mail_template_dir.as_deref())?;
        let address = config.from_email.parse().map_err(|e| {
            anyhow!(
                "invalid configuration: FROM_EMAIL: {:?} is not an email address ({e})",
                config.from_email
            )
        })?;
        let from = Mailbox::new(Some(config.app_name.clone()), address);
        let transport = match &config.smtp_url {
            Some(url) => {
                let settings = SmtpSettings::parse(url.expose_secret())
                    .map_err(|e| anyhow!("invalid configuration: SMTP_URL: {e}"))?;
                Transport::Smtp {
                    transport: settings
                        .transport()
                        .context("invalid configuration: SMTP_URL")?,
                    server: settings.describe(),
                }
            }
            None => Transport::Files {
                dir: crate::files::outbox_dir(&config.data_dir),
                // The verification link carries the lead's key: only a developer's own log
                // may show it.
                log_links: config.env == crate::config::Environment::Dev,
            },
        };
        Ok(Self::new(
            templates,
            from,
            config.app_name.clone(),
            transport,
        ))
    }

    /// A mailer from its parts.
    pub fn new(
        templates: Templates,
        from: Mailbox,
        app_name: String,
        transport: Transport,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                templates,
                from,
                app_name,
                transport,
            }),
        }
    }

    /// Where messages go, for the start-up log: the SMTP server (no credentials) or the
    /// directory of `.eml` files.
    pub fn describe_transport(&self) -> String {
        match &self.inner.transport {
            Transport::Smtp { server, .. } => format!("smtp {server}"),
            Transport::Files { dir, .. } => format!("files in {}", dir.display()),
        }
    }

    /// Renders `template` with `vars` (a JSON object; `appName` defaults to `APP_NAME`) and
    /// queues the message to `to` on the outbox through `conn` — inside the caller's
    /// transaction it is sent only if that commits. Returns the outbox id (also the message's
    /// `Message-ID`). A recipient that is not an address, or variables the template cannot be
    /// rendered with, are caller errors reported as `sqlx::Error::Encode`, nothing queued.
    pub async fn queue(
        &self,
        conn: &mut Conn<'_>,
        to: &str,
        template: Template,
        vars: Value,
    ) -> Result<Uuid, sqlx::Error> {
        let payload = self.prepare(to, template, vars).map_err(|e| {
            sqlx::Error::Encode(format!("cannot queue mail {}: {e:#}", template.name()).into())
        })?;
        let mut payload =
            serde_json::to_value(&payload).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
        // With traces on, its delivery joins the trace of what queued it.
        if let Some(fields) = payload.as_object_mut() {
            crate::telemetry::stamp_message(fields);
        }
        events::enqueue(conn, TOPIC, None, &payload).await
    }

    /// The outbox payload of `template` for `to`, rendered with `vars`.
    pub fn prepare(
        &self,
        to: &str,
        template: Template,
        mut vars: Value,
    ) -> anyhow::Result<MailPayload> {
        let to: Mailbox = to
            .parse()
            .map_err(|e| anyhow!("{to:?} is not an email address ({e})"))?;
        let object = vars
            .as_object_mut()
            .ok_or_else(|| anyhow!("template variables must be a JSON object"))?;
        object
            .entry("appName")
            .or_insert_with(|| Value::from(self.inner.app_name.clone()));
        let Rendered {
            subject,
            html,
            text,
        } = self.inner.templates.render(template, &vars)?;
        Ok(MailPayload {
            to: to.to_string(),
            from: self.inner.from.to_string(),
            subject,
            html,
            text,
        })
    }
}

/// The message of outbox row `id`: From, To, Subject, a `Message-ID` made of the row id (so a
/// redelivery is recognisable as the same message), and text + HTML as multipart/alternative.
/// `eight_bit`: the message may carry non-ASCII text unencoded (a file may; an SMTP server
/// without 8BITMIME may not), see [`text_part`].
pub fn build_message(id: Uuid, mail: &MailPayload, eight_bit: bool) -> anyhow::Result<Message> {
    let from: Mailbox = mail
        .from
        .parse()
        .with_context(|| format!("bad sender {:?}", mail.from))?;
    let to: Mailbox = mail
        .to
        .parse()
        .with_context(|| format!("bad recipient {:?}", mail.to))?;
    let message_id = format!("<{id}@{}>", from.email.domain());
    Message::builder()
        .from(from)
        .to(to)
        .subject(mail.subject.clone())
        .message_id(Some(message_id))
        .multipart(
            MultiPart::alternative()
                .singlepart(text_part(&mail.text, eight_bit))
                .singlepart(SinglePart::html(mail.html.clone())),
        )
        .context("cannot build the message")
}

/// The longest line a message may carry, CRLF excluded (RFC 5322, 2.1.1).
const MAX_LINE: usize = 998;

/// The plain-text part with its lines as written — 7bit when ASCII, 8bit for other text when
/// `eight_bit` — whenever every line fits [`MAX_LINE`], so a link reads and copies whole from
/// the raw message (an `.eml` file opened as text). Quoted-printable would break a link longer
/// than 76 characters over lines and write its `=` as `=3D`. Otherwise lettre chooses
/// (quoted-printable or base64), which every mail client decodes.
fn text_part(text: &str, eight_bit: bool) -> SinglePart {
    // Line breaks as lettre makes them: CRLF, LF and a bare CR all end a line.
    let text = text.replace("\r\n", "\n").replace('\r', "\n");
    let literal = text.lines().all(|line| line.len() <= MAX_LINE) && (eight_bit || text.is_ascii());
    if !literal {
        return SinglePart::plain(text);
    }
    let encoding = if text.is_ascii() {
        ContentTransferEncoding::SevenBit
    } else {
        ContentTransferEncoding::EightBit
    };
    let body = Body::dangerous_pre_encoded(text.replace('\n', "\r\n").into_bytes(), encoding);
    SinglePart::plain(body)
}

impl Deliver for Mailer {
    async fn deliver(&self, id: Uuid, payload: &Value) -> anyhow::Result<()> {
        let mail = MailPayload::deserialize(payload).context("malformed mail payload")?;
        let message = build_message(id, &mail, self.inner.transport.carries_eight_bit())?;
        self.inner.transport.send(id, message, &mail).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config(pairs: &[(&str, &str)]) -> Config {
        Config::from_map(
            &pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
        .unwrap()
    }

    fn lead_vars() -> Value {
        json!({
            "firstName": "Ada", "lastName": "Lovelace", "companyName": "Engines",
            "email": "ada@example.com", "link": "https://app.example.com/verify?code=abc",
            "expiresInMinutes": 60,
        })
    }

    #[test]
    fn payload_is_rendered_with_the_app_name_as_sender() {
        let mailer = Mailer::from_config(&config(&[
            ("APP_NAME", "Acme Cloud"),
            ("FROM_EMAIL", "hello@acme.test"),
        ]))
        .unwrap();
        let p = mailer
            .prepare("ada@example.com", Template::ValidateLead, lead_vars())
            .unwrap();
        assert_eq!(p.from, "Acme Cloud <hello@acme.test>");
        assert_eq!(p.to, "ada@example.com");
        assert_eq!(p.subject, "Confirm your email address for Acme Cloud");
        assert!(p.text.contains("https://app.example.com/verify?code=abc"));
        assert!(mailer.describe_transport().starts_with("files in "));
    }

    #[test]
    fn bad_recipients_and_variables_are_refused_at_queue_time() {
        let mailer = Mailer::from_config(&config(&[])).unwrap();
        assert!(
            mailer
                .prepare("not an address", Template::ValidateLead, lead_vars())
                .is_err()
        );
        assert!(
            mailer
                .prepare("a@example.com", Template::ValidateLead, json!(["x"]))
                .is_err()
        );
        assert!(
            mailer
                .prepare("a@example.com", Template::TenantWelcome, lead_vars())
                .is_err()
        );
    }

    #[test]
    fn configuration_errors_name_the_variable() {
        let err = Mailer::from_config(&config(&[("FROM_EMAIL", "nobody")]))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("FROM_EMAIL"), "{err}");
        let err = Mailer::from_config(&config(&[("SMTP_URL", "smtp://u:hunter2@mail?tls=bad")]))
            .err()
            .unwrap();
        let err = format!("{err:#}");
        assert!(
            err.contains("SMTP_URL") && !err.contains("hunter2"),
            "{err}"
        );
        let mailer =
            Mailer::from_config(&config(&[("SMTP_URL", "smtp://u:hunter2@mail:2525")])).unwrap();
        assert_eq!(mailer.describe_transport(), "smtp mail:2525 (STARTTLS)");
    }

    #[test]
    fn smtp_host_variables_with_special_characters_make_a_usable_url() {
        let c = config(&[
            ("SMTP_HOST", "mail.example.com"),
            ("SMTP_PORT", "2525"),
            ("SMTP_USER", "me@example.com"),
            ("SMTP_PASSWORD", "p@ss/w:rd"),
        ]);
        let settings = SmtpSettings::parse(c.smtp_url.as_ref().unwrap().expose_secret()).unwrap();
        assert_eq!(
            (settings.host.as_str(), settings.port),
            ("mail.example.com", 2525)
        );
        let (user, password) = settings.credentials.unwrap();
        assert_eq!(user, "me@example.com");
        assert_eq!(password.expose_secret(), "p@ss/w:rd");
        assert!(!format!("{c:?}").contains("p%40ss"));
    }

    #[test]
    fn the_message_is_multipart_alternative_with_a_stable_message_id() {
        let id = Uuid::new_v4();
        let mail = MailPayload {
            to: "Ada <ada@example.com>".into(),
            from: "\"Acme Cloud\" <hello@acme.test>".into(),
            subject: "Grüße".into(),
            html: "<p>Hi</p>".into(),
            text: "Hi".into(),
        };
        let formatted =
            String::from_utf8(build_message(id, &mail, false).unwrap().formatted()).unwrap();
        assert!(
            formatted.contains(&format!("Message-ID: <{id}@acme.test>")),
            "{formatted}"
        );
        assert!(formatted.contains("multipart/alternative"), "{formatted}");
        assert!(formatted.contains("text/plain"), "{formatted}");
        assert!(formatted.contains("text/html"), "{formatted}");
        assert!(formatted.contains("\r\nDate: "), "{formatted}");
    }

    /// The headers and the raw (encoded) body of the text part of `text`.
    fn raw_text_part(text: &str, eight_bit: bool) -> (String, String) {
        let part = String::from_utf8(text_part(text, eight_bit).formatted()).unwrap();
        let (head, body) = part.split_once("\r\n\r\n").unwrap();
        (head.to_string(), body.to_string())
    }

    #[test]
    fn the_text_part_carries_a_long_link_on_one_line() {
        let link = "http://localhost:3005/verify?code=0123456789abcdef0123456789abcdef0123\
                    &leadId=5b0e3c1d-6f0a-4a57-9a39-3c3f1f0e2b77";
        assert!(link.len() > 76, "longer than a quoted-printable line");
        let text = format!(
            "Hello Ada,\n\nplease confirm by opening this link, which works once and expires \
             in 60 minutes:\n\n{link}\n\ntms\n"
        );
        for eight_bit in [false, true] {
            let (head, body) = raw_text_part(&text, eight_bit);
            assert!(head.contains("Content-Transfer-Encoding: 7bit"), "{head}");
            assert!(body.split("\r\n").any(|line| line == link), "{body}");
            assert!(!body.contains("=3D"), "{body}");
            assert!(
                !body.replace("\r\n", "").contains('\n'),
                "CRLF only: {body:?}"
            );
        }
    }

    #[test]
    fn other_text_is_literal_only_where_it_may_be() {
        let link = "https://app.example.com/verify?code=abc&leadId=def";
        let text = format!("Hallo Zoë,\n{link}\n");
        // A file carries 8-bit text as it is.
        let (head, body) = raw_text_part(&text, true);
        assert!(head.contains("Content-Transfer-Encoding: 8bit"), "{head}");
        assert!(body.split("\r\n").any(|line| line == link), "{body}");
        // SMTP may lack 8BITMIME: lettre's encoding.
        let (head, _) = raw_text_part(&text, false);
        assert!(
            head.contains("quoted-printable") || head.contains("base64"),
            "{head}"
        );
        // A line longer than a message may carry is encoded too.
        let (head, _) = raw_text_part(&"x".repeat(MAX_LINE + 1), true);
        assert!(head.contains("quoted-printable"), "{head}");
        // Every line break is CRLF.
        let (_, body) = raw_text_part("a\rb\nc\r\nd", true);
        assert_eq!(body, "a\r\nb\r\nc\r\nd\r\n");
    }
}
