//! `observe policy check|apply|delete`: policy files are validated here with the
//! same parser flow-probe uses, then placed in the lab's policy directory, which
//! every node's flow-probe watches and applies without a restart.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use cluster_spec::endpoints::EndpointsFile;
use cluster_spec::policy;

use observe_lab::Lab;

/// Parses a policy file and prints what it holds; errors name the file, the
/// field and the problem.
pub fn check(file: &Path) -> anyhow::Result<()> {
    let policies = policy::load_file(file)?;
    // What `apply` and `whatif` refuse: an empty or truncated file.
    anyhow::ensure!(
        !policies.is_empty(),
        "{}: no CiliumNetworkPolicy in it",
        file.display()
    );
    for p in &policies {
        crate::outln!("{}: ok", describe(p))?;
    }
    Ok(())
}

fn describe(p: &policy::Policy) -> String {
    format!("{}/{}", p.namespace, p.name)
}

/// Validates `file` and installs the text it validated in the lab's policy
/// directory atomically (written aside, owner-only, then renamed), so a probe
/// never reads half a file, and what is installed is what was checked.
pub fn apply(file: &Path, state_dir: &Path) -> anyhow::Result<()> {
    let lab = Lab::attach(state_dir)?;
    let installed = install(file, &lab.policy_dir(), &lab.endpoints_file());
    // What was installed is said even when the folder as a whole is refused.
    crate::pipe::print(&installed.applied)?;
    for note in &installed.notes {
        crate::pipe::eprint(&format!("observe: note: {note}\n"));
    }
    installed.result
}

/// What [`install`] did: the lines naming what it applied, the notes for
/// stderr, and whether the probes will put it in force.
struct Installed {
    applied: String,
    notes: Vec<String>,
    result: anyhow::Result<()>,
}

/// [`apply`]'s work in the policy folder `dir`, for the lab's `endpoints`.
fn install(file: &Path, dir: &Path, endpoints: &EndpointsFile) -> Installed {
    let mut done = Installed {
        applied: String::new(),
        notes: Vec::new(),
        result: Ok(()),
    };
    let policies = match install_file(file, dir) {
        Ok((target, policies)) => {
            for p in &policies {
                done.applied += &format!("{}: applied ({})\n", describe(p), target.display());
                done.notes.extend(selects_nothing(p, endpoints));
                done.notes.extend(peers_match_nothing(p, endpoints));
            }
            policies
        }
        Err(e) => {
            done.result = Err(e);
            return done;
        }
    };
    // The probes read the folder whole: another file they refuse (written
    // there by hand) keeps this one out of force too.
    let installed = match policy::load_dir(dir) {
        Ok(installed) => installed,
        Err(e) => {
            done.result = Err(anyhow::anyhow!(
                "{} is installed, but the probes refuse the policy folder, so it is not in \
                 force: {e}; they keep the policies of before until that file is fixed or \
                 deleted (observe policy delete FILE)",
                file.display()
            ));
            return done;
        }
    };
    // Audit policies this file's make silent, or this file's that others do.
    let ours: Vec<String> = policies.iter().map(describe).collect();
    let enforcing_here = policies.iter().any(|p| !p.audit);
    for (audit, note) in audit_silenced(&installed, endpoints) {
        if enforcing_here || ours.contains(&audit) {
            done.notes.push(note);
        }
    }
    done
}

/// Checks `file` and writes it into `dir`; its path there and its policies.
fn install_file(file: &Path, dir: &Path) -> anyhow::Result<(PathBuf, Vec<policy::Policy>)> {
    let (text, policies) = policy::load_file_with_text(file)?;
    let name = file.file_name().context("policy file has no name")?;
    check_install(dir, name, &policies, file)?;
    let target = dir.join(name);
    observe_lab::write_atomically(&target, &text)
        .with_context(|| format!("installing {} into {}", file.display(), dir.display()))?;
    Ok((target, policies))
}

