//! Real mail and DAV servers on loopback: Dovecot (IMAP 993, POP3 995, ManageSieve 4190 with
//! STARTTLS), Postfix (submission 465 with Dovecot SASL) and Radicale (CalDAV/CardDAV on 443).
//!
//! Each instance gets its own 127.x address, configuration directory and certificate issued
//! by the testbed CA, and stops when dropped. The binaries come from Debian's packages
//! (`.ci/run` installs them); [`available`] says whether they are on this machine.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::{Testbed, TestbedError, addr};

/// Test users: `(address, password)`; the full address is the username everywhere (W-1).
pub const USERS: [(&str, &str); 2] = [
    ("alice@example.test", "alice-secret"),
    ("bob@example.test", "bob-secret"),
];

/// A Dovecot account whose password has expired: refused with RFC 5530 `[EXPIRED]` (needs
/// Dovecot's Lua passdb, package `dovecot-auth-lua`; see [`expired_accounts`]).
pub const EXPIRED_USER: &str = "carol@example.test";

/// Whether Dovecot can report [`EXPIRED_USER`] as expired (its Lua passdb is installed).
pub fn expired_accounts() -> bool {
    Path::new("/usr/lib/dovecot/modules/auth/libauthdb_lua.so").exists()
}

/// Whether `python3` can import every one of `modules` (for the tests driven from Python);
/// says SKIPPED on stderr when not.
pub fn python_with(modules: &[&str]) -> bool {
    let ok = std::process::Command::new("python3")
        .args(["-c", &format!("import {}", modules.join(", "))])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        #[allow(clippy::print_stderr)]
        {
            eprintln!(
                "SKIPPED: needs python3 with {} (.ci/run installs them)",
                modules.join(", ")
            );
        }
    }
    ok
}

/// Whether `program` is installed (in PATH or at an absolute path).
pub fn available(program: &str) -> bool {
    if program.starts_with('/') {
        return Path::new(program).exists();
    }
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
}

/// A scratch directory every daemon user can traverse (Dovecot's and Postfix's unprivileged
/// processes read below it).
fn scratch(prefix: &str) -> Result<tempfile::TempDir, TestbedError> {
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in("/tmp")
        .map_err(TestbedError::Io)?;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
        .map_err(TestbedError::Io)?;
    Ok(dir)
}

fn write(path: &Path, text: &str) -> Result<(), TestbedError> {
    std::fs::write(path, text).map_err(TestbedError::Io)
}

/// Run a command that may leave a daemon behind: its output goes to `log` (a daemon keeps
/// inherited pipes open, so capturing output would wait forever).
fn run(cmd: &mut Command, log: &Path) -> Result<(), TestbedError> {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(TestbedError::Io)?;
    let err = out.try_clone().map_err(TestbedError::Io)?;
    let status = cmd
        .stdin(std::process::Stdio::null())
        .stdout(out)
        .stderr(err)
        .status()
        .map_err(TestbedError::Io)?;
    if status.success() {
        Ok(())
    } else {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        Err(TestbedError::Peer(format!(
            "{cmd:?} failed ({status}); {}:\n{text}",
            log.display()
        )))
    }
}

