//! Checks the Rust mirror of the event structs against the BTF that clang put in
//! the compiled probe object: same size, same field names at the same offsets.
//! A mismatch stops flow-probe before it loads anything, instead of decoding
//! garbage later.

use std::collections::HashMap;

use object::{Object, ObjectSection};

use super::events::Layout;

/// Why the layout check failed.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    /// The probe object is not an ELF file with a `.BTF` section.
    #[error("probe object has no readable .BTF section: {0}")]
    NoBtf(String),
    /// The `.BTF` section is malformed.
    #[error("malformed BTF: {0}")]
    Malformed(String),
    /// One or more structs differ between C and Rust.
    #[error("event layout mismatch between the probe object and flow-probe:\n  {}", .0.join("\n  "))]
    Mismatch(Vec<String>),
}

/// A struct as BTF describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BtfStruct {
    pub size: usize,
    /// (member name, byte offset)
    pub members: Vec<(String, usize)>,
}

/// Reads every named struct from the `.BTF` section of an ELF object.
pub fn structs_in_object(elf: &[u8]) -> Result<HashMap<String, BtfStruct>, LayoutError> {
    let file = object::File::parse(elf).map_err(|e| LayoutError::NoBtf(e.to_string()))?;
    let section = file
        .section_by_name(".BTF")
        .ok_or_else(|| LayoutError::NoBtf("section missing (was it built with -g?)".into()))?;
    let data = section
        .data()
        .map_err(|e| LayoutError::NoBtf(e.to_string()))?;
    parse_btf_structs(data)
}

fn u32_at(b: &[u8], off: usize) -> Result<u32, LayoutError> {
    b.get(off..off + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or_else(|| LayoutError::Malformed(format!("read past the end at {off}")))
}

fn name_at(strings: &[u8], off: u32) -> Result<String, LayoutError> {
    let rest = strings
        .get(off as usize..)
        .ok_or_else(|| LayoutError::Malformed(format!("string offset {off} out of range")))?;
    let end = rest.iter().position(|&c| c == 0).unwrap_or(rest.len());
    Ok(String::from_utf8_lossy(&rest[..end]).into_owned())
}

/// Walks the type section of raw BTF (little-endian, as clang emits on x86 and
/// arm64) and keeps the structs.
pub fn parse_btf_structs(btf: &[u8]) -> Result<HashMap<String, BtfStruct>, LayoutError> {
    const MAGIC: u16 = 0xeb9f;
    if btf.len() < 24 || u16::from_le_bytes([btf[0], btf[1]]) != MAGIC {
        return Err(LayoutError::Malformed("bad magic".into()));
    }
    let hdr_len = u32_at(btf, 4)? as usize;
    let (type_off, type_len) = (u32_at(btf, 8)? as usize, u32_at(btf, 12)? as usize);
    let (str_off, str_len) = (u32_at(btf, 16)? as usize, u32_at(btf, 20)? as usize);
    let types = btf
        .get(hdr_len + type_off..hdr_len + type_off + type_len)
        .ok_or_else(|| LayoutError::Malformed("type section out of range".into()))?;
    let strings = btf
        .get(hdr_len + str_off..hdr_len + str_off + str_len)
        .ok_or_else(|| LayoutError::Malformed("string section out of range".into()))?;

    let mut out = HashMap::new();
    let mut pos = 0;
    while pos < types.len() {
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
            other => return Err(LayoutError::Malformed(format!("unknown BTF kind {other}"))),
        };
        if kind == 4 && name_off != 0 {
            let mut members = Vec::with_capacity(vlen);
            for m in 0..vlen {
                let at = pos + 12 * m;
                let bits = u32_at(types, at + 8)?;
                let bits = if kind_flag { bits & 0x00ff_ffff } else { bits };
                members.push((name_at(strings, u32_at(types, at)?)?, (bits / 8) as usize));
            }
            out.insert(
                name_at(strings, name_off)?,
                BtfStruct {
                    size: size as usize,
                    members,
                },
            );
        }
        pos += extra;
    }
    Ok(out)
}

