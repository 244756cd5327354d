//! Local stand-ins for the identity providers `POST /manage/users` talks to (docs/identity.md):
//! Keycloak's Admin REST API and Auth0's Management API v2, each a small stateful axum app on
//! 127.0.0.1:0 in the test process. They answer as the vendors do — status, `Location`, error
//! bodies — and check what the vendors check (form fields of the token request, bearer tokens,
//! content types, required and unknown properties, existing objects), so a client that gets a
//! call wrong fails here as it would against the real thing. Every request is recorded with the
//! status it was answered with, for the tests to assert the exact sequence and content; a test
//! can make a route answer what it likes (429 with `Retry-After`, 500, …) with [`Mock::fail`].
//!
//! Used next to the harness: `mod idp_mocks; use idp_mocks::*;`.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, Response, Uri};
use serde_json::{Map, Value, json};
use uuid::Uuid;

// ---------------------------------------------------------------------------------------------
// Requests, answers and the server
// ---------------------------------------------------------------------------------------------

/// One request a mock received, and the status it answered with.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    /// The raw path, as sent.
    pub path: String,
    /// The raw query string, `""` without one.
    pub query: String,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    pub status: u16,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The token of an `Authorization: Bearer …` header.
    pub fn bearer(&self) -> Option<&str> {
        self.header("authorization")?.strip_prefix("Bearer ")
    }

    /// Whether the media type of `Content-Type` is `mime` (parameters ignored).
    pub fn content_type_is(&self, mime: &str) -> bool {
        self.header("content-type")
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case(mime))
    }

    /// The body as JSON, `Value::Null` when it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// The body as form fields.
    pub fn form(&self) -> BTreeMap<String, String> {
        form_urlencoded::parse(&self.body).into_owned().collect()
    }

    /// The fields of a form or JSON body (string values only), whichever the content type says.
    pub fn params(&self) -> BTreeMap<String, String> {
        if self.content_type_is("application/json") {
            let Value::Object(fields) = self.json() else {
                return BTreeMap::new();
            };
            fields
                .into_iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k, s.to_string())))
                .collect()
        } else {
            self.form()
        }
    }

    /// The query parameters, decoded.
    pub fn query_params(&self) -> BTreeMap<String, String> {
        form_urlencoded::parse(self.query.as_bytes())
            .into_owned()
            .collect()
    }

    /// The path's segments, percent-decoded.
    pub fn segments(&self) -> Vec<String> {
        self.path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(|s| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8_lossy()
                    .into_owned()
            })
            .collect()
    }

    /// `METHOD /path STATUS`, the way tests list a sequence of calls.
    pub fn line(&self) -> String {
        format!("{} {} {}", self.method, self.path, self.status)
    }
}

/// The calls in `seen` as `METHOD /path STATUS` lines.
pub fn trail(seen: &[Seen]) -> Vec<String> {
    seen.iter().map(Seen::line).collect()
}

/// What a mock answers.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Option<Value>,
}

impl Reply {
    pub fn json(status: u16, body: Value) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Some(body),
        }
    }

    pub fn empty(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: None,
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    fn into_response(self) -> Response<Body> {
        let mut response = Response::builder().status(self.status);
        for (name, value) in &self.headers {
            response = response.header(name.as_str(), value.as_str());
        }
        match self.body {
            Some(body) => response
                .header("content-type", "application/json")
                .body(Body::from(body.to_string())),
            None => response.body(Body::empty()),
        }
        .expect("a valid mock response")
    }
}

/// A vendor's behaviour: the answer to one request, given the mock's base URL.
pub trait Vendor: Send + 'static {
    fn answer(&mut self, request: &Seen, base: &str) -> Reply;
}

struct Fault {
    method: String,
    path: String,
    reply: Reply,
    /// How many more requests it answers; `None`: until healed.
    remaining: Option<usize>,
}

struct Shared<V> {
    vendor: V,
    seen: Vec<Seen>,
    faults: Vec<Fault>,
}

/// A running mock of vendor `V`, serving until the test's runtime ends.
pub struct Mock<V> {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    shared: Arc<Mutex<Shared<V>>>,
}