/// Wait until every `ip:port` accepts TCP connections.
async fn wait_ports(
    ip: Ipv4Addr,
    ports: &[u16],
    what: &str,
    log: &Path,
) -> Result<(), TestbedError> {
    let until = Instant::now() + Duration::from_secs(15);
    for port in ports {
        loop {
            if tokio::net::TcpStream::connect(SocketAddr::new(IpAddr::V4(ip), *port))
                .await
                .is_ok()
            {
                break;
            }
            if Instant::now() > until {
                let log = std::fs::read_to_string(log).unwrap_or_default();
                return Err(TestbedError::Peer(format!(
                    "{what} did not open {ip}:{port} in time; log:\n{log}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(())
}

/// Write a certificate and key for `names` into `dir`; returns (cert, key) paths.
fn cert_files(
    tb: &Testbed,
    dir: &Path,
    names: &[&str],
) -> Result<(PathBuf, PathBuf), TestbedError> {
    let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    let leaf = tb.ca.issue(&names, crate::CertKind::Valid)?;
    let (crt, key) = (dir.join("server.crt"), dir.join("server.key"));
    write(&crt, &leaf.cert_pem)?;
    write(&key, &leaf.key_pem)?;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644))
        .map_err(TestbedError::Io)?;
    Ok((crt, key))
}

/// Dovecot serving IMAPS 993, POP3S 995 and ManageSieve 4190 (STARTTLS) on one address,
/// with SASL for Postfix on port 12345 of the same address.
pub struct Dovecot {
    ip: Ipv4Addr,
    dir: tempfile::TempDir,
}

/// Point each of `names` at `ip` in the testbed DNS: every peer serves the names it is
/// started for, so callers never wire DNS by hand.
async fn publish(tb: &Testbed, names: &[&str], ip: Ipv4Addr) -> Result<(), TestbedError> {
    for n in names {
        tb.dns.add_a(n, ip).await?;
    }
    Ok(())
}

impl Dovecot {
    /// Start for the host `names` (all published in the testbed DNS).
    pub async fn start(tb: &Testbed, names: &[&str]) -> Result<Self, TestbedError> {
        Self::start_with(tb, names, None).await
    }

    /// [`Dovecot::start`], naming `openid_configuration` in its OAUTHBEARER error responses
    /// (RFC 7628 §3.2.2: where it expects tokens from).
    pub async fn start_with(
        tb: &Testbed,
        names: &[&str],
        openid_configuration: Option<&str>,
    ) -> Result<Self, TestbedError> {
        let ip = addr::free_ip(&[993, 995, 4190, 12345])
            .await
            .map_err(TestbedError::Bind)?;
        publish(tb, names, ip).await?;
        let dir = scratch("pacc-dovecot-")?;
        let d = dir.path();
        let (crt, key) = cert_files(tb, d, names)?;
        std::fs::create_dir_all(d.join("keys")).map_err(TestbedError::Io)?;
        let users: String = USERS
            .iter()
            .map(|(u, p)| format!("{u}:{{PLAIN}}{p}::::::\n"))
            .collect();
        write(&d.join("users"), &users)?;
        write(
            &d.join("oauth2.conf.ext"),
            &format!(
                "introspection_mode = local\nlocal_validation_key_dict = fs:posix:prefix={}/keys/\nusername_attribute = sub\nissuers = https://auth.example.test\n{}",
                d.display(),
                openid_configuration
                    .map(|u| format!("openid_configuration_url = {u}\n"))
                    .unwrap_or_default()
            ),
        )?;
        // With the Lua passdb one account's password is reported expired (the "account" class).
        let expired = if expired_accounts() {
            write(
                &d.join("expired.lua"),
                &format!(
                    "function auth_passdb_lookup(req)\n  if req.user == \"{EXPIRED_USER}\" then\n    return dovecot.auth.PASSDB_RESULT_PASS_EXPIRED, \"password expired\"\n  end\n  return dovecot.auth.PASSDB_RESULT_USER_UNKNOWN, \"\"\nend\n"
                ),
            )?;
            format!(
                "passdb {{\n  driver = lua\n  args = file={}/expired.lua blocking=yes\n  mechanisms = plain login\n  result_failure = continue\n  result_internalfail = continue\n}}\n",
                d.display()
            )
        } else {
            String::new()
        };
        let conf = format!(
            r#"base_dir = {d}/run
state_dir = {d}/state
instance_name = pacc-dovecot-{ip}
protocols = imap pop3 sieve
listen = {ip}
log_path = {d}/dovecot.log
ssl = required
ssl_cert = <{crt}
ssl_key = <{key}
auth_mechanisms = plain login oauthbearer xoauth2
auth_failure_delay = 0
first_valid_uid = 8
mail_location = maildir:{d}/mail/%d/%n
{expired}passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {d}/users
  mechanisms = plain login
}}
passdb {{
  driver = oauth2
  mechanisms = oauthbearer xoauth2
  args = {d}/oauth2.conf.ext
}}
userdb {{
  driver = static
  args = uid=mail gid=mail home={d}/mail/%d/%n
}}
service imap-login {{
  inet_listener imap {{
    port = 0
  }}
  inet_listener imaps {{
    port = 993
    ssl = yes
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    port = 0
  }}
  inet_listener pop3s {{
    port = 995
    ssl = yes
  }}
}}
service managesieve-login {{
  inet_listener sieve {{
    port = 4190
  }}
}}
service auth {{
  inet_listener sasl {{
    address = {ip}
    port = 12345
  }}
}}
"#,
            d = d.display(),
            crt = crt.display(),
            key = key.display(),
        );
        write(&d.join("dovecot.conf"), &conf)?;
        std::fs::create_dir_all(d.join("mail")).map_err(TestbedError::Io)?;
        let log = d.join("dovecot.log");
        run(
            Command::new("chown")
                .args(["mail:mail"])
                .arg(d.join("mail")),
            &log,
        )?;
        run(
            Command::new("dovecot")
                .arg("-c")
                .arg(d.join("dovecot.conf")),
            &log,
        )?;
        let me = Dovecot { ip, dir };
        wait_ports(
            ip,
            &[993, 995, 4190, 12345],
            "dovecot",
            &me.dir.path().join("dovecot.log"),
        )
        .await?;
        Ok(me)
    }

    /// Its address.
    pub fn ip(&self) -> Ipv4Addr {
        self.ip
    }

    /// Its SASL service for Postfix.
    pub fn sasl_addr(&self) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(self.ip), 12345)
    }

    /// The directory holding its configuration and log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Deliver `message` (RFC 5322 text) into `user@domain`'s INBOX, as a local delivery
    /// agent would (a new file in the Maildir's `new/`, owned by the mail user).
    pub fn deliver(&self, user: &str, domain: &str, message: &str) -> Result<(), TestbedError> {
        let root = self.dir.path().join("mail").join(domain).join(user);
        for sub in ["cur", "new", "tmp"] {
            std::fs::create_dir_all(root.join(sub)).map_err(TestbedError::Io)?;
        }
        let name = format!(
            "{}.pacc-test.{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_micros())
                .unwrap_or(0),
            std::process::id()
        );
        write(&root.join("new").join(name), message)?;
        let _ = Command::new("chown")
            .args(["-R", "mail:mail"])
            .arg(self.dir.path().join("mail"))
            .status();
        Ok(())
    }

    /// Where the authorization server's token-signing key must be written for Dovecot's
    /// local JWT validation (key id `pacc-test`, ES256).
    pub fn oauth_key_path(&self) -> PathBuf {
        self.dir.path().join("keys/default/ES256/pacc-test")
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        let _ = Command::new("dovecot")
            .arg("-c")
            .arg(self.dir.path().join("dovecot.conf"))
            .arg("stop")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// Postfix with submission on 465 (implicit TLS), authenticating through Dovecot.
pub struct Postfix {
    ip: Ipv4Addr,
    dir: tempfile::TempDir,
}

impl Postfix {
    /// Its log (every SMTP session and the delivery of each accepted message).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postfix.log")).unwrap_or_default()
    }

    /// Start for `hostname` (published in the testbed DNS), using `dovecot` for SASL.
    pub async fn start(
        tb: &Testbed,
        hostname: &str,
        dovecot: &Dovecot,
    ) -> Result<Self, TestbedError> {
        let ip = addr::free_ip(&[465]).await.map_err(TestbedError::Bind)?;
        publish(tb, &[hostname], ip).await?;
        let dir = scratch("pacc-postfix-")?;
        let d = dir.path();
        for sub in ["etc", "spool", "data"] {
            std::fs::create_dir_all(d.join(sub)).map_err(TestbedError::Io)?;
        }
        let log = d.join("postfix-commands.log");
        run(
            Command::new("chown").arg("postfix").arg(d.join("data")),
            &log,
        )?;
        let (crt, key) = cert_files(tb, d, &[hostname])?;
        let main = format!(
            "compatibility_level = 3.6\nqueue_directory = {d}/spool\ndata_directory = {d}/data\nmaillog_file_prefixes = /tmp\nmaillog_file = {d}/postfix.log\nmyhostname = {hostname}\ninet_interfaces = loopback-only\ninet_protocols = ipv4\nmydestination =\nlocal_transport = error:no local delivery\nvirtual_mailbox_domains = example.test\nvirtual_transport = discard:\nalias_maps =\nalias_database =\nsmtpd_tls_chain_files = {key}, {crt}\nsmtpd_tls_auth_only = yes\nsmtpd_sasl_type = dovecot\nsmtpd_sasl_path = inet:{sasl}\nsmtpd_relay_restrictions = permit_sasl_authenticated, reject\n",
            d = d.display(),
            key = key.display(),
            crt = crt.display(),
            sasl = dovecot.sasl_addr(),
        );
        write(&d.join("etc/main.cf"), &main)?;
        let mut master = format!(
            "{ip}:465 inet n - n - - smtpd\n  -o syslog_name=postfix/submissions\n  -o smtpd_tls_wrappermode=yes\n  -o smtpd_tls_security_level=encrypt\n  -o smtpd_sasl_auth_enable=yes\n"
        );
        for s in [
            "pickup unix n - n 60 1 pickup",
            "cleanup unix n - n - 0 cleanup",
            "qmgr unix n - n 300 1 qmgr",
            "tlsmgr unix - - n 1000? 1 tlsmgr",
            "rewrite unix - - n - - trivial-rewrite",
            "bounce unix - - n - 0 bounce",
            "defer unix - - n - 0 bounce",
            "trace unix - - n - 0 bounce",
            "verify unix - - n - 1 verify",
            "flush unix n - n 1000? 0 flush",
            "proxymap unix - - n - - proxymap",
            "smtp unix - - n - - smtp",
            "showq unix n - n - - showq",
            "error unix - - n - - error",
            "retry unix - - n - - error",
            "discard unix - - n - - discard",
            "anvil unix - - n - 1 anvil",
            "scache unix - - n - 1 scache",
            "postlog unix-dgram n - n - 1 postlogd",
        ] {
            master.push_str(s);
            master.push('\n');
        }
        write(&d.join("etc/master.cf"), &master)?;
        run(
            Command::new("postfix")
                .arg("-c")
                .arg(d.join("etc"))
                .arg("start"),
            &log,
        )?;
        let me = Postfix { ip, dir };
        wait_ports(ip, &[465], "postfix", &me.dir.path().join("postfix.log")).await?;
        Ok(me)
    }

    /// Its address.
    pub fn ip(&self) -> Ipv4Addr {
        self.ip
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        let _ = Command::new("postfix")
            .arg("-c")
            .arg(self.dir.path().join("etc"))
            .arg("stop")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// Radicale serving CalDAV and CardDAV over TLS on port 443 (Basic authentication).
pub struct Radicale {
    ip: Ipv4Addr,
    _dir: tempfile::TempDir,
    _child: tokio::process::Child,
}

impl Radicale {
    /// Start for the host `names` (all published in the testbed DNS).
    pub async fn start(tb: &Testbed, names: &[&str]) -> Result<Self, TestbedError> {
        let ip = addr::free_ip(&[443]).await.map_err(TestbedError::Bind)?;
        publish(tb, names, ip).await?;
        let dir = scratch("pacc-radicale-")?;
        let d = dir.path();
        let (crt, key) = cert_files(tb, d, names)?;
        let users: String = USERS.iter().map(|(u, p)| format!("{u}:{p}\n")).collect();
        write(&d.join("users"), &users)?;
        let conf = format!(
            "[server]\nhosts = {ip}:443\nssl = True\ncertificate = {crt}\nkey = {key}\n[auth]\ntype = htpasswd\nhtpasswd_filename = {d}/users\nhtpasswd_encryption = plain\nrealm = PACC test\n[storage]\nfilesystem_folder = {d}/collections\n[rights]\ntype = owner_only\n",
            crt = crt.display(),
            key = key.display(),
            d = d.display(),
        );
        write(&d.join("config"), &conf)?;
        let log = std::fs::File::create(d.join("radicale.log")).map_err(TestbedError::Io)?;
        let child = tokio::process::Command::new("radicale")
            .arg("--config")
            .arg(d.join("config"))
            .stdout(log.try_clone().map_err(TestbedError::Io)?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .map_err(TestbedError::Io)?;
        let log_path = d.join("radicale.log");
        let me = Radicale {
            ip,
            _dir: dir,
            _child: child,
        };
        wait_ports(ip, &[443], "radicale", &log_path).await?;
        Ok(me)
    }

    /// Its address.
    pub fn ip(&self) -> Ipv4Addr {
        self.ip
    }
}

/// Cyrus httpd serving JMAP (and CalDAV/CardDAV) over TLS on port 443 (Basic
/// authentication against its own sasldb). Installed from `cyrus-common cyrus-caldav
/// sasl2-bin` (never `cyrus-imapd`, which removes Dovecot).
pub struct Cyrus {
    ip: Ipv4Addr,
    dir: tempfile::TempDir,
}

/// Where Debian installs Cyrus' programs.
pub const CYRUS_MASTER: &str = "/usr/lib/cyrus/bin/master";

impl Cyrus {
    /// Start for the host `names` (the first is its server name; all published in the
    /// testbed DNS).
    pub async fn start(tb: &Testbed, names: &[&str]) -> Result<Self, TestbedError> {
        let ip = addr::free_ip(&[443]).await.map_err(TestbedError::Bind)?;
        publish(tb, names, ip).await?;
        let dir = scratch("pacc-cyrus-")?;
        let d = dir.path();
        for sub in ["conf", "spool", "sieve", "run"] {
            std::fs::create_dir_all(d.join(sub)).map_err(TestbedError::Io)?;
        }
        let (crt, key) = cert_files(tb, &d.join("conf"), names)?;
        let conf = format!(
            "configdirectory: {d}/conf\npartition-default: {d}/spool\nsievedir: {d}/sieve\nservername: {server}\nadmins: admin\nvirtdomains: userid\nunixhierarchysep: yes\naltnamespace: yes\nsasl_pwcheck_method: auxprop\nsasl_auxprop_plugin: sasldb\nsasl_sasldb_path: {d}/conf/sasldb2\nsasl_mech_list: PLAIN LOGIN\nallowplaintext: yes\ntls_server_cert: {crt}\ntls_server_key: {key}\nhttpmodules: jmap caldav carddav\nconversations: yes\nconversations_db: twoskip\nlmtpsocket: {d}/run/lmtp\nidlesocket: {d}/run/idle\nnotifysocket: {d}/run/notify\nautocreate_post: 1\nautocreate_quota: 0\nsyslog_prefix: cyrus-pacc\n",
            d = d.display(),
            server = names.first().copied().unwrap_or("jmap.example.test"),
            crt = crt.display(),
            key = key.display(),
        );
        write(&d.join("imapd.conf"), &conf)?;
        let master = format!(
            "START {{\n  recover cmd=\"ctl_cyrusdb -r -C {d}/imapd.conf\"\n}}\nSERVICES {{\n  lmtpunix cmd=\"lmtpd -C {d}/imapd.conf\" listen=\"{d}/run/lmtp\" prefork=0 maxchild=5\n  https cmd=\"httpd -s -C {d}/imapd.conf\" listen=\"{ip}:443\" prefork=0 maxchild=10\n}}\nEVENTS {{\n}}\nDAEMON {{\n}}\n",
            d = d.display()
        );
        write(&d.join("cyrus.conf"), &master)?;
        let log = d.join("cyrus-commands.log");
        for (user, password) in USERS {
            let (local, domain) = user.split_once('@').unwrap_or((user, ""));
            let mut cmd = Command::new("saslpasswd2");
            cmd.args(["-p", "-c", "-f"])
                .arg(d.join("conf/sasldb2"))
                .args(["-u", domain, local])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null());
            let mut child = cmd.spawn().map_err(TestbedError::Io)?;
            if let Some(mut stdin) = child.stdin.take() {
                use std::io::Write as _;
                let _ = writeln!(stdin, "{password}");
            }
            child.wait().map_err(TestbedError::Io)?;
        }
        run(
            Command::new("chown").args(["-R", "cyrus:mail"]).arg(d),
            &log,
        )?;
        let makedirs =
            std::fs::read_to_string("/usr/lib/cyrus/bin/makedirs").map_err(TestbedError::Io)?;
        let makedirs = makedirs.replace(
            "CONF=/etc/imapd.conf",
            &format!("CONF={}/imapd.conf", d.display()),
        );
        write(&d.join("makedirs.sh"), &makedirs)?;
        run(
            Command::new("su")
                .args(["-s", "/bin/sh", "cyrus", "-c"])
                .arg(format!("sh {}/makedirs.sh", d.display())),
            &log,
        )?;
        run(
            Command::new(CYRUS_MASTER)
                .arg("-C")
                .arg(d.join("imapd.conf"))
                .arg("-M")
                .arg(d.join("cyrus.conf"))
                .arg("-p")
                .arg(d.join("run/master.pid"))
                .arg("-d"),
            &log,
        )?;
        let me = Cyrus { ip, dir };
        wait_ports(ip, &[443], "cyrus", &log).await?;
        // JMAP needs each user's mailbox: deliver one message through lmtpd to create it.
        let lmtp = me.dir.path().join("run/lmtp");
        for _ in 0..100 {
            if lmtp.exists() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for (user, _) in USERS {
            let mut child = Command::new("su")
                .args(["-s", "/bin/sh", "cyrus", "-c"])
                .arg(format!(
                    "/usr/lib/cyrus/bin/deliver -C {}/imapd.conf {user}",
                    me.dir.path().display()
                ))
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .map_err(TestbedError::Io)?;
            if let Some(mut stdin) = child.stdin.take() {
                use std::io::Write as _;
                let _ =
                    stdin.write_all(b"From: setup@example.test\r\nSubject: welcome\r\n\r\nhi\r\n");
            }
            child.wait().map_err(TestbedError::Io)?;
        }
        Ok(me)
    }

    /// Its address.
    pub fn ip(&self) -> Ipv4Addr {
        self.ip
    }
}

impl Drop for Cyrus {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(self.dir.path().join("run/master.pid")) {
            let _ = Command::new("kill")
                .arg(pid.trim())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}

/// The test OAuth authorization server (oidc-provider under Node.js, `testdata/oidc`).
pub struct AuthServer {
    ip: Ipv4Addr,
    issuer: String,
    _child: tokio::process::Child,
    _dir: tempfile::TempDir,
}

/// Where the authorization server's script and its `node_modules` live.
pub fn oidc_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/oidc")
}

/// Whether Node.js and the installed oidc-provider package are present.
pub fn auth_server_available() -> bool {
    available("node") && oidc_dir().join("node_modules/oidc-provider").exists()
}

/// How the test authorization server deviates from the defaults.
#[derive(Debug, Clone, Default)]
pub struct AuthOptions {
    /// Publish `protected_resources` in the metadata (oauth-public -06).
    pub protected_resources: Option<Vec<String>>,
    /// Rewrite `token_type` in every token response (e.g. `DPoP`).
    pub token_type: Option<String>,
}

impl AuthServer {
    /// Start `https://<host>` as issuer on a fresh address; the token-signing public key is
    /// written to `pubkey_out` (for Dovecot's local JWT validation). The host is published
    /// in the testbed DNS.
    pub async fn start(
        tb: &Testbed,
        host: &str,
        pubkey_out: Option<&Path>,
        access_ttl: u32,
    ) -> Result<Self, TestbedError> {
        Self::start_with(tb, host, pubkey_out, access_ttl, &AuthOptions::default()).await
    }

    /// [`AuthServer::start`] with `options`.
    pub async fn start_with(
        tb: &Testbed,
        host: &str,
        pubkey_out: Option<&Path>,
        access_ttl: u32,
        options: &AuthOptions,
    ) -> Result<Self, TestbedError> {
        use tokio::io::AsyncBufReadExt as _;
        // Node can be slow to start on a loaded machine, and an address picked as free can
        // be taken by a parallel test before node binds it: wait generously, and try a
        // fresh address once more if it exits or stays silent.
        let mut last = String::new();
        for _attempt in 0..2 {
            let ip = addr::free_ip(&[443]).await.map_err(TestbedError::Bind)?;
            publish(tb, &[host], ip).await?;
            let dir = scratch("pacc-oidc-")?;
            let (crt, key) = cert_files(tb, dir.path(), &[host])?;
            let users: serde_json_lite::Users = USERS;
            let issuer = format!("https://{host}");
            let mut cmd = tokio::process::Command::new("node");
            cmd.arg(oidc_dir().join("server.mjs"))
                .current_dir(oidc_dir())
                .env("ISSUER", &issuer)
                .env("HOST", ip.to_string())
                .env("PORT", "443")
                .env("TLS_CERT", &crt)
                .env("TLS_KEY", &key)
                .env("USERS", serde_json_lite::users_json(users))
                .env("ACCESS_TTL", access_ttl.to_string())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::inherit())
                .kill_on_drop(true);
            if let Some(p) = pubkey_out {
                cmd.env("PUBKEY_OUT", p);
            }
            if let Some(r) = &options.protected_resources {
                let list: Vec<String> = r.iter().map(|u| format!("\"{u}\"")).collect();
                cmd.env("PROTECTED_RESOURCES", format!("[{}]", list.join(",")));
            }
            if let Some(t) = &options.token_type {
                cmd.env("TOKEN_TYPE", t);
            }
            let mut child = cmd.spawn().map_err(TestbedError::Io)?;
            let stdout = child
                .stdout
                .take()
                .ok_or_else(|| TestbedError::Peer("no stdout".into()))?;
            let mut lines = tokio::io::BufReader::new(stdout).lines();
            let ready = tokio::time::timeout(Duration::from_secs(60), async {
                while let Ok(Some(l)) = lines.next_line().await {
                    if l.starts_with("READY") {
                        return true;
                    }
                }
                false
            })
            .await
            .unwrap_or(false);
            if !ready {
                last = match child.try_wait() {
                    Ok(Some(status)) => format!("node exited ({status})"),
                    _ => "no READY within 60 s".to_owned(),
                };
                let _ = child.kill().await;
                continue;
            }
            // Keep draining its log so it never blocks on a full pipe.
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            return Ok(AuthServer {
                ip,
                issuer,
                _child: child,
                _dir: dir,
            });
        }
        Err(TestbedError::Peer(format!(
            "the authorization server did not start: {last}"
        )))
    }

    /// Its address.
    pub fn ip(&self) -> Ipv4Addr {
        self.ip
    }

    /// Its issuer identifier.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }
}

mod serde_json_lite {
    pub type Users = [(&'static str, &'static str); 2];
    /// `{"address":"password",…}` (the test users contain no characters that need escaping).
    pub fn users_json(users: Users) -> String {
        let body: Vec<String> = users
            .iter()
            .map(|(u, p)| format!("\"{u}\":\"{p}\""))
            .collect();
        format!("{{{}}}", body.join(","))
    }
}

/// A Secret Service for the keyring tests: a private D-Bus session bus and gnome-keyring's
/// secrets component on it, its login keyring unlocked. Programs find it through
/// [`SecretService::bus_address`] (`DBUS_SESSION_BUS_ADDRESS`).
pub struct SecretService {
    address: String,
    _bus: tokio::process::Child,
    _keyring: tokio::process::Child,
    _dir: tempfile::TempDir,
}

impl SecretService {
    /// Whether dbus-daemon and gnome-keyring-daemon are installed.
    pub fn available() -> bool {
        available("dbus-daemon") && available("gnome-keyring-daemon")
    }

    /// Start the bus and the keyring.
    pub async fn start() -> Result<Self, TestbedError> {
        use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _};
        let dir = scratch("pacc-keyring-")?;
        let socket = dir.path().join("bus");
        // A bus of our own without service activation: otherwise the first request to
        // org.freedesktop.secrets would start a second, locked gnome-keyring through the
        // system's service file before ours has claimed the name.
        let config = dir.path().join("bus.conf");
        write(
            &config,
            &format!(
                "<!DOCTYPE busconfig PUBLIC \"-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN\" \"http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd\">\n<busconfig>\n  <type>session</type>\n  <listen>unix:path={}</listen>\n  <policy context=\"default\">\n    <allow send_destination=\"*\" eavesdrop=\"true\"/>\n    <allow eavesdrop=\"true\"/>\n    <allow own=\"*\"/>\n  </policy>\n</busconfig>\n",
                socket.display()
            ),
        )?;
        let mut bus = tokio::process::Command::new("dbus-daemon")
            .arg(format!("--config-file={}", config.display()))
            .args(["--nofork", "--nopidfile", "--print-address=1"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(TestbedError::Io)?;
        let stdout = bus
            .stdout
            .take()
            .ok_or_else(|| TestbedError::Peer("no stdout".into()))?;
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let printed = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await
            .ok()
            .and_then(|l| l.ok().flatten())
            .ok_or_else(|| TestbedError::Peer("dbus-daemon did not start".into()))?;
        let address = printed.trim().to_owned();
        let log = std::fs::File::create(dir.path().join("gnome-keyring.log"))
            .map_err(TestbedError::Io)?;
        let runtime = dir.path().join("run");
        std::fs::create_dir_all(&runtime).map_err(TestbedError::Io)?;
        std::fs::set_permissions(&runtime, std::fs::Permissions::from_mode(0o700))
            .map_err(TestbedError::Io)?;
        let mut keyring = tokio::process::Command::new("gnome-keyring-daemon")
            .args(["--foreground", "--unlock", "--components=secrets"])
            .env("DBUS_SESSION_BUS_ADDRESS", &address)
            .env("HOME", dir.path())
            .env("XDG_DATA_HOME", dir.path().join("data"))
            .env("XDG_RUNTIME_DIR", &runtime)
            .stdin(std::process::Stdio::piped())
            .stdout(log.try_clone().map_err(TestbedError::Io)?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .map_err(TestbedError::Io)?;
        if let Some(mut stdin) = keyring.stdin.take() {
            let _ = stdin.write_all(b"pacc-test-keyring").await;
        }
        // Ready when the Secret Service name answers on the bus.
        for _ in 0..200 {
            let ok = tokio::process::Command::new("dbus-send")
                .args([
                    "--session",
                    "--print-reply",
                    "--dest=org.freedesktop.secrets",
                    "/org/freedesktop/secrets",
                    "org.freedesktop.DBus.Peer.Ping",
                ])
                .env("DBUS_SESSION_BUS_ADDRESS", &address)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .await
                .is_ok_and(|s| s.success());
            // Ready when a secret can be stored and read back (the login collection exists).
            let ok = ok
                && (!available("secret-tool") || {
                    let mut store = tokio::process::Command::new("secret-tool")
                        .args(["store", "--label=pacc-ready", "pacc-ready", "1"])
                        .env("DBUS_SESSION_BUS_ADDRESS", &address)
                        .stdin(std::process::Stdio::piped())
                        .stdout(std::process::Stdio::null())
                        .stderr(std::process::Stdio::null())
                        .spawn()
                        .map_err(TestbedError::Io)?;
                    if let Some(mut i) = store.stdin.take() {
                        let _ = i.write_all(b"ready").await;
                    }
                    store.wait().await.is_ok_and(|s| s.success())
                });
            if ok {
                return Ok(SecretService {
                    address,
                    _bus: bus,
                    _keyring: keyring,
                    _dir: dir,
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let log = std::fs::read_to_string(dir.path().join("gnome-keyring.log")).unwrap_or_default();
        Err(TestbedError::Peer(format!(
            "gnome-keyring did not come up on the bus; its log:\n{log}"
        )))
    }

    /// `DBUS_SESSION_BUS_ADDRESS` for programs that should use it.
    pub fn bus_address(&self) -> &str {
        &self.address
    }

    /// What gnome-keyring logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("gnome-keyring.log")).unwrap_or_default()
    }
}

/// Pebble, the ACME test CA (Debian package `pebble`): its ACME API on port 14000 of its own
/// address (HTTPS with a certificate from the testbed CA), its management API on 15000,
/// resolving names through the testbed DNS and validating TLS-ALPN-01 on `tls_port` of
/// whatever address a name resolves to. Nonces are never rejected at random and
/// validation does not sleep, so tests are quick and repeatable.
pub struct Pebble {
    ip: Ipv4Addr,
    dir: tempfile::TempDir,
    _child: tokio::process::Child,
}

/// How a [`Pebble`] is set up.
#[derive(Debug, Clone, Default)]
pub struct PebbleOptions {
    /// The port TLS-ALPN-01 validations connect to.
    pub tls_port: u16,
    /// The lifetime of issued certificates (Pebble's default is five years).
    pub validity_secs: Option<u64>,
    /// Require External Account Binding with this key id and base64url MAC key.
    pub eab: Option<(String, String)>,
}

impl Pebble {
    /// Start Pebble with `options`.
    pub async fn start(tb: &Testbed, options: &PebbleOptions) -> Result<Self, TestbedError> {
        let ip = addr::free_ip(&[14000, 15000])
            .await
            .map_err(TestbedError::Bind)?;
        let dir = scratch("pacc-pebble-")?;
        let d = dir.path();
        let (crt, key) = cert_files(tb, d, &[&ip.to_string()])?;
        write(&d.join("ca.pem"), tb.ca.cert_pem())?;
        let mut pebble = serde_json::json!({
            "listenAddress": format!("{ip}:14000"),
            "managementListenAddress": format!("{ip}:15000"),
            "certificate": crt,
            "privateKey": key,
            "httpPort": 5002,
            "tlsPort": options.tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": options.eab.is_some(),
        });
        if let Some(v) = options.validity_secs {
            pebble["certificateValidityPeriod"] = v.into();
        }
        if let Some((kid, mac)) = &options.eab {
            pebble["externalAccountMACKeys"] = serde_json::json!({ kid: mac });
        }
        write(
            &d.join("pebble.json"),
            &serde_json::json!({ "pebble": pebble }).to_string(),
        )?;
        let log_path = d.join("pebble.log");
        let log = std::fs::File::create(&log_path).map_err(TestbedError::Io)?;
        let child = tokio::process::Command::new("pebble")
            .arg("-config")
            .arg(d.join("pebble.json"))
            .arg("-dnsserver")
            .arg(tb.dns.addr().to_string())
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .stdout(log.try_clone().map_err(TestbedError::Io)?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .map_err(TestbedError::Io)?;
        let me = Pebble {
            ip,
            dir,
            _child: child,
        };
        wait_ports(ip, &[14000, 15000], "pebble", &log_path).await?;
        Ok(me)
    }

    /// The ACME directory URL.
    pub fn directory(&self) -> String {
        format!("https://{}:14000/dir", self.ip)
    }

    /// A PEM file with the CA that Pebble's own HTTPS certificate chains to.
    pub fn api_ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The management API's address (`/roots/0`, `/intermediates/0`).
    pub fn management(&self) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(self.ip), 15000)
    }

    /// Pebble's current root certificate (PEM), from its management API (`/roots/0`; the
    /// roots are made anew at every start).
    pub async fn root_pem(&self, tb: &Testbed) -> Result<String, TestbedError> {
        use http_body_util::BodyExt as _;
        let peer = |e: String| TestbedError::Peer(format!("pebble /roots/0: {e}"));
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(tb.ca.cert_der().clone())
            .map_err(|e| peer(e.to_string()))?;
        let cfg = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| peer(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let addr = self.management();
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(TestbedError::Io)?;
        let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg))
            .connect(rustls::pki_types::ServerName::from(addr.ip()), tcp)
            .await
            .map_err(TestbedError::Io)?;
        let (mut send, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                .await
                .map_err(|e| peer(e.to_string()))?;
        tokio::spawn(conn);
        let req = hyper::Request::builder()
            .uri("/roots/0")
            .header("host", addr.to_string())
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .map_err(|e| peer(e.to_string()))?;
        let body = send
            .send_request(req)
            .await
            .map_err(|e| peer(e.to_string()))?
            .into_body()
            .collect()
            .await
            .map_err(|e| peer(e.to_string()))?
            .to_bytes();
        String::from_utf8(body.to_vec()).map_err(|e| peer(e.to_string()))
    }

    /// What Pebble logged so far (to explain a failed test).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pebble.log")).unwrap_or_default()
    }
}