/// Per audit policy of `installed`, what it reports nothing for: endpoints
/// it selects in a direction where an enforcing policy selects them too
/// (that one decides there, and the audit policy's rules are not put in
/// force). Returns the audit policy and the note that says so.
fn audit_silenced(
    installed: &[policy::Policy],
    endpoints: &EndpointsFile,
) -> Vec<(String, String)> {
    let mut notes = Vec::new();
    for audit in installed.iter().filter(|p| p.audit) {
        let subjects = policy::subjects(audit, endpoints);
        for direction in policy::Direction::BOTH {
            if !audit.enforces(direction) {
                continue;
            }
            let enforced: Vec<String> = (subjects.iter())
                .filter(|ep| {
                    (installed.iter()).any(|q| {
                        !q.audit
                            && q.enforces(direction)
                            && policy::subjects(q, endpoints).iter().any(|s| s.id == ep.id)
                    })
                })
                .map(|ep| format!("{}/{}", ep.namespace, ep.name))
                .collect();
            if enforced.is_empty() {
                continue;
            }
            let way = match direction {
                policy::Direction::Ingress => "ingress",
                policy::Direction::Egress => "egress",
            };
            notes.push((
                describe(audit),
                format!(
                    "{}: audit mode reports nothing for {} ({way}): enforcing policies select \
                     it there and decide alone; an audit policy speaks for endpoints no \
                     enforcing policy selects in that direction",
                    describe(audit),
                    enforced.join(", ")
                ),
            ));
        }
    }
    notes
}

/// Says so when `p` applies to none of the lab's endpoints: installed, it
/// changes nothing until an endpoint with those labels appears, which a typo
/// in a label otherwise hides.
fn selects_nothing(p: &policy::Policy, endpoints: &EndpointsFile) -> Option<String> {
    if !policy::subjects(p, endpoints).is_empty() {
        return None;
    }
    Some(format!(
        "{} selects no endpoint of the lab (namespace {}, {}): it has no effect until one matches",
        describe(p),
        p.namespace,
        wanted(&p.endpoint_selector)
    ))
}

/// Says so for each peer selector of `p` that matches none of the lab's
/// endpoints (a typo, or a peer of another namespace without its
/// `io.kubernetes.pod.namespace` label): its rule allows or denies nothing.
fn peers_match_nothing(p: &policy::Policy, endpoints: &EndpointsFile) -> Vec<String> {
    policy::unmatched_peers(p, endpoints)
        .into_iter()
        .map(|(key, sel)| {
            format!(
                "{}: {key} (namespace {}, {}) matches no endpoint of the lab: its rule allows or \
                 denies no endpoint until one matches",
                describe(p),
                sel.namespace.as_deref().unwrap_or(&p.namespace),
                wanted(sel)
            )
        })
        .collect()
}

/// A selector's labels as `k=v, ...`, or `any labels`.
fn wanted(sel: &policy::Selector) -> String {
    let labels: Vec<String> = sel
        .match_labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    if labels.is_empty() {
        "any labels".to_string()
    } else {
        labels.join(", ")
    }
}

/// Refuses what the probes would refuse or ignore: a file without a policy,
/// and a policy whose name another installed file defines (a file of the
/// same name is replaced, so its policies do not count).
fn check_install(
    dir: &Path,
    name: &OsStr,
    policies: &[policy::Policy],
    file: &Path,
) -> anyhow::Result<()> {
    if policies.is_empty() {
        anyhow::bail!(
            "{}: no CiliumNetworkPolicy in it, nothing to apply",
            file.display()
        );
    }
    let mut others: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.is_file() && path.file_name() != Some(name))
        .collect();
    others.sort();
    for other in others {
        // A file the probes cannot read defines nothing.
        let Ok(installed) = policy::load_file(&other) else {
            continue;
        };
        if let Some(p) = policies
            .iter()
            .find(|p| installed.iter().any(|i| describe(i) == describe(p)))
        {
            anyhow::bail!(
                "{}: {} is already installed from {}; the probes would keep that one. \
                 Delete it first (observe policy delete {}), or apply the new text under \
                 that file's name to replace it",
                file.display(),
                describe(p),
                other.display(),
                describe(p)
            );
        }
    }
    Ok(())
}

/// Removes an installed policy: its file in the lab's policy directory, found
/// by [`installed_file`]. Nothing outside that directory is ever removed.
pub fn delete(name: &str, state_dir: &Path) -> anyhow::Result<()> {
    let lab = Lab::attach(state_dir)?;
    let target = installed_file(&lab.policy_dir(), name)?;
    // Every policy of the file goes with it: each is named.
    let held: Vec<String> = policy::load_file(&target)
        .map(|ps| ps.iter().map(describe).collect())
        .unwrap_or_default();
    std::fs::remove_file(&target).with_context(|| format!("removing {}", target.display()))?;
    crate::pipe::print(&removed(name, &target, &held))?;
    Ok(())
}