impl<V: Vendor> Mock<V> {
    pub async fn start(vendor: V) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("cannot bind a mock");
        let base = format!("http://{}", listener.local_addr().unwrap());
        let shared = Arc::new(Mutex::new(Shared {
            vendor,
            seen: Vec::new(),
            faults: Vec::new(),
        }));
        let (state, at) = (shared.clone(), base.clone());
        let app = axum::Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let (state, at) = (state.clone(), at.clone());
                async move {
                    let mut request = Seen {
                        method: method.to_string(),
                        path: uri.path().to_string(),
                        query: uri.query().unwrap_or_default().to_string(),
                        headers,
                        body: body.to_vec(),
                        status: 0,
                    };
                    let mut shared = state.lock().unwrap();
                    let fault = shared
                        .faults
                        .iter_mut()
                        .find(|f| {
                            f.method == request.method
                                && f.path == request.path
                                && f.remaining != Some(0)
                        })
                        .map(|f| {
                            f.remaining = f.remaining.map(|n| n - 1);
                            f.reply.clone()
                        });
                    let reply = fault.unwrap_or_else(|| shared.vendor.answer(&request, &at));
                    request.status = reply.status;
                    shared.seen.push(request);
                    reply.into_response()
                }
            },
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { base, shared }
    }

    /// Every request so far, in the order received.
    pub fn seen(&self) -> Vec<Seen> {
        self.shared.lock().unwrap().seen.clone()
    }

    /// How many `method path` requests were received.
    pub fn count(&self, method: &str, path: &str) -> usize {
        self.seen()
            .iter()
            .filter(|s| s.method == method && s.path == path)
            .count()
    }

    /// From now on, `method path` answers `reply` (until [`Mock::heal`]).
    pub fn fail(&self, method: &str, path: &str, reply: Reply) {
        self.fault(method, path, reply, None);
    }

    /// The next `times` requests of `method path` are answered `reply`.
    pub fn fail_times(&self, method: &str, path: &str, times: usize, reply: Reply) {
        self.fault(method, path, reply, Some(times));
    }

    fn fault(&self, method: &str, path: &str, reply: Reply, remaining: Option<usize>) {
        self.shared.lock().unwrap().faults.push(Fault {
            method: method.to_string(),
            path: path.to_string(),
            reply,
            remaining,
        });
    }

    /// Every route answers as the vendor again.
    pub fn heal(&self) {
        self.shared.lock().unwrap().faults.clear();
    }

    /// Reads or changes the vendor's state.
    pub fn state<R>(&self, f: impl FnOnce(&mut V) -> R) -> R {
        f(&mut self.shared.lock().unwrap().vendor)
    }
}

/// An OAuth 2.0 error of a token endpoint (Keycloak's and Auth0's), or Keycloak's generic one.
fn oauth_error(status: u16, error: &str, description: &str) -> Reply {
    Reply::json(
        status,
        json!({"error": error, "error_description": description}),
    )
}

fn new_id() -> String {
    Uuid::new_v4().to_string()
}

fn text<'a>(body: &'a Value, key: &str) -> Option<&'a str> {
    body.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

// ---------------------------------------------------------------------------------------------
// Keycloak: Admin REST API
// ---------------------------------------------------------------------------------------------

/// The realm `master` plus what the admin API made: realms with their clients and users.
pub struct Keycloak {
    /// The path Keycloak is served under (`/auth`), `""` for the root.
    pub prefix: String,
    pub username: String,
    pub password: String,
    /// Every access token issued, in order.
    pub tokens: Vec<String>,
    pub realms: BTreeMap<String, Realm>,
}

#[derive(Debug, Default)]
pub struct Realm {
    pub representation: Value,
    pub clients: Vec<Value>,
    pub users: Vec<Value>,
}

const KEYCLOAK_ACTIONS: [&str; 5] = [
    "UPDATE_PASSWORD",
    "VERIFY_EMAIL",
    "UPDATE_PROFILE",
    "CONFIGURE_TOTP",
    "TERMS_AND_CONDITIONS",
];

impl Keycloak {
    /// A Keycloak whose `master` realm has the admin `username` / `password`.
    pub fn new(username: &str, password: &str) -> Self {
        let master = Realm {
            representation: json!({"id": new_id(), "realm": "master", "enabled": true}),
            ..Realm::default()
        };
        Self {
            prefix: String::new(),
            username: username.to_string(),
            password: password.to_string(),
            tokens: Vec::new(),
            realms: BTreeMap::from([("master".to_string(), master)]),
        }
    }

