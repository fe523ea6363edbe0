//! `pacc`: discover, verify and inspect PACC configurations from the command line.

mod accounts_cmd;
mod demo;
mod output;
mod probe_cmd;
mod progress;
mod provider_cmd;
mod rpc;
mod setup_cmd;
mod term;
mod tty;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use pacc::{Client, DnsConfig, Timeouts};
use pacc_proto::discovery::Options;
use pacc_proto::mx::MxUriStrategy;
use pacc_proto::name::EmailAddress;

use crate::output::DiscoverOutput;

/// Exit codes (stable; also listed in `pacc --help`).
pub mod exit {
    /// A configuration was found and verified.
    pub const OK: u8 = 0;
    /// Nothing is published for the domain (absent).
    pub const NOT_PUBLISHED: u8 = 1;
    /// Bad usage or a runtime error (unreadable CA file, unusable DNS configuration…).
    pub const USAGE: u8 = 2;
    /// Something is published but failed an integrity or security check.
    pub const INTEGRITY: u8 = 3;
    /// A temporary failure (server error, DNS failure, timeout): try again later.
    pub const TEMPORARY: u8 = 4;
    /// `pacc probe`: some service is unreachable or offers nothing the document allows.
    pub const SERVICE_UNUSABLE: u8 = 5;
    /// `pacc setup`: signing in failed for some service.
    pub const SIGN_IN_FAILED: u8 = 6;
    /// `pacc setup`: the hosts were not confirmed (or the password prompt was cancelled);
    /// nothing was sent.
    pub const NOT_CONFIRMED: u8 = 7;
    /// `token`, `password`, `export`, `accounts`: no account is saved for the address.
    pub const NO_ACCOUNT: u8 = 8;
    /// `token`, `password`: no usable secret (not stored, or the refresh token was refused).
    pub const NO_SECRET: u8 = 9;
    /// `export`: the file exists, or the client supports none of the services.
    pub const NOT_WRITTEN: u8 = 10;
    /// Interrupted by Ctrl-C (128 + SIGINT, as shells report it).
    pub const INTERRUPTED: u8 = 130;
}

const EXIT_CODES: &str = "\
Exit codes (every command; each command's --help lists its own in full):
  0  done: configuration found and verified, every service usable, signed in
  1  nothing published for this domain (check: something FAILed; accounts check: changed)
  2  usage or runtime error (bad arguments, unreadable --ca-file, no DNS configuration)
  3  integrity or security failure (digest mismatch, invalid certificate, TLS < 1.3,
     invalid document): do not use this domain's configuration
  4  temporary failure (server error, DNS failure, timeout): try again later
  5  probe/setup: a service is unusable, or none can be signed in to
  6  setup: signing in failed for some service
  7  setup: not confirmed; nothing was sent
  8  9  10  accounts, token, password, export: no such account, no usable secret,
     file not written
130  interrupted (Ctrl-C)

Documentation: pacc help <command>, man pacc (pacc man > pacc.1), and the README.";

/// `--version`: the release, the commit it was built from, and the features compiled in.
const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("PACC_COMMIT"),
    ")\nfeatures: ",
    env!("PACC_FEATURES"),
);

const PROBE_EXIT_CODES: &str = "\
Exit codes:
  0  configuration verified and every service usable
  1  nothing published for this domain
  2  usage or runtime error
  3  integrity or security failure of the configuration
  4  temporary failure of discovery: try again later
  5  some service is unreachable, failed TLS, or offers no mechanism the provider allows";

const SETUP_EXIT_CODES: &str = "\
Exit codes:
  0  every selected service signed in
  1  nothing published for this domain
  2  usage or runtime error
  3  integrity or security failure of the configuration
  4  temporary failure of discovery
  5  no service can be signed in to
  6  signing in failed for some service, or some service could not be set up (see why)
  7  not confirmed, or the password prompt cancelled with Ctrl-C: nothing was sent";

