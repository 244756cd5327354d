//! Where mail goes: an SMTP server (`SMTP_URL`) or, in the embedded mode, `.eml` files in
//! `<TMS_DATA_DIR>/outbox/` with the recipient, subject and links logged.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, anyhow};
use chrono::Utc;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use percent_encoding::percent_decode_str;
use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;

use super::MailPayload;

/// How long one SMTP connection attempt or command may take.
const SMTP_TIMEOUT: Duration = Duration::from_secs(30);

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// `smtps://`: TLS from the first byte (default port 465).
    Implicit,
    /// `smtp://` (default): STARTTLS, and the server must offer it (default port 587).
    Required,
    /// `smtp://…?tls=opportunistic`: STARTTLS when the server offers it, else plain text.
    Opportunistic,
    /// `smtp://…?tls=none`: plain text (local sinks such as MailHog or Mailpit; default port 25).
    None,
}

/// `SMTP_URL`, parsed: `smtp[s]://[user[:password]@]host[:port][?tls=required|opportunistic|none]`,
/// user and password percent-encoded.
#[derive(Clone)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    pub credentials: Option<(String, SecretString)>,
}

impl fmt::Debug for SmtpSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpSettings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("user", &self.credentials.as_ref().map(|(user, _)| user))
            .finish_non_exhaustive()
    }
}

impl SmtpSettings {
    /// Parses an SMTP URL. Errors never repeat the URL (it may hold a password).
    pub fn parse(raw: &str) -> Result<Self, String> {
        let url = url::Url::parse(raw).map_err(|e| format!("not a valid URL ({e})"))?;
        let implicit = match url.scheme() {
            "smtps" => true,
            "smtp" => false,
            other => return Err(format!("expected smtp:// or smtps://, got {other}://")),
        };
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or("names no host")?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        if !url.path().is_empty() && url.path() != "/" {
            return Err("must not have a path".into());
        }
        let mut tls = if implicit {
            SmtpTls::Implicit
        } else {
            SmtpTls::Required
        };
        for (key, value) in url.query_pairs() {
            match (key.as_ref(), value.as_ref(), implicit) {
                ("tls", _, true) => {
                    return Err("the tls parameter is for smtp:// (smtps:// is always TLS)".into());
                }
                ("tls", "required" | "starttls", false) => tls = SmtpTls::Required,
                ("tls", "opportunistic", false) => tls = SmtpTls::Opportunistic,
                ("tls", "none", false) => tls = SmtpTls::None,
                ("tls", other, false) => {
                    return Err(format!(
                        "tls must be required, opportunistic or none, got {other:?}"
                    ));
                }
                (other, _, _) => return Err(format!("unknown parameter {other:?}")),
            }
        }
        let port = url.port().unwrap_or(match tls {
            SmtpTls::Implicit => 465,
            SmtpTls::Required | SmtpTls::Opportunistic => 587,
            SmtpTls::None => 25,
        });
        let decode = |s: &str, what: &str| {
            percent_decode_str(s)
                .decode_utf8()
                .map(|s| s.into_owned())
                .map_err(|_| format!("the {what} is not valid UTF-8 once percent-decoded"))
        };
        let credentials = if url.username().is_empty() {
            None
        } else {
            let user = decode(url.username(), "user name")?;
            let password = decode(url.password().unwrap_or(""), "password")?;
            Some((user, SecretString::from(password)))
        };
        Ok(Self {
            host,
            port,
            tls,
            credentials,
        })
    }

    /// The transport for these settings (one connection per message, opened when sending).
    pub fn transport(&self) -> anyhow::Result<AsyncSmtpTransport<Tokio1Executor>> {
        let tls_parameters = || {
            TlsParameters::new(self.host.clone())
                .with_context(|| format!("cannot set up TLS for {}", self.host))
        };
        let tls = match self.tls {
            SmtpTls::Implicit => Tls::Wrapper(tls_parameters()?),
            SmtpTls::Required => Tls::Required(tls_parameters()?),
            SmtpTls::Opportunistic => Tls::Opportunistic(tls_parameters()?),
            SmtpTls::None => Tls::None,
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&self.host)
            .port(self.port)
            .tls(tls)
            .timeout(Some(SMTP_TIMEOUT));
        if let Some((user, password)) = &self.credentials {
            builder = builder.credentials(Credentials::new(
                user.clone(),
                password.expose_secret().to_string(),
            ));
        }
        Ok(builder.build())
    }