    /// The same Keycloak served under `prefix` (`/auth`, as before Keycloak 17).
    pub fn under(mut self, prefix: &str) -> Self {
        self.prefix = prefix.to_string();
        self
    }

    /// A realm made outside tms (by an operator, with its mail settings).
    pub fn add_realm(&mut self, name: &str) {
        let representation = json!({"id": new_id(), "realm": name, "enabled": true,
            "smtpServer": {"host": "smtp.example.com", "port": "587", "from": "sso@example.com"}});
        self.realms.insert(
            name.to_string(),
            Realm {
                representation,
                ..Realm::default()
            },
        );
    }

    fn token(&mut self, request: &Seen) -> Reply {
        let form = request.form();
        let field = |name: &str| form.get(name).map(String::as_str);
        if !request.content_type_is("application/x-www-form-urlencoded")
            || field("grant_type").is_none()
        {
            return oauth_error(400, "invalid_request", "Missing form parameter: grant_type");
        }
        if field("grant_type") != Some("password") {
            return oauth_error(400, "unsupported_grant_type", "Unsupported grant_type");
        }
        if field("client_id") != Some("admin-cli") {
            return oauth_error(
                401,
                "invalid_client",
                "Invalid client or Invalid client credentials",
            );
        }
        if field("username") != Some(self.username.as_str())
            || field("password") != Some(self.password.as_str())
        {
            return oauth_error(401, "invalid_grant", "Invalid user credentials");
        }
        let token = format!("kc-{}", Uuid::new_v4().simple());
        self.tokens.push(token.clone());
        Reply::json(
            200,
            json!({"access_token": token, "expires_in": 60, "refresh_expires_in": 1800,
                   "refresh_token": format!("kc-refresh-{}", Uuid::new_v4().simple()),
                   "token_type": "Bearer", "not-before-policy": 0,
                   "session_state": new_id(), "scope": "profile email"}),
        )
    }

    fn admin(&mut self, request: &Seen, path: &[&str], base: &str) -> Reply {
        let method = request.method.as_str();
        if matches!(method, "POST" | "PUT") && !request.content_type_is("application/json") {
            return Reply::empty(415);
        }
        let body = request.json();
        if matches!(method, "POST" | "PUT") && body.is_null() {
            return oauth_error(
                400,
                "unknown_error",
                "For more on this error consult the server log.",
            );
        }
        if let ("POST", ["realms"]) = (method, path) {
            return self.create_realm(&body, base);
        }
        let Some(name) = path.get(1).copied() else {
            return Reply::json(404, json!({"error": "HTTP 404 Not Found"}));
        };
        let Some(realm) = self.realms.get_mut(name) else {
            return Reply::json(404, json!({"error": "Realm not found."}));
        };
        match (method, path) {
            ("GET", ["realms", _]) => Reply::json(200, realm.representation.clone()),
            ("POST", ["realms", _, "clients"]) => {
                let Some(client_id) = text(&body, "clientId") else {
                    return Reply::json(400, json!({"errorMessage": "Client id is missing"}));
                };
                if realm.clients.iter().any(|c| c["clientId"] == client_id) {
                    return Reply::json(
                        409,
                        json!({"errorMessage": format!("Client {client_id} already exists")}),
                    );
                }
                let id = new_id();
                let mut client = body.clone();
                client["id"] = json!(id);
                realm.clients.push(client);
                Reply::empty(201).header(
                    "location",
                    &format!("{base}/admin/realms/{name}/clients/{id}"),
                )
            }
            ("POST", ["realms", _, "users"]) => Self::create_user(realm, name, &body, base),
            ("GET", ["realms", _, "users"]) => {
                let query = request.query_params();
                let exact = query.get("exact").is_some_and(|v| v == "true");
                let matches = |field: &str, user: &Value| match query.get(field) {
                    None => true,
                    Some(wanted) => {
                        let have = user[field].as_str().unwrap_or_default();
                        let wanted = wanted.to_lowercase();
                        if exact {
                            have == wanted
                        } else {
                            have.contains(&wanted)
                        }
                    }
                };
                let found: Vec<Value> = realm
                    .users
                    .iter()
                    .filter(|u| matches("username", u) && matches("email", u))
                    .cloned()
                    .collect();
                Reply::json(200, Value::Array(found))
            }
            ("PUT", ["realms", _, "users", id, "execute-actions-email"]) => {
                let Some(user) = realm.users.iter().find(|u| u["id"] == *id) else {
                    return Reply::json(404, json!({"error": "User not found"}));
                };
                let valid = body.as_array().is_some_and(|actions| {
                    actions
                        .iter()
                        .all(|a| a.as_str().is_some_and(|a| KEYCLOAK_ACTIONS.contains(&a)))
                });
                if !valid {
                    return Reply::json(
                        400,
                        json!({"errorMessage": "Provided invalid required actions"}),
                    );
                }
                if user["email"].as_str().is_none_or(str::is_empty) {
                    return Reply::json(400, json!({"errorMessage": "User email missing"}));
                }
                if user["enabled"] != true {
                    return Reply::json(400, json!({"errorMessage": "User is disabled"}));
                }
                // A realm without mail settings cannot send it, as Keycloak answers then.
                let smtp_host = &realm.representation["smtpServer"]["host"];
                if smtp_host.as_str().is_none_or(str::is_empty) {
                    return Reply::json(
                        500,
                        json!({"errorMessage": "Failed to send execute actions email: Error \
                            when attempting to send the email to the server. More information \
                            is available in the server log."}),
                    );
                }
                Reply::empty(204)
            }
            _ => Reply::json(404, json!({"error": "HTTP 404 Not Found"})),
        }
    }