/// Set up mail, calendar and contacts from an email address, securely (PACC,
/// draft-ietf-mailmaint-pacc).
#[derive(Debug, Parser)]
#[command(name = "pacc", version, long_version = LONG_VERSION, after_help = EXIT_CODES, max_term_width = 100)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Colour: auto (on terminals, unless NO_COLOR is set; CLICOLOR_FORCE forces it), always,
    /// never. Decided per stream.
    #[arg(long, global = true, value_name = "WHEN", value_enum, default_value_t = term::ColorWhen::Auto)]
    color: term::ColorWhen,
    /// No progress and no informational lines on stderr (results, warnings, errors and
    /// prompts still appear).
    #[arg(short, long, global = true)]
    quiet: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Find and verify the configuration a provider publishes for an address.
    ///
    /// Fetches https://ua-auto-config.<domain>/.well-known/user-agent-configuration.json over
    /// TLS 1.3 (certificate verified, redirects refused) while looking up the digest record
    /// _ua-auto-config.<domain> in DNS, checks the exact bytes against the digest, and only
    /// then reads the document. Only the domain is used: the address is never sent.
    ///
    /// If the domain publishes nothing itself, the MX fallback runs: only for domains with an
    /// MTA-STS policy in enforce mode that lists every most-preferred MX host; each host's
    /// configuration must verify against its own digest and all must be byte-identical.
    ///
    /// Example: pacc discover alice@example.com
    #[command(after_help = EXIT_CODES)]
    Discover(DiscoverArgs),
    /// Discover, then probe every configured service over TLS, without sending credentials.
    ///
    /// Connects to each server (IMAP 993, POP3 995, submission 465 with implicit TLS;
    /// ManageSieve 4190 with mandatory STARTTLS; JMAP and DAV over HTTPS), verifies its
    /// certificate for the configured host (TLS 1.2 or later), and reads the SASL mechanisms
    /// or WWW-Authenticate challenges it offers, all at once under one deadline. Each service
    /// is then marked usable with OAuth, password, both, or nothing, given what the provider's
    /// document allows.
    ///
    /// Example: pacc probe alice@example.com
    #[command(after_help = PROBE_EXIT_CODES)]
    Probe(DiscoverArgs),
    /// Set up an account: discover, probe, confirm the servers, sign in, and print the
    /// working configuration.
    ///
    /// Shows the provider, and every host that would receive a credential grouped by
    /// registrable domain with its services and the method each will use, and asks before
    /// anything is sent (or takes --accept-domains listing exactly those domains). The
    /// username is the full address.
    ///
    /// --auth chooses the method: auto (the default) uses OAuth where the service and the
    /// provider's issuer allow it and the password elsewhere; when the OAuth sign-in fails,
    /// is refused or cannot run (no browser here, timeout), the services that also take a
    /// password use it instead, and the output says why. --auth oauth never sends a
    /// password; --auth password never starts OAuth.
    ///
    /// OAuth follows the public-client profile: the issuer's metadata must name exactly
    /// the configured issuer (no redirects), the client registers itself once per issuer
    /// (the id is kept in $PACC_DATA_DIR or ~/.local/share/pacc/clients.json, mode 0600),
    /// and one browser sign-in (PKCE, loopback redirect) gives one Bearer token for every
    /// service the authorization server covers (its protected_resources, else the issuer's
    /// own domain); other services get no token.
    ///
    /// Each service is signed in to once, and failures are classified: credentials,
    /// mechanism, account, authorization, temporary, transport. The one retry that exists:
    /// a token a server rejects is refreshed once and that service tried once more.
    ///
    /// Example: pacc setup alice@example.com
    /// Example: pacc setup alice@example.com --auth password --accept-domains example.com --password-stdin
    #[command(after_help = SETUP_EXIT_CODES)]
    Setup {
        /// The email address (also the username).
        email: String,
        /// Non-interactive confirmation: exactly the registrable domains shown, comma-separated.
        #[arg(long, value_name = "DOMAINS", value_delimiter = ',')]
        accept_domains: Option<Vec<String>>,
        /// How to sign in: auto (OAuth where allowed, else the password; the password also
        /// when OAuth fails), oauth (OAuth only), password (the password only).
        #[arg(long, value_name = "METHOD", default_value = "auto", value_parser = ["auto", "oauth", "password"])]
        auth: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
        /// Read the password from this environment variable.
        #[arg(long, value_name = "VAR", conflicts_with = "password_stdin")]
        password_env: Option<String>,
        /// Print the OAuth authorization URL instead of opening a browser.
        #[arg(long)]
        no_browser: bool,
        /// Sign in with the device authorization grant (RFC 8628): pacc prints a URL and a
        /// code to enter on any device. Used by itself where no browser can be opened and no
        /// display exists, when the provider's server offers it.
        #[arg(long, conflicts_with = "no_browser")]
        device: bool,
        /// Seconds to wait for the browser sign-in.
        #[arg(long, value_name = "SECONDS", default_value_t = 300)]
        browser_timeout: u64,
        /// Include the OAuth tokens in the output (they are secrets).
        #[arg(long)]
        show_secrets: bool,
        /// Write the OAuth tokens to this file (created with mode 0600).
        #[arg(long, value_name = "FILE")]
        token_file: Option<PathBuf>,
        /// Where the password and refresh token are kept: keyring (the system keyring, the
        /// default) or none (nothing is stored; `pacc password`/`pacc token` will not work).
        #[arg(long, value_name = "STORE", default_value = "keyring", value_parser = ["keyring", "none"])]
        store_secrets: String,
        /// Do not save the account.
        #[arg(long)]
        no_save: bool,
        /// Also write a client configuration (repeatable): mbsync, msmtp, vdirsyncer, aerc,
        /// neomutt, himalaya, thunderbird, pacc; into $PACC_DATA_DIR/exports/ADDRESS/.
        #[arg(long, value_name = "FORMAT", value_parser = ["mbsync", "msmtp", "vdirsyncer", "aerc", "neomutt", "himalaya", "thunderbird", "pacc"])]
        export: Vec<String>,
        #[command(flatten)]
        network: NetworkArgs,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Render a provider description: the exact bytes to serve and the DNS records.
    ///
    /// Without --domain, prints zone-file lines for every domain (the _ua-auto-config TXT
    /// records and the names that must point at the server). With --domain, prints exactly
    /// the bytes to serve (or writes them with --out and prints that domain's records).
    /// The output is deterministic: same description, same bytes, on every machine.
    ///
    /// Example: pacc render provider.toml --domain example.com --out user-agent-configuration.json
    Render {
        /// The description file (TOML; see examples/provider.toml).
        description: PathBuf,
        /// Only this domain.
        #[arg(long)]
        domain: Option<String>,
        /// Write the bytes to this file (with --domain).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Everything as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Serve the rendered documents over HTTPS (TLS 1.3) for every domain of a description.
    ///
    /// Picks the certificate by SNI and the document by Host (ua-auto-config.<domain>, and
    /// mta-sts.<domain> for groups with an [document.mta_sts] policy). SIGHUP reloads the
    /// description and certificates (a broken new description is refused and the old one
    /// keeps serving); SIGTERM/SIGINT shut down gracefully. Logs go to stderr (PACC_LOG).
    ///
    /// With [acme] in the description, certificates come from an ACME CA (Let's Encrypt or
    /// any RFC 8555 CA), proved by TLS-ALPN-01 on this same listener (no port 80): ordered
    /// for every domain that has none, renewed at two thirds of their lifetime, kept when a
    /// renewal fails, stored (account, certificates, schedule) in [acme] storage.
    ///
    /// Example: pacc serve /etc/pacc/provider.toml --listen 0.0.0.0:443
    Serve {
        /// The description file.
        description: PathBuf,
        /// Listen here (repeatable); default: [serve] listen in the description.
        #[arg(long, value_name = "IP:PORT")]
        listen: Vec<SocketAddr>,
        /// A directory of PEM files (certificate chain + key each), chosen by SNI.
        #[arg(long, value_name = "DIR")]
        cert_dir: Option<PathBuf>,
        /// Worker threads (default: one per CPU core).
        #[arg(long, value_name = "N")]
        threads: Option<usize>,
        /// Log one JSON line per request on stdout (time, SNI, Host, path, status, bytes,
        /// duration); off by default.
        #[arg(long)]
        access_log: bool,
        /// Serve Prometheus metrics at http://IP:PORT/metrics (plain HTTP: keep it on
        /// loopback or a private network); off by default.
        #[arg(long, value_name = "IP:PORT")]
        metrics: Option<SocketAddr>,
    },
    /// Check a live deployment the way a client sees it: PASS / INFO / WARN / FAIL per finding.
    ///
    /// Runs the client's own discovery (TLS 1.3, no redirects, every TXT record parsed and
    /// judged, the document validated, the MX-fallback path when MTA-STS is present), probes
    /// every service, and with --expect compares the live bytes with the local rendering and
    /// says which stage of a change (pacc rotate) the domain is in. Exit code 0 only when
    /// nothing fails (1 otherwise).
    ///
    /// Example: pacc check example.com --expect provider.toml
    Check {
        /// The domain to check (or --all / --domains for many).
        #[arg(required_unless_present_any = ["all", "domains"])]
        domain: Option<String>,
        /// Check every domain of this description (and compare each with its rendering).
        #[arg(long, value_name = "DESCRIPTION", conflicts_with_all = ["domain", "domains"])]
        all: Option<PathBuf>,
        /// Check every domain listed in this file (one per line; `#` starts a comment).
        #[arg(long, value_name = "FILE", conflicts_with = "domain")]
        domains: Option<PathBuf>,
        /// With --all or --domains: how many domains are checked at once.
        #[arg(long, value_name = "N", default_value_t = 32)]
        jobs: usize,
        /// Compare with the rendering of this description.
        #[arg(long, value_name = "DESCRIPTION")]
        expect: Option<PathBuf>,
        /// Do not probe the services.
        #[arg(long)]
        no_probe: bool,
        #[command(flatten)]
        network: NetworkArgs,
        /// Findings as one JSON object (with --all/--domains: JSON Lines, one object per
        /// domain, then `{"summary": …}`).
        #[arg(long)]
        json: bool,
    },
    /// Print the safe order for changing a domain's document (publish, wait, switch, retire).
    ///
    /// Example: pacc rotate provider.toml --domain example.com --current "v=UAAC1; a=sha256; d=…"
    Rotate {
        /// The description with the new document.
        description: PathBuf,
        /// The domain.
        #[arg(long)]
        domain: String,
        /// The record(s) published now (to name them in the retire step); each must be a
        /// valid UAAC1 record.
        #[arg(long, value_name = "TXT")]
        current: Vec<String>,
        /// The TTL the current records are published with (the wait before switching the
        /// bytes); default: looked up in DNS, asking the zone's authoritative servers.
        #[arg(long, value_name = "SECONDS")]
        current_ttl: Option<u32>,
        /// Ask this DNS server for the published records instead of the system's resolver:
        /// IP (port 53), IP:PORT or [IPv6]:PORT.
        #[arg(long, value_name = "IP[:PORT]", value_parser = parse_dns, conflicts_with = "offline")]
        dns: Option<SocketAddr>,
        /// Look nothing up: the current records are only those given with --current, their
        /// TTL --current-ttl or else the description's.
        #[arg(long)]
        offline: bool,
        /// Print one JSON object (`pacc schema rotate` describes it).
        #[arg(long)]
        json: bool,
    },
    /// List the saved accounts, or show, check or remove one.
    ///
    /// `pacc setup` saves every account it signed in to (no secret in the file: passwords and
    /// tokens are in the system keyring). `accounts check ADDR` discovers again and reports
    /// whether the provider's configuration changed, and whether the digest still verifies.
    ///
    /// Example: pacc accounts show alice@example.com --json
    #[command(after_help = ACCOUNT_EXIT_CODES)]
    Accounts {
        #[command(subcommand)]
        action: Option<AccountsAction>,
        /// One JSON object on stdout.
        #[arg(long, global = true)]
        json: bool,
    },
    /// Print a valid OAuth access token for a saved account (refreshed when it expires).
    ///
    /// For mail clients: msmtp `passwordeval`, NeoMutt `*_oauth_refresh_command`, aerc
    /// `*-cred-cmd`. The token goes to stdout only.
    ///
    /// Example: pacc token alice@example.com --service submit
    #[command(after_help = ACCOUNT_EXIT_CODES)]
    Token {
        /// The account's address.
        address: String,
        /// The service the token is for (`imap`, `submit`, `caldav`…); any by default.
        #[arg(long, value_name = "KIND")]
        service: Option<String>,
        /// Give up after this many seconds.
        #[arg(long, value_name = "SECONDS", default_value_t = 15.0, value_parser = parse_timeout)]
        timeout: f64,
    },
    /// Print the stored password of a saved account (for `PassCmd`, `passwordeval`,
    /// `password.fetch`, `source-cred-cmd`).
    ///
    /// Example: pacc password alice@example.com
    #[command(after_help = ACCOUNT_EXIT_CODES)]
    Password {
        /// The account's address.
        address: String,
    },
    /// Write a saved account's configuration for a mail, calendar or contacts client.
    ///
    /// Formats: mbsync, msmtp, vdirsyncer, aerc, neomutt, himalaya, thunderbird (autoconfig
    /// clientConfig 1.1 XML) and pacc (the verified document with its source and digest).
    /// Credentials are never written: the files call `pacc password` or `pacc token`. Only
    /// services the client supports are written; stderr lists the others and why.
    ///
    /// Example: pacc export alice@example.com --format msmtp --output ~/.msmtprc
    #[command(after_help = ACCOUNT_EXIT_CODES)]
    Export {
        /// The account's address.
        address: String,
        /// The client format.
        #[arg(long, value_name = "FORMAT", value_parser = ["mbsync", "msmtp", "vdirsyncer", "aerc", "neomutt", "himalaya", "thunderbird", "pacc"])]
        format: String,
        /// Write here instead of stdout (refused if it exists, unless --force).
        #[arg(long, value_name = "PATH")]
        output: Option<PathBuf>,
        /// Replace an existing file.
        #[arg(long)]
        force: bool,
        /// mbsync: the Maildir root (default ~/Mail/<address>).
        #[arg(long, value_name = "DIR")]
        maildir: Option<String>,
        /// vdirsyncer: where calendars and contacts are kept (default ~/.local/share/vdirsyncer/<address>).
        #[arg(long, value_name = "DIR")]
        vdir: Option<String>,
    },
    /// The whole flow against a local provider, with no network needed.
    ///
    /// Starts a DNS server, a certificate authority, HTTPS hosts and scripted mail servers
    /// on 127.0.0.0/8, publishes a provider there, and runs what the commands would: discover,
    /// probe, the confirmation screen, sign-in with a password and (when the test
    /// authorization server is installed) with OAuth, the MX fallback of a hosted domain,
    /// and a tampered document. Needs permission to bind ports 53, 443 and the mail ports
    /// (root). With --keep it stays up for you to try every command by hand.
    Demo(DemoArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    ///
    /// Example: pacc completions bash > /etc/bash_completion.d/pacc
    ///          pacc completions zsh > "${fpath[1]}/_pacc"
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the JSON Schema of a command's --json output (discover, probe, setup, check,
    /// render, rotate, accounts, accounts-show, error), or list them.
    ///
    /// Example: pacc schema setup > setup.schema.json
    Schema {
        /// Which output; without it, the list.
        name: Option<String>,
    },
    /// Print the manual page (roff), for `man`.
    ///
    /// Example: pacc man > ~/.local/share/man/man1/pacc.1 && man pacc
    Man,
    /// Serve JSON-RPC 2.0 on stdin/stdout, for apps that embed pacc without linking Rust.
    ///
    /// One JSON object per line in each direction. Methods: discover, probe, setup.start →
    /// setup.confirm → setup.authorize → setup.sign_in (the whole setup as round trips: the
    /// confirmation, the OAuth URL or device code and the password stay with the app),
    /// setup.close, cancel, accounts.list/show/remove, export, rpc.discover. Progress arrives
    /// as `progress` notifications. Results are the objects of the commands' --json output.
    /// Every request shares the network flags given here (--dns, --ca-file, --timeout per
    /// request).
    ///
    /// Example: echo '{"jsonrpc":"2.0","id":1,"method":"discover","params":{"address":"alice@example.com"}}' | pacc rpc
    Rpc {
        /// Print the OpenRPC description of every method and exit.
        #[arg(long)]
        openrpc: bool,
        #[command(flatten)]
        network: NetworkArgs,
    },
}

#[derive(Debug, Subcommand)]
enum AccountsAction {
    /// Show one account: where its settings came from, its services and methods.
    Show {
        /// The account's address.
        address: String,
    },
    /// Remove an account and its secrets from the keyring.
    Remove {
        /// The account's address.
        address: String,
    },
    /// Discover again: has the provider's configuration changed, does the digest verify?
    Check {
        /// The account's address.
        address: String,
        /// Give up after this many seconds.
        #[arg(long, value_name = "SECONDS", default_value_t = 15.0, value_parser = parse_timeout)]
        timeout: f64,
    },
}

const ACCOUNT_EXIT_CODES: &str = "\
Exit codes:
  0  done
  1  accounts check: the provider's configuration changed or no longer verifies
  2  usage or runtime error
  4  temporary failure (the token endpoint or the provider could not be reached)
  8  no account is saved for this address
  9  no usable secret: not stored (no keyring), or the refresh token was refused
     (sign in again with pacc setup)
 10  export: the file exists (use --force), or the client supports none of the services";

#[derive(Debug, Args)]
struct NetworkArgs {
    /// Ask this DNS server instead of the system's resolver: IP (port 53), IP:PORT or
    /// [IPv6]:PORT; UDP with TCP fallback.
    #[arg(long, value_name = "IP[:PORT]", value_parser = parse_dns)]
    dns: Option<SocketAddr>,
    /// Also trust the CA certificates in this PEM file (in addition to the system's roots).
    /// Certificate verification itself cannot be turned off.
    #[arg(long = "ca-file", value_name = "PEM")]
    ca_files: Vec<PathBuf>,
    /// Do not try the MX fallback when the domain publishes nothing itself.
    #[arg(long)]
    no_mx_fallback: bool,
    /// Contact MX-derived hosts only after the primary path is absent and the MTA-STS policy
    /// authorised them (slower; by default the fallback's lookups start alongside).
    #[arg(long)]
    no_speculation: bool,
    /// How the configuration location is derived from an MX host (experimental; the draft
    /// leaves it open):
    /// ua-auto-config (https://ua-auto-config.<mx>/…, the default), mx-host (https://<mx>/…),
    /// parent (first label removed), registrable (registrable domain).
    #[arg(long, value_name = "STRATEGY", default_value = "ua-auto-config", value_parser = parse_strategy)]
    mx_uri_strategy: MxUriStrategy,
    /// Give up after this many seconds in total: one deadline for the whole command
    /// (discovery, probes, OAuth exchanges, sign-in); only time spent waiting for you
    /// (prompts, the browser) is added.
    #[arg(long, value_name = "SECONDS", default_value_t = 15.0, value_parser = parse_timeout)]
    timeout: f64,
}

#[derive(Debug, Args)]
struct OutputArgs {
    /// Print one JSON object on stdout instead of text, whatever the outcome (`pacc schema
    /// COMMAND` prints its JSON Schema).
    #[arg(long)]
    json: bool,
    /// Log what happens on stderr (-v: steps, -vv: protocol details).
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
}

#[derive(Debug, Args)]
struct DiscoverArgs {
    /// The email address (only its domain is used for discovery).
    email: String,
    #[command(flatten)]
    network: NetworkArgs,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Debug, Args)]
struct DemoArgs {
    /// Log what happens on stderr (-v: steps, -vv: protocol details).
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Keep the demo provider running afterwards and print the --dns/--ca-file flags to try
    /// every other command against it by hand, until Ctrl-C.
    #[arg(long)]
    keep: bool,
}

fn parse_strategy(s: &str) -> Result<MxUriStrategy, String> {
    match s {
        "ua-auto-config" => Ok(MxUriStrategy::UaAutoConfigPrefix),
        "mx-host" => Ok(MxUriStrategy::MxHost),
        "parent" => Ok(MxUriStrategy::ParentDomain),
        "registrable" => Ok(MxUriStrategy::RegistrableDomain),
        other => Err(format!(
            "'{other}' is not one of ua-auto-config, mx-host, parent, registrable"
        )),
    }
}

/// `--dns`: an IP address with or without a port (53 by default); IPv6 with a port in
/// brackets.
fn parse_dns(s: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    let bare = s
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .unwrap_or(s);
    bare.parse::<std::net::IpAddr>()
        .map(|ip| SocketAddr::new(ip, 53))
        .map_err(|_| {
            format!(
                "{s:?} is not a DNS server address: give an IP (port 53), IP:PORT or [IPv6]:PORT"
            )
        })
}

fn parse_timeout(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("'{s}' is not a number of seconds"))?;
    if !(0.1..=600.0).contains(&v) {
        return Err("the timeout must be between 0.1 and 600 seconds".to_owned());
    }
    Ok(v)
}

fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "pacc=debug,pacc_proto=debug,warn",
        _ => "pacc=trace,pacc_proto=trace,info",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("PACC_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    // Colour codes only where stderr gets colour (never into files or the journal).
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(term::stderr_color())
        .with_target(false)
        .try_init();
}

fn init_logging_serve() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PACC_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("pacc=info,rustls=error,warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(term::stderr_color())
        .try_init();
}

/// A reader that went away (`pacc … | head`) ends the program quietly, as ripgrep does:
/// Rust ignores SIGPIPE, so a write to a closed pipe fails and `println!` panics; that one
/// panic becomes a silent, successful exit. Every other panic is reported as usual.
fn quiet_on_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if message.contains("Broken pipe") {
            std::process::exit(0);
        }
        default(info);
    }));
}

fn main() -> ExitCode {
    quiet_on_broken_pipe();
    // `--json` anywhere: one JSON object on stdout whatever happens, usage errors included.
    let json = std::env::args_os().skip(1).any(|a| a == "--json");
    output::set_json_mode(json);
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            let text = e.render().to_string();
            let help = matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion);
            // clap quotes the offending argument as given, and on a terminal passes its bytes
            // through: when an argument carries terminal controls (pasted from somewhere),
            // the message is printed plain (clap's rendering strips escape sequences) with
            // what remains escaped, never interpreted.
            let tampered = !help
                && std::env::args_os().skip(1).any(|a| {
                    let a = a.to_string_lossy();
                    pacc_proto::name::escape_for_terminal(&a) != a
                });
            if (help || !json) && !tampered {
                e.exit();
            }
            if tampered {
                let safe: Vec<String> = text
                    .lines()
                    .map(pacc_proto::name::escape_for_terminal)
                    .collect();
                #[allow(clippy::print_stderr)]
                {
                    eprintln!("{}", safe.join("\n"));
                }
                if !json {
                    return ExitCode::from(exit::USAGE);
                }
            } else {
                // The usage error on stderr as usual, and as the one JSON object on stdout.
                let _ = e.print();
            }
            let first = text
                .lines()
                .next()
                .unwrap_or("")
                .trim_start_matches("error: ");
            output::record_error("usage", first);
            output::finish_json(exit::USAGE);
            return ExitCode::from(exit::USAGE);
        }
    };
    term::init(cli.color, cli.quiet);
    let interruptible = !matches!(cli.command, Command::Serve { .. } | Command::Rpc { .. });
    let threads = match &cli.command {
        Command::Serve {
            threads: Some(n), ..
        } => (*n).max(1),
        Command::Serve { .. } => std::thread::available_parallelism().map_or(2, |n| n.get()),
        _ => 2,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&format!("cannot start the async runtime: {e}")),
    };
    if json && interruptible {
        // Ctrl-C ends a --json run with its one object saying so (exit 130), also while the
        // main thread waits on a prompt.
        runtime.spawn(async {
            if tokio::signal::ctrl_c().await.is_ok() {
                output::record_error("interrupted", "interrupted (Ctrl-C); nothing more was sent");
                output::finish_json(exit::INTERRUPTED);
                std::process::exit(i32::from(exit::INTERRUPTED));
            }
        });
    }
    let code = runtime.block_on(async {
        match cli.command {
            Command::Discover(args) => discover(args).await,
            Command::Probe(args) => probe(args).await,
            Command::Setup {
                email,
                accept_domains,
                auth,
                password_stdin,
                password_env,
                no_browser,
                device,
                browser_timeout,
                show_secrets,
                token_file,
                store_secrets,
                no_save,
                export,
                network,
                output,
            } => {
                init_logging(output.verbose);
                match prepare(&email, &network) {
                    Ok((address, client)) => {
                        let source = setup_cmd::PasswordSource {
                            policy: match auth.as_str() {
                                "oauth" => pacc_proto::auth::select::AuthPolicy::Oauth,
                                "password" => pacc_proto::auth::select::AuthPolicy::Password,
                                _ => pacc_proto::auth::select::AuthPolicy::Auto,
                            },
                            stdin: password_stdin,
                            env: password_env,
                            no_browser,
                            device,
                            browser_wait: Duration::from_secs(browser_timeout),
                            show_secrets,
                            token_file,
                            save: !no_save,
                            store_secrets: if store_secrets == "none" {
                                pacc::accounts::Secrets::None
                            } else {
                                accounts_cmd::secrets()
                            },
                            ca_files: network
                                .ca_files
                                .iter()
                                .filter_map(|p| std::fs::canonicalize(p).ok())
                                .map(|p| p.display().to_string())
                                .collect(),
                            dns: network.dns.map(|d| d.to_string()),
                            export: export
                                .iter()
                                .filter_map(|f| pacc_proto::export::Format::parse(f))
                                .collect(),
                        };
                        setup_cmd::run(
                            std::sync::Arc::new(client),
                            &address,
                            accept_domains.as_deref(),
                            &source,
                            output.json,
                        )
                        .await
                    }
                    Err(code) => code,
                }
            }
            Command::Render {
                description,
                domain,
                out,
                json,
            } => provider_cmd::render_cmd(&description, domain.as_deref(), out.as_deref(), json),
            Command::Rotate {
                description,
                domain,
                current,
                current_ttl,
                dns,
                offline,
                json,
            } => {
                let client = if offline {
                    None
                } else {
                    match Client::builder()
                        .dns(dns.map_or(DnsConfig::System, DnsConfig::Server))
                        .timeouts(Timeouts::with_overall(Duration::from_secs(10)))
                        .build()
                    {
                        Ok(c) => Some(c),
                        Err(e) => return report_error(&e.to_string()),
                    }
                };
                provider_cmd::rotate_cmd(
                    client.as_ref(),
                    &description,
                    &domain,
                    &current,
                    current_ttl,
                    json,
                )
                .await
            }
            Command::Serve {
                description,
                listen,
                cert_dir,
                access_log,
                metrics,
                ..
            } => {
                init_logging_serve();
                provider_cmd::serve_cmd(
                    &description,
                    &listen,
                    cert_dir.as_ref(),
                    access_log,
                    metrics,
                )
                .await
            }
            Command::Check {
                domain,
                all,
                domains,
                jobs,
                expect,
                no_probe,
                network,
                json,
            } => {
                init_logging(0);
                let client = match build_client(&network) {
                    Ok(c) => c,
                    Err(code) => return code,
                };
                match (domain, all, domains) {
                    (Some(domain), _, _) => {
                        provider_cmd::check_cmd(
                            &client,
                            &domain,
                            expect.as_deref(),
                            !no_probe,
                            json,
                        )
                        .await
                    }
                    (None, all, list) => {
                        match provider_cmd::fleet_domains(all.as_deref(), list.as_deref()) {
                            Ok(names) => {
                                provider_cmd::check_fleet(
                                    &client,
                                    names,
                                    all.as_deref().or(expect.as_deref()),
                                    !no_probe,
                                    jobs,
                                    json,
                                )
                                .await
                            }
                            Err(code) => code,
                        }
                    }
                }
            }
            Command::Demo(args) => demo::run(args.verbose, args.keep).await,
            Command::Completions { shell } => {
                let mut cmd = <Cli as clap::CommandFactory>::command();
                let mut script = Vec::new();
                clap_complete::generate(shell, &mut cmd, "pacc", &mut script);
                output::print_raw(&String::from_utf8_lossy(&script));
                exit::OK
            }
            Command::Schema { name } => output::schema_cmd(name.as_deref()),
            Command::Man => {
                let cmd = <Cli as clap::CommandFactory>::command();
                let mut page = Vec::new();
                match clap_mangen::Man::new(cmd).render(&mut page) {
                    Ok(()) => {
                        output::print_raw(&String::from_utf8_lossy(&page));
                        exit::OK
                    }
                    Err(e) => report_error(&format!("cannot render the manual page: {e}")),
                }
            }
            Command::Rpc { openrpc, network } => {
                if openrpc {
                    #[allow(clippy::print_stdout)]
                    {
                        print!("{}", rpc::OPENRPC);
                    }
                    exit::OK
                } else {
                    match build_client(&network) {
                        Ok(client) => rpc::serve(client).await,
                        Err(code) => code,
                    }
                }
            }
            Command::Accounts { action, json } => {
                init_logging(0);
                accounts_cmd::accounts(action, json).await
            }
            Command::Token {
                address,
                service,
                timeout,
            } => {
                init_logging(0);
                accounts_cmd::token(&address, service.as_deref(), timeout).await
            }
            Command::Password { address } => {
                init_logging(0);
                accounts_cmd::password(&address).await
            }
            Command::Export {
                address,
                format,
                output,
                force,
                maildir,
                vdir,
            } => {
                init_logging(0);
                accounts_cmd::export(&address, &format, output.as_deref(), force, maildir, vdir)
            }
        }
    });
    output::finish_json(code);
    ExitCode::from(code)
}

