//! `pacc rpc`: JSON-RPC 2.0 over stdio, one JSON object per line in each direction, for
//! apps that embed pacc without linking Rust (the conventions of Delta Chat's core RPC).
//!
//! Requests run concurrently; responses carry the request's `id`. Progress arrives as
//! `progress` notifications (no `id`) naming the session and the library's
//! [`pacc::setup::Event`]. Results are the same JSON objects as the CLI's `--json` output
//! (`discover`, `probe`, `setup`, `accounts`). The interface is described by
//! `docs/openrpc.json` (printed by `pacc rpc --openrpc`, and returned by `rpc.discover`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pacc::Client;
use pacc::setup::{
    Answer, Authorization, CancelHandle, Confirmed, Events, Prepared, SetupError, SetupOptions,
    SetupSession,
};
use pacc_proto::auth::Secret;
use pacc_proto::auth::select::AuthPolicy;
use pacc_proto::name::EmailAddress;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::mpsc;

use crate::output::{DiscoverOutput, JSON_VERSION, ms_since};

/// The OpenRPC description of every method.
pub const OPENRPC: &str = include_str!("../../../docs/openrpc.json");

/// Every method the server answers (the test checks this against [`OPENRPC`]).
pub const METHODS: &[&str] = &[
    "rpc.discover",
    "discover",
    "probe",
    "setup.start",
    "setup.confirm",
    "setup.authorize",
    "setup.sign_in",
    "setup.close",
    "cancel",
    "accounts.list",
    "accounts.show",
    "accounts.remove",
    "export",
];

/// JSON-RPC error codes: the standard ones, then pacc's (documented in the OpenRPC file).
mod code {
    pub const PARSE: i64 = -32700;
    pub const INVALID_REQUEST: i64 = -32600;
    pub const METHOD_NOT_FOUND: i64 = -32601;
    pub const INVALID_PARAMS: i64 = -32602;
    /// Discovery verified nothing; `data` is the discovery object.
    pub const DISCOVERY: i64 = -32001;
    /// The confirmation was declined or did not match; nothing was sent.
    pub const NOT_CONFIRMED: i64 = -32002;
    /// No such session, or the method does not fit the session's state.
    pub const SESSION: i64 = -32003;
    /// The saved account does not exist, or cannot be read or written.
    pub const ACCOUNT: i64 = -32004;
    /// Cancelled by `cancel` (the LSP's RequestCancelled).
    pub const CANCELLED: i64 = -32800;
}

/// Most bytes of one request line (a password and a domain list fit many times over).
const MAX_LINE: usize = 1 << 20;

struct RpcError {
    code: i64,
    message: String,
    data: Option<Value>,
}

impl RpcError {
    fn new(code: i64, message: impl Into<String>) -> Self {
        RpcError {
            code,
            message: message.into(),
            data: None,
        }
    }

    fn params(message: impl Into<String>) -> Self {
        RpcError::new(code::INVALID_PARAMS, message)
    }
}

/// A session between requests: its state, and the handle that cancels it.
enum State {
    Prepared(Box<Prepared>),
    Confirmed(Box<Confirmed>),
    /// A request is running on it.
    Busy,
}

struct Slot {
    state: State,
    cancel: CancelHandle,
    /// The session's events, taken by the request running on it.
    events: Option<Events>,
}

struct Server {
    client: Arc<Client>,
    out: mpsc::UnboundedSender<Value>,
    sessions: Mutex<HashMap<String, Slot>>,
    /// Running requests that `cancel` can stop: request id → abort handle.
    running: Mutex<HashMap<String, tokio::task::AbortHandle>>,
    /// Running request id → the setup session it works on: cancelling such a request
    /// cancels the session's step (which then answers -32800 itself and frees the session).
    request_session: Mutex<HashMap<String, String>>,
    next: std::sync::atomic::AtomicU64,
}