    fn create_realm(&mut self, body: &Value, base: &str) -> Reply {
        let Some(name) = text(body, "realm") else {
            return Reply::json(400, json!({"errorMessage": "Realm name cannot be empty"}));
        };
        if self.realms.contains_key(name) {
            return Reply::json(
                409,
                json!({"errorMessage": "Conflict detected. See logs for details"}),
            );
        }
        let mut representation = body.clone();
        representation["id"] = json!(new_id());
        let realm = Realm {
            representation,
            ..Realm::default()
        };
        self.realms.insert(name.to_string(), realm);
        Reply::empty(201).header("location", &format!("{base}/admin/realms/{name}"))
    }

    fn create_user(realm: &mut Realm, name: &str, body: &Value, base: &str) -> Reply {
        let Some(username) = text(body, "username").map(str::to_lowercase) else {
            return Reply::json(
                400,
                json!({"field": "username", "errorMessage": "error-user-attribute-required",
                       "params": ["username"]}),
            );
        };
        let email = text(body, "email").map(str::to_lowercase);
        if realm
            .users
            .iter()
            .any(|u| u["username"] == username.as_str())
        {
            return Reply::json(
                409,
                json!({"errorMessage": "User exists with same username"}),
            );
        }
        if email.is_some() && realm.users.iter().any(|u| u["email"] == json!(email)) {
            return Reply::json(409, json!({"errorMessage": "User exists with same email"}));
        }
        let id = new_id();
        let mut user = body.clone();
        user["id"] = json!(id);
        user["username"] = json!(username);
        user["email"] = json!(email);
        user["createdTimestamp"] = json!(chrono::Utc::now().timestamp_millis());
        realm.users.push(user);
        Reply::empty(201).header(
            "location",
            &format!("{base}/admin/realms/{name}/users/{id}"),
        )
    }
}