/// Print a runtime error the way every command does and return the usage exit code.
pub(crate) fn fail(message: &str) -> ExitCode {
    ExitCode::from(report_error(message))
}

pub(crate) fn report_error(message: &str) -> u8 {
    report_error_kind("error", message)
}

/// [`report_error`] with a stable `kind` for the JSON contract (`invalid-address`,
/// `ca-file`, `usage`, …).
pub(crate) fn report_error_kind(kind: &'static str, message: &str) -> u8 {
    #[allow(clippy::print_stderr)]
    {
        eprintln!(
            "pacc: {} {}",
            term::paint("error:", "1;31", term::stderr_color()),
            pacc_proto::name::escape_for_terminal(message)
        );
    }
    output::record_error(kind, message);
    exit::USAGE
}

/// Parse the address and build a client from the network flags, or say why not.
fn prepare(email: &str, network: &NetworkArgs) -> Result<(EmailAddress, Client), u8> {
    let address = EmailAddress::parse(email)
        .map_err(|e| report_error_kind("invalid-address", &e.to_string()))?;
    Ok((address, build_client(network)?))
}

/// A client from the network flags, or say why not.
fn build_client(network: &NetworkArgs) -> Result<Client, u8> {
    let mut builder = Client::builder()
        .dns(network.dns.map_or(DnsConfig::System, DnsConfig::Server))
        .timeouts(Timeouts::with_overall(Duration::from_secs_f64(
            network.timeout,
        )))
        .discovery_options(Options {
            mx_fallback: !network.no_mx_fallback,
            speculative: !network.no_speculation,
            mx_strategy: network.mx_uri_strategy,
        });
    for path in &network.ca_files {
        builder = builder
            .add_trust_anchors_pem_file(path)
            .map_err(|e| report_error_kind("ca-file", &e.to_string()))?;
    }
    builder.build().map_err(|e| report_error(&e.to_string()))
}

