//! Checks the Rust mirror of `events.h` against the BTF that clang put in each
//! compiled probe object: every mirrored struct's size and field offsets, and
//! every mirrored enum's values (the event version among them), both ways. A
//! mismatch stops flow-probe before it loads anything, instead of decoding
//! garbage later.

use std::collections::HashMap;

use super::btf::{self, BtfEnum, BtfError, BtfStruct, BtfTypes};
use super::events::{EnumMirror, Layout, MIRRORED_ENUMS, mirrored_layouts};

/// The C struct with one member of each enum flow-probe must mirror.
const ENUM_ANCHOR: &str = "mirrored_enums";

/// Why the layout check failed.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    /// A probe object's BTF could not be read.
    #[error("probe object {object}: {error}")]
    Btf { object: String, error: BtfError },
    /// One or more structs or enums differ between C and Rust.
    #[error("event layout mismatch between the probe object and flow-probe:\n  {}", .0.join("\n  "))]
    Mismatch(Vec<String>),
}

/// Checks the built-in mirror against the embedded probe objects.
pub fn check_embedded() -> Result<(), LayoutError> {
    check_objects(&super::objects::all(), &mirrored_layouts(), MIRRORED_ENUMS)
}

fn struct_problems(c: &BtfStruct, rust: &Layout) -> Vec<String> {
    let name = rust.name;
    let mut out = Vec::new();
    if c.size != rust.size {
        out.push(format!(
            "struct {name}: size is {} bytes in C, {} in Rust",
            c.size, rust.size
        ));
    }
    let rust_fields: HashMap<&str, usize> = rust.fields.iter().copied().collect();
    for m in &c.members {
        match rust_fields.get(m.name.as_str()) {
            Some(&at) if at == m.offset => {}
            Some(at) => out.push(format!(
                "struct {name}: field {} is at {} in C, {at} in Rust",
                m.name, m.offset
            )),
            None => out.push(format!(
                "struct {name}: field {} is at {} in C, missing in Rust",
                m.name, m.offset
            )),
        }
    }
    for (field, at) in &rust.fields {
        if !c.members.iter().any(|m| m.name == *field) {
            out.push(format!(
                "struct {name}: field {field} is missing in C, at {at} in Rust"
            ));
        }
    }
    out
}

fn enum_problems(c: &BtfEnum, rust: &EnumMirror) -> Vec<String> {
    let name = rust.name;
    let mut out = Vec::new();
    for (member, value) in &c.members {
        match rust.members.iter().find(|(n, _)| n == member) {
            Some((_, v)) if v == value => {}
            Some((_, v)) => out.push(format!(
                "enum {name}: {member} is {value} in C, {v} in Rust"
            )),
            None => out.push(format!(
                "enum {name}: {member} is {value} in C, missing in Rust"
            )),
        }
    }
    for (member, v) in rust.members {
        if !c.members.iter().any(|(n, _)| n == member) {
            out.push(format!(
                "enum {name}: {member} is missing in C, {v} in Rust"
            ));
        }
    }
    out
}

/// Enums the C side asks to be mirrored (members of `struct mirrored_enums`)
/// that have no mirror.
fn unmirrored_enums(c: &BtfTypes, enums: &[EnumMirror]) -> Vec<String> {
    let Some(anchor) = c.structs.get(ENUM_ANCHOR) else {
        return vec![format!("struct {ENUM_ANCHOR} is not in the probe object")];
    };
    anchor
        .members
        .iter()
        .filter_map(|m| match c.enum_ids.get(&m.type_id) {
            Some(e) if enums.iter().any(|r| r.name == e) => None,
            Some(e) => Some(format!(
                "enum {e} (in struct {ENUM_ANCHOR}) has no mirror in flow-probe"
            )),
            None => Some(format!(
                "struct {ENUM_ANCHOR}: member {} is not an enum",
                m.name
            )),
        })
        .collect()
}

/// Compares each mirrored struct and enum with the one of the same name in
/// one object's BTF; everything must be there.
pub fn check(c: &BtfTypes, layouts: &[Layout], enums: &[EnumMirror]) -> Result<(), LayoutError> {
    let mut problems = Vec::new();
    for layout in layouts {
        match c.structs.get(layout.name) {
            Some(s) => problems.extend(struct_problems(s, layout)),
            None => problems.push(format!("struct {} is not in the probe object", layout.name)),
        }
    }
    for mirror in enums {
        match c.enums.get(mirror.name) {
            Some(e) => problems.extend(enum_problems(e, mirror)),
            None => problems.push(format!("enum {} is not in the probe object", mirror.name)),
        }
    }
    problems.extend(unmirrored_enums(c, enums));
    mismatch(problems)
}

