//! Parsers for the values options take: intervals, CPU sets, rlimits,
//! integers in a range and UDP endpoints. Each returns the value or the
//! sentence that says what is wrong with the text.

use super::model::{CpuSet, Limit, UdpEndpoint};

/// An integer within `min..=max`, decimal, with an optional sign.
pub fn integer(text: &str, min: i64, max: i64) -> Result<i64, String> {
    let value: i64 = text
        .parse()
        .map_err(|_| format!("`{text}` is not an integer"))?;
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(format!("{value} is out of range {min} to {max}"))
    }
}

/// Longest `bounce every` accepted: ten years, far beyond any real use and
/// far below any overflow of a millisecond clock.
const MAX_INTERVAL_SECS: u64 = 10 * 365 * 86_400;

/// `N` followed by `s`, `m`, `h` or `d`, as seconds.
pub fn interval(text: &str) -> Result<u64, String> {
    let Some(unit) = text.chars().last() else {
        return Err("an interval is a number followed by s, m, h or d".into());
    };
    let scale = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3_600,
        'd' => 86_400,
        _ => {
            return Err(format!(
                "`{text}` has no time unit: write a number followed by s, m, h or d (like `30s` or `1d`)"
            ))
        }
    };
    let digits = &text[..text.len() - 1];
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "`{text}` is not an interval: write a number followed by s, m, h or d (like `30s` or `1d`)"
        ));
    }
    let seconds = digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .filter(|&s| s <= MAX_INTERVAL_SECS);
    match seconds {
        Some(0) => Err("the interval must be at least 1s".into()),
        Some(seconds) => Ok(seconds),
        None => Err(format!(
            "`{text}` is longer than the longest interval, 3650d"
        )),
    }
}

/// `N` followed by `ms`, `s`, `m`, `h` or `d`, as milliseconds (SPEC 11).
pub fn duration_millis(text: &str) -> Result<u64, String> {
    let how = "write a number followed by ms, s, m, h or d (like `500ms` or `30s`)";
    let (digits, scale) = if let Some(digits) = text.strip_suffix("ms") {
        (digits, 1)
    } else {
        let split = text.len().saturating_sub(1);
        let scale = match &text[split..] {
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(format!("`{text}` has no time unit: {how}")),
        };
        (&text[..split], scale)
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("`{text}` is not a duration: {how}"));
    }
    let millis = digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .filter(|&ms| ms <= MAX_INTERVAL_SECS * 1_000);
    match millis {
        Some(0) => Err("the duration must be more than 0".into()),
        Some(millis) => Ok(millis),
        None => Err(format!(
            "`{text}` is longer than the longest duration, 3650d"
        )),
    }
}

/// `[HOST:]PORT` of a TCP probe: HOST an IP address (`[::1]` for IPv6),
/// 127.0.0.1 when left out. No names: resolving one could block pmtr.
/// Largest size: a terabyte, beyond any log file worth rotating.
const MAX_SIZE: u64 = 1 << 40;

/// A size: `N` bytes, or with `K`, `M`, `G` (powers of 1024).
pub fn size(text: &str) -> Result<u64, String> {
    let how = "write a number of bytes, or one followed by K, M or G (like `100M`)";
    let (digits, scale) = match text.char_indices().last() {
        Some((at, 'K' | 'k')) => (&text[..at], 1u64 << 10),
        Some((at, 'M' | 'm')) => (&text[..at], 1 << 20),
        Some((at, 'G' | 'g')) => (&text[..at], 1 << 30),
        _ => (text, 1),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("`{text}` is not a size: {how}"));
    }
    match digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
    {
        Some(0) => Err("the size must be more than 0".into()),
        Some(bytes) if bytes <= MAX_SIZE => Ok(bytes),
        _ => Err(format!("`{text}` is too large: at most 1024G")),
    }
}

pub fn tcp_address(text: &str) -> Result<std::net::SocketAddr, String> {
    let port = |digits: &str| {
        digits
            .parse::<u16>()
            .ok()
            .filter(|&p| p > 0)
            .ok_or_else(|| format!("`{digits}` is not a port from 1 to 65535"))
    };
    if !text.contains(':') {
        return Ok(std::net::SocketAddr::from(([127, 0, 0, 1], port(text)?)));
    }
    let (host, digits) = text.rsplit_once(':').unwrap_or_default();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let ip: std::net::IpAddr = host
        .parse()
        .map_err(|_| format!("`{host}` is not an IP address (names are not resolved here)"))?;
    Ok(std::net::SocketAddr::new(ip, port(digits)?))
}