impl Vendor for Keycloak {
    fn answer(&mut self, request: &Seen, base: &str) -> Reply {
        let segments = request.segments();
        let own = self.prefix.clone();
        let prefix: Vec<&str> = own.split('/').filter(|s| !s.is_empty()).collect();
        let path: Vec<&str> = segments.iter().map(String::as_str).collect();
        let Some(path) = path.strip_prefix(prefix.as_slice()) else {
            return Reply::json(404, json!({"error": "HTTP 404 Not Found"}));
        };
        let base = format!("{base}{}", self.prefix);
        let base = base.as_str();
        match (request.method.as_str(), path) {
            ("POST", ["realms", "master", "protocol", "openid-connect", "token"]) => {
                self.token(request)
            }
            (_, ["admin", rest @ ..]) => {
                let known = request
                    .bearer()
                    .is_some_and(|t| self.tokens.iter().any(|k| k == t));
                if !known {
                    return Reply::json(401, json!({"error": "HTTP 401 Unauthorized"}))
                        .header("www-authenticate", "Bearer");
                }
                self.admin(request, rest, base)
            }
            _ => Reply::json(404, json!({"error": "HTTP 404 Not Found"})),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Auth0: Management API v2
// ---------------------------------------------------------------------------------------------

/// The database connection every Auth0 tenant starts with.
pub const AUTH0_CONNECTION: &str = "Username-Password-Authentication";

/// A tenant of Auth0 with one machine-to-machine application authorised for the Management API
/// of `audience`, one database connection, and what the API made.
pub struct Auth0 {
    pub client_id: String,
    pub client_secret: String,
    pub audience: String,
    /// Every access token issued, in order.
    pub tokens: Vec<String>,
    pub organizations: Vec<Value>,
    /// Organisation id → its members' user ids.
    pub members: BTreeMap<String, Vec<String>>,
    pub users: Vec<Value>,
}

const AUTH0_USER_PROPERTIES: [&str; 17] = [
    "email",
    "phone_number",
    "user_metadata",
    "blocked",
    "email_verified",
    "phone_verified",
    "app_metadata",
    "given_name",
    "family_name",
    "name",
    "nickname",
    "picture",
    "user_id",
    "connection",
    "password",
    "verify_email",
    "username",
];

const AUTH0_ORGANIZATION_PROPERTIES: [&str; 6] = [
    "name",
    "display_name",
    "branding",
    "metadata",
    "enabled_connections",
    "token_quota",
];

fn auth0_error(status: u16, error: &str, message: &str, code: Option<&str>) -> Reply {
    let mut body = json!({"statusCode": status, "error": error, "message": message});
    if let Some(code) = code {
        body["errorCode"] = json!(code);
    }
    Reply::json(status, body)
}

fn payload_error(message: &str) -> Reply {
    auth0_error(
        400,
        "Bad Request",
        &format!("Payload validation error: '{message}'."),
        Some("invalid_body"),
    )
}

/// The first property of `body` not in `allowed`.
fn unknown_property<'a>(body: &'a Map<String, Value>, allowed: &[&str]) -> Option<&'a str> {
    body.keys()
        .map(String::as_str)
        .find(|k| !allowed.contains(k))
}

/// The connection's password policy, "fair": at least 8 characters with lower-case letters,
/// upper-case letters and digits.
fn strong_enough(password: &str) -> bool {
    password.chars().count() >= 8
        && password.chars().any(|c| c.is_ascii_lowercase())
        && password.chars().any(|c| c.is_ascii_uppercase())
        && password.chars().any(|c| c.is_ascii_digit())
}

/// An organisation name Auth0 accepts: 1–50 lower-case letters, digits, `-` and `_`, starting
/// and ending with a letter or digit.
fn valid_organization_name(name: &str) -> bool {
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    (1..=50).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        && edge(name.chars().next())
        && edge(name.chars().last())
}

impl Auth0 {
    pub fn new(client_id: &str, client_secret: &str, audience: &str) -> Self {
        Self {
            client_id: client_id.to_string(),
            client_secret: client_secret.to_string(),
            audience: audience.to_string(),
            tokens: Vec::new(),
            organizations: Vec::new(),
            members: BTreeMap::new(),
            users: Vec::new(),
        }
    }

    /// 429 as the Management API answers it, with `Retry-After`.
    pub fn too_many_requests(retry_after: &str) -> Reply {
        auth0_error(
            429,
            "Too Many Requests",
            "Global limit has been reached",
            Some("too_many_requests"),
        )
        .header("retry-after", retry_after)
        .header("x-ratelimit-limit", "2")
        .header("x-ratelimit-remaining", "0")
    }

    /// 500 as the Management API answers it.
    pub fn internal_error() -> Reply {
        auth0_error(500, "Internal Server Error", "Internal error", None)
    }

    /// A user made outside tms (its id); `provider` `auth0` for a database connection.
    pub fn add_user(&mut self, email: &str, connection: &str, provider: &str) -> String {
        let raw = Uuid::new_v4().simple().to_string()[..24].to_string();
        let user_id = format!("{provider}|{raw}");
        self.users.push(json!({
            "user_id": user_id, "email": email.to_lowercase(), "email_verified": false,
            "name": email, "nickname": email.split('@').next(),
            "identities": [{"connection": connection, "provider": provider,
                            "user_id": raw, "isSocial": provider != "auth0"}],
            "created_at": chrono::Utc::now().to_rfc3339(),
        }));
        user_id
    }