/// Serve until standard input ends; returns the exit code.
pub async fn serve(client: Client) -> u8 {
    let (out, mut rx) = mpsc::unbounded_channel::<Value>();
    let writer = tokio::spawn(async move {
        let mut stdout = tokio::io::stdout();
        while let Some(v) = rx.recv().await {
            let mut line = serde_json::to_vec(&v).unwrap_or_default();
            line.push(b'\n');
            if stdout.write_all(&line).await.is_err() || stdout.flush().await.is_err() {
                break;
            }
        }
    });
    let server = Arc::new(Server {
        client: Arc::new(client),
        out,
        sessions: Mutex::new(HashMap::new()),
        running: Mutex::new(HashMap::new()),
        request_session: Mutex::new(HashMap::new()),
        next: std::sync::atomic::AtomicU64::new(1),
    });
    let mut stdin = tokio::io::BufReader::new(tokio::io::stdin());
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        let mut line = Vec::new();
        let read = (&mut stdin)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut line)
            .await;
        match read {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        if line.len() > MAX_LINE {
            server.reply(
                Value::Null,
                Err(RpcError::new(
                    code::INVALID_REQUEST,
                    format!("a request line longer than {MAX_LINE} bytes"),
                )),
            );
            // Skip the rest of that line.
            let mut rest = Vec::new();
            let _ = stdin.read_until(b'\n', &mut rest).await;
            continue;
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let request: Value = match serde_json::from_slice(&line) {
            Ok(v) => v,
            Err(e) => {
                server.reply(
                    Value::Null,
                    Err(RpcError::new(code::PARSE, format!("not JSON: {e}"))),
                );
                continue;
            }
        };
        let s = server.clone();
        let id = request.get("id").cloned().unwrap_or(Value::Null);
        let key = id.to_string();
        if let Some(session) = request
            .get("params")
            .and_then(|p| p.get("session"))
            .and_then(Value::as_str)
            && let Ok(mut m) = server.request_session.lock()
        {
            m.insert(key.clone(), session.to_owned());
        }
        let handle = tasks.spawn(async move {
            let (id, result) = s.handle(request).await;
            s.running.lock().map(|mut r| r.remove(&id.to_string())).ok();
            s.request_session
                .lock()
                .map(|mut r| r.remove(&id.to_string()))
                .ok();
            if !id.is_null() {
                s.reply(id, result);
            }
        });
        if !key.is_empty()
            && key != "null"
            && let Ok(mut r) = server.running.lock()
        {
            r.insert(key, handle);
        }
        // Reap finished tasks so the set stays small.
        while tasks.try_join_next().is_some() {}
    }
    // End of input: let running requests finish, then the writer.
    while tasks.join_next().await.is_some() {}
    drop(server);
    let _ = writer.await;
    crate::exit::OK
}

impl Server {
    fn reply(&self, id: Value, result: Result<Value, RpcError>) {
        let v = match result {
            Ok(r) => json!({"jsonrpc": "2.0", "id": id, "result": r}),
            Err(e) => {
                let mut error = json!({"code": e.code, "message": e.message});
                if let Some(d) = e.data {
                    error["data"] = d;
                }
                json!({"jsonrpc": "2.0", "id": id, "error": error})
            }
        };
        let _ = self.out.send(v);
    }

    fn notify(&self, method: &str, params: Value) {
        let _ = self
            .out
            .send(json!({"jsonrpc": "2.0", "method": method, "params": params}));
    }

    /// Run a step of session `id`, sending its events as `progress` notifications as they
    /// arrive, all of them before the step's own response.
    async fn with_progress<T>(
        &self,
        id: &str,
        events: &mut Option<Events>,
        step: impl Future<Output = T>,
    ) -> T {
        match events {
            Some(events) => {
                crate::setup_cmd::with_events(step, events, |e| {
                    self.notify(
                    "progress",
                    json!({"session": id, "event": serde_json::to_value(&e).unwrap_or_default()}),
                );
                })
                .await
            }
            None => step.await,
        }
    }

    fn take_events(&self, id: &str) -> Option<Events> {
        self.lock_sessions()
            .get_mut(id)
            .and_then(|s| s.events.take())
    }

    fn put_events(&self, id: &str, events: Option<Events>) {
        if let Some(slot) = self.lock_sessions().get_mut(id) {
            slot.events = events;
        }
    }