/// A CPU list such as `0,2-4`, or a hex mask such as `0x8f`.
pub fn cpu_set(text: &str) -> Result<CpuSet, String> {
    let set = if let Some(hex) = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        hex_mask(hex)?
    } else {
        cpu_list(text)?
    };
    if set.is_empty() {
        return Err(format!("`{text}` selects no CPU"));
    }
    Ok(set)
}

fn hex_mask(hex: &str) -> Result<CpuSet, String> {
    if hex.is_empty() {
        return Err("`0x` needs hex digits after it, like `0x8f`".into());
    }
    let mut set = CpuSet::default();
    for (position, c) in hex.chars().rev().enumerate() {
        let nibble = c
            .to_digit(16)
            .ok_or_else(|| format!("`{c}` is not a hex digit in the CPU mask"))?;
        for bit in 0..4 {
            if nibble & (1 << bit) != 0 {
                let cpu = position * 4 + bit;
                check_cpu(cpu)?;
                set.insert(cpu);
            }
        }
    }
    Ok(set)
}

fn cpu_list(text: &str) -> Result<CpuSet, String> {
    let mut set = CpuSet::default();
    for item in text.split(',') {
        let (first, last) = match item.split_once('-') {
            Some((a, b)) => (cpu_number(a, text)?, cpu_number(b, text)?),
            None => {
                let cpu = cpu_number(item, text)?;
                (cpu, cpu)
            }
        };
        if last < first {
            return Err(format!("the CPU range `{item}` runs backwards"));
        }
        check_cpu(last)?;
        for cpu in first..=last {
            set.insert(cpu);
        }
    }
    Ok(set)
}

fn cpu_number(text: &str, whole: &str) -> Result<usize, String> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "`{whole}` is not a CPU list: write numbers and ranges like `0,2-4`, or a hex mask like `0x8f`"
        ));
    }
    text.parse()
        .map_err(|_| format!("CPU `{text}` is beyond the highest supported CPU"))
}

fn check_cpu(cpu: usize) -> Result<(), String> {
    if cpu < CpuSet::LIMIT {
        Ok(())
    } else {
        Err(format!(
            "CPU {cpu} is beyond the highest supported CPU, {}",
            CpuSet::LIMIT - 1
        ))
    }
}

/// An rlimit value: a number, `infinity` or `unlimited`.
pub fn limit(text: &str) -> Result<Limit, String> {
    match text {
        "infinity" | "unlimited" => Ok(Limit::Infinity),
        _ => text.parse().map(Limit::Value).map_err(|_| {
            format!("`{text}` is not a limit: write a number, `infinity` or `unlimited`")
        }),
    }
}

/// Longest interface name Linux allows (IFNAMSIZ less its NUL).
const MAX_INTERFACE_LEN: usize = 15;