    /// An organisation made outside tms (its id).
    pub fn add_organization(&mut self, name: &str) -> String {
        let id = format!("org_{}", &Uuid::new_v4().simple().to_string()[..16]);
        self.organizations
            .push(json!({"id": id, "name": name, "display_name": name}));
        id
    }

    fn token(&mut self, request: &Seen) -> Reply {
        let params = request.params();
        let field = |name: &str| params.get(name).map(String::as_str);
        let Some(grant_type) = field("grant_type") else {
            return oauth_error(
                400,
                "invalid_request",
                "Missing required parameter: grant_type",
            );
        };
        if field("client_id") != Some(self.client_id.as_str())
            || field("client_secret") != Some(self.client_secret.as_str())
        {
            return oauth_error(401, "access_denied", "Unauthorized");
        }
        if grant_type != "client_credentials" {
            return oauth_error(
                403,
                "unauthorized_client",
                &format!("Grant type '{grant_type}' not allowed for the client."),
            );
        }
        match field("audience") {
            None => {
                return oauth_error(
                    403,
                    "access_denied",
                    "No audience parameter was provided, \
                     and no default audience has been configured",
                );
            }
            Some(audience) if audience != self.audience => {
                return oauth_error(
                    403,
                    "access_denied",
                    &format!("Service not enabled within domain: {audience}"),
                );
            }
            Some(_) => {}
        }
        let token = format!("a0-{}", Uuid::new_v4().simple());
        self.tokens.push(token.clone());
        Reply::json(
            200,
            json!({"access_token": token, "expires_in": 86400, "token_type": "Bearer",
                   "scope": "create:organizations read:organizations create:users \
                             read:users create:organization_members"}),
        )
    }

    fn management(&mut self, request: &Seen, path: &[&str]) -> Reply {
        let method = request.method.as_str();
        let body = request.json();
        if method == "POST" && (!request.content_type_is("application/json") || body.is_null()) {
            return auth0_error(
                400,
                "Bad Request",
                "Invalid request payload JSON format",
                None,
            );
        }
        let not_found = |what: &str| {
            auth0_error(
                404,
                "Not Found",
                &format!("No organization found by that {what}."),
                Some("inexistent_organization"),
            )
        };
        match (method, path) {
            ("GET", ["organizations", "name", name]) => {
                match self.organizations.iter().find(|o| o["name"] == *name) {
                    Some(org) => Reply::json(200, org.clone()),
                    None => not_found("name or ID"),
                }
            }
            ("POST", ["organizations"]) => {
                let Some(fields) = body.as_object() else {
                    return payload_error("Expected type object but found another type");
                };
                if let Some(unknown) = unknown_property(fields, &AUTH0_ORGANIZATION_PROPERTIES) {
                    return payload_error(&format!("Additional properties not allowed: {unknown}"));
                }
                let Some(name) = text(&body, "name") else {
                    return payload_error("Missing required property: name");
                };
                if !valid_organization_name(name) {
                    return payload_error(&format!(
                        "String does not match pattern ^[a-z0-9](?:[a-z0-9_-]*[a-z0-9])?$: \
                         {name}' on property name"
                    ));
                }
                if self.organizations.iter().any(|o| o["name"] == name) {
                    return auth0_error(
                        409,
                        "Conflict",
                        "An organization with this name already exists.",
                        Some("organization_conflict"),
                    );
                }
                let mut org = body.clone();
                org["id"] = json!(format!(
                    "org_{}",
                    &Uuid::new_v4().simple().to_string()[..16]
                ));
                self.organizations.push(org.clone());
                Reply::json(201, org)
            }
            ("POST", ["organizations", id, "members"]) => {
                if !self.organizations.iter().any(|o| o["id"] == *id) {
                    return not_found("ID");
                }
                let Some(wanted) = body["members"].as_array().filter(|m| !m.is_empty()) else {
                    return payload_error("Missing required property: members");
                };
                let mut ids = Vec::new();
                for member in wanted {
                    match member.as_str() {
                        Some(m) if self.users.iter().any(|u| u["user_id"] == m) => {
                            ids.push(m.to_string())
                        }
                        _ => {
                            return auth0_error(
                                400,
                                "Bad Request",
                                "One or more of the users do not exist.",
                                Some("invalid_body"),
                            );
                        }
                    }
                }
                let members = self.members.entry(id.to_string()).or_default();
                for m in ids {
                    if !members.contains(&m) {
                        members.push(m);
                    }
                }
                Reply::empty(204)
            }
            ("POST", ["users"]) => self.create_user(&body),
            ("GET", ["users-by-email"]) => {
                let Some(email) = request.query_params().get("email").cloned() else {
                    return auth0_error(
                        400,
                        "Bad Request",
                        "Query validation error: 'Missing required property: email'.",
                        Some("invalid_query_string"),
                    );
                };
                let found: Vec<Value> = self
                    .users
                    .iter()
                    .filter(|u| u["email"] == email.to_lowercase().as_str())
                    .cloned()
                    .collect();
                Reply::json(200, Value::Array(found))
            }
            _ => auth0_error(404, "Not Found", "Not Found", None),
        }
    }

