//! The machine against a scripted world: every response is data, every outcome is checked
//! for both arrival orders.

use std::collections::HashMap;

use super::*;
use crate::digest::DigestRecord;
use crate::fetch::FetchedBody;

const BODY: &[u8] =
    br#"{"protocols":{"imap":{"host":"imap.example.com"}},"info":{"provider":{"name":"Ex"}}}"#;
const HOSTED: &[u8] = br#"{"protocols":{"imap":{"host":"imap.mail.example.net"}},"info":{"provider":{"name":"Hoster"}}}"#;

fn rec(body: &[u8]) -> Vec<Vec<Vec<u8>>> {
    vec![vec![
        DigestRecord::for_bytes(Algorithm::Sha256, body)
            .render()
            .into_bytes(),
    ]]
}

fn ok(body: &[u8]) -> FetchResult {
    Ok(FetchedBody::test_json(body.to_vec()))
}

fn nxdomain(host: &str) -> FetchResult {
    Err(FetchError::NoSuchHost {
        host: host.to_owned(),
    })
}

/// A scripted internet: anything not listed is NXDOMAIN.
#[derive(Default, Clone)]
struct World {
    txt: HashMap<String, TxtResult>,
    mx: HashMap<String, MxResult>,
    fetch: HashMap<String, FetchResult>,
}

impl World {
    fn txt(mut self, name: &str, r: TxtResult) -> Self {
        self.txt.insert(name.to_owned(), r);
        self
    }
    fn mx(mut self, name: &str, records: &[(u16, &str)]) -> Self {
        let r = records
            .iter()
            .map(|(p, e)| MxRecord {
                preference: *p,
                exchange: (*e).to_owned(),
            })
            .collect();
        self.mx.insert(name.to_owned(), Ok(r));
        self
    }
    fn fetch(mut self, url: &str, r: FetchResult) -> Self {
        self.fetch.insert(url.to_owned(), r);
        self
    }
    /// A valid PACC location for domain `d`.
    fn pacc(self, d: &str, body: &[u8]) -> Self {
        self.fetch(
            &format!("https://ua-auto-config.{d}{WELL_KNOWN_PATH}"),
            ok(body),
        )
        .txt(&format!("_ua-auto-config.{d}"), Ok(rec(body)))
    }
    fn sts(self, d: &str, id: &str, policy: &str) -> Self {
        self.txt(
            &format!("_mta-sts.{d}"),
            Ok(vec![vec![format!("v=STSv1; id={id}").into_bytes()]]),
        )
        .fetch(
            &format!("https://mta-sts.{d}/.well-known/mta-sts.txt"),
            Ok(FetchedBody::test_json(policy.as_bytes().to_vec())),
        )
    }
    fn answer(&self, r: &Request) -> Response {
        match r {
            Request::Txt { name } => Response::Txt(
                self.txt
                    .get(name)
                    .cloned()
                    .unwrap_or(Err(DnsFailure::NotFound)),
            ),
            Request::Mx { name } => Response::Mx(
                self.mx
                    .get(name)
                    .cloned()
                    .unwrap_or(Err(DnsFailure::NotFound)),
            ),
            Request::Fetch { url, host, .. } => Response::Fetch(
                self.fetch
                    .get(url)
                    .cloned()
                    .unwrap_or_else(|| nxdomain(host.as_str())),
            ),
        }
    }
}

/// Run to completion, answering the oldest (or newest) outstanding request first; also
/// returns every request asked.
fn run_order(
    world: &World,
    domain: &str,
    options: Options,
    newest_first: bool,
) -> (Report, Vec<Request>) {
    let mut d = Discovery::with_options(Domain::parse(domain).unwrap(), options);
    let mut outstanding: Vec<(RequestId, Request)> = Vec::new();
    let mut asked = Vec::new();
    for _ in 0..1000 {
        while let Some((id, r)) = d.poll_request() {
            asked.push(r.clone());
            outstanding.push((id, r));
        }
        if let Step::Done(report) = d.step() {
            return (*report, asked);
        }
        while let Some((id, r)) = d.poll_request() {
            asked.push(r.clone());
            outstanding.push((id, r));
        }
        assert!(!outstanding.is_empty(), "pending with nothing outstanding");
        let (id, r) = if newest_first {
            outstanding.pop().unwrap()
        } else {
            outstanding.remove(0)
        };
        d.handle(id, world.answer(&r), Duration::from_millis(1));
    }
    panic!("did not finish");
}

