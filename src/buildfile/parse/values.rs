//! Values checked at parse time: EXPOSE ports and HEALTHCHECK durations.

/// A port spec: `80`, `80/tcp`, `8000-8010/udp`. Returns (start, end, protocol).
pub fn parse_port(s: &str) -> Result<(u16, u16, String), String> {
    let (ports, proto) = match s.split_once('/') {
        Some((p, pr)) => (p, pr.to_ascii_lowercase()),
        None => (s, "tcp".to_string()),
    };
    if !["tcp", "udp", "sctp"].contains(&proto.as_str()) {
        return Err(format!(
            "invalid proto \"{proto}\" in port \"{s}\": use tcp, udp or sctp"
        ));
    }
    let num = |p: &str| -> Result<u16, String> {
        p.parse::<u16>()
            .map_err(|_| format!("invalid containerPort: {s}"))
    };
    let (a, b) = match ports.split_once('-') {
        Some((a, b)) => (num(a)?, num(b)?),
        None => {
            let n = num(ports)?;
            (n, n)
        }
    };
    if b < a {
        return Err(format!("invalid range specified for containerPort: {s}"));
    }
    Ok((a, b, proto))
}

/// Go-style duration (`1m30s`, `0.5s`, `250ms`, `0`).
pub fn parse_duration(s: &str) -> Option<std::time::Duration> {
    if s == "0" {
        return Some(std::time::Duration::ZERO);
    }
    let mut rest = s;
    let mut total: f64 = 0.0;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let nlen = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if nlen == 0 {
            return None;
        }
        let n: f64 = rest[..nlen].parse().ok()?;
        rest = &rest[nlen..];
        let ulen = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let mult = match &rest[..ulen] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[ulen..];
        total += n * mult;
    }
    if !total.is_finite() || total > 1e12 {
        return None;
    }
    Some(std::time::Duration::from_secs_f64(total))
}