/// What `delete name` says it removed: `name` from `file`, and any other
/// policy `held` in the same file, which went with it.
fn removed(name: &str, file: &Path, held: &[String]) -> String {
    let asked = |p: &String| p == name || p.rsplit_once('/').is_some_and(|(_, n)| n == name);
    let mut text = format!("{name}: removed ({})\n", file.display());
    for other in held.iter().filter(|p| !asked(p)) {
        text += &format!("{other}: removed too (in the same file)\n");
    }
    text
}

/// The file of `dir` that `name` means: a file name there (`deny-client.yaml`),
/// or a policy as `apply` printed it (`namespace/name`, or the name alone
/// when one file holds it). A path (`../state.json`, `/etc/x`) is no file
/// name, and is refused as unknown.
fn installed_file(dir: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    if let Some(file) = files
        .iter()
        .find(|f| f.file_name() == Some(OsStr::new(name)))
    {
        return Ok(file.clone());
    }
    // Files that do not parse are left to be deleted by file name.
    let holding: Vec<(&PathBuf, Vec<String>)> = files
        .iter()
        .filter_map(|f| policy::load_file(f).ok().map(|ps| (f, ps)))
        .map(|(f, ps)| (f, ps.iter().map(describe).collect()))
        .collect();
    let matches: Vec<&PathBuf> = holding
        .iter()
        .filter(|(_, names)| {
            names
                .iter()
                .any(|n| n == name || n.rsplit_once('/').is_some_and(|(_, short)| short == name))
        })
        .map(|(f, _)| *f)
        .collect();
    match matches.as_slice() {
        [file] => Ok((*file).clone()),
        [] => {
            let listed: Vec<String> = holding
                .iter()
                .map(|(f, names)| format!("{} ({})", file_name(f), names.join(", ")))
                .collect();
            anyhow::bail!(
                "no installed policy or policy file named {name:?} in {}; installed: {}",
                dir.display(),
                if listed.is_empty() {
                    "none".to_string()
                } else {
                    listed.join("; ")
                }
            )
        }
        several => {
            let listed: Vec<String> = several.iter().map(|f| file_name(f)).collect();
            anyhow::bail!(
                "{name:?} is in several policy files ({}): name the file, or the policy as namespace/name",
                listed.join(", ")
            )
        }
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use test_support::scratch::ScratchDir;

    const DENY: &str = "apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: deny-client, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: frontend}}
  ingressDeny:
    - fromEndpoints: [{matchLabels: {app: client}}]
";

    /// A lab's state folder (`tag`: one per test) with three policy files.
    fn policies(tag: &str) -> (ScratchDir, PathBuf) {
        let dir = ScratchDir::new(tag);
        let policies = dir.path().join("policies");
        std::fs::create_dir(&policies).unwrap();
        std::fs::write(policies.join("deny.yaml"), DENY).unwrap();
        std::fs::write(
            policies.join("other.yaml"),
            DENY.replace("namespace: default", "namespace: other"),
        )
        .unwrap();
        std::fs::write(policies.join("broken.yaml"), "{").unwrap();
        std::fs::write(dir.path().join("state.json"), "{}").unwrap();
        (dir, policies)
    }

    #[test]
    fn a_policy_another_file_defines_or_an_empty_file_is_refused() {
        let (_dir, dir) = policies("policy-install");
        let new = Path::new("/drafts/new.yaml");
        let deny = policy::parse(DENY, "new.yaml").unwrap();
        let err = check_install(&dir, OsStr::new("new.yaml"), &deny, new).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "/drafts/new.yaml: default/deny-client is already installed from {}; the \
                 probes would keep that one. Delete it first (observe policy delete \
                 default/deny-client), or apply the new text under that file's name to \
                 replace it",
                dir.join("deny.yaml").display()
            )
        );
        // The same file name replaces the file: no clash (broken.yaml is skipped).
        check_install(&dir, OsStr::new("deny.yaml"), &deny, new).unwrap();
        let err = check_install(&dir, OsStr::new("new.yaml"), &[], new).unwrap_err();
        assert_eq!(
            err.to_string(),
            "/drafts/new.yaml: no CiliumNetworkPolicy in it, nothing to apply"
        );
    }

    #[test]
    fn check_refuses_a_file_without_a_policy() {
        let dir = ScratchDir::new("policy-check-empty");
        for (name, text) in [("empty.yaml", ""), ("dashes.yaml", "---\n---\n")] {
            let file = dir.path().join(name);
            std::fs::write(&file, text).unwrap();
            assert_eq!(
                check(&file).unwrap_err().to_string(),
                format!("{}: no CiliumNetworkPolicy in it", file.display())
            );
        }
        let file = dir.path().join("deny.yaml");
        std::fs::write(&file, DENY).unwrap();
        check(&file).unwrap();
    }

    /// frontend in `default`, client in `other`.
    fn frontend_and_other_client() -> EndpointsFile {
        EndpointsFile::parse(
            "endpoints:\n\
             - {id: 1, name: frontend, namespace: default, labels: {app: frontend}, node: n1}\n\
             - {id: 2, name: client, namespace: other, labels: {app: client}, node: n1}\n",
            "endpoints.yaml",
        )
        .unwrap()
    }

    #[test]
    fn a_policy_that_selects_no_endpoint_is_noted() {
        let endpoints = frontend_and_other_client();
        let note = |text: &str| {
            let p = policy::parse(text, "p.yaml").unwrap().remove(0);
            selects_nothing(&p, &endpoints)
        };
        assert_eq!(note(DENY), None);
        assert_eq!(
            note(&DENY.replace("app: frontend", "app: frontend, tier: web")),
            Some(
                "default/deny-client selects no endpoint of the lab (namespace default, \
                 app=frontend, tier=web): it has no effect until one matches"
                    .into()
            )
        );
        // The labels are right but the namespace is not the endpoint's.
        assert_eq!(
            note(&DENY.replace("namespace: default", "namespace: shop")),
            Some(
                "shop/deny-client selects no endpoint of the lab (namespace shop, \
                 app=frontend): it has no effect until one matches"
                    .into()
            )
        );
        assert_eq!(
            note(
                &DENY
                    .replace("namespace: default", "namespace: empty")
                    .replace("{matchLabels: {app: frontend}}", "{}")
            ),
            Some(
                "empty/deny-client selects no endpoint of the lab (namespace empty, any \
                 labels): it has no effect until one matches"
                    .into()
            )
        );
    }

    /// A file the probes refuse in the folder (written there by hand) keeps
    /// an applied one out of force: apply says so and fails; once it is
    /// gone, apply succeeds, with its notes.
    #[test]
    fn apply_fails_while_the_folder_holds_a_file_the_probes_refuse() {
        let (dir, policies) = policies("policy-apply-refused");
        let endpoints = frontend_and_other_client();
        let draft = dir.path().join("audit.yaml");
        std::fs::write(
            &draft,
            DENY.replace(
                "name: deny-client",
                "name: audit-deny, annotations: {observe.io/audit: \"true\"}",
            ),
        )
        .unwrap();
        let first = install(&draft, &policies, &endpoints);
        assert_eq!(
            first.applied,
            format!(
                "default/audit-deny: applied ({})\n",
                policies.join("audit.yaml").display()
            )
        );
        let err = first.result.unwrap_err().to_string();
        assert!(
            err.starts_with(&format!(
                "{} is installed, but the probes refuse the policy folder, so it is not in force: ",
                draft.display()
            )) && err.contains("broken.yaml"),
            "{err}"
        );
        std::fs::remove_file(policies.join("broken.yaml")).unwrap();
        let again = install(&draft, &policies, &endpoints);
        assert!(again.result.is_ok());
        // deny.yaml enforces frontend's ingress: the audit policy is silent there.
        assert_eq!(again.notes.len(), 2, "{:#?}", again.notes);
        assert!(again.notes[0].starts_with("default/audit-deny: fromEndpoints"));
        assert!(again.notes[1].starts_with(
            "default/audit-deny: audit mode reports nothing for default/frontend (ingress)"
        ));
    }

    #[test]
    fn an_audit_policy_silenced_by_an_enforcing_one_is_noted() {
        let endpoints = frontend_and_other_client();
        let audit = DENY.replace(
            "name: deny-client",
            "name: audit-deny, annotations: {observe.io/audit: \"true\"}",
        );
        let allow = "apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: allow-client, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: frontend}}
  ingress:
    - fromEndpoints: [{matchLabels: {app: client, io.kubernetes.pod.namespace: other}}]
";
        let parse = |text: &str| policy::parse(text, "p.yaml").unwrap().remove(0);
        // Alone, it speaks.
        assert_eq!(audit_silenced(&[parse(&audit)], &endpoints), []);
        let both = [parse(&audit), parse(allow)];
        assert_eq!(
            audit_silenced(&both, &endpoints),
            [(
                "default/audit-deny".to_string(),
                "default/audit-deny: audit mode reports nothing for default/frontend (ingress): \
                 enforcing policies select it there and decide alone; an audit policy speaks for \
                 endpoints no enforcing policy selects in that direction"
                    .to_string()
            )]
        );
        // An enforcing policy in the other direction leaves it alone.
        let egress = allow
            .replace("ingress:", "egress:")
            .replace("fromEndpoints", "toEndpoints");
        assert_eq!(
            audit_silenced(&[parse(&audit), parse(&egress)], &endpoints),
            []
        );
    }

    #[test]
    fn a_peer_that_matches_no_endpoint_is_noted() {
        let endpoints = frontend_and_other_client();
        let notes = |text: &str| {
            let p = policy::parse(text, "p.yaml").unwrap().remove(0);
            peers_match_nothing(&p, &endpoints)
        };
        // client is in `other`: a peer without the namespace label is in the
        // policy's own (Cilium's rule), where no client is.
        assert_eq!(
            notes(DENY),
            [
                "default/deny-client: fromEndpoints (namespace default, app=client) matches no \
              endpoint of the lab: its rule allows or denies no endpoint until one matches"
            ]
        );
        let other = DENY.replace(
            "{matchLabels: {app: client}}",
            "{matchLabels: {app: client, io.kubernetes.pod.namespace: other}}",
        );
        assert_eq!(notes(&other), Vec::<String>::new());
    }

    #[test]
    fn a_file_name_or_a_policy_name_finds_its_file() {
        let (_dir, policies) = policies("policy-delete-names");
        let found = |name: &str| installed_file(&policies, name).map_err(|e| e.to_string());
        assert_eq!(found("deny.yaml"), Ok(policies.join("deny.yaml")));
        assert_eq!(found("broken.yaml"), Ok(policies.join("broken.yaml")));
        assert_eq!(found("default/deny-client"), Ok(policies.join("deny.yaml")));
        assert_eq!(found("other/deny-client"), Ok(policies.join("other.yaml")));
        let both = found("deny-client").unwrap_err();
        assert!(
            both.contains("several policy files (deny.yaml, other.yaml)"),
            "{both}"
        );
    }

    #[test]
    fn deleting_a_policy_names_the_others_its_file_took_along() {
        let file = Path::new("/lab/policies/multi.yaml");
        let held = ["default/multi-a".to_string(), "default/multi-b".to_string()];
        assert_eq!(
            removed("multi-a", file, &held),
            "multi-a: removed (/lab/policies/multi.yaml)\n\
             default/multi-b: removed too (in the same file)\n"
        );
        assert_eq!(
            removed("default/multi-b", file, &held),
            "default/multi-b: removed (/lab/policies/multi.yaml)\n\
             default/multi-a: removed too (in the same file)\n"
        );
        // By file name: each of its policies is named.
        assert_eq!(
            removed("multi.yaml", file, &held),
            "multi.yaml: removed (/lab/policies/multi.yaml)\n\
             default/multi-a: removed too (in the same file)\n\
             default/multi-b: removed too (in the same file)\n"
        );
        assert_eq!(
            removed("one", file, &["default/one".to_string()]),
            "one: removed (/lab/policies/multi.yaml)\n"
        );
    }

    #[test]
    fn a_path_out_of_the_policy_directory_is_refused() {
        let (dir, policies) = policies("policy-delete-paths");
        for name in [
            "../state.json",
            dir.path().join("state.json").to_str().unwrap(),
            "..",
            ".",
        ] {
            let err = installed_file(&policies, name).unwrap_err().to_string();
            assert!(
                err.starts_with(&format!(
                    "no installed policy or policy file named {name:?}"
                )),
                "{err}"
            );
            assert!(
                err.ends_with(
                    "installed: deny.yaml (default/deny-client); other.yaml (other/deny-client)"
                ),
                "{err}"
            );
        }
        assert!(dir.path().join("state.json").exists());
    }
}
