//! `pacc accounts`, `pacc token`, `pacc password`, `pacc export`: using what setup saved.

use std::io::Write as _;
use std::path::Path;
use std::time::Duration;

use pacc::accounts::{self, AccountStore, SecretKind, Secrets, StoreError, TokenError};
use pacc::{Client, DnsConfig, Timeouts};
use pacc_proto::account::{Account, diff};
use pacc_proto::document::Config;
use pacc_proto::export::{Format, Options};
use pacc_proto::name::{EmailAddress, escape_for_terminal};
use serde::Serialize;

use crate::output::JSON_VERSION;
use crate::{AccountsAction, exit, report_error};

/// The secret store saved accounts use: the keyring where pacc was built with it.
pub fn secrets() -> Secrets {
    if cfg!(feature = "keyring") {
        Secrets::Keyring
    } else {
        Secrets::None
    }
}

fn store_error(e: &StoreError) -> u8 {
    let _ = report_error(&e.to_string());
    match e {
        StoreError::NoSuchAccount(_) => exit::NO_ACCOUNT,
        StoreError::NoSecret { .. } | StoreError::Keyring(_) => exit::NO_SECRET,
        _ => exit::USAGE,
    }
}

fn load(address: &str) -> Result<Account, u8> {
    AccountStore::default()
        .load(address)
        .map_err(|e| store_error(&e))
}

#[allow(clippy::print_stdout)]
fn print_json(v: &impl Serialize) {
    crate::output::print_json(v);
}

/// `pacc accounts [show|remove|check]`.
#[allow(clippy::print_stdout)]
pub async fn accounts(action: Option<AccountsAction>, json: bool) -> u8 {
    let store = AccountStore::default();
    match action {
        None => match store.list() {
            Ok(list) => {
                if json {
                    print_json(&serde_json::json!({"version": JSON_VERSION, "accounts": list}));
                } else if list.is_empty() {
                    println!("No saved accounts (pacc setup ADDRESS saves one).");
                } else {
                    for a in &list {
                        let services: Vec<&str> =
                            a.services.iter().map(|s| s.service.as_str()).collect();
                        println!(
                            "{:<32} {:<24} {}",
                            escape_for_terminal(&a.address),
                            escape_for_terminal(a.provider.as_deref().unwrap_or("")),
                            services.join(", ")
                        );
                    }
                }
                exit::OK
            }
            Err(e) => store_error(&e),
        },
        Some(AccountsAction::Show { address }) => {
            let a = match load(&address) {
                Ok(a) => a,
                Err(c) => return c,
            };
            if json {
                print_json(&serde_json::json!({"version": JSON_VERSION, "account": a}));
            } else {
                println!(
                    "{} ({})",
                    escape_for_terminal(&a.address),
                    escape_for_terminal(a.provider.as_deref().unwrap_or("no provider name"))
                );
                println!(
                    "  settings from {} ({})",
                    escape_for_terminal(&a.source.url),
                    a.source.method
                );
                println!("  verified by   {}", escape_for_terminal(&a.source.record));
                for s in &a.services {
                    println!(
                        "  {:<12} {:<44} {} via {}",
                        s.service,
                        escape_for_terminal(&s.target()),
                        s.method,
                        s.mechanism
                    );
                }
                if let Some(o) = &a.oauth {
                    println!(
                        "  OAuth issuer  {} (client {})",
                        escape_for_terminal(&o.issuer),
                        escape_for_terminal(&o.client_id)
                    );
                }
                println!(
                    "  secrets in    {} (password: {}, refresh token: {})",
                    a.secrets.store,
                    if a.secrets.password {
                        "stored"
                    } else {
                        "not stored"
                    },
                    if a.secrets.refresh_token {
                        "stored"
                    } else {
                        "not stored"
                    }
                );
            }
            exit::OK
        }
        Some(AccountsAction::Remove { address }) => {
            if let Err(e) = store.load(&address) {
                return store_error(&e);
            }
            let mut warning = None;
            if let Err(e) = secrets().remove_all(&address).await {
                warning = Some(format!(
                    "its secrets could not be removed from the keyring: {e}"
                ));
            }
            if let Err(e) = store.remove(&address) {
                return store_error(&e);
            }
            if json {
                print_json(
                    &serde_json::json!({"version": JSON_VERSION, "removed": address, "warning": warning}),
                );
            } else {
                println!("Removed {}.", escape_for_terminal(&address));
                if let Some(w) = warning {
                    eprintln_safe(&w);
                }
            }
            exit::OK
        }
        Some(AccountsAction::Check { address, timeout }) => check(&address, timeout, json).await,
    }
}