async fn discover(args: DiscoverArgs) -> u8 {
    init_logging(args.output.verbose);
    match prepare(&args.email, &args.network) {
        Ok((address, client)) => run_discovery(&client, &address, &args.output).await,
        Err(code) => code,
    }
}

async fn probe(args: DiscoverArgs) -> u8 {
    init_logging(args.output.verbose);
    match prepare(&args.email, &args.network) {
        Ok((address, client)) => probe_cmd::run(&client, &address, &args.output).await,
        Err(code) => code,
    }
}

/// Discover by `deadline`, with the live status line on stderr when `show` (and stderr is a
/// terminal).
pub(crate) async fn discover_with_progress(
    client: &Client,
    address: &EmailAddress,
    deadline: std::time::Instant,
    show: bool,
) -> pacc::Report {
    let progress = progress::Progress::new(show);
    let report = client
        .discover_domain_until(address.domain(), deadline, &|p| progress.update(p))
        .await;
    progress.finish();
    report
}

/// Discover, print the result (text or JSON), and return the exit code.
pub(crate) async fn run_discovery(client: &Client, address: &EmailAddress, out: &OutputArgs) -> u8 {
    let report = discover_with_progress(client, address, client.deadline(), !out.json).await;
    let output = DiscoverOutput::new(address, &report);
    output.print(out.json);
    output.exit_code()
}