    /// `host:port (tls)`, for logs: no credentials.
    pub fn describe(&self) -> String {
        let tls = match self.tls {
            SmtpTls::Implicit => "implicit TLS",
            SmtpTls::Required => "STARTTLS",
            SmtpTls::Opportunistic => "opportunistic STARTTLS",
            SmtpTls::None => "no TLS",
        };
        format!("{}:{} ({tls})", self.host, self.port)
    }
}

/// Where [`crate::mail::Mailer`] hands finished messages.
#[derive(Clone)]
pub enum Transport {
    Smtp {
        transport: AsyncSmtpTransport<Tokio1Executor>,
        server: String,
    },
    /// One `.eml` file per message in this directory (created when first needed). The log line
    /// of each names the recipient, subject and file; with `log_links` (development only) it
    /// also shows the links in the message, whose keys are secrets.
    Files { dir: PathBuf, log_links: bool },
}

impl Transport {
    /// Whether messages may carry non-ASCII text unencoded: a file may; an SMTP server may not
    /// announce 8BITMIME, and lettre refuses to send such a message to it.
    pub fn carries_eight_bit(&self) -> bool {
        matches!(self, Self::Files { .. })
    }

    /// Hands `message` (outbox row `id`, built from `mail`) over for delivery.
    pub async fn send(&self, id: Uuid, message: Message, mail: &MailPayload) -> anyhow::Result<()> {
        match self {
            Self::Smtp { transport, server } => {
                crate::telemetry::client_span("smtp send", server, transport.send(message))
                    .await
                    .with_context(|| format!("SMTP delivery to {server} failed"))?;
                Ok(())
            }
            Self::Files { dir, log_links } => {
                let name = format!("{}-{id}.eml", Utc::now().format("%Y%m%dT%H%M%S%.3fZ"));
                let path = dir.join(name);
                let bytes = message.formatted();
                let (dir, target) = (dir.clone(), path.clone());
                tokio::task::spawn_blocking(move || write_new_file(&dir, &target, &bytes))
                    .await
                    .map_err(|e| anyhow!("writing the mail file was interrupted: {e}"))??;
                if *log_links {
                    let links = find_urls(&mail.text).join(" ");
                    tracing::info!(
                        to = %mail.to,
                        subject = %mail.subject,
                        links = %links,
                        file = %path.display(),
                        "mail written to the outbox directory (no SMTP_URL set)"
                    );
                } else {
                    tracing::info!(
                        to = %mail.to,
                        subject = %mail.subject,
                        file = %path.display(),
                        "mail written to the outbox directory (no SMTP_URL set; links are \
                         logged only with TMS_ENV=dev)"
                    );
                }
                Ok(())
            }
        }
    }
}