fn summary(r: &Report) -> Result<(Method, Vec<u8>), String> {
    r.outcome
        .as_ref()
        .map(|v| (v.method, v.bytes.clone()))
        .map_err(|e| e.kind().to_owned())
}

/// Both arrival orders, with and without speculation, must agree.
fn run(world: &World, domain: &str) -> Report {
    let (a, _) = run_order(world, domain, Options::default(), false);
    for (options, newest) in [
        (Options::default(), true),
        (
            Options {
                speculative: false,
                ..Options::default()
            },
            false,
        ),
        (
            Options {
                speculative: false,
                ..Options::default()
            },
            true,
        ),
    ] {
        let (b, _) = run_order(world, domain, options, newest);
        assert_eq!(
            summary(&a),
            summary(&b),
            "outcome depends on order or speculation"
        );
    }
    a
}

fn primary_only() -> Options {
    Options {
        mx_fallback: false,
        ..Options::default()
    }
}

// ---- primary path ----

#[test]
fn primary_asks_for_txt_and_fetch_at_once() {
    let mut d = Discovery::with_options(Domain::parse("example.com").unwrap(), primary_only());
    let mut reqs = Vec::new();
    while let Some((_, r)) = d.poll_request() {
        reqs.push(r);
    }
    assert_eq!(
        reqs,
        vec![
            Request::Txt {
                name: "_ua-auto-config.example.com".into()
            },
            Request::Fetch {
                url: "https://ua-auto-config.example.com/.well-known/user-agent-configuration.json"
                    .into(),
                host: Domain::parse("ua-auto-config.example.com").unwrap(),
                tls13_only: true
            }
        ]
    );
}

#[test]
fn match_gives_a_verified_config() {
    let r = run(&World::default().pacc("example.com", BODY), "example.com");
    let v = r.outcome.unwrap();
    assert_eq!(v.algorithm, Algorithm::Sha256);
    assert_eq!(v.method, Method::WellKnown);
}

#[test]
fn mismatch_is_integrity() {
    let w = World::default()
        .fetch(
            &config_url(&Domain::parse("example.com").unwrap()),
            ok(BODY),
        )
        .txt("_ua-auto-config.example.com", Ok(rec(b"other")));
    let e = run(&w, "example.com").outcome.unwrap_err();
    assert_eq!(e.kind(), "digest-mismatch");
    assert_eq!(e.class(), FailureClass::Integrity);
}

#[test]
fn no_record_is_absent() {
    for txt in [
        Err(DnsFailure::NotFound),
        Ok(vec![vec![b"unrelated".to_vec()]]),
    ] {
        let w = World::default()
            .fetch(
                &config_url(&Domain::parse("example.com").unwrap()),
                ok(BODY),
            )
            .txt("_ua-auto-config.example.com", txt);
        let (r, _) = run_order(&w, "example.com", primary_only(), false);
        let e = r.outcome.unwrap_err();
        assert_eq!(e.kind(), "digest-not-published");
        assert_eq!(e.class(), FailureClass::Absent);
    }
}

#[test]
fn invalid_json_after_a_match_is_integrity() {
    let w = World::default().pacc("example.com", b"{not json");
    let e = run(&w, "example.com").outcome.unwrap_err();
    assert_eq!(e.kind(), "invalid-document");
    assert_eq!(e.class(), FailureClass::Integrity);
}

#[test]
fn dns_temporary_failure_is_temporary() {
    let w = World::default()
        .fetch(
            &config_url(&Domain::parse("example.com").unwrap()),
            ok(BODY),
        )
        .txt(
            "_ua-auto-config.example.com",
            Err(DnsFailure::Temporary {
                detail: "SERVFAIL".into(),
            }),
        );
    assert_eq!(
        run(&w, "example.com").outcome.unwrap_err().class(),
        FailureClass::Temporary
    );
}

#[test]
fn a_fetch_failure_decides_without_waiting_for_txt() {
    let mut d = Discovery::with_options(Domain::parse("example.com").unwrap(), primary_only());
    let reqs: Vec<_> = std::iter::from_fn(|| d.poll_request()).collect();
    let (fid, _) = reqs
        .iter()
        .find(|(_, r)| matches!(r, Request::Fetch { .. }))
        .unwrap();
    d.handle(*fid, Response::Fetch(nxdomain("h")), Duration::ZERO);
    let Step::Done(r) = d.step() else {
        panic!("should be done")
    };
    assert_eq!(r.outcome.unwrap_err().class(), FailureClass::Absent);
    assert!(matches!(d.step(), Step::Pending), "done is reported once");
}

