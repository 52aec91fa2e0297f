//! Label sets as byte keys, built without allocating: each value's UTF-8
//! bytes followed by [`SEP`] (0xFF, a byte UTF-8 never contains), so a key
//! is unambiguous and splits back into its values. [`KeyHasher`] is a small
//! folded-multiply hash (as foldhash / wyhash) for the maps keyed by them.

use std::hash::{BuildHasherDefault, Hasher};

/// Ends every value of a key.
pub const SEP: u8 = 0xFF;

/// A reusable buffer holding one key.
#[derive(Debug, Default)]
pub struct KeyBuf(Vec<u8>);

impl KeyBuf {
    /// Empties the buffer for the next key (keeps its capacity).
    pub fn clear(&mut self) -> &mut Self {
        self.0.clear();
        self
    }

    /// Appends one value.
    pub fn push(&mut self, value: &str) -> &mut Self {
        self.0.extend_from_slice(value.as_bytes());
        self.0.push(SEP);
        self
    }

    /// Appends `n` in decimal as one value.
    pub fn push_u32(&mut self, n: u32) -> &mut Self {
        write_u32(&mut self.0, n);
        self.0.push(SEP);
        self
    }

    /// Appends one value that `write` puts into the buffer (valid UTF-8 only).
    pub fn push_with(&mut self, write: impl FnOnce(&mut Vec<u8>)) -> &mut Self {
        write(&mut self.0);
        self.0.push(SEP);
        self
    }

    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

/// Appends `n` in decimal to `out`.
pub fn write_u32(out: &mut Vec<u8>, mut n: u32) {
    let mut digits = [0u8; 10];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// The values of a key.
pub fn values(key: &[u8]) -> Vec<&str> {
    key.strip_suffix(&[SEP])
        .map(|k| {
            k.split(|b| *b == SEP)
                // Every value was pushed as a &str or as UTF-8 by `push_with`.
                .map(|v| std::str::from_utf8(v).unwrap_or(""))
                .collect()
        })
        .unwrap_or_default()
}

/// A word-at-a-time folded-multiply hasher: fast on short keys, every input
/// bit reaches every output bit; not DoS-resistant (the keys come from our
/// own flows, and each map is capped).
#[derive(Debug, Default, Clone, Copy)]
pub struct KeyHasher(u64);

const K: u64 = 0xf135_7aea_2e62_a9c5;
const K2: u64 = 0x9e37_79b9_7f4a_7c15;

/// 128-bit product of `a` and `b`, high half folded onto the low half.
fn mix(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

fn u64_at(b: &[u8], i: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[i..i + 8]);
    u64::from_le_bytes(w)
}

fn u32_at(b: &[u8], i: usize) -> u64 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[i..i + 4]);
    u64::from(u32::from_le_bytes(w))
}

impl KeyHasher {
    fn add(&mut self, word: u64) {
        self.0 = mix(self.0 ^ word, K);
    }
}

impl Hasher for KeyHasher {
    /// 16 bytes per multiply; the tail as two (overlapping) loads, which
    /// with the length folded in first tell every tail apart.
    fn write(&mut self, bytes: &[u8]) {
        let mut h = self.0 ^ (bytes.len() as u64);
        let mut chunks = bytes.chunks_exact(16);
        for c in &mut chunks {
            h = mix(h ^ u64_at(c, 0), K2 ^ u64_at(c, 8));
        }
        let r = chunks.remainder();
        let n = r.len();
        let (a, b) = if n >= 8 {
            (u64_at(r, 0), u64_at(r, n - 8))
        } else if n >= 4 {
            (u32_at(r, 0), u32_at(r, n - 4))
        } else if n > 0 {
            let b = |i: usize| u64::from(r[i]);
            (b(0) | b(n / 2) << 8 | b(n - 1) << 16, 0)
        } else {
            (0, 0)
        };
        self.0 = mix(h ^ a, K2 ^ b);
    }

    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    fn write_u32(&mut self, n: u32) {
        self.add(u64::from(n));
    }

    fn write_u16(&mut self, n: u16) {
        self.add(u64::from(n));
    }

    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

pub type BuildKeyHasher = BuildHasherDefault<KeyHasher>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_split_back_into_their_values() {
        let mut k = KeyBuf::default();
        k.clear()
            .push("TCP")
            .push("")
            .push_u32(0)
            .push_u32(4_294_967_295)
            .push_with(|b| b.extend_from_slice("ns/ä".as_bytes()));
        assert_eq!(values(k.bytes()), ["TCP", "", "0", "4294967295", "ns/ä"]);
        assert_ne!(
            KeyBuf::default().push("a").push("bc").bytes(),
            KeyBuf::default().push("ab").push("c").bytes()
        );
        assert!(values(KeyBuf::default().bytes()).is_empty());
    }
}
