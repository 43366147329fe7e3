use super::*;

/// URLs no request may reach by default, with the rule that refuses each.
pub(crate) const REFUSED: &[(&str, &str)] = &[
    ("http://127.0.0.1/", "loopback"),
    ("https://127.0.0.1:443/x", "loopback"),
    ("http://user:pa%2Fss@127.0.0.1/", "loopback"),
    ("http://127.1/", "loopback"),
    ("http://2130706433/", "loopback"),
    ("http://0x7f.1/", "loopback"),
    ("http://0x7f000001/", "loopback"),
    ("http://017700000001/", "loopback"),
    ("http://0177.0.0.1/", "loopback"),
    ("http://127.000.000.001/", "loopback"),
    ("http://[::1]/", "loopback"),
    ("http://0/", "unspecified"),
    ("http://0.0.0.0:9464/metrics", "unspecified"),
    ("http://[::]/", "unspecified"),
    ("http://[::ffff:127.0.0.1]/", "embeds_ipv4"),
    ("http://[::ffff:7f00:1]/", "embeds_ipv4"),
    ("http://[0:0:0:0:0:ffff:169.254.169.254]/", "embeds_ipv4"),
    ("http://[::ffff:a9fe:a9fe]/", "embeds_ipv4"),
    ("http://[::127.0.0.1]/", "embeds_ipv4"),
    ("http://[64:ff9b::7f00:1]/", "embeds_ipv4"),
    ("http://[64:ff9b:1::a00:1]/", "embeds_ipv4"),
    ("http://[2002:7f00:1::]/", "embeds_ipv4"),
    ("http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/", "embeds_ipv4"),
    ("http://10.0.0.1/", "private"),
    ("http://172.16.0.1/", "private"),
    ("http://172.31.255.255/", "private"),
    ("http://192.168.1.1/", "private"),
    ("http://0300.0250.0.1/", "private"),
    ("http://3232235777/", "private"),
    ("http://169.254.169.254/latest/meta-data/", "link_local"),
    ("http://0xa9fea9fe/", "link_local"),
    ("http://2852039166/", "link_local"),
    ("http://[fe80::1]/", "link_local"),
    ("http://[fd00::1]/", "unique_local"),
    ("http://[fc00::1]/", "unique_local"),
    ("http://[fec0::1]/", "unique_local"),
    ("http://100.64.0.1/", "shared_address_space"),
    ("http://100.127.255.254/", "shared_address_space"),
    ("http://224.0.0.1/", "multicast"),
    ("http://[ff02::1]/", "multicast"),
    ("http://255.255.255.255/", "broadcast"),
    ("http://240.0.0.1/", "reserved"),
    ("ftp://example.com/", "scheme"),
    ("file:///etc/passwd", "scheme"),
    ("gopher://127.0.0.1/", "scheme"),
    ("not a url", "invalid_url"),
];

#[test]
fn every_url_of_the_corpus_is_refused_by_its_rule_before_resolving() {
    let policy = EgressPolicy::new();
    assert!(REFUSED.len() >= 40, "the corpus has {} URLs", REFUSED.len());
    for (url, rule) in REFUSED {
        let err = policy.check_url(url).expect_err(url);
        assert_eq!(err.reason(), *rule, "{url}: {err}");
        if let EgressError::Refused { refusal, .. } = &err {
            assert!(err.to_string().contains(refusal.rule()), "the error names the rule: {err}");
        }
    }
}

#[tokio::test]
async fn names_that_resolve_to_loopback_are_refused() {
    let policy = EgressPolicy::new();
    let err = policy.check("http://localhost:8080/").await.expect_err("localhost");
    assert!(matches!(err.reason(), "loopback" | "embeds_ipv4"), "{err}");
}