fn eprintln_safe(s: &str) {
    let mut e = std::io::stderr().lock();
    let _ = writeln!(e, "pacc: {}", escape_for_terminal(s));
}

fn client_for(a: &Account, timeout: f64) -> Result<Client, String> {
    let mut b = Client::builder()
        .timeouts(Timeouts::with_overall(Duration::from_secs_f64(timeout)))
        .dns(match a.dns.as_deref().and_then(|d| d.parse().ok()) {
            Some(addr) => DnsConfig::Server(addr),
            None => DnsConfig::System,
        });
    for ca in &a.ca_files {
        b = b
            .add_trust_anchors_pem_file(Path::new(ca))
            .map_err(|e| e.to_string())?;
    }
    b.build().map_err(|e| e.to_string())
}

#[derive(Serialize)]
struct CheckOut<'a> {
    version: u32,
    address: &'a str,
    /// The configuration still verifies (TLS, digest, document).
    verifies: bool,
    /// The published bytes are exactly the saved ones.
    unchanged: bool,
    changes: Vec<pacc_proto::account::Change>,
    /// Hosts not confirmed at setup (SEC-7: they need approval again).
    new_hosts: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// `pacc accounts check ADDR`: discover again, compare.
#[allow(clippy::print_stdout)]
async fn check(address: &str, timeout: f64, json: bool) -> u8 {
    let a = match load(address) {
        Ok(a) => a,
        Err(c) => return c,
    };
    let client = match client_for(&a, timeout) {
        Ok(c) => c,
        Err(e) => return report_error(&e),
    };
    let Ok(addr) = EmailAddress::parse(&a.address) else {
        return report_error("the saved address is not valid");
    };
    let report = client.discover(&addr).await;
    let before = Config::from_bytes(a.document.as_bytes()).map(|d| d.config);
    let out = match (&report.outcome, &before) {
        (Ok(v), Ok(before)) => {
            let changes = diff(before, &v.document.config);
            let new_hosts: Vec<String> = v
                .document
                .config
                .protocols
                .iter()
                .map(|s| s.endpoint.host().to_string())
                .filter(|h| !a.confirmed_hosts.contains(h))
                .collect();
            CheckOut {
                version: JSON_VERSION,
                address: &a.address,
                verifies: true,
                unchanged: v.bytes == a.document.as_bytes(),
                changes,
                new_hosts,
                error: None,
            }
        }
        (Err(e), _) => CheckOut {
            version: JSON_VERSION,
            address: &a.address,
            verifies: false,
            unchanged: false,
            changes: Vec::new(),
            new_hosts: Vec::new(),
            error: Some(format!("{} ({})", e, e.kind())),
        },
        (Ok(_), Err(e)) => CheckOut {
            version: JSON_VERSION,
            address: &a.address,
            verifies: true,
            unchanged: false,
            changes: Vec::new(),
            new_hosts: Vec::new(),
            error: Some(format!("the saved document no longer parses: {e}")),
        },
    };
    let ok = out.verifies && out.unchanged;
    if json {
        print_json(&out);
    } else {
        match (&out.error, ok) {
            (Some(e), _) => println!(
                "{}: the configuration does not verify now: {}",
                a.address,
                escape_for_terminal(e)
            ),
            (None, true) => println!("{}: unchanged, and the digest still verifies", a.address),
            (None, false) => {
                println!(
                    "{}: the provider's configuration changed (it still verifies):",
                    a.address
                );
                for c in &out.changes {
                    println!(
                        "  {:<12} {:<8} {} -> {}",
                        c.service,
                        c.change,
                        escape_for_terminal(c.before.as_deref().unwrap_or("-")),
                        escape_for_terminal(c.after.as_deref().unwrap_or("-"))
                    );
                }
                if out.changes.is_empty() {
                    println!("  (the same services; other parts of the document changed)");
                }
                if !out.new_hosts.is_empty() {
                    println!(
                        "  new hosts, not yet approved: {} (run pacc setup again to approve them)",
                        out.new_hosts.join(", ")
                    );
                }
            }
        }
    }
    if ok { exit::OK } else { exit::NOT_PUBLISHED }
}

