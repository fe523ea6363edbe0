//! Stress benchmark (not a test): every machine and parser fed its maximum-size hostile
//! input, with the work per input and per byte printed. Run with
//! `cargo bench -p pacc-proto --bench stress` (bench/stress.py runs it too).
//!
//! The bound that matters is "work proportional to the bytes": a flood of 2 MB of unique
//! capability words must cost about what 2 MB of parsing costs, not the square of it.
#![allow(clippy::print_stdout)]

use std::hint::black_box;
use std::time::Instant;

use pacc_proto::fuzz;
use pacc_proto::probe::{MAX_LINE, MAX_LINES};

/// `MAX_LINES` lines of just under `MAX_LINE` bytes of unique words after `prefix`.
fn lines(prefix: &str, sep: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..MAX_LINES {
        let mut line = prefix.to_owned();
        let mut w = 0;
        while line.len() + 12 < MAX_LINE {
            line.push_str(&format!("W{i:03}-{w:05}{sep}"));
            w += 1;
        }
        out.extend_from_slice(line.trim_end().as_bytes());
        out.push(b'\n');
    }
    out
}

fn measure(name: &str, input: &[u8], run: fn(&[u8])) {
    run(input); // warm up
    let mut n = 0u32;
    let started = Instant::now();
    while started.elapsed().as_millis() < 500 || n < 3 {
        run(black_box(input));
        n += 1;
    }
    let per = started.elapsed() / n;
    let ns_per_byte = per.as_nanos() as f64 / input.len().max(1) as f64;
    println!(
        "{name:<34} {:>9} bytes  {:>10.3} ms/input  {:>8.2} ns/byte",
        input.len(),
        per.as_secs_f64() * 1e3,
        ns_per_byte
    );
}

fn main() {
    println!(
        "pacc-proto stress: maximum-size inputs ({MAX_LINES} lines × {MAX_LINE} bytes for line protocols)"
    );
    let mut imap = vec![0u8];
    imap.extend(b"* OK hi\n");
    imap.extend(lines("* CAPABILITY ", " "));
    measure("imap probe, unique CAPABILITY", &imap, fuzz::probe_dialogue);

    // Below the cap: the same 200 words on every line, so every line is parsed in full and
    // every word checked against the set (O(1) each).
    let mut imap_dup = vec![0u8];
    imap_dup.extend(b"* OK hi\n");
    let words: Vec<String> = (0..200).map(|w| format!("DUP-{w:03}")).collect();
    let words = words.join(" ");
    for _ in 0..MAX_LINES - 2 {
        let mut line = String::from("* CAPABILITY");
        while line.len() + words.len() + 1 < MAX_LINE {
            line.push(' ');
            line.push_str(&words);
        }
        imap_dup.extend(line.as_bytes());
        imap_dup.push(b'\n');
    }
    measure(
        "imap probe, repeated CAPABILITY",
        &imap_dup,
        fuzz::probe_dialogue,
    );

    let mut pop3 = vec![1u8];
    pop3.extend(b"+OK hi\n+OK\n");
    pop3.extend(lines("X-", "\nX-"));
    measure("pop3 probe, unique CAPA lines", &pop3, fuzz::probe_dialogue);

    let mut smtp = vec![2u8];
    smtp.extend(b"220 hi\n250-mx\n");
    smtp.extend(lines("250-AUTH ", " "));
    measure(
        "smtp probe, unique AUTH mechanisms",
        &smtp,
        fuzz::probe_dialogue,
    );

    let mut sieve = vec![3u8];
    sieve.extend(b"\"SASL\" \"PLAIN\"\n\"STARTTLS\"\nOK \"hi\"\nOK \"go\"\n");
    sieve.extend(lines("\"SASL\" \"", " "));
    measure(
        "managesieve probe, unique SASL",
        &sieve,
        fuzz::probe_dialogue,
    );

    let mut login = vec![0u8, 0];
    login.extend(b"* OK hi\n");
    login.extend(lines("* CAPABILITY ", " "));
    measure(
        "imap login, unique CAPABILITY",
        &login,
        fuzz::login_dialogue,
    );

    let challenges: Vec<u8> = (0..2)
        .flat_map(|i| {
            format!("Bearer realm=\"{}\", error=\"x\"\n", "r".repeat(8000 + i)).into_bytes()
        })
        .collect();
    measure(
        "WWW-Authenticate, 16 KiB",
        &challenges,
        fuzz::www_authenticate,
    );

    let mut doc =
        br#"{"protocols":{"imap":{"host":"imap.example.com"}},"info":{"provider":{"name":""#
            .to_vec();
    doc.extend(std::iter::repeat_n(b'a', 64 * 1024 - doc.len() - 4));
    doc.extend(br#""}}}"#);
    measure("document, 64 KiB", &doc, fuzz::document);
    let nested: Vec<u8> = std::iter::repeat_n(b'[', 32 * 1024)
        .chain(std::iter::repeat_n(b']', 32 * 1024))
        .collect();
    measure("document, 64 KiB of nesting", &nested, fuzz::document);

    let mut rrset = b"body\0".to_vec();
    for i in 0..1300 {
        rrset.extend(
            format!("v=UAAC1; a=sha256; x{i}=y; d=Yv17O1u1N+KeOhLF0eZv/RNE2t6o6NHAYCskZubeISE=\n")
                .as_bytes(),
        );
    }
    measure("TXT RRset, 64 KiB of records", &rrset, fuzz::txt_rrset);

    let mut policy = b"version: STSv1\nmode: enforce\nmax_age: 86400\n".to_vec();
    while policy.len() < 64 * 1024 - 40 {
        policy.extend(format!("mx: mx{}.example.com\n", policy.len()).as_bytes());
    }
    measure("MTA-STS policy, 64 KiB", &policy, fuzz::mta_sts_policy);

    let mut meta = br#"{"issuer":"https://auth.example.com","scopes_supported":["#.to_vec();
    while meta.len() < 60 * 1024 {
        meta.extend(format!("\"s{}\",", meta.len()).as_bytes());
    }
    meta.extend(br#""x"]}"#);
    measure("OAuth metadata, 60 KiB", &meta, fuzz::oauth_responses);

    let mut disc = vec![1u8, 1];
    disc.extend(std::iter::repeat_n(0xffu8, 16 * 1024));
    measure(
        "discovery machine, 16 KiB of choices",
        &disc,
        fuzz::discovery,
    );
}
