//! The head of an HTTP/1.x request, as the proxy needs it.

use std::io::Read;

/// The most a request head may take.
pub(crate) const MAX_HEAD: usize = 64 * 1024;

#[derive(Debug)]
pub(crate) struct Head {
    pub method: String,
    pub target: String,
    pub version: String,
    pub headers: Vec<(String, String)>,
    /// Bytes read past the head (a body or a pipelined request).
    pub rest: Vec<u8>,
}

pub(crate) fn read_head(client: &mut impl Read) -> Result<Head, &'static str> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(at) = find(&buf, b"\r\n\r\n") {
            break at;
        }
        if buf.len() > MAX_HEAD {
            return Err("a request head over 64 KiB");
        }
        match client.read(&mut chunk) {
            Ok(0) => return Err("the client closed before a whole request head"),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return Err("no request head in time"),
        }
    };
    let rest = buf[end + 4..].to_vec();
    let text = std::str::from_utf8(&buf[..end]).map_err(|_| "a request head that is not UTF-8")?;
    let mut lines = text.split("\r\n");
    let line = lines.next().unwrap_or("");
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("a malformed request line");
    };
    if !version.starts_with("HTTP/1.") || method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err("a malformed request line");
    }
    let mut headers = Vec::new();
    for line in lines {
        let Some((name, value)) = line.split_once(':') else { return Err("a malformed header line") };
        if name.is_empty() || name.contains([' ', '\t', '\r', '\n']) || value.contains(['\r', '\n']) {
            return Err("a malformed header line");
        }
        headers.push((name.to_owned(), value.trim().to_owned()));
    }
    Ok(Head { method: method.to_owned(), target: target.to_owned(), version: version.to_owned(), headers, rest })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// `host:port` (or `[v6]:port`) of a CONNECT target, the host lower case.
pub(crate) fn host_port(authority: &str, default_port: Option<u16>) -> Option<(String, u16)> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        (host, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let port = match port {
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => p.parse().ok()?,
        Some(_) => return None,
        None => default_port?,
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    if host.is_empty() {
        return None;
    }
    Some((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_head_and_keeps_the_rest() {
        let raw = b"GET http://a.b/x HTTP/1.1\r\nHost: a.b\r\nX: 1 \r\n\r\nBODY";
        let head = read_head(&mut &raw[..]).unwrap();
        assert_eq!((head.method.as_str(), head.target.as_str()), ("GET", "http://a.b/x"));
        assert_eq!(head.headers, [("Host".to_owned(), "a.b".to_owned()), ("X".to_owned(), "1".to_owned())]);
        assert_eq!(head.rest, b"BODY");
        assert!(read_head(&mut &b"GET /\r\n\r\n"[..]).is_err());
        assert!(read_head(&mut &b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n"[..]).is_err());
    }

    #[test]
    fn authorities() {
        assert_eq!(host_port("Pypi.org:443", None), Some(("pypi.org".into(), 443)));
        assert_eq!(host_port("pypi.org.", Some(80)), Some(("pypi.org".into(), 80)));
        assert_eq!(host_port("[::1]:8080", None), Some(("::1".into(), 8080)));
        assert_eq!(host_port("pypi.org", None), None);
        assert_eq!(host_port("pypi.org:x", None), None);
        assert_eq!(host_port(":443", None), None);
    }
}
