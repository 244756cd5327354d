//! Mail templates: the built-in parts (`src/mail/templates/`), an operator's overrides from
//! `MAIL_TEMPLATE_DIR`, checked once at start-up, and rendering with minijinja (HTML parts
//! autoescaped).

use std::path::Path;

use anyhow::anyhow;
use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use serde_json::{Value, json};

/// A mail the service sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Template {
    /// To a lead: confirm the email address. Variables: appName, firstName, lastName,
    /// companyName, email, link, expiresInMinutes.
    ValidateLead,
    /// To a new tenant's primary contact: the tenant is ready. Variables: appName, firstName,
    /// lastName, tenantName, tenantKey, loginUrl.
    TenantWelcome,
    /// To a tenant's primary contact: an invoice is past its due date. Variables: sellerName,
    /// firstName, lastName, tenantName, invoiceNumber, amount (formatted), currencyCode,
    /// dueDate, periodStart, periodEnd (dates as YYYY-MM-DD).
    InvoiceOverdue,
}

impl Template {
    pub const ALL: [Template; 3] = [
        Template::ValidateLead,
        Template::TenantWelcome,
        Template::InvoiceOverdue,
    ];

    /// The template's name, the stem of its file names.
    pub fn name(self) -> &'static str {
        match self {
            Self::ValidateLead => "validate_lead",
            Self::TenantWelcome => "tenant_welcome",
            Self::InvoiceOverdue => "invoice_overdue",
        }
    }

    /// Values for every variable the template is given, used to check templates at start-up.
    fn sample_vars(self) -> Value {
        match self {
            Self::ValidateLead => json!({
                "appName": "tms",
                "firstName": "Ada",
                "lastName": "Lovelace",
                "companyName": "Analytical Engines",
                "email": "ada@example.com",
                "link": "https://example.com/verify?code=0123456789abcdef",
                "expiresInMinutes": 60,
            }),
            Self::TenantWelcome => json!({
                "appName": "tms",
                "firstName": "Ada",
                "lastName": "Lovelace",
                "tenantName": "Analytical Engines",
                "tenantKey": "engines",
                "loginUrl": "https://engines.example.com/login",
            }),
            Self::InvoiceOverdue => json!({
                "sellerName": "tms",
                "firstName": "Ada",
                "lastName": "Lovelace",
                "tenantName": "Analytical Engines",
                "invoiceNumber": "INV-000042",
                "amount": "1,234.50",
                "currencyCode": "USD",
                "dueDate": "2026-12-30",
                "periodStart": "2026-11-30",
                "periodEnd": "2026-12-29",
            }),
        }
    }
}

/// The three parts of a template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Subject,
    Html,
    Text,
}

impl Part {
    pub const ALL: [Part; 3] = [Part::Subject, Part::Html, Part::Text];

    /// The file name of this part of `template` (also its name in the environment; the `.html`
    /// suffix is what turns on HTML autoescaping).
    pub fn file_name(self, template: Template) -> String {
        let suffix = match self {
            Self::Subject => "subject.txt",
            Self::Html => "html",
            Self::Text => "txt",
        };
        format!("{}.{suffix}", template.name())
    }
}

fn builtin(template: Template, part: Part) -> &'static str {
    match (template, part) {
        (Template::ValidateLead, Part::Subject) => {
            include_str!("templates/validate_lead.subject.txt")
        }
        (Template::ValidateLead, Part::Html) => include_str!("templates/validate_lead.html"),
        (Template::ValidateLead, Part::Text) => include_str!("templates/validate_lead.txt"),
        (Template::TenantWelcome, Part::Subject) => {
            include_str!("templates/tenant_welcome.subject.txt")
        }
        (Template::TenantWelcome, Part::Html) => include_str!("templates/tenant_welcome.html"),
        (Template::TenantWelcome, Part::Text) => include_str!("templates/tenant_welcome.txt"),
        (Template::InvoiceOverdue, Part::Subject) => {
            include_str!("templates/invoice_overdue.subject.txt")
        }
        (Template::InvoiceOverdue, Part::Html) => include_str!("templates/invoice_overdue.html"),
        (Template::InvoiceOverdue, Part::Text) => include_str!("templates/invoice_overdue.txt"),
    }
}

