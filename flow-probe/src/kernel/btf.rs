//! A minimal reader of the `.BTF` section clang writes into a probe object:
//! named structs (size, members and their byte offsets) and enums (members and
//! values), which is what the mirror check in `btf_layout` compares.
//!
//! Hand-written because aya-obj 0.3 (aya 0.14's object crate) parses BTF but
//! keeps the type list, names, struct members and enum values crate-private.

use std::collections::HashMap;

use object::{Object, ObjectSection};

/// Why an object's BTF could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    /// The probe object is not an ELF file with a `.BTF` section.
    #[error("no readable .BTF section: {0}")]
    NoBtf(String),
    /// The `.BTF` section is malformed.
    #[error("malformed BTF: {0}")]
    Malformed(String),
}

/// A struct as BTF describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BtfStruct {
    pub size: usize,
    pub members: Vec<BtfMember>,
}

/// One member of a struct.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BtfMember {
    pub name: String,
    /// Byte offset (bitfields are rounded down to their byte).
    pub offset: usize,
    /// BTF id of the member's type.
    pub type_id: u32,
}

/// An enum as BTF describes it: members and values, in declaration order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BtfEnum {
    pub members: Vec<(String, i64)>,
}

/// The named structs and enums of one object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BtfTypes {
    pub structs: HashMap<String, BtfStruct>,
    pub enums: HashMap<String, BtfEnum>,
    /// Names of the enums, by BTF type id.
    pub enum_ids: HashMap<u32, String>,
}

/// Reads the named structs and enums from the `.BTF` section of an ELF object.
pub fn read_object(elf: &[u8]) -> Result<BtfTypes, BtfError> {
    let file = object::File::parse(elf).map_err(|e| BtfError::NoBtf(e.to_string()))?;
    let section = file
        .section_by_name(".BTF")
        .ok_or_else(|| BtfError::NoBtf("section missing (was it built with -g?)".into()))?;
    let data = section.data().map_err(|e| BtfError::NoBtf(e.to_string()))?;
    parse(data)
}