fn mismatch(problems: Vec<String>) -> Result<(), LayoutError> {
    if problems.is_empty() {
        Ok(())
    } else {
        Err(LayoutError::Mismatch(problems))
    }
}

/// Checks each mirrored struct and enum against every probe object whose BTF
/// has one of that name (each object carries the structs it uses); one that no
/// object has is a mismatch too. `objects` are (name, ELF bytes).
pub fn check_objects(
    objects: &[(&str, &[u8])],
    layouts: &[Layout],
    enums: &[EnumMirror],
) -> Result<(), LayoutError> {
    let mut parsed = Vec::with_capacity(objects.len());
    for (name, elf) in objects {
        let types = btf::read_object(elf).map_err(|error| LayoutError::Btf {
            object: name.to_string(),
            error,
        })?;
        parsed.push((*name, types));
    }
    let names: Vec<&str> = parsed.iter().map(|(n, _)| *n).collect();
    let mut problems = Vec::new();
    let mut each = |what: String,
                    has: &dyn Fn(&BtfTypes) -> bool,
                    found: &dyn Fn(&BtfTypes) -> Vec<String>| {
        let mut seen = false;
        for (object, types) in parsed.iter().filter(|(_, t)| has(t)) {
            seen = true;
            problems.extend(
                found(types)
                    .into_iter()
                    .map(|p| format!("{p} (object {object})")),
            );
        }
        if !seen {
            problems.push(format!(
                "{what} is in none of the probe objects ({})",
                names.join(", ")
            ));
        }
    };
    for layout in layouts {
        each(
            format!("struct {}", layout.name),
            &|t| t.structs.contains_key(layout.name),
            &|t| struct_problems(&t.structs[layout.name], layout),
        );
    }
    for mirror in enums {
        each(
            format!("enum {}", mirror.name),
            &|t| t.enums.contains_key(mirror.name),
            &|t| enum_problems(&t.enums[mirror.name], mirror),
        );
    }
    each(
        format!("struct {ENUM_ANCHOR}"),
        &|t| t.structs.contains_key(ENUM_ANCHOR),
        &|t| unmirrored_enums(t, enums),
    );
    mismatch(problems)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::objects::{FLOW_OBJECT, SOCK_LB_OBJECT, all};

    fn flow_btf() -> BtfTypes {
        btf::read_object(FLOW_OBJECT).unwrap()
    }

    fn mismatch_of(err: LayoutError) -> Vec<String> {
        match err {
            LayoutError::Mismatch(p) => p,
            other => panic!("expected a mismatch, got {other}"),
        }
    }

    #[test]
    fn mirror_matches_the_compiled_probe() {
        assert!(
            !FLOW_OBJECT.is_empty(),
            "built without clang-19: run the README's setup"
        );
        check_embedded().unwrap();
    }

    #[test]
    fn each_struct_is_checked_against_the_object_that_defines_it() {
        let lb = btf::read_object(SOCK_LB_OBJECT).unwrap();
        assert!(lb.structs.contains_key("sock_xlate_event"));
        assert!(lb.structs.contains_key("lb_service_key"));
        assert!(
            !flow_btf().structs.contains_key("sock_xlate_event"),
            "the tc object does not use it"
        );
        let mut layouts = mirrored_layouts();
        let ev = layouts
            .iter_mut()
            .find(|l| l.name == "sock_xlate_event")
            .unwrap();
        ev.size = 88;
        let err = check_objects(&all(), &layouts, MIRRORED_ENUMS).unwrap_err();
        assert_eq!(
            mismatch_of(err),
            ["struct sock_xlate_event: size is 104 bytes in C, 88 in Rust (object sock_lb)"]
        );
        let missing = [Layout {
            name: "no_such_struct",
            size: 4,
            fields: vec![],
        }];
        let err = check_objects(&all(), &missing, MIRRORED_ENUMS).unwrap_err();
        assert_eq!(
            mismatch_of(err),
            ["struct no_such_struct is in none of the probe objects (flow, sock_lb)"]
        );
    }

    #[test]
    fn a_wrong_struct_mirror_fails_with_size_and_offsets() {
        let mut layouts = mirrored_layouts();
        let ev = layouts.iter_mut().find(|l| l.name == "flow_event").unwrap();
        // Pretend Rust forgot a field and everything after it moved by 8.
        ev.fields.retain(|(n, _)| *n != "rev_packets");
        for (n, at) in &mut ev.fields {
            if *n == "rev_bytes" {
                *at -= 8;
            }
        }
        ev.size = 112;
        layouts.retain(|l| l.name == "flow_event");
        let err = check(&flow_btf(), &layouts, MIRRORED_ENUMS).unwrap_err();
        assert_eq!(
            err.to_string(),
            "event layout mismatch between the probe object and flow-probe:\n  \
             struct flow_event: size is 136 bytes in C, 112 in Rust\n  \
             struct flow_event: field rev_packets is at 80 in C, missing in Rust\n  \
             struct flow_event: field rev_bytes is at 88 in C, 80 in Rust"
        );
        let missing = [Layout {
            name: "no_such_struct",
            size: 4,
            fields: vec![("ghost", 0)],
        }];
        let err = check(&flow_btf(), &missing, MIRRORED_ENUMS).unwrap_err();
        assert_eq!(
            mismatch_of(err),
            ["struct no_such_struct is not in the probe object"]
        );
    }

    /// The built-in enum mirrors with `name` replaced.
    fn enums_with(name: &str, replacement: Option<EnumMirror>) -> Vec<EnumMirror> {
        MIRRORED_ENUMS
            .iter()
            .filter_map(|e| {
                if e.name == name {
                    replacement
                } else {
                    Some(*e)
                }
            })
            .collect()
    }

    #[test]
    fn a_wrong_enum_value_names_the_enum_the_member_and_both_values() {
        let wrong = EnumMirror {
            name: "verdict",
            members: &[
                ("VERDICT_FORWARDED", 1),
                ("VERDICT_DROPPED", 2),
                ("VERDICT_AUDIT", 3),
            ],
        };
        let err = check(&flow_btf(), &[], &enums_with("verdict", Some(wrong))).unwrap_err();
        assert_eq!(
            err.to_string(),
            "event layout mismatch between the probe object and flow-probe:\n  \
             enum verdict: VERDICT_AUDIT is 4 in C, 3 in Rust"
        );
        let err = check_objects(&all(), &[], &enums_with("verdict", Some(wrong))).unwrap_err();
        assert_eq!(
            mismatch_of(err),
            [
                "enum verdict: VERDICT_AUDIT is 4 in C, 3 in Rust (object flow)",
                "enum verdict: VERDICT_AUDIT is 4 in C, 3 in Rust (object sock_lb)",
            ]
        );
    }

    #[test]
    fn a_wrong_event_version_fails_loudly() {
        let v8 = EnumMirror {
            name: "event_version",
            members: &[("EVENT_VERSION", 8)],
        };
        let err = check(&flow_btf(), &[], &enums_with("event_version", Some(v8))).unwrap_err();
        assert_eq!(
            mismatch_of(err),
            ["enum event_version: EVENT_VERSION is 7 in C, 8 in Rust"]
        );
    }

    #[test]
    fn members_and_enums_missing_on_either_side_are_named() {
        let partial = EnumMirror {
            name: "hook_point",
            members: &[
                ("HOOK_TC_INGRESS", 1),
                ("HOOK_TC_EGRESS", 2),
                ("HOOK_XDP", 4),
            ],
        };
        let mut enums = enums_with("hook_point", Some(partial));
        enums.retain(|e| e.name != "sock_hook");
        enums.push(EnumMirror {
            name: "no_such_enum",
            members: &[],
        });
        let err = check(&flow_btf(), &[], &enums).unwrap_err();
        assert_eq!(
            mismatch_of(err),
            [
                "enum hook_point: HOOK_KFREE_SKB is 3 in C, missing in Rust",
                "enum hook_point: HOOK_XDP is missing in C, 4 in Rust",
                "enum no_such_enum is not in the probe object",
                "enum sock_hook (in struct mirrored_enums) has no mirror in flow-probe",
            ]
        );
    }

    #[test]
    fn an_object_without_btf_is_named() {
        let err = check_objects(&[("broken", b"not an ELF file")], &[], &[]).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("probe object broken: no readable .BTF section:"),
            "{err}"
        );
    }
}