/// `pacc token ADDR`.
#[allow(clippy::print_stdout)]
pub async fn token(address: &str, service: Option<&str>, timeout: f64) -> u8 {
    let mut a = match load(address) {
        Ok(a) => a,
        Err(c) => return c,
    };
    if let Some(kind) = service
        && !a
            .services
            .iter()
            .any(|s| s.service == kind && s.uses_oauth())
    {
        return report_error(&format!(
            "{address} signs in to {kind} without a token (or has no {kind})"
        ));
    }
    let client = match client_for(&a, timeout) {
        Ok(c) => c,
        Err(e) => return report_error(&e),
    };
    let deadline = client.deadline();
    match accounts::access_token(
        &client,
        &AccountStore::default(),
        secrets(),
        &mut a,
        deadline,
    )
    .await
    {
        Ok(t) => {
            println!("{}", t.expose());
            exit::OK
        }
        Err(e) => {
            let _ = report_error(&e.to_string());
            match e {
                TokenError::NotOAuth(_) => exit::USAGE,
                TokenError::Reauthorize(_) => exit::NO_SECRET,
                TokenError::Store(s) => match s {
                    StoreError::NoSuchAccount(_) => exit::NO_ACCOUNT,
                    _ => exit::NO_SECRET,
                },
                TokenError::Temporary(_) => exit::TEMPORARY,
                _ => exit::USAGE,
            }
        }
    }
}

/// `pacc password ADDR`.
#[allow(clippy::print_stdout)]
pub async fn password(address: &str) -> u8 {
    let a = match load(address) {
        Ok(a) => a,
        Err(c) => return c,
    };
    if !a.secrets.password {
        let _ = report_error(&format!(
            "no password is stored for {} (it was set up {}); run pacc setup {} again where a keyring runs",
            a.address,
            if a.secrets.store == "none" {
                "without a keyring"
            } else {
                "with OAuth or without a password"
            },
            a.address
        ));
        return exit::NO_SECRET;
    }
    match secrets().get(&a.address, SecretKind::Password).await {
        Ok(p) => {
            println!("{}", p.expose());
            exit::OK
        }
        Err(e) => {
            let _ = report_error(&format!(
                "{e}; run pacc setup {} again with a keyring available",
                a.address
            ));
            exit::NO_SECRET
        }
    }
}

/// How to run this very pacc from a client: its absolute path when known.
fn pacc_command() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.to_str().map(str::to_owned))
        .filter(|p| !p.contains(char::is_whitespace))
        .unwrap_or_else(|| "pacc".to_owned())
}

/// `pacc export ADDR --format F`.
#[allow(clippy::print_stdout)]
pub fn export(
    address: &str,
    format: &str,
    output: Option<&Path>,
    force: bool,
    maildir: Option<String>,
    vdir: Option<String>,
) -> u8 {
    let a = match load(address) {
        Ok(a) => a,
        Err(c) => return c,
    };
    let Some(format) = Format::parse(format) else {
        return report_error(&format!("unknown format {format}"));
    };
    let options = export_options(&a.address, maildir, vdir);
    export_to(&a, format, &options, output, force)
}

/// What exported files refer to: this pacc, and the local Maildir and vdir roots (by
/// default under `$HOME`, one per address).
pub fn export_options(address: &str, maildir: Option<String>, vdir: Option<String>) -> Options {
    let home = std::env::var("HOME").unwrap_or_else(|_| ".".into());
    Options {
        pacc: pacc_command(),
        maildir: maildir.unwrap_or_else(|| format!("{home}/Mail/{address}")),
        vdir: vdir.unwrap_or_else(|| format!("{home}/.local/share/vdirsyncer/{address}")),
    }
}

/// Write one export (also used by `setup --export`).
#[allow(clippy::print_stdout)]
pub fn export_to(
    a: &Account,
    format: Format,
    options: &Options,
    output: Option<&Path>,
    force: bool,
) -> u8 {
    let e = match pacc_proto::export::export(a, format, options) {
        Ok(e) => e,
        Err(err) => {
            let _ = report_error(&err.to_string());
            return exit::NOT_WRITTEN;
        }
    };
    for l in &e.left_out {
        eprintln_safe(&format!(
            "{} left out of the {} file: {}",
            l.service,
            format.name(),
            l.reason
        ));
    }
    match output {
        None => print!("{}", e.text),
        Some(path) => {
            use std::os::unix::fs::OpenOptionsExt as _;
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).mode(0o600);
            if force {
                opts.create(true).truncate(true);
            } else {
                opts.create_new(true);
            }
            let mut f = match opts.open(path) {
                Ok(f) => f,
                Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
                    let _ = report_error(&format!(
                        "{} exists; use --force to replace it",
                        path.display()
                    ));
                    return exit::NOT_WRITTEN;
                }
                Err(err) => {
                    return report_error(&format!("cannot write {}: {err}", path.display()));
                }
            };
            if let Err(err) = f.write_all(e.text.as_bytes()) {
                return report_error(&format!("cannot write {}: {err}", path.display()));
            }
            eprintln_safe(&format!(
                "wrote {} ({}: {})",
                path.display(),
                format.name(),
                e.written.join(", ")
            ));
        }
    }
    exit::OK
}