    async fn handle(self: &Arc<Self>, request: Value) -> (Value, Result<Value, RpcError>) {
        let id = request.get("id").cloned().unwrap_or(Value::Null);
        if request.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
            return (
                id,
                Err(RpcError::new(
                    code::INVALID_REQUEST,
                    "not a JSON-RPC 2.0 request (\"jsonrpc\": \"2.0\" is missing)",
                )),
            );
        }
        let Some(method) = request.get("method").and_then(Value::as_str) else {
            return (
                id,
                Err(RpcError::new(code::INVALID_REQUEST, "no \"method\"")),
            );
        };
        let params = request.get("params").cloned().unwrap_or(json!({}));
        if !params.is_object() {
            return (
                id,
                Err(RpcError::params("params must be an object (by-name)")),
            );
        }
        let result = match method {
            "rpc.discover" => serde_json::from_str(OPENRPC)
                .map_err(|e| RpcError::new(code::INVALID_REQUEST, e.to_string())),
            "discover" => self.discover(&params).await,
            "probe" => self.probe(&params).await,
            "setup.start" => self.setup_start(&params, &id.to_string()).await,
            "setup.confirm" => self.setup_confirm(&params),
            "setup.authorize" => self.setup_authorize(&params).await,
            "setup.sign_in" => self.setup_sign_in(&params).await,
            "setup.close" => self.setup_close(&params),
            "cancel" => self.cancel(&params),
            "accounts.list" => accounts_list(),
            "accounts.show" => accounts_show(&params),
            "accounts.remove" => accounts_remove(&params),
            "export" => export(&params),
            other => Err(RpcError::new(
                code::METHOD_NOT_FOUND,
                format!(
                    "no method {other:?}; the methods are {}",
                    METHODS.join(", ")
                ),
            )),
        };
        (id, result)
    }

    async fn discover(&self, params: &Value) -> Result<Value, RpcError> {
        let address = address(params)?;
        let report = self
            .client
            .discover_domain_until(address.domain(), self.client.deadline(), &|_| {})
            .await;
        Ok(to_value(&DiscoverOutput::new(&address, &report)))
    }

    async fn probe(&self, params: &Value) -> Result<Value, RpcError> {
        let address = address(params)?;
        let started = std::time::Instant::now();
        let deadline = self.client.deadline();
        let report = self
            .client
            .discover_domain_until(address.domain(), deadline, &|_| {})
            .await;
        let mut phases = crate::output::Phases {
            discovery_ms: ms_since(started),
            ..Default::default()
        };
        let discovery = DiscoverOutput::new(&address, &report);
        let services = match &report.outcome {
            Ok(v) => {
                let t = std::time::Instant::now();
                let s = self
                    .client
                    .probe(&v.document.config, deadline, &|_| {})
                    .await;
                phases.probe_ms = Some(ms_since(t));
                s
            }
            Err(_) => Vec::new(),
        };
        phases.total_ms = ms_since(started);
        Ok(to_value(&crate::probe_cmd::ProbeOutput::new(
            &discovery, &services, &phases,
        )))
    }

    async fn setup_start(
        self: &Arc<Self>,
        params: &Value,
        request: &str,
    ) -> Result<Value, RpcError> {
        let address = address(params)?;
        let policy = match params.get("auth").and_then(Value::as_str).unwrap_or("auto") {
            "auto" => AuthPolicy::Auto,
            "oauth" => AuthPolicy::Oauth,
            "password" => AuthPolicy::Password,
            other => {
                return Err(RpcError::params(format!(
                    "auth must be auto, oauth or password, not {other:?}"
                )));
            }
        };
        let id = format!(
            "s{}",
            self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let (session, events) = SetupSession::new(
            self.client.clone(),
            address.clone(),
            SetupOptions {
                policy,
                ..SetupOptions::default()
            },
        );
        let cancel = session.cancel_handle();
        if let Ok(mut m) = self.request_session.lock() {
            m.insert(request.to_owned(), id.clone());
        }
        self.lock_sessions().insert(
            id.clone(),
            Slot {
                state: State::Busy,
                cancel,
                events: None,
            },
        );
        let mut events = Some(events);
        let prepared = self
            .with_progress(&id, &mut events, session.prepare())
            .await;
        match prepared {
            Ok(prepared) => {
                let out = prepared_json(&id, &prepared);
                self.put(&id, State::Prepared(Box::new(prepared)));
                self.put_events(&id, events);
                Ok(out)
            }
            Err(e) => {
                self.lock_sessions().remove(&id);
                Err(match e {
                    SetupError::Discovery(report) => {
                        let d = DiscoverOutput::new(&address, &report);
                        let (kind, class, message) = d.error_summary().unwrap_or_default();
                        RpcError {
                            code: code::DISCOVERY,
                            message: format!("{kind} ({class}): {message}"),
                            data: Some(to_value(&d)),
                        }
                    }
                    e => cancelled_or(e),
                })
            }
        }
    }

    fn setup_confirm(&self, params: &Value) -> Result<Value, RpcError> {
        let id = session_id(params)?;
        let answer = match (params.get("domains"), params.get("accept")) {
            (Some(Value::Array(list)), _) => Answer::Domains(
                list.iter()
                    .map(|d| d.as_str().map(str::to_owned))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| RpcError::params("domains must be strings"))?,
            ),
            (None, Some(Value::Bool(true))) => Answer::Yes,
            (None, Some(Value::Bool(false))) => Answer::No,
            _ => {
                return Err(RpcError::params(
                    "give accept (true or false) or domains (the registrable domains shown)",
                ));
            }
        };
        let prepared = match self.take(&id)? {
            State::Prepared(p) => p,
            other => {
                self.put(&id, other);
                return Err(RpcError::new(
                    code::SESSION,
                    format!("session {id} is already confirmed"),
                ));
            }
        };
        match prepared.confirm(answer) {
            Ok(c) => {
                let out = json!({
                    "session": id,
                    "uses_oauth": c.uses_oauth(),
                    "needs_password": c.needs_password(),
                    "can_fall_back": c.can_fall_back(),
                });
                self.put(&id, State::Confirmed(Box::new(c)));
                Ok(out)
            }
            Err(refused) => {
                let kind = match refused.error {
                    pacc_proto::auth::gate::GateError::Declined => "declined",
                    _ => "mismatch",
                };
                let message = refused.error.to_string();
                self.put(&id, State::Prepared(refused.prepared));
                Err(RpcError {
                    code: code::NOT_CONFIRMED,
                    message,
                    data: Some(json!({"kind": kind})),
                })
            }
        }
    }

    async fn setup_authorize(&self, params: &Value) -> Result<Value, RpcError> {
        let id = session_id(params)?;
        let wait = Duration::from_secs(
            params
                .get("wait_seconds")
                .and_then(Value::as_u64)
                .unwrap_or(300),
        );
        let how = match params
            .get("flow")
            .and_then(Value::as_str)
            .unwrap_or("browser")
        {
            "browser" => Authorization::Browser { wait },
            "device" => Authorization::Device { wait },
            "no-wait" => Authorization::NoWait,
            other => {
                return Err(RpcError::params(format!(
                    "flow must be browser, device or no-wait, not {other:?}"
                )));
            }
        };
        let mut confirmed = self.confirmed(&id)?;
        let mut events = self.take_events(&id);
        let r = self
            .with_progress(&id, &mut events, confirmed.authorize(how))
            .await
            .map(to_value);
        self.put_events(&id, events);
        match r {
            Ok(oauth) => {
                let out = json!({
                    "session": id,
                    "oauth": oauth,
                    "fallbacks": to_value(&confirmed.fallbacks()),
                    "needs_password": confirmed.needs_password(),
                });
                self.put(&id, State::Confirmed(confirmed));
                Ok(out)
            }
            Err(e) => {
                self.lock_sessions().remove(&id);
                Err(cancelled_or(e))
            }
        }
    }

    async fn setup_sign_in(&self, params: &Value) -> Result<Value, RpcError> {
        let id = session_id(params)?;
        let password = match params.get("password") {
            None | Some(Value::Null) => None,
            Some(Value::String(p)) if !p.is_empty() => Some(Secret::new(p.clone())),
            Some(_) => return Err(RpcError::params("password must be a non-empty string")),
        };
        let save = params.get("save").and_then(Value::as_bool).unwrap_or(false);
        let secrets = match params.get("store_secrets").and_then(Value::as_str) {
            None | Some("keyring") => crate::accounts_cmd::secrets(),
            Some("none") => pacc::accounts::Secrets::None,
            Some(other) => {
                return Err(RpcError::params(format!(
                    "store_secrets must be keyring or none, not {other:?}"
                )));
            }
        };
        let confirmed = self.confirmed(&id)?;
        if confirmed.needs_password() && password.is_none() {
            self.put(&id, State::Confirmed(confirmed));
            return Err(RpcError::params(
                "this setup needs the password (needs_password is true)",
            ));
        }
        let mut events = self.take_events(&id);
        let finished = self
            .with_progress(&id, &mut events, confirmed.sign_in(password))
            .await;
        self.lock_sessions().remove(&id);
        let finished = finished.map_err(cancelled_or)?;
        let saved = if save {
            let options = pacc::setup::SaveOptions {
                secrets,
                ..pacc::setup::SaveOptions::default()
            };
            Some(finished.save(&options).await.0)
        } else {
            None
        };
        Ok(to_value(&crate::setup_cmd::SetupOutput::finished(
            &finished,
            saved.as_ref(),
            false,
        )))
    }

    fn setup_close(&self, params: &Value) -> Result<Value, RpcError> {
        let id = session_id(params)?;
        match self.lock_sessions().remove(&id) {
            Some(slot) => {
                // A request still running on it ends as cancelled.
                slot.cancel.cancel();
                Ok(json!({"closed": true}))
            }
            None => Err(no_session(&id)),
        }
    }

    fn cancel(&self, params: &Value) -> Result<Value, RpcError> {
        if let Some(id) = params.get("session").and_then(Value::as_str) {
            let sessions = self.lock_sessions();
            let Some(slot) = sessions.get(id) else {
                return Err(no_session(id));
            };
            slot.cancel.cancel();
            return Ok(json!({"cancelled": true}));
        }
        if let Some(request) = params.get("id") {
            let key = request.to_string();
            // A request on a setup session: cancel the session's step; it answers -32800
            // itself and leaves nothing busy.
            let session = self
                .request_session
                .lock()
                .ok()
                .and_then(|m| m.get(&key).cloned());
            if let Some(session) = session
                && let Some(slot) = self.lock_sessions().get(&session)
            {
                slot.cancel.cancel();
                return Ok(json!({"cancelled": true}));
            }
            let handle = self.running.lock().ok().and_then(|mut r| r.remove(&key));
            return match handle {
                Some(h) => {
                    h.abort();
                    self.reply(
                        request.clone(),
                        Err(RpcError::new(code::CANCELLED, "cancelled")),
                    );
                    Ok(json!({"cancelled": true}))
                }
                None => Ok(json!({"cancelled": false})),
            };
        }
        Err(RpcError::params(
            "give session (a setup session) or id (a running request)",
        ))
    }

    fn lock_sessions(&self) -> std::sync::MutexGuard<'_, HashMap<String, Slot>> {
        self.sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn take(&self, id: &str) -> Result<State, RpcError> {
        let mut sessions = self.lock_sessions();
        let slot = sessions.get_mut(id).ok_or_else(|| no_session(id))?;
        match std::mem::replace(&mut slot.state, State::Busy) {
            State::Busy => Err(RpcError::new(
                code::SESSION,
                format!("session {id} is busy with another request"),
            )),
            s => Ok(s),
        }
    }

    fn put(&self, id: &str, state: State) {
        if let Some(slot) = self.lock_sessions().get_mut(id) {
            slot.state = state;
        }
    }

    fn confirmed(&self, id: &str) -> Result<Box<Confirmed>, RpcError> {
        match self.take(id)? {
            State::Confirmed(c) => Ok(c),
            other => {
                self.put(id, other);
                Err(RpcError::new(
                    code::SESSION,
                    format!("session {id} is not confirmed yet (call setup.confirm)"),
                ))
            }
        }
    }
}

