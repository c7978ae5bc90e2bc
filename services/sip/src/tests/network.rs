use crate::Network;

#[test]
fn networks_parse_and_contain_their_addresses() {
    let net: Network = "203.0.113.0/24".parse().unwrap();
    assert!(net.contains("203.0.113.77".parse().unwrap()));
    assert!(!net.contains("203.0.114.1".parse().unwrap()));
    assert!(net.contains("::ffff:203.0.113.9".parse().unwrap()));
    let one: Network = "198.51.100.7".parse().unwrap();
    assert!(one.contains("198.51.100.7".parse().unwrap()));
    assert!(!one.contains("198.51.100.8".parse().unwrap()));
    let odd: Network = "10.0.0.0/9".parse().unwrap();
    assert!(odd.contains("10.127.255.255".parse().unwrap()));
    assert!(!odd.contains("10.128.0.0".parse().unwrap()));
    let v6: Network = "2001:db8::/32".parse().unwrap();
    assert!(v6.contains("2001:db8:1::5".parse().unwrap()));
    assert!(!v6.contains("2001:db9::".parse().unwrap()));
    let all: Network = "0.0.0.0/0".parse().unwrap();
    assert!(all.contains("192.0.2.1".parse().unwrap()));
    assert!("10.0.0.0/33".parse::<Network>().is_err());
    assert!("example.com".parse::<Network>().is_err());
}
