//! The client over TLS (`stomp+ssl://`, `ConnectOptions::tls_ca`) against
//! our broker's TLS listener, with a CA made at test time by rcgen.

use std::path::{Path, PathBuf};
use std::time::Duration;

use stomp_broker::{Broker, Config, RunningBroker};
use stomp_client::{AckMode, Client, ConnectOptions, Error};

const S5: Duration = Duration::from_secs(5);

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("stomp-client-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// (ca.pem, cert.pem, key.pem) for localhost and 127.0.0.1.
fn make_pki(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_params =
        rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .unwrap();
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

fn tls_broker(dir: &Path) -> (RunningBroker, PathBuf) {
    let (ca, cert, key) = make_pki(dir);
    let config = Config {
        listen: vec!["127.0.0.1:0".into()],
        tls_listen: vec!["127.0.0.1:0".into()],
        tls_cert: Some(cert),
        tls_key: Some(key),
        memory: true,
        ..Config::default()
    };
    (Broker::bind(config).unwrap().spawn().unwrap(), ca)
}

fn opts(o: ConnectOptions) -> ConnectOptions {
    o.connect_timeout(S5).receipt_timeout(S5)
}

#[test]
fn send_and_receive_over_tls_with_a_given_ca() {
    let dir = temp_dir("tls");
    let (b, ca) = tls_broker(&dir);
    let port = b.tls_addrs()[0].port();
    // By IP address, and by name (the certificate has both).
    let a = Client::connect(opts(
        ConnectOptions::from_url(&format!("stomp+ssl://127.0.0.1:{port}"))
            .unwrap()
            .tls_ca(&ca),
    ))
    .unwrap();
    let c = Client::connect(opts(
        ConnectOptions::new(format!("localhost:{port}")).tls_ca(&ca),
    ))
    .unwrap();
    let sub = c.subscribe("/queue/tls", AckMode::Auto, &[]).unwrap();
    let big = vec![7u8; 2 * 1024 * 1024];
    a.send_confirmed("/queue/tls", big.clone(), S5).unwrap();
    a.send("/queue/tls", "small").unwrap();
    let m = sub.recv_timeout(S5).unwrap().expect("the big message");
    assert_eq!(m.body().len(), big.len());
    let m = sub.recv_timeout(S5).unwrap().expect("the small one");
    assert_eq!(&m.body()[..], b"small");
    a.disconnect().unwrap();
    c.disconnect().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_untrusted_certificate_fails_the_connect() {
    let dir = temp_dir("tls-untrusted");
    let (b, _ca) = tls_broker(&dir);
    let port = b.tls_addrs()[0].port();
    let other = temp_dir("tls-other-ca");
    let (other_ca, _, _) = make_pki(&other);
    let err = Client::connect(opts(
        ConnectOptions::new(format!("127.0.0.1:{port}")).tls_ca(&other_ca),
    ))
    .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    assert!(text.contains("not signed by a trusted CA"), "{text}");
    // The Mozilla roots do not know the test CA either.
    let err = Client::connect(opts(
        ConnectOptions::from_url(&format!("stomp+ssl://localhost:{port}")).unwrap(),
    ))
    .unwrap_err();
    assert!(!matches!(err, Error::InvalidOption(_)), "{err}");
    // A missing CA file says which.
    let err = Client::connect(opts(
        ConnectOptions::new(format!("127.0.0.1:{port}")).tls_ca("/nonexistent/ca.pem"),
    ))
    .unwrap_err();
    assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
    // TLS to the plain port says so.
    let plain = b.local_addrs()[0].port();
    let err = Client::connect(opts(
        ConnectOptions::new(format!("127.0.0.1:{plain}")).tls_ca(&other_ca),
    ))
    .unwrap_err();
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    assert!(err.to_string().contains("plain STOMP port"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::remove_dir_all(&other).unwrap();
}

#[test]
fn urls_choose_tls() {
    let o = ConnectOptions::from_url("stomp+ssl://broker.example").unwrap();
    assert!(o.uses_tls());
    assert_eq!(o.addresses(), ["broker.example:61614"]);
    let o = ConnectOptions::from_url("stomp://broker.example").unwrap();
    assert!(!o.uses_tls());
}
