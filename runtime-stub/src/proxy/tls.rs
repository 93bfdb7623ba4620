//! The server name (SNI) of a TLS ClientHello, read from the start of a tunnel.

use std::io::Read;

/// The most the proxy reads while waiting for a whole ClientHello.
const MAX_HELLO: usize = 64 * 1024;

/// Reads from `client` until `buf` (which may already hold bytes) holds a complete
/// ClientHello handshake message, and returns its server name (`None` when it has no
/// host_name). `buf` keeps every byte read, to be forwarded as is.
pub(crate) fn read_client_hello(client: &mut impl Read, buf: &mut Vec<u8>) -> Result<Option<String>, &'static str> {
    let mut handshake = Vec::new();
    let mut at = 0;
    loop {
        fill(client, buf, at + 5)?;
        let header = &buf[at..at + 5];
        if header[0] != 22 {
            return Err("the tunnel does not start with a TLS handshake");
        }
        if header[1] != 3 {
            return Err("not a TLS record");
        }
        let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
        if len == 0 || len > 16384 + 2048 {
            return Err("a TLS record of an impossible length");
        }
        fill(client, buf, at + 5 + len)?;
        handshake.extend_from_slice(&buf[at + 5..at + 5 + len]);
        at += 5 + len;
        if handshake.len() >= 4 {
            if handshake[0] != 1 {
                return Err("the first handshake message is not a ClientHello");
            }
            let msg_len =
                (usize::from(handshake[1]) << 16) | (usize::from(handshake[2]) << 8) | usize::from(handshake[3]);
            if msg_len + 4 > MAX_HELLO {
                return Err("a ClientHello too large");
            }
            if handshake.len() >= msg_len + 4 {
                return server_name(&handshake[4..msg_len + 4]);
            }
        }
    }
}

fn fill(client: &mut impl Read, buf: &mut Vec<u8>, want: usize) -> Result<(), &'static str> {
    if want > MAX_HELLO {
        return Err("a ClientHello too large");
    }
    let mut chunk = [0u8; 4096];
    while buf.len() < want {
        match client.read(&mut chunk) {
            Ok(0) => return Err("the client closed the tunnel before its ClientHello"),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return Err("no ClientHello in time"),
        }
    }
    Ok(())
}

struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], &'static str> {
        if self.0.len() < n {
            return Err("a truncated ClientHello");
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }
    fn u8(&mut self) -> Result<usize, &'static str> {
        Ok(usize::from(self.take(1)?[0]))
    }
    fn u16(&mut self) -> Result<usize, &'static str> {
        let b = self.take(2)?;
        Ok(usize::from(u16::from_be_bytes([b[0], b[1]])))
    }
}

/// The host_name of the server_name extension of a ClientHello body.
fn server_name(body: &[u8]) -> Result<Option<String>, &'static str> {
    let mut c = Cursor(body);
    c.take(2 + 32)?; // legacy_version, random
    let n = c.u8()?;
    c.take(n)?; // session id
    let n = c.u16()?;
    c.take(n)?; // cipher suites
    let n = c.u8()?;
    c.take(n)?; // compression methods
    if c.0.is_empty() {
        return Ok(None);
    }
    let n = c.u16()?;
    let mut ext = Cursor(c.take(n)?);
    let mut found = None;
    while !ext.0.is_empty() {
        let ty = ext.u16()?;
        let n = ext.u16()?;
        let data = ext.take(n)?;
        if ty != 0 {
            continue;
        }
        if found.is_some() {
            return Err("two server_name extensions");
        }
        let mut list = Cursor(data);
        let n = list.u16()?;
        let mut names = Cursor(list.take(n)?);
        while !names.0.is_empty() {
            let kind = names.u8()?;
            let n = names.u16()?;
            let name = names.take(n)?;
            if kind == 0 {
                if found.is_some() {
                    return Err("two host names in server_name");
                }
                let name = std::str::from_utf8(name).map_err(|_| "a server name that is not ASCII")?;
                found = Some(name.to_ascii_lowercase());
            }
        }
    }
    Ok(found)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A minimal TLS 1.2 ClientHello record naming `host` (or none).
    pub(crate) fn client_hello(host: Option<&str>) -> Vec<u8> {
        let mut body = vec![3, 3];
        body.extend([7u8; 32]);
        body.push(0); // session id
        body.extend([0, 2, 0x13, 0x01]); // one suite
        body.extend([1, 0]); // null compression
        let mut exts = Vec::new();
        if let Some(host) = host {
            let name = host.as_bytes();
            let mut list = vec![0u8];
            list.extend((name.len() as u16).to_be_bytes());
            list.extend(name);
            let mut data = (list.len() as u16).to_be_bytes().to_vec();
            data.extend(list);
            exts.extend([0, 0]);
            exts.extend((data.len() as u16).to_be_bytes());
            exts.extend(data);
        }
        body.extend((exts.len() as u16).to_be_bytes());
        body.extend(exts);
        let mut hs = vec![1, 0];
        hs.extend((body.len() as u16).to_be_bytes());
        hs.extend(body);
        let mut record = vec![22, 3, 1];
        record.extend((hs.len() as u16).to_be_bytes());
        record.extend(hs);
        record
    }

    #[test]
    fn reads_the_server_name() {
        let hello = client_hello(Some("Example.ORG"));
        let mut buf = Vec::new();
        let got = read_client_hello(&mut &hello[..], &mut buf).unwrap();
        assert_eq!(got.as_deref(), Some("example.org"));
        assert_eq!(buf, hello);
        assert_eq!(read_client_hello(&mut &client_hello(None)[..], &mut Vec::new()).unwrap(), None);
    }

    #[test]
    fn refuses_what_is_not_a_client_hello() {
        assert!(read_client_hello(&mut &b"GET / HTTP/1.1\r\n\r\n"[..], &mut Vec::new()).is_err());
        let hello = client_hello(Some("example.org"));
        assert!(read_client_hello(&mut &hello[..20], &mut Vec::new()).is_err(), "truncated");
        let mut split = hello.clone();
        split.truncate(hello.len() - 3);
        assert!(read_client_hello(&mut &split[..], &mut Vec::new()).is_err());
    }
}