#[test]
fn expiry_decides_with_timeouts() {
    let mut d = Discovery::with_options(Domain::parse("example.com").unwrap(), primary_only());
    let reqs: Vec<_> = std::iter::from_fn(|| d.poll_request()).collect();
    d.handle(reqs[0].0, Response::Txt(Ok(rec(BODY))), Duration::ZERO);
    let r = d.expire().unwrap();
    let e = r.outcome.unwrap_err();
    assert_eq!(e.kind(), "timeout");
    assert_eq!(e.class(), FailureClass::Temporary);
    assert!(d.expire().is_none());
}

#[test]
fn mismatched_and_unknown_ids_are_ignored() {
    let mut d = Discovery::with_options(Domain::parse("example.com").unwrap(), primary_only());
    let reqs: Vec<_> = std::iter::from_fn(|| d.poll_request()).collect();
    let (t, f) = (reqs[0].0, reqs[1].0);
    d.handle(f, Response::Txt(Ok(rec(BODY))), Duration::ZERO);
    d.handle(t, Response::Fetch(ok(BODY)), Duration::ZERO);
    d.handle(RequestId(999), Response::Fetch(ok(BODY)), Duration::ZERO);
    assert!(matches!(d.step(), Step::Pending));
}

// ---- MX fallback: spec §4.5 M1 … M10 (email domain customer.example) ----

const M_POLICY: &str = "version: STSv1\nmode: enforce\nmx: *.mail.example.net\nmax_age: 86400\n";

fn m1_world() -> World {
    World::default()
        .sts("customer.example", "1", M_POLICY)
        .mx(
            "customer.example",
            &[
                (10, "mx01.mail.example.net."),
                (10, "mx02.mail.example.net."),
                (20, "backup.example.org."),
            ],
        )
        .pacc("mx01.mail.example.net", HOSTED)
        .pacc("mx02.mail.example.net", HOSTED)
        .pacc("backup.example.org", b"{\"different\":true}")
}

fn fallback_kind(r: &Report) -> &'static str {
    r.outcome.as_ref().err().map_or("ok", DiscoveryError::kind)
}

#[test]
fn m1_two_identical_best_hosts() {
    let r = run(&m1_world(), "customer.example");
    let v = r.outcome.as_ref().unwrap();
    assert_eq!(v.method, Method::MxFallback);
    assert_eq!(v.bytes, HOSTED);
    let mx = v.mx.as_ref().unwrap();
    assert_eq!(mx.policy_id, "1");
    assert_eq!(mx.preference, 10);
    let hosts: Vec<&str> = mx.hosts.iter().map(|h| h.mx_host.as_str()).collect();
    assert_eq!(hosts, ["mx01.mail.example.net", "mx02.mail.example.net"]);
    assert_eq!(mx.mx_domains(), vec![Domain::parse("example.net").unwrap()]);
    let fb = r.fallback.as_ref().unwrap();
    assert!(fb.used);
    assert_eq!(fb.selected.len(), 2);
    // The worse-preference host is never asked.
    let (_, asked) = run_order(&m1_world(), "customer.example", Options::default(), false);
    assert!(
        !asked
            .iter()
            .any(|q| matches!(q, Request::Fetch { url, .. } if url.contains("backup")))
    );
}

#[test]
fn m2_one_byte_difference_fails() {
    let mut other = HOSTED.to_vec();
    other[10] ^= 1;
    let w = m1_world().pacc("mx02.mail.example.net", &other);
    let r = run(&w, "customer.example");
    assert_eq!(fallback_kind(&r), "mx-configs-differ");
    assert_eq!(r.outcome.unwrap_err().class(), FailureClass::Integrity);
}

#[test]
fn m3_unreachable_host_fails_the_fallback() {
    let w = m1_world().fetch(
        "https://ua-auto-config.mx02.mail.example.net/.well-known/user-agent-configuration.json",
        Err(FetchError::Connect {
            host: "ua-auto-config.mx02.mail.example.net".into(),
            detail: "refused".into(),
        }),
    );
    let r = run(&w, "customer.example");
    assert_eq!(fallback_kind(&r), "mx-host-failed");
    assert!(
        r.outcome
            .unwrap_err()
            .to_string()
            .contains("mx02.mail.example.net")
    );
}