/// A rendered mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// One line: whitespace, line breaks included, collapsed to single spaces.
    pub subject: String,
    pub html: String,
    pub text: String,
}

/// The templates in force, compiled and checked.
#[derive(Debug)]
pub struct Templates {
    env: Environment<'static>,
}

impl Templates {
    /// The built-in templates, each part replaced by `<dir>/<file name>` when that file exists.
    /// Every part is compiled and rendered with sample values; a failure (a syntax error, an
    /// unknown variable printed) is an error naming the file.
    pub fn load(dir: Option<&Path>) -> anyhow::Result<Self> {
        let mut env = Environment::new();
        // Printing an unknown variable is an error (catches typos in overrides at start-up);
        // testing one (`{% if x %}`, `x is defined`) is allowed.
        env.set_undefined_behavior(UndefinedBehavior::SemiStrict);
        env.set_auto_escape_callback(minijinja::default_auto_escape_callback);
        env.set_formatter(|out, state, value| match value.as_str() {
            Some(s) if *state.auto_escape() == AutoEscape::Html && !value.is_safe() => {
                Ok(out.write_str(&escape_html(s))?)
            }
            _ => minijinja::escape_formatter(out, state, value),
        });
        let mut origins = Vec::new();
        for template in Template::ALL {
            for part in Part::ALL {
                let name = part.file_name(template);
                let (source, origin) = match dir.map(|d| d.join(&name)) {
                    Some(path) => match std::fs::read_to_string(&path) {
                        Ok(source) => (source, path.display().to_string()),
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (
                            builtin(template, part).to_string(),
                            format!("built-in {name}"),
                        ),
                        Err(e) => {
                            return Err(anyhow!(
                                "cannot read mail template {}: {e}",
                                path.display()
                            ));
                        }
                    },
                    None => (
                        builtin(template, part).to_string(),
                        format!("built-in {name}"),
                    ),
                };
                env.add_template_owned(name, source)
                    .map_err(|e| anyhow!("mail template {origin}: {}", describe(&e)))?;
                origins.push((template, part, origin));
            }
        }
        let templates = Self { env };
        for (template, part, origin) in origins {
            templates
                .render_part(template, part, &template.sample_vars())
                .map_err(|e| anyhow!("mail template {origin}: {}", describe(&e)))?;
        }
        Ok(templates)
    }

    /// Renders the three parts of `template` with `vars` (a JSON object).
    pub fn render(&self, template: Template, vars: &Value) -> Result<Rendered, minijinja::Error> {
        let subject = self.render_part(template, Part::Subject, vars)?;
        Ok(Rendered {
            subject: subject.split_whitespace().collect::<Vec<_>>().join(" "),
            html: self.render_part(template, Part::Html, vars)?,
            text: self.render_part(template, Part::Text, vars)?,
        })
    }

    fn render_part(
        &self,
        template: Template,
        part: Part,
        vars: &Value,
    ) -> Result<String, minijinja::Error> {
        self.env
            .get_template(&part.file_name(template))?
            .render(minijinja::Value::from(minijinja::value::Serde(vars)))
    }
}