/// Compares each mirrored layout with the struct of the same name in BTF.
pub fn check(btf: &HashMap<String, BtfStruct>, mirrors: &[Layout]) -> Result<(), LayoutError> {
    let mut problems = Vec::new();
    for layout in mirrors {
        let Some(c) = btf.get(layout.name) else {
            problems.push(format!("struct {} is not in the probe object", layout.name));
            continue;
        };
        if c.size != layout.size {
            problems.push(format!(
                "struct {}: size is {} bytes in C, {} in Rust",
                layout.name, c.size, layout.size
            ));
        }
        let c_fields: Vec<(&str, usize)> =
            c.members.iter().map(|(n, o)| (n.as_str(), *o)).collect();
        if c_fields != layout.fields {
            problems.push(format!(
                "struct {}: fields are {:?} in C, {:?} in Rust",
                layout.name, c_fields, layout.fields
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(LayoutError::Mismatch(problems))
    }
}

/// Checks each mirrored layout against every probe object whose BTF has a struct
/// of that name (each object carries the structs it uses); a layout that no
/// object has is a mismatch too. `objects` are (name, ELF bytes).
pub fn check_objects(objects: &[(&str, &[u8])], mirrors: &[Layout]) -> Result<(), LayoutError> {
    let mut parsed = Vec::with_capacity(objects.len());
    for (name, elf) in objects {
        let structs = structs_in_object(elf).map_err(|e| match e {
            LayoutError::NoBtf(m) => LayoutError::NoBtf(format!("{name}: {m}")),
            LayoutError::Malformed(m) => LayoutError::Malformed(format!("{name}: {m}")),
            other => other,
        })?;
        parsed.push((*name, structs));
    }
    let mut problems = Vec::new();
    for layout in mirrors {
        let mut found = false;
        for (object, structs) in &parsed {
            if !structs.contains_key(layout.name) {
                continue;
            }
            found = true;
            if let Err(LayoutError::Mismatch(p)) = check(structs, std::slice::from_ref(layout)) {
                problems.extend(p.into_iter().map(|p| format!("{p} (object {object})")));
            }
        }
        if !found {
            let names: Vec<&str> = parsed.iter().map(|(n, _)| *n).collect();
            problems.push(format!(
                "struct {} is in none of the probe objects ({})",
                layout.name,
                names.join(", ")
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(LayoutError::Mismatch(problems))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::events::mirrored_layouts;
    use crate::kernel::objects::FLOW_OBJECT;

    #[test]
    fn mirror_matches_the_compiled_probe() {
        assert!(
            !FLOW_OBJECT.is_empty(),
            "built without clang-19: run the README's setup"
        );
        check_objects(&crate::kernel::objects::all(), &mirrored_layouts()).unwrap();
    }

    #[test]
    fn each_struct_is_checked_against_the_object_that_defines_it() {
        use crate::kernel::objects::SOCK_LB_OBJECT;
        let lb = structs_in_object(SOCK_LB_OBJECT).unwrap();
        assert!(lb.contains_key("sock_xlate_event") && lb.contains_key("lb_service_key"));
        let flow = structs_in_object(FLOW_OBJECT).unwrap();
        assert!(
            !flow.contains_key("sock_xlate_event"),
            "the tc object does not use it"
        );
        let mut layouts = mirrored_layouts();
        let ev = layouts
            .iter_mut()
            .find(|l| l.name == "sock_xlate_event")
            .unwrap();
        ev.size = 88;
        let err = check_objects(&crate::kernel::objects::all(), &layouts)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(
                "struct sock_xlate_event: size is 96 bytes in C, 88 in Rust (object sock_lb)"
            ),
            "{err}"
        );
        let missing = [Layout {
            name: "no_such_struct",
            size: 4,
            fields: vec![],
        }];
        let err = check_objects(&crate::kernel::objects::all(), &missing)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("struct no_such_struct is in none of the probe objects (flow, sock_lb)"),
            "{err}"
        );
    }

    #[test]
    fn a_wrong_mirror_fails_loudly() {
        let structs = structs_in_object(FLOW_OBJECT).unwrap();
        let mut layouts = mirrored_layouts();
        let ev = layouts.iter_mut().find(|l| l.name == "flow_event").unwrap();
        // Pretend Rust forgot a field and everything after it moved.
        ev.fields.retain(|(n, _)| *n != "rev_packets");
        ev.size = 120;
        let err = check(&structs, &layouts).unwrap_err().to_string();
        assert!(
            err.starts_with("event layout mismatch between the probe object and flow-probe:"),
            "{err}"
        );
        assert!(
            err.contains("struct flow_event: size is 128 bytes in C, 120 in Rust"),
            "{err}"
        );
        assert!(err.contains("(\"rev_packets\", 88)"), "{err}");
        let missing = [Layout {
            name: "no_such_struct",
            size: 4,
            fields: vec![],
        }];
        let err = check(&structs, &missing).unwrap_err().to_string();
        assert!(
            err.contains("struct no_such_struct is not in the probe object"),
            "{err}"
        );
    }
}