#[test]
fn m4_m5_m6_mta_sts_must_enforce_and_be_unique() {
    let testing = m1_world().sts(
        "customer.example",
        "1",
        &M_POLICY.replace("enforce", "testing"),
    );
    assert_eq!(
        fallback_kind(&run(&testing, "customer.example")),
        "mta-sts-not-enforcing"
    );
    let none = m1_world().sts(
        "customer.example",
        "1",
        "version: STSv1\nmode: none\nmax_age: 1\n",
    );
    assert_eq!(
        fallback_kind(&run(&none, "customer.example")),
        "mta-sts-not-enforcing"
    );
    let mut missing = m1_world();
    missing.txt.remove("_mta-sts.customer.example");
    assert_eq!(
        fallback_kind(&run(&missing, "customer.example")),
        "mta-sts-missing"
    );
    let two = m1_world().txt(
        "_mta-sts.customer.example",
        Ok(vec![
            vec![b"v=STSv1; id=1".to_vec()],
            vec![b"v=STSv1; id=2".to_vec()],
        ]),
    );
    assert_eq!(
        fallback_kind(&run(&two, "customer.example")),
        "mta-sts-ambiguous"
    );
}

#[test]
fn m7_m8_hosts_must_match_the_policy() {
    let only_one = m1_world().sts(
        "customer.example",
        "1",
        &M_POLICY.replace("*.mail.example.net", "mx01.mail.example.net"),
    );
    let r = run(&only_one, "customer.example");
    assert_eq!(fallback_kind(&r), "mx-not-authorized");
    assert!(
        r.outcome
            .unwrap_err()
            .to_string()
            .contains("mx02.mail.example.net")
    );
    let wide = World::default()
        .sts(
            "customer.example",
            "1",
            &M_POLICY.replace("*.mail.example.net", "*.example.net"),
        )
        .mx("customer.example", &[(10, "mx01.mail.example.net.")])
        .pacc("mx01.mail.example.net", HOSTED);
    assert_eq!(
        fallback_kind(&run(&wide, "customer.example")),
        "mx-not-authorized"
    );
}

#[test]
fn m9_null_mx_and_no_mx() {
    let null = m1_world().mx("customer.example", &[(0, ".")]);
    assert_eq!(fallback_kind(&run(&null, "customer.example")), "null-mx");
    let mut none = m1_world();
    none.mx.remove("customer.example");
    assert_eq!(fallback_kind(&run(&none, "customer.example")), "no-mx");
}

#[test]
fn m10_policy_behind_a_redirect() {
    let w = m1_world().fetch(
        "https://mta-sts.customer.example/.well-known/mta-sts.txt",
        Err(FetchError::Redirect {
            url: "https://mta-sts.customer.example/.well-known/mta-sts.txt".into(),
            status: 301,
            location: Some("https://elsewhere.example/".into()),
        }),
    );
    let r = run(&w, "customer.example");
    assert_eq!(fallback_kind(&r), "mta-sts-policy-fetch");
    assert_eq!(r.fallback.as_ref().unwrap().stopped_at, Some("mta-sts"));
}

#[test]
fn mx_host_digest_mismatch_is_refused() {
    let w = m1_world().txt("_ua-auto-config.mx02.mail.example.net", Ok(rec(b"stale")));
    let r = run(&w, "customer.example");
    assert_eq!(fallback_kind(&r), "mx-host-failed");
    assert_eq!(r.outcome.unwrap_err().class(), FailureClass::Integrity);
}

#[test]
fn primary_integrity_failure_never_falls_back() {
    let w = m1_world()
        .fetch(
            &config_url(&Domain::parse("customer.example").unwrap()),
            ok(BODY),
        )
        .txt("_ua-auto-config.customer.example", Ok(rec(b"tampered")));
    let r = run(&w, "customer.example");
    assert_eq!(fallback_kind(&r), "digest-mismatch");
    assert!(r.fallback.as_ref().is_none_or(|f| !f.used));
    // Without speculation nothing of the fallback is even asked.
    let (_, asked) = run_order(
        &w,
        "customer.example",
        Options {
            speculative: false,
            ..Options::default()
        },
        false,
    );
    assert!(!asked.iter().any(|q| matches!(q, Request::Mx { .. })));
}