fn u32_at(b: &[u8], off: usize) -> Result<u32, BtfError> {
    b.get(off..off + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or_else(|| BtfError::Malformed(format!("read past the end at {off}")))
}

fn name_at(strings: &[u8], off: u32) -> Result<String, BtfError> {
    let rest = strings
        .get(off as usize..)
        .ok_or_else(|| BtfError::Malformed(format!("string offset {off} out of range")))?;
    let end = rest.iter().position(|&c| c == 0).unwrap_or(rest.len());
    Ok(String::from_utf8_lossy(&rest[..end]).into_owned())
}

// BTF kinds (include/uapi/linux/btf.h).
const KIND_STRUCT: u32 = 4;
const KIND_ENUM: u32 = 6;
const KIND_ENUM64: u32 = 19;

/// Walks the type section of raw BTF (little-endian, as clang emits on x86 and
/// arm64) and keeps the named structs and enums.
pub fn parse(btf: &[u8]) -> Result<BtfTypes, BtfError> {
    const MAGIC: u16 = 0xeb9f;
    if btf.len() < 24 || u16::from_le_bytes([btf[0], btf[1]]) != MAGIC {
        return Err(BtfError::Malformed("bad magic".into()));
    }
    let hdr_len = u32_at(btf, 4)? as usize;
    let (type_off, type_len) = (u32_at(btf, 8)? as usize, u32_at(btf, 12)? as usize);
    let (str_off, str_len) = (u32_at(btf, 16)? as usize, u32_at(btf, 20)? as usize);
    let types = btf
        .get(hdr_len + type_off..hdr_len + type_off + type_len)
        .ok_or_else(|| BtfError::Malformed("type section out of range".into()))?;
    let strings = btf
        .get(hdr_len + str_off..hdr_len + str_off + str_len)
        .ok_or_else(|| BtfError::Malformed("string section out of range".into()))?;

    let mut out = BtfTypes::default();
    let mut pos = 0;
    // Type ids count from 1; 0 is void.
    let mut id = 0u32;
    while pos < types.len() {
        id += 1;
        let name_off = u32_at(types, pos)?;
        let info = u32_at(types, pos + 4)?;
        let size = u32_at(types, pos + 8)?;
        let vlen = (info & 0xffff) as usize;
        let kind = (info >> 24) & 0x1f;
        let kind_flag = info >> 31 == 1;
        pos += 12;
        let extra = match kind {
            1 | 14 | 17 => 4,     // INT, VAR, DECL_TAG
            3 => 12,              // ARRAY
            4 | 5 => 12 * vlen,   // STRUCT, UNION
            6 | 13 => 8 * vlen,   // ENUM, FUNC_PROTO
            15 | 19 => 12 * vlen, // DATASEC, ENUM64
            2 | 7..=12 | 16 | 18 => 0,
            other => return Err(BtfError::Malformed(format!("unknown BTF kind {other}"))),
        };
        if name_off != 0 {
            let at = |m: usize, width: usize| pos + width * m;
            match kind {
                KIND_STRUCT => {
                    let mut members = Vec::with_capacity(vlen);
                    for m in 0..vlen {
                        let bits = u32_at(types, at(m, 12) + 8)?;
                        // With kind_flag the top byte is the bitfield size.
                        let bits = if kind_flag { bits & 0x00ff_ffff } else { bits };
                        members.push(BtfMember {
                            name: name_at(strings, u32_at(types, at(m, 12))?)?,
                            offset: (bits / 8) as usize,
                            type_id: u32_at(types, at(m, 12) + 4)?,
                        });
                    }
                    let name = name_at(strings, name_off)?;
                    let size = size as usize;
                    out.structs.insert(name, BtfStruct { size, members });
                }
                KIND_ENUM | KIND_ENUM64 => {
                    let width = if kind == KIND_ENUM { 8 } else { 12 };
                    let mut members = Vec::with_capacity(vlen);
                    for m in 0..vlen {
                        let lo = u32_at(types, at(m, width) + 4)?;
                        // kind_flag marks a signed enum.
                        let value = match (kind, kind_flag) {
                            (KIND_ENUM, true) => i64::from(lo as i32),
                            (KIND_ENUM, false) => i64::from(lo),
                            _ => {
                                let hi = u32_at(types, at(m, width) + 8)?;
                                (u64::from(hi) << 32 | u64::from(lo)) as i64
                            }
                        };
                        members.push((name_at(strings, u32_at(types, at(m, width))?)?, value));
                    }
                    let name = name_at(strings, name_off)?;
                    out.enum_ids.insert(id, name.clone());
                    out.enums.insert(name, BtfEnum { members });
                }
                _ => {}
            }
        }
        pos += extra;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::objects::{FLOW_OBJECT, SOCK_LB_OBJECT};

    #[test]
    fn reads_structs_and_enums_of_the_compiled_probe() {
        let flow = read_object(FLOW_OBJECT).unwrap();
        let hdr = &flow.structs["event_header"];
        assert_eq!(hdr.size, 8);
        let fields: Vec<(&str, usize)> = hdr
            .members
            .iter()
            .map(|m| (m.name.as_str(), m.offset))
            .collect();
        assert_eq!(
            fields,
            [("type", 0), ("version", 1), ("len", 2), ("_pad0", 4)]
        );
        assert_eq!(
            flow.enums["verdict"].members,
            [
                ("VERDICT_FORWARDED".to_string(), 1),
                ("VERDICT_DROPPED".to_string(), 2),
                ("VERDICT_AUDIT".to_string(), 4)
            ]
        );
        let lb = read_object(SOCK_LB_OBJECT).unwrap();
        assert_eq!(
            lb.enums["event_version"].members,
            [("EVENT_VERSION".to_string(), 7)]
        );
        let anchor = &lb.structs["mirrored_enums"].members[0];
        assert_eq!(lb.enum_ids[&anchor.type_id], "event_version");
    }

    #[test]
    fn refuses_what_is_not_btf() {
        let err = parse(b"not BTF at all, just text").unwrap_err();
        assert_eq!(err.to_string(), "malformed BTF: bad magic");
        let err = read_object(b"\x7fELF?").unwrap_err().to_string();
        assert!(err.starts_with("no readable .BTF section:"), "{err}");
    }
}