/// `udp://HOST:PORT[@IFACE]`; `@IFACE` only where `interface_allowed`.
pub fn udp_endpoint(text: &str, interface_allowed: bool) -> Result<UdpEndpoint, String> {
    let usage = if interface_allowed {
        "udp://HOST:PORT[@IFACE]"
    } else {
        "udp://ADDRESS:PORT"
    };
    let rest = text
        .strip_prefix("udp://")
        .ok_or_else(|| format!("`{text}` is not a UDP address: write {usage}"))?;
    let (address, interface) = match rest.rsplit_once('@') {
        Some((address, interface)) => (address, Some(interface)),
        None => (rest, None),
    };
    if let Some(interface) = interface {
        if !interface_allowed {
            return Err(format!(
                "`{text}`: an interface (`@{interface}`) is only for `report to`"
            ));
        }
        if interface.is_empty()
            || interface.len() > MAX_INTERFACE_LEN
            || !interface
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b'/' && b != b':')
        {
            return Err(format!("`{interface}` is not a network interface name"));
        }
    }
    let (host, port) = if let Some(bracketed) = address.strip_prefix('[') {
        let (host, after) = bracketed
            .split_once(']')
            .ok_or_else(|| format!("`{text}`: the IPv6 address has no closing `]`"))?;
        let port = after
            .strip_prefix(':')
            .ok_or_else(|| format!("`{text}` has no port: write {usage}"))?;
        (host, port)
    } else {
        address
            .rsplit_once(':')
            .ok_or_else(|| format!("`{text}` has no port: write {usage}"))?
    };
    let valid_host = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':' | b'%'));
    if !valid_host {
        return Err(format!("`{host}` is not a host name or address"));
    }
    // `listen on ADDR:0` binds an ephemeral port, as the original; a
    // report (the only statement with `@IFACE`) needs a real one.
    let port = match port.parse::<u16>() {
        Ok(port) if port > 0 || !interface_allowed => port,
        _ => return Err(format!("`{port}` is not a port number (1 to 65535)")),
    };
    Ok(UdpEndpoint {
        host: host.to_string(),
        port,
        interface: interface.map(str::to_string),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_in_range() {
        assert_eq!(integer("-20", -20, 19), Ok(-20));
        assert_eq!(integer("+5", -20, 19), Ok(5));
        assert!(integer("20", -20, 19)
            .unwrap_err()
            .contains("out of range -20 to 19"));
        assert!(integer("5x", -20, 19)
            .unwrap_err()
            .contains("not an integer"));
        assert!(integer("", 0, 1).is_err());
    }

    #[test]
    fn intervals_in_each_unit() {
        assert_eq!(interval("30s"), Ok(30));
        assert_eq!(interval("2m"), Ok(120));
        assert_eq!(interval("1h"), Ok(3600));
        assert_eq!(interval("1d"), Ok(86_400));
        assert_eq!(interval("3650d"), Ok(3650 * 86_400));
    }

    #[test]
    fn bad_intervals() {
        for bad in [
            "",
            "s",
            "30",
            "30x",
            "-1s",
            "1.5h",
            "0s",
            "3651d",
            "99999999999999999999d",
            "1é",
        ] {
            assert!(interval(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cpu_lists_and_ranges() {
        let set = cpu_set("0,2-4,9").unwrap();
        assert_eq!(set.cpus().collect::<Vec<_>>(), [0, 2, 3, 4, 9]);
        assert_eq!(cpu_set("3-3").unwrap().cpus().collect::<Vec<_>>(), [3]);
        assert_eq!(cpu_set("1023").unwrap().cpus().collect::<Vec<_>>(), [1023]);
    }

    #[test]
    fn cpu_hex_masks() {
        assert_eq!(
            cpu_set("0x8f").unwrap().cpus().collect::<Vec<_>>(),
            [0, 1, 2, 3, 7]
        );
        assert_eq!(cpu_set("0X10").unwrap().cpus().collect::<Vec<_>>(), [4]);
    }

    #[test]
    fn bad_cpu_specs() {
        for bad in [
            "",
            ",",
            "1,",
            ",1",
            "1-",
            "-1",
            "4-2",
            "a",
            "1;2",
            "0x",
            "0xg",
            "0x0",
            "1024",
            "0-5000",
            "99999999999999999999999",
        ] {
            assert!(cpu_set(bad).is_err(), "{bad}");
        }
        let long_mask = format!("0x1{}", "0".repeat(256));
        assert!(cpu_set(&long_mask).unwrap_err().contains("beyond"));
    }

    #[test]
    fn limits() {
        assert_eq!(limit("1024"), Ok(Limit::Value(1024)));
        assert_eq!(limit("infinity"), Ok(Limit::Infinity));
        assert_eq!(limit("unlimited"), Ok(Limit::Infinity));
        assert!(limit("-1").is_err());
        assert!(limit("lots").is_err());
    }

    #[test]
    fn udp_endpoints() {
        let e = udp_endpoint("udp://127.0.0.1:9999", true).unwrap();
        assert_eq!(
            (e.host.as_str(), e.port, e.interface),
            ("127.0.0.1", 9999, None)
        );
        let e = udp_endpoint("udp://239.0.0.1:9999@eth2", true).unwrap();
        assert_eq!(e.interface.as_deref(), Some("eth2"));
        let e = udp_endpoint("udp://collector.example.com:10000", true).unwrap();
        assert_eq!(e.host, "collector.example.com");
        let e = udp_endpoint("udp://[::1]:10000", false).unwrap();
        assert_eq!((e.host.as_str(), e.port), ("::1", 10000));
    }

    #[test]
    fn bad_udp_endpoints() {
        for bad in [
            "127.0.0.1:9999",
            "tcp://1.2.3.4:5",
            "udp://1.2.3.4",
            "udp://:5",
            "udp://1.2.3.4:0",
            "udp://1.2.3.4:65536",
            "udp://1.2.3.4:x",
            "udp://[::1:5",
            "udp://[::1]5",
            "udp://a b:5",
            "udp://1.2.3.4:5@",
            "udp://1.2.3.4:5@an-interface-name-too-long",
        ] {
            assert!(udp_endpoint(bad, true).is_err(), "{bad}");
        }
        assert_eq!(udp_endpoint("udp://127.0.0.1:0", false).unwrap().port, 0);
        assert!(udp_endpoint("udp://0.0.0.0:10000@eth0", false)
            .unwrap_err()
            .contains("only for `report to`"));
    }
}