#[test]
fn a_public_answer_first_does_not_let_a_loopback_one_through() {
    let policy = EgressPolicy::new();
    let public: SocketAddr = "93.184.216.34:443".parse().unwrap();
    let loopback: SocketAddr = "127.0.0.1:443".parse().unwrap();
    let err = policy.check_resolved("rebind.example", vec![public, loopback]).unwrap_err();
    assert_eq!(err.reason(), "loopback");
    assert_eq!(policy.check_resolved("ok.example", vec![public]).unwrap(), vec![public]);
    assert_eq!(policy.check_resolved("empty.example", vec![]).unwrap_err().reason(), "unresolved");
}

#[test]
fn public_addresses_pass_and_names_are_left_to_resolve() {
    let policy = EgressPolicy::new();
    assert_eq!(
        policy.check_url("http://93.184.216.34/").unwrap(),
        ("93.184.216.34".to_string(), 80, Some("93.184.216.34".parse().unwrap()))
    );
    assert!(policy.check_url("https://[2606:4700::1111]/").is_ok());
    assert_eq!(
        policy.check_url("https://api.example.com/x").unwrap(),
        ("api.example.com".to_string(), 443, None)
    );
    // Public neighbours of the refused ranges.
    for ip in ["172.32.0.1", "100.128.0.1", "169.253.255.255", "11.0.0.1", "223.255.255.255"] {
        assert!(policy.check_url(&format!("http://{ip}/")).is_ok(), "{ip}");
    }
}

#[test]
fn an_allow_list_opens_its_ranges_only_and_never_everything() {
    let policy = EgressPolicy::new().allow("10.20.0.0/16".parse().unwrap()).unwrap();
    assert!(policy.check_url("http://10.20.1.2/").is_ok());
    assert_eq!(policy.check_url("http://10.21.0.1/").unwrap_err().reason(), "private");
    for everything in ["0.0.0.0/0", "::/0"] {
        let err = EgressPolicy::new().allow(everything.parse().unwrap()).unwrap_err();
        assert!(err.to_string().contains("every address"), "{err}");
    }
}

#[test]
fn the_engines_own_listeners_stay_refused_under_an_allow_list() {
    let listen: SocketAddr = "127.0.0.1:9464".parse().unwrap();
    let policy = EgressPolicy::new().allow("127.0.0.0/8".parse().unwrap()).unwrap().own_listener(listen);
    assert!(policy.check_url("http://127.0.0.1:8080/").is_ok(), "the allowed loopback upstream");
    assert_eq!(policy.check_url("http://127.0.0.1:9464/metrics").unwrap_err().reason(), "own_listener");
    assert_eq!(policy.check_url("http://[::ffff:127.0.0.1]:9464/").unwrap_err().reason(), "own_listener");
    let any = EgressPolicy::new()
        .allow("127.0.0.0/8".parse().unwrap())
        .unwrap()
        .own_listener("0.0.0.0:9464".parse().unwrap());
    assert_eq!(any.check_url("http://127.0.0.2:9464/").unwrap_err().reason(), "own_listener");
}

#[test]
fn ranges_are_read_strictly() {
    assert_eq!("10.0.0.0/8".parse::<Cidr>().unwrap().to_string(), "10.0.0.0/8");
    assert_eq!("fd00::/8".parse::<Cidr>().unwrap().prefix_len(), 8);
    assert_eq!("192.0.2.7".parse::<Cidr>().unwrap().to_string(), "192.0.2.7/32");
    for bad in ["10.0.0.1/8", "127.1/32", "0x7f.0.0.1", "10.0.0.0/33", "fd00::/129", "10.0.0.0/x", ""] {
        assert!(bad.parse::<Cidr>().is_err(), "{bad:?} was read as a range");
    }
    let v4: Cidr = "10.0.0.0/8".parse().unwrap();
    assert!(v4.contains("10.255.0.1".parse().unwrap()));
    assert!(!v4.contains("::ffff:10.0.0.1".parse().unwrap()), "an IPv4 range holds no IPv6 address");
}
