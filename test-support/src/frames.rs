//! Raw Ethernet frames for programs run with `BPF_PROG_TEST_RUN`: an IPv4 TCP
//! segment with the flags, TCP options and payload asked for, and an ARP
//! request (a frame that is not IP). Checksums are left zero: the tc
//! programs never check them.

/// An address and port.
pub type End = ([u8; 4], u16);

/// Ethernet + IPv4 + TCP from `src` to `dst`: `flags`, `options` bytes of TCP
/// options (a multiple of 4, zero-filled) and `payload` bytes of data.
pub fn ipv4_tcp(src: End, dst: End, flags: u8, options: usize, payload: usize) -> Vec<u8> {
    assert!(
        options.is_multiple_of(4) && options <= 40,
        "TCP options: {options} bytes"
    );
    let tcp_len = 20 + options;
    let mut p = vec![0u8; 14 + 20 + tcp_len + payload];
    p[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
    p[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
    p[12..14].copy_from_slice(&[0x08, 0x00]);
    let ip = &mut p[14..34];
    ip[0] = 0x45;
    let total = u16::try_from(20 + tcp_len + payload).expect("fits an IPv4 packet");
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip[8] = 64;
    ip[9] = 6;
    ip[12..16].copy_from_slice(&src.0);
    ip[16..20].copy_from_slice(&dst.0);
    let tcp = &mut p[34..34 + tcp_len];
    tcp[0..2].copy_from_slice(&src.1.to_be_bytes());
    tcp[2..4].copy_from_slice(&dst.1.to_be_bytes());
    tcp[12] = u8::try_from(tcp_len / 4).expect("at most 15 words") << 4;
    tcp[13] = flags;
    p
}

/// An ARP request (who has 198.18.0.1): not IP.
pub fn arp_request() -> Vec<u8> {
    let mut p = vec![0u8; 14 + 28];
    p[0..6].copy_from_slice(&[0xff; 6]);
    p[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
    p[12..14].copy_from_slice(&[0x08, 0x06]);
    p[14..22].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    p[38..42].copy_from_slice(&[198, 18, 0, 1]);
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_segment_has_its_lengths_ports_and_flags_where_ipv4_and_tcp_put_them() {
        let p = ipv4_tcp(
            ([198, 18, 0, 2], 40_000),
            ([198, 18, 0, 3], 8080),
            0x12,
            12,
            100,
        );
        assert_eq!(p.len(), 14 + 20 + 32 + 100);
        assert_eq!(&p[12..14], &[0x08, 0x00]);
        assert_eq!(u16::from_be_bytes([p[16], p[17]]), 20 + 32 + 100);
        assert_eq!(p[23], 6);
        assert_eq!(&p[26..34], &[198, 18, 0, 2, 198, 18, 0, 3]);
        assert_eq!(u16::from_be_bytes([p[34], p[35]]), 40_000);
        assert_eq!(u16::from_be_bytes([p[36], p[37]]), 8080);
        assert_eq!(p[46] >> 4, 8, "data offset in words");
        assert_eq!(p[47], 0x12);
    }
}