fn to_value(v: &impl serde::Serialize) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

fn cancelled_or(e: SetupError) -> RpcError {
    match e {
        SetupError::Cancelled => RpcError::new(code::CANCELLED, "cancelled; nothing more was sent"),
        e => RpcError::new(code::SESSION, e.to_string()),
    }
}

fn no_session(id: &str) -> RpcError {
    RpcError::new(code::SESSION, format!("no session {id}"))
}

fn address(params: &Value) -> Result<EmailAddress, RpcError> {
    let a = params
        .get("address")
        .and_then(Value::as_str)
        .ok_or_else(|| RpcError::params("address (a string) is required"))?;
    EmailAddress::parse(a).map_err(|e| RpcError::params(e.to_string()))
}

fn session_id(params: &Value) -> Result<String, RpcError> {
    params
        .get("session")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| RpcError::params("session (from setup.start) is required"))
}

/// `setup.start`'s result: what to show the user before anything is sent.
fn prepared_json(id: &str, p: &Prepared) -> Value {
    json!({
        "version": JSON_VERSION,
        "session": id,
        "address": p.address().as_str(),
        "discovery": to_value(&DiscoverOutput::new(p.address(), p.report())),
        "services": to_value(&p.probes()),
        "choices": to_value(&p.choices()),
        "confirmation": p.confirmation().map(to_value),
        "confirmation_text": p.confirmation().map(|c| c.display()),
        "oauth": p.oauth().map(to_value),
        "phases": to_value(&p.phases()),
    })
}