/// Writes `bytes` to `path` through a temporary file and a rename, so a reader never sees a
/// partial message. The message holds links with keys: the file is owner-only (0600), and so is
/// the directory (0700) when it is created here.
fn write_new_file(dir: &Path, path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    crate::files::create_dir(dir)
        .with_context(|| format!("cannot create the mail directory {}", dir.display()))?;
    let tmp = path.with_extension("eml.tmp");
    let mut file = crate::files::open_options()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    crate::files::tighten(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
    file.write_all(bytes)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    drop(file);
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// The `http://` and `https://` URLs in `text`, in order (trailing punctuation left out).
pub fn find_urls(text: &str) -> Vec<&str> {
    let mut urls = Vec::new();
    let mut rest = text;
    while let Some(start) = ["http://", "https://"]
        .iter()
        .filter_map(|scheme| rest.find(scheme))
        .min()
    {
        let tail = &rest[start..];
        let end = tail
            .find(|c: char| c.is_whitespace() || matches!(c, '<' | '>' | '"' | '\'' | '`'))
            .unwrap_or(tail.len());
        let url = tail[..end].trim_end_matches(['.', ',', ';', ':', '!', '?', ')', ']']);
        if url.len() > "https://".len() {
            urls.push(url);
        }
        rest = &tail[end.max(1)..];
    }
    urls
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str) -> SmtpSettings {
        SmtpSettings::parse(raw).unwrap_or_else(|e| panic!("{raw}: {e}"))
    }

    #[test]
    fn smtp_means_starttls_required_and_smtps_implicit_tls() {
        let s = parse("smtp://mail.example.com");
        assert_eq!(
            (s.host.as_str(), s.port, s.tls),
            ("mail.example.com", 587, SmtpTls::Required)
        );
        assert!(s.credentials.is_none());
        let s = parse("smtps://mail.example.com");
        assert_eq!((s.port, s.tls), (465, SmtpTls::Implicit));
        let s = parse("smtps://mail.example.com:2465");
        assert_eq!((s.port, s.tls), (2465, SmtpTls::Implicit));
        let s = parse("smtp://mail.example.com:2525?tls=required");
        assert_eq!((s.port, s.tls), (2525, SmtpTls::Required));
    }

    #[test]
    fn tls_can_be_opportunistic_or_off_for_local_sinks() {
        let s = parse("smtp://localhost:1025?tls=none");
        assert_eq!(
            (s.host.as_str(), s.port, s.tls),
            ("localhost", 1025, SmtpTls::None)
        );
        assert_eq!(parse("smtp://localhost?tls=none").port, 25);
        assert_eq!(
            parse("smtp://relay?tls=opportunistic").tls,
            SmtpTls::Opportunistic
        );
        assert_eq!(parse("smtp://[::1]:1025?tls=none").host, "::1");
    }

    #[test]
    fn credentials_come_from_the_user_info_percent_decoded() {
        let s = parse("smtp://me%40example.com:p%40ss%3Aw%2Ford@mail.example.com:587");
        let (user, password) = s.credentials.as_ref().unwrap();
        assert_eq!(user, "me@example.com");
        assert_eq!(password.expose_secret(), "p@ss:w/ord");
        let printed = format!("{s:?} {}", s.describe());
        assert!(
            !printed.contains("p@ss") && !printed.contains("p%40ss"),
            "{printed}"
        );
        let s = parse("smtp://apikey@mail.example.com");
        assert_eq!(s.credentials.as_ref().unwrap().0, "apikey");
        assert_eq!(s.credentials.as_ref().unwrap().1.expose_secret(), "");
    }

    #[test]
    fn bad_urls_are_refused_without_echoing_the_password() {
        for raw in [
            "http://u:hunter2@mail.example.com",
            "smtp://u:hunter2@mail.example.com?tls=maybe",
            "smtps://u:hunter2@mail.example.com?tls=none",
            "smtp://u:hunter2@mail.example.com?timeout=5",
            "smtp://u:hunter2@mail.example.com/path",
            "smtp://u:hunter2@mail.example.com:99999",
            "smtp://",
            "not a url",
        ] {
            let err = SmtpSettings::parse(raw).expect_err(raw);
            assert!(!err.contains("hunter2"), "{raw}: {err}");
        }
    }

    #[test]
    fn transports_build_for_every_tls_mode() {
        for raw in [
            "smtp://u:p@mail.example.com",
            "smtps://mail.example.com",
            "smtp://mail.example.com?tls=opportunistic",
            "smtp://127.0.0.1:1025?tls=none",
        ] {
            parse(raw).transport().unwrap();
        }
    }

    #[test]
    fn urls_are_found_in_text() {
        let text = "Open https://app.example.com/verify?code=ab12&x=1. Or (http://x.test/a), \
                    not ftp://nope or https:// alone.\n<https://last.example.com/>";
        assert_eq!(
            find_urls(text),
            [
                "https://app.example.com/verify?code=ab12&x=1",
                "http://x.test/a",
                "https://last.example.com/"
            ]
        );
        assert!(find_urls("no links here").is_empty());
    }
}
