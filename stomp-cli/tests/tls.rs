//! `stomp send` / `stomp subscribe` / `stomp bench` over TLS (`stomp+ssl://`, `--tls-ca`)
//! against `stomp broker --tls-listen`, with a CA made at test time.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const STOMP: &str = env!("CARGO_BIN_EXE_stomp");

fn make_pki(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = leaf_params.signed_by(&leaf_key, &ca, &ca_key).unwrap();
    let paths = (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    );
    std::fs::write(&paths.0, ca.pem()).unwrap();
    std::fs::write(&paths.1, leaf.pem()).unwrap();
    std::fs::write(&paths.2, leaf_key.serialize_pem()).unwrap();
    paths
}

#[test]
fn send_and_subscribe_over_tls() {
    let dir = std::env::temp_dir().join(format!("stomp-cli-tls-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (ca, cert, key) = make_pki(&dir);
    let mut broker = Command::new(STOMP)
        .args([
            "broker",
            "--memory",
            "--listen",
            "127.0.0.1:0",
            "--tls-listen",
            "127.0.0.1:0",
        ])
        .arg("--tls-cert")
        .arg(&cert)
        .arg("--tls-key")
        .arg(&key)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(broker.stdout.take().unwrap());
    let mut lines = Vec::new();
    for _ in 0..2 {
        let mut l = String::new();
        out.read_line(&mut l).unwrap();
        lines.push(l.trim().to_owned());
    }
    let tls = lines
        .iter()
        .find_map(|l| l.strip_prefix("listening on ")?.strip_suffix(" (tls)"))
        .unwrap_or_else(|| panic!("no tls line in {lines:?}"))
        .to_owned();
    let url = format!("stomp+ssl://{tls}");
    let send = Command::new(STOMP)
        .args(["send", "--url", &url, "--receipt", "/queue/t", "over tls"])
        .arg("--tls-ca")
        .arg(&ca)
        .output()
        .unwrap();
    let sub = Command::new(STOMP)
        .args([
            "subscribe",
            "--url",
            &url,
            "--count",
            "1",
            "--timeout",
            "5",
            "/queue/t",
        ])
        .arg("--tls-ca")
        .arg(&ca)
        .output()
        .unwrap();
    // Without the CA the certificate is not trusted.
    let untrusted = Command::new(STOMP)
        .args([
            "send",
            "--url",
            &url,
            "--connect-timeout",
            "5",
            "/queue/t",
            "x",
        ])
        .env_remove("SSL_CERT_FILE")
        .env_remove("SSL_CERT_DIR")
        .output()
        .unwrap();
    // A CA the system trusts (here through SSL_CERT_FILE) needs no flag.
    let system = Command::new(STOMP)
        .args(["send", "--url", &url, "--receipt", "/queue/t", "sys"])
        .env("SSL_CERT_FILE", &ca)
        .env_remove("SSL_CERT_DIR")
        .output()
        .unwrap();
    // A plain URL to the TLS port says what to use.
    let plain = Command::new(STOMP)
        .args(["send", "--url", &format!("stomp://{tls}"), "/queue/t", "x"])
        .output()
        .unwrap();
    // bench's raw connections speak TLS too: receipts (a reader and a
    // writer thread share each session), client acks, bodies bigger than
    // what rustls buffers at once.
    let bench = |extra: &[&str]| {
        let out = Command::new(STOMP)
            .args(["bench", "--url", &url, "--json", "--producers", "2"])
            .args(["--consumers", "2"])
            .args(extra)
            .arg("--tls-ca")
            .arg(&ca)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(r["received"], r["expected"], "{r}");
        assert_eq!(
            (r["lost"].as_u64(), r["duplicated"].as_u64()),
            (Some(0), Some(0)),
            "{r}"
        );
        r
    };
    let r = bench(&["--count", "2000", "--receipts", "--window", "8"]);
    assert_eq!(r["confirmed"], 2000, "{r}");
    let r = bench(&["--count", "40", "--size", "300000", "--ack", "client"]);
    assert_eq!(r["received"], 40, "{r}");
    let untrusted_bench = Command::new(STOMP)
        .args(["bench", "--url", &url, "--count", "1"])
        .env_remove("SSL_CERT_FILE")
        .env_remove("SSL_CERT_DIR")
        .output()
        .unwrap();
    let _ = broker.kill();
    let _ = broker.wait();
    assert!(!untrusted_bench.status.success());
    let err = String::from_utf8_lossy(&untrusted_bench.stderr);
    assert!(
        err.contains("not signed by a trusted CA") && err.contains("--tls-ca"),
        "{err}"
    );
    assert!(!plain.status.success());
    assert!(
        String::from_utf8_lossy(&plain.stderr).contains("use a stomp+ssl:// URL"),
        "{plain:?}"
    );
    assert!(send.status.success(), "{send:?}");
    assert!(sub.status.success(), "{sub:?}");
    assert!(
        String::from_utf8_lossy(&sub.stdout).contains("over tls"),
        "{sub:?}"
    );
    assert!(system.status.success(), "{system:?}");
    assert!(!untrusted.status.success());
    let err = String::from_utf8_lossy(&untrusted.stderr).to_lowercase();
    assert!(err.contains("not signed by a trusted ca"), "{err}");
    assert!(err.contains("--tls-ca"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