fn account_error(e: &pacc::accounts::StoreError) -> RpcError {
    RpcError::new(code::ACCOUNT, e.to_string())
}

fn accounts_list() -> Result<Value, RpcError> {
    let list = pacc::accounts::AccountStore::default()
        .list()
        .map_err(|e| account_error(&e))?;
    Ok(json!({"version": JSON_VERSION, "accounts": list}))
}

fn accounts_show(params: &Value) -> Result<Value, RpcError> {
    let address = address(params)?;
    let a = pacc::accounts::AccountStore::default()
        .load(address.as_str())
        .map_err(|e| account_error(&e))?;
    Ok(json!({"version": JSON_VERSION, "account": a}))
}

fn accounts_remove(params: &Value) -> Result<Value, RpcError> {
    let address = address(params)?;
    pacc::accounts::AccountStore::default()
        .remove(address.as_str())
        .map_err(|e| account_error(&e))?;
    Ok(json!({"removed": address.as_str()}))
}

fn export(params: &Value) -> Result<Value, RpcError> {
    let address = address(params)?;
    let name = params
        .get("format")
        .and_then(Value::as_str)
        .ok_or_else(|| RpcError::params("format is required"))?;
    let format = pacc_proto::export::Format::parse(name)
        .ok_or_else(|| RpcError::params(format!("unknown format {name:?}")))?;
    let a = pacc::accounts::AccountStore::default()
        .load(address.as_str())
        .map_err(|e| account_error(&e))?;
    let options = crate::accounts_cmd::export_options(address.as_str(), None, None);
    let e = pacc_proto::export::export(&a, format, &options)
        .map_err(|e| RpcError::new(code::ACCOUNT, e.to_string()))?;
    Ok(json!({
        "format": format.name(),
        "text": e.text,
        "written": e.written,
        "left_out": e.left_out.iter().map(|l| json!({"service": l.service.to_string(), "reason": l.reason})).collect::<Vec<_>>(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The OpenRPC document describes exactly the methods the server dispatches.
    #[test]
    fn openrpc_lists_every_method_and_only_those() {
        let doc: Value = serde_json::from_str(OPENRPC).unwrap();
        assert_eq!(
            doc["openrpc"].as_str().unwrap().split('.').next(),
            Some("1")
        );
        let mut documented: Vec<&str> = doc["methods"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["name"].as_str().unwrap())
            .collect();
        documented.push("rpc.discover");
        documented.sort_unstable();
        let mut served = METHODS.to_vec();
        served.sort_unstable();
        assert_eq!(documented, served);
        for m in doc["methods"].as_array().unwrap() {
            assert!(
                m["result"]["schema"].is_object(),
                "{} has a result schema",
                m["name"]
            );
            assert!(m["summary"].is_string(), "{} has a summary", m["name"]);
        }
    }
}
