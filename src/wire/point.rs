//! `P2p_point.Id`: an `addr:port` text with a `u32be` length (protocol.md §7.1).

use std::net::{IpAddr, SocketAddr};

use super::{DecodeError, EncodeError, Reader};

/// Largest encoded point, prefix included (octez `check_size 51`: 4 + 8·4 + 7 + 2 + 1 + 5).
pub const MAX_POINT_ENCODED_SIZE: usize = 51;
/// Longest point text (without its 4-byte length prefix).
pub const MAX_POINT_TEXT: usize = MAX_POINT_ENCODED_SIZE - 4;

/// octez's text form: `a.b.c.d:port` for IPv4 and IPv4-mapped IPv6, `[v6]:port` otherwise
/// (RFC 5952 lowercase, which is what Rust's `Display` produces).
pub fn point_text(point: &SocketAddr) -> String {
    match point.ip() {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => format!("{v4}:{}", point.port()),
            None => format!("[{v6}]:{}", point.port()),
        },
        IpAddr::V4(v4) => format!("{v4}:{}", point.port()),
    }
}

/// Appends `u32be len ‖ text`.
pub fn encode_point(point: &SocketAddr, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let text = point_text(point);
    if text.len() > MAX_POINT_TEXT {
        return Err(EncodeError::SizeLimit { what: "point", size: text.len() + 4, max: MAX_POINT_ENCODED_SIZE });
    }
    out.extend_from_slice(&(text.len() as u32).to_be_bytes());
    out.extend_from_slice(text.as_bytes());
    Ok(())
}

/// Reads one point; a `#peer_id` suffix is ignored, a missing port or bad address is an error.
pub fn decode_point(r: &mut Reader<'_>) -> Result<SocketAddr, DecodeError> {
    parse_point(r.sized("point", MAX_POINT_TEXT)?)
}

/// Parses a point's text (without its length prefix): `addr:port`, a `#peer_id` suffix ignored.
pub fn parse_point(raw: &[u8]) -> Result<SocketAddr, DecodeError> {
    let text =
        std::str::from_utf8(raw).map_err(|_| DecodeError::Invalid { what: "point", reason: "not UTF-8".into() })?;
    let addr = text.split_once('#').map_or(text, |(a, _)| a);
    addr.parse().map_err(|_| DecodeError::Invalid { what: "point", reason: format!("{text:?} is not addr:port") })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_forms() {
        let cases = [
            ("127.0.0.1:9732", "127.0.0.1:9732"),
            ("[::1]:1", "[::1]:1"),
            ("[::ffff:10.0.0.1]:80", "10.0.0.1:80"),
            ("[FE80::E828:209D:20E:C0AE]:375", "[fe80::e828:209d:20e:c0ae]:375"),
        ];
        for (input, text) in cases {
            let p: SocketAddr = input.parse().unwrap();
            assert_eq!(point_text(&p), text);
            let mut out = Vec::new();
            encode_point(&p, &mut out).unwrap();
            let back = decode_point(&mut Reader::new(&out)).unwrap();
            assert_eq!(point_text(&back), text);
        }
    }

    #[test]
    fn peer_id_suffix_is_ignored_and_garbage_refused() {
        let text = b"1.2.3.4:5#idsD15KLaWb3yQ6jHUeTFtcc4JRrgt";
        let mut buf = (text.len() as u32).to_be_bytes().to_vec();
        buf.extend_from_slice(text);
        assert_eq!(decode_point(&mut Reader::new(&buf)).unwrap(), "1.2.3.4:5".parse().unwrap());
        for bad in [&b"1.2.3.4"[..], b"host:1", b"\xff\xfe:1", b""] {
            let mut buf = (bad.len() as u32).to_be_bytes().to_vec();
            buf.extend_from_slice(bad);
            assert!(decode_point(&mut Reader::new(&buf)).is_err());
        }
        // A claimed length over the limit is refused before anything is read.
        assert!(matches!(
            decode_point(&mut Reader::new(&[0xff, 0xff, 0xff, 0xff])),
            Err(DecodeError::SizeLimit { .. })
        ));
    }
}