#[test]
fn a_usable_primary_wins_over_the_fallback() {
    let w = m1_world().pacc("customer.example", BODY);
    let r = run(&w, "customer.example");
    let v = r.outcome.unwrap();
    assert_eq!(v.method, Method::WellKnown);
    assert_eq!(v.bytes, BODY);
}

#[test]
fn identical_derived_uris_are_fetched_once() {
    let w = World::default()
        .sts("customer.example", "1", M_POLICY)
        .mx(
            "customer.example",
            &[
                (10, "mx01.mail.example.net."),
                (10, "mx02.mail.example.net."),
            ],
        )
        .pacc("mail.example.net", HOSTED);
    let options = Options {
        mx_strategy: MxUriStrategy::ParentDomain,
        ..Options::default()
    };
    let (r, asked) = run_order(&w, "customer.example", options, false);
    assert_eq!(r.outcome.as_ref().unwrap().method, Method::MxFallback);
    let fetches = asked
        .iter()
        .filter(|q| matches!(q, Request::Fetch { url, .. } if url.contains("ua-auto-config.mail.example.net")))
        .count();
    assert_eq!(fetches, 1);
    assert_eq!(
        r.outcome.unwrap().mx.unwrap().hosts.len(),
        2,
        "both MX hosts are recorded"
    );
}

#[test]
fn non_speculative_mode_contacts_mx_hosts_only_after_authorisation() {
    let w = m1_world().sts(
        "customer.example",
        "1",
        &M_POLICY.replace("enforce", "testing"),
    );
    let (r, asked) = run_order(
        &w,
        "customer.example",
        Options {
            speculative: false,
            ..Options::default()
        },
        false,
    );
    assert_eq!(fallback_kind(&r), "mta-sts-not-enforcing");
    assert!(
        !asked
            .iter()
            .any(|q| matches!(q, Request::Fetch { url, .. } if url.contains("mx0")))
    );
}

#[test]
fn expiry_during_the_fallback_decides() {
    let mut d = Discovery::new(Domain::parse("customer.example").unwrap());
    let reqs: Vec<_> = std::iter::from_fn(|| d.poll_request()).collect();
    assert_eq!(reqs.len(), 5, "primary txt+fetch, mta-sts txt+policy, mx");
    let w = m1_world();
    for (id, r) in &reqs {
        if !matches!(r, Request::Mx { .. }) {
            d.handle(*id, w.answer(r), Duration::ZERO);
        }
    }
    assert!(matches!(d.step(), Step::Pending));
    let r = d.expire().unwrap();
    assert_eq!(fallback_kind(&r), "mx-lookup-failed");
    assert_eq!(r.outcome.unwrap_err().class(), FailureClass::Temporary);
}

/// The digest record is judged for the report even when it arrives after a failed fetch
/// decided the primary path (and the fallback kept discovery going): `discover`'s trail
/// shows it as "valid, not compared", never as missing.
#[test]
fn a_record_arriving_after_a_failed_fetch_is_still_reported() {
    let world = World::default().txt("_ua-auto-config.example.com", Ok(rec(b"{}")));
    let mut d = Discovery::new(Domain::parse("example.com").unwrap());
    let mut outstanding: Vec<(RequestId, Request)> = Vec::new();
    for _ in 0..1000 {
        while let Some(x) = d.poll_request() {
            outstanding.push(x);
        }
        if let Step::Done(report) = d.step() {
            assert_eq!(report.records.len(), 1, "{:?}", report.records);
            assert!(matches!(
                report.records[0].verdict,
                RecordVerdict::Valid { matches: false, .. }
            ));
            return;
        }
        while let Some(x) = d.poll_request() {
            outstanding.push(x);
        }
        // The primary fetch first (it decides the primary path: absent), then the primary
        // TXT (now only for the report), then the rest.
        let rank = |r: &Request| match r {
            Request::Fetch { url, .. }
                if url.starts_with("https://ua-auto-config.example.com/") =>
            {
                0
            }
            Request::Txt { name } if name == "_ua-auto-config.example.com" => 1,
            _ => 2,
        };
        let i = (0..outstanding.len())
            .min_by_key(|i| rank(&outstanding[*i].1))
            .unwrap_or(0);
        let (id, r) = outstanding.remove(i);
        d.handle(id, world.answer(&r), Duration::from_millis(1));
    }
    panic!("did not finish");
}
