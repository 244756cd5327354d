//! What only the operator decides about identity providers (`docs/identity.md`, "Who sets
//! what"): the plan tiers with their isolation (`SILO_TIERS`, `POOLED_TIERS`), from which realm
//! and organisation names derive, and the hosts a tenant's own identity provider may be on
//! (`IDP_ALLOWED_HOSTS`).

use std::fmt;

use super::{ConfigError, Vars, problem};

/// The realm Keycloak keeps its administrators in: never a tenant's.
pub const ADMIN_REALM: &str = "master";

/// Whether a tenant gets infrastructure of its own or shares its tier's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    Silo,
    Pooled,
}

impl Isolation {
    /// Its name in events and records.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Silo => "silo",
            Self::Pooled => "pooled",
        }
    }
}

/// The plan tiers a tenant may be provisioned on, each silo or pooled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tiers {
    silo: Vec<String>,
    pooled: Vec<String>,
}

/// The realm or organisation name of a tier: lower case, letters, digits, `-` and `_`, anything
/// else as `-`.
pub fn realm_of_tier(tier: &str) -> String {
    tier.trim()
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

impl Tiers {
    pub(super) fn from_vars(v: &Vars<'_>) -> Result<Self, ConfigError> {
        let list = |name: &str, default: &str| -> Vec<String> {
            v.string(name, default)
                .split(',')
                .map(|t| t.trim().to_ascii_uppercase())
                .filter(|t| !t.is_empty())
                .collect()
        };
        let tiers = Self {
            silo: list("SILO_TIERS", "PREMIUM"),
            pooled: list("POOLED_TIERS", "STANDARD,BASIC"),
        };
        if let Some(both) = tiers.silo.iter().find(|t| tiers.pooled.contains(t)) {
            return Err(problem(
                "POOLED_TIERS",
                format!("{both} is in SILO_TIERS too: a tier is either silo or pooled"),
            ));
        }
        let mut realms: Vec<(String, &str)> = Vec::new();
        for (name, tier) in tiers.all() {
            let realm = realm_of_tier(tier);
            if realm.is_empty() || realm == ADMIN_REALM {
                return Err(problem(
                    name,
                    format!("{tier}: a tier cannot be named after Keycloak's {ADMIN_REALM} realm"),
                ));
            }
            if let Some((_, other)) = realms.iter().find(|(r, _)| *r == realm) {
                return Err(problem(
                    name,
                    format!("{tier} and {other} would share the realm {realm:?}"),
                ));
            }
            realms.push((realm, tier));
        }
        Ok(tiers)
    }

    fn all(&self) -> impl Iterator<Item = (&'static str, &str)> {
        let silo = self.silo.iter().map(|t| ("SILO_TIERS", t.as_str()));
        silo.chain(self.pooled.iter().map(|t| ("POOLED_TIERS", t.as_str())))
    }

    /// The isolation of `tier` (any case), or `None` for a tier not configured.
    pub fn isolation(&self, tier: &str) -> Option<Isolation> {
        let tier = tier.trim();
        let is = |list: &[String]| list.iter().any(|t| t.eq_ignore_ascii_case(tier));
        if is(&self.silo) {
            Some(Isolation::Silo)
        } else if is(&self.pooled) {
            Some(Isolation::Pooled)
        } else {
            None
        }
    }

    /// Every configured tier, silo ones first.
    pub fn names(&self) -> Vec<&str> {
        self.all().map(|(_, t)| t).collect()
    }

    /// The realm (or organisation) every tenant of `tier` shares, when the tier is pooled.
    pub fn shared_realm(&self, tier: &str) -> Option<String> {
        (self.isolation(tier) == Some(Isolation::Pooled)).then(|| realm_of_tier(tier))
    }

    /// Whether `name` is a realm no silo tenant may have as its own: Keycloak's admin realm or
    /// the shared realm of a pooled tier.
    pub fn is_reserved_realm(&self, name: &str) -> bool {
        name.eq_ignore_ascii_case(ADMIN_REALM)
            || self
                .pooled
                .iter()
                .any(|t| realm_of_tier(t).eq_ignore_ascii_case(name))
    }

    pub(super) fn lines(&self) -> [(&'static str, String); 2] {
        [
            ("SILO_TIERS", self.silo.join(",")),
            ("POOLED_TIERS", self.pooled.join(",")),
        ]
    }
}

/// The hosts (and ports) a tenant's own identity provider may be on: `IDP_ALLOWED_HOSTS`, a
/// comma-separated list of `host`, `host:port`, `*.domain` or `*.domain:port`. A URL is allowed
/// when its host matches an entry (a `*.` entry matches every subdomain, not the domain itself)
/// and its port is the entry's — or, for an entry without one, the scheme's default port.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedHosts(Vec<HostPattern>);

#[derive(Debug, Clone, PartialEq, Eq)]
struct HostPattern {
    /// Lower case, without the `*.` of a wildcard.
    host: String,
    subdomains: bool,
    port: Option<u16>,
}

impl AllowedHosts {
    pub fn parse(raw: &str) -> Result<Self, String> {
        raw.split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(|entry| {
                let bad = || format!("expected host, host:port or *.domain, got {entry:?}");
                let (subdomains, rest) = match entry.strip_prefix("*.") {
                    Some(rest) => (true, rest),
                    None => (false, entry),
                };
                // Parsed as a URL's authority so that what is allowed is what a URL names.
                let url = url::Url::parse(&format!("https://{rest}/")).map_err(|_| bad())?;
                let host = url.host_str().ok_or_else(bad)?.to_ascii_lowercase();
                // `Url` drops a port that is the scheme's default: keep what the entry says.
                let explicit = rest
                    .rsplit_once(':')
                    .and_then(|(_, p)| p.parse::<u16>().ok());
                let port = url.port().or(explicit);
                let bare = url.username().is_empty() && url.path() == "/" && url.query().is_none();
                if !bare || host.contains('*') {
                    return Err(bad());
                }
                Ok(HostPattern {
                    host,
                    subdomains,
                    port,
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `url`'s host and port are allowed.
    pub fn allows(&self, url: &url::Url) -> bool {
        let Some(host) = url.host_str().map(str::to_ascii_lowercase) else {
            return false;
        };
        let port = url.port_or_known_default();
        self.0.iter().any(|p| {
            let host_matches = if p.subdomains {
                host.strip_suffix(&p.host)
                    .is_some_and(|sub| sub.len() > 1 && sub.ends_with('.'))
            } else {
                host == p.host
            };
            let wanted = p.port.or_else(|| match url.scheme() {
                "https" => Some(443),
                "http" => Some(80),
                _ => None,
            });
            host_matches && port.is_some() && port == wanted
        })
    }
}

impl fmt::Display for AllowedHosts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let entries: Vec<String> = self
            .0
            .iter()
            .map(|p| {
                let wild = if p.subdomains { "*." } else { "" };
                match p.port {
                    Some(port) => format!("{wild}{}:{port}", p.host),
                    None => format!("{wild}{}", p.host),
                }
            })
            .collect();
        f.write_str(&entries.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> url::Url {
        url::Url::parse(s).unwrap()
    }

    #[test]
    fn allowed_hosts_match_host_and_port_exactly() {
        let allowed =
            AllowedHosts::parse("sso.example.com, 127.0.0.1:8080, *.idp.example.org").unwrap();
        for ok in [
            "https://sso.example.com/auth",
            "https://SSO.example.com:443",
            "http://sso.example.com/",
            "http://127.0.0.1:8080/realms",
            "https://acme.idp.example.org",
            "https://a.b.idp.example.org/x",
        ] {
            assert!(allowed.allows(&url(ok)), "{ok}");
        }
        for refused in [
            "https://sso.example.com:8443/",
            "https://evil.com/sso.example.com",
            "https://sso.example.com.evil.com/",
            "http://127.0.0.1/",
            "http://127.0.0.1:8081/",
            "http://169.254.169.254/latest/meta-data",
            "https://idp.example.org/",
            "https://evilidp.example.org/",
            "http://[::1]:8080/",
        ] {
            assert!(!allowed.allows(&url(refused)), "{refused}");
        }
        assert!(!AllowedHosts::default().allows(&url("https://sso.example.com")));
        assert_eq!(
            allowed.to_string(),
            "sso.example.com,127.0.0.1:8080,*.idp.example.org"
        );
        for bad in ["user@host", "https://x/y", "*.*.x", "a b", "host:99999"] {
            assert!(AllowedHosts::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tiers_map_to_isolation_and_realms() {
        let tiers = Tiers {
            silo: vec!["PREMIUM".into()],
            pooled: vec!["STANDARD".into(), "GOLD PLAN".into()],
        };
        assert_eq!(tiers.isolation("premium"), Some(Isolation::Silo));
        assert_eq!(tiers.isolation(" Standard "), Some(Isolation::Pooled));
        assert_eq!(tiers.isolation("master"), None);
        assert_eq!(
            tiers.shared_realm("gold plan").as_deref(),
            Some("gold-plan")
        );
        assert_eq!(tiers.shared_realm("PREMIUM"), None);
        assert!(tiers.is_reserved_realm("Master"));
        assert!(tiers.is_reserved_realm("standard"));
        assert!(
            !tiers.is_reserved_realm("premium"),
            "silo tiers have no realm"
        );
        assert_eq!(realm_of_tier(" Gold plan/eu "), "gold-plan-eu");
    }
}