/// Escapes the characters that matter in HTML text and in quoted attribute values. Unlike
/// minijinja's default it leaves `/` alone, so links stay readable in the HTML source.
fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + s.len() / 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// A minijinja error with its line, when it has one.
fn describe(e: &minijinja::Error) -> String {
    match (e.line(), e.detail()) {
        (Some(line), Some(detail)) => format!("line {line}: {} ({detail})", e.kind()),
        (Some(line), None) => format!("line {line}: {e}"),
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lead_vars(first_name: &str) -> Value {
        json!({
            "appName": "Acme Cloud",
            "firstName": first_name,
            "lastName": "Lovelace",
            "companyName": "Engines & Co",
            "email": "ada@example.com",
            "link": "https://app.example.com/verify?code=abc123&x=1",
            "expiresInMinutes": 60,
        })
    }

    #[test]
    fn builtin_templates_render_every_variable() {
        let t = Templates::load(None).unwrap();
        let r = t.render(Template::ValidateLead, &lead_vars("Ada")).unwrap();
        assert_eq!(r.subject, "Confirm your email address for Acme Cloud");
        assert!(r.text.contains("Hello Ada Lovelace,"), "{}", r.text);
        assert!(r.text.contains("Engines & Co"), "text is not escaped");
        assert!(
            r.text
                .contains("https://app.example.com/verify?code=abc123&x=1")
        );
        assert!(r.text.contains("60 minutes"));
        assert!(r.html.contains("Engines &amp; Co"));
        assert!(
            r.html
                .contains("href=\"https://app.example.com/verify?code=abc123&amp;x=1\""),
            "{}",
            r.html
        );

        let w = t
            .render(
                Template::TenantWelcome,
                &json!({
                    "appName": "Acme Cloud", "firstName": "Ada", "lastName": "Lovelace",
                    "tenantName": "Engines", "tenantKey": "engines",
                    "loginUrl": "https://engines.example.com/login",
                }),
            )
            .unwrap();
        assert_eq!(w.subject, "Your Acme Cloud tenant Engines is ready");
        assert!(w.text.contains("https://engines.example.com/login"));
        assert!(w.text.contains("key engines"));
        assert!(w.html.contains("<code>engines</code>"));
    }

    #[test]
    fn html_part_escapes_a_hostile_first_name_and_text_keeps_it() {
        let t = Templates::load(None).unwrap();
        let hostile = "<script>alert('x')</script>\"><img src=x onerror=alert(1)>";
        let r = t
            .render(Template::ValidateLead, &lead_vars(hostile))
            .unwrap();
        assert!(!r.html.contains("<script>"), "{}", r.html);
        assert!(!r.html.contains("<img"), "{}", r.html);
        assert!(
            r.html.contains(concat!(
                "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;",
                "&quot;&gt;&lt;img src=x onerror=alert(1)&gt;"
            )),
            "{}",
            r.html
        );
        assert!(r.text.contains(hostile));
    }

    #[test]
    fn subject_is_one_line() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("validate_lead.subject.txt"),
            "Welcome\r\n  to {{ appName }}\nBcc: x@example.com\n",
        )
        .unwrap();
        let t = Templates::load(Some(dir.path())).unwrap();
        let r = t.render(Template::ValidateLead, &lead_vars("Ada")).unwrap();
        assert_eq!(r.subject, "Welcome to Acme Cloud Bcc: x@example.com");
    }

    #[test]
    fn an_override_replaces_only_its_part() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("validate_lead.txt"),
            "Hi {{ firstName }}: {{ link }}",
        )
        .unwrap();
        let t = Templates::load(Some(dir.path())).unwrap();
        let r = t.render(Template::ValidateLead, &lead_vars("Ada")).unwrap();
        assert_eq!(
            r.text,
            "Hi Ada: https://app.example.com/verify?code=abc123&x=1"
        );
        // The other parts fall back to the built-in ones.
        assert_eq!(r.subject, "Confirm your email address for Acme Cloud");
        assert!(r.html.contains("Confirm my email address"));
        let builtin = Templates::load(None).unwrap();
        assert_eq!(
            r.html,
            builtin
                .render(Template::ValidateLead, &lead_vars("Ada"))
                .unwrap()
                .html
        );
    }

    #[test]
    fn a_syntax_error_in_an_override_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tenant_welcome.html");
        std::fs::write(&path, "<p>{% if firstName %}Hello</p>").unwrap();
        let err = Templates::load(Some(dir.path())).unwrap_err().to_string();
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert!(err.contains("line 1"), "{err}");
    }

    #[test]
    fn an_unknown_variable_in_an_override_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("validate_lead.subject.txt");
        std::fs::write(&path, "Hello {{ frstName }}").unwrap();
        let err = Templates::load(Some(dir.path())).unwrap_err().to_string();
        assert!(err.contains(&path.display().to_string()), "{err}");
        // Testing for a variable is fine.
        std::fs::write(
            &path,
            "Hello{% if nickname is defined %} {{ nickname }}{% endif %}",
        )
        .unwrap();
        Templates::load(Some(dir.path())).unwrap();
    }

    #[test]
    fn missing_variables_fail_rendering_instead_of_printing_nothing() {
        let t = Templates::load(None).unwrap();
        assert!(
            t.render(Template::ValidateLead, &json!({"firstName": "Ada"}))
                .is_err()
        );
    }
}