    fn create_user(&mut self, body: &Value) -> Reply {
        let Some(fields) = body.as_object() else {
            return payload_error("Expected type object but found another type");
        };
        if let Some(unknown) = unknown_property(fields, &AUTH0_USER_PROPERTIES) {
            return payload_error(&format!("Additional properties not allowed: {unknown}"));
        }
        let Some(connection) = text(body, "connection") else {
            return payload_error("Missing required property: connection");
        };
        if connection != AUTH0_CONNECTION {
            return auth0_error(
                400,
                "Bad Request",
                "The connection does not exist.",
                Some("inexistent_connection"),
            );
        }
        let Some(email) = text(body, "email").map(str::to_lowercase) else {
            return payload_error("Missing required property: email");
        };
        let Some(password) = text(body, "password") else {
            return payload_error("Missing required property: password");
        };
        if !strong_enough(password) {
            return auth0_error(
                400,
                "Bad Request",
                "PasswordStrengthError: Password is too weak",
                Some("invalid_password"),
            );
        }
        let exists = self.users.iter().any(|u| {
            u["email"] == email.as_str()
                && u["identities"]
                    .as_array()
                    .is_some_and(|ids| ids.iter().any(|i| i["connection"] == connection))
        });
        if exists {
            return auth0_error(
                409,
                "Conflict",
                "The user already exists.",
                Some("auth0_idp_error"),
            );
        }
        let raw = Uuid::new_v4().simple().to_string()[..24].to_string();
        let now = chrono::Utc::now().to_rfc3339();
        let mut user = json!({
            "user_id": format!("auth0|{raw}"), "email": email,
            "email_verified": body["email_verified"].as_bool().unwrap_or(false),
            "name": text(body, "name").unwrap_or(&email),
            "nickname": email.split('@').next(),
            "identities": [{"connection": connection, "provider": "auth0",
                            "user_id": raw, "isSocial": false}],
            "created_at": now, "updated_at": now,
        });
        for key in ["given_name", "family_name"] {
            if let Some(value) = body.get(key) {
                user[key] = value.clone();
            }
        }
        self.users.push(user.clone());
        Reply::json(201, user)
    }
}

impl Vendor for Auth0 {
    fn answer(&mut self, request: &Seen, _base: &str) -> Reply {
        let segments = request.segments();
        let path: Vec<&str> = segments.iter().map(String::as_str).collect();
        match (request.method.as_str(), path.as_slice()) {
            ("POST", ["oauth", "token"]) => self.token(request),
            (_, ["api", "v2", rest @ ..]) => {
                let Some(token) = request.bearer() else {
                    return auth0_error(401, "Unauthorized", "Missing authentication", None);
                };
                if !self.tokens.iter().any(|t| t == token) {
                    let mut invalid = auth0_error(401, "Unauthorized", "Invalid token", None);
                    invalid.body.as_mut().unwrap()["attributes"] =
                        json!({"error": "Invalid token"});
                    return invalid;
                }
                self.management(request, rest)
            }
            _ => auth0_error(404, "Not Found", "Not Found", None),
        }
    }
}
