//! A graph asked for one direction (`--from-namespace other`, `--to-pod
//! default/db`) still counts its connections' bytes both ways. Each filter of
//! the request that names a side gets a mirror: the same conditions with the
//! sides swapped, for replies only (`reply: true`), so the replies coming back
//! to that side are read too. The builder counts a reply as its connection's
//! volume only, never as a flow, hop or verdict, and a reply whose request is
//! not in the window draws nothing. Without them an ICMP edge read half its
//! bytes: each echo is its own connection, and its request's flow carries no
//! reply bytes yet. (TCP connections tell both directions in their later
//! request-direction flows, so their bytes were whole either way.) The
//! printed graph of a time window asks for them (`--since`, `--diff`); the
//! TUI, whose filter bar shows the flows as asked, and `--last`/`--first`,
//! whose count they would share, do not.

use observer_proto::flow::FlowFilter;

/// `whitelist` and, after it, the reply mirror of each entry that has one.
pub fn with_reply_mirrors(whitelist: Vec<FlowFilter>) -> Vec<FlowFilter> {
    let mirrors: Vec<FlowFilter> = whitelist.iter().filter_map(mirror).collect();
    whitelist.into_iter().chain(mirrors).collect()
}

/// The entry for the replies to `f`'s flows: `None` when `f` names no side
/// (it matches replies already), chooses replies or requests itself, or has
/// a condition without a counterpart on the other side.
fn mirror(f: &FlowFilter) -> Option<FlowFilter> {
    if !f.reply.is_empty() || !f.source_ip_xlated.is_empty() {
        return None;
    }
    let mut m = f.clone();
    std::mem::swap(&mut m.source_ip, &mut m.destination_ip);
    std::mem::swap(&mut m.source_pod, &mut m.destination_pod);
    std::mem::swap(&mut m.source_fqdn, &mut m.destination_fqdn);
    std::mem::swap(&mut m.source_label, &mut m.destination_label);
    std::mem::swap(&mut m.source_service, &mut m.destination_service);
    std::mem::swap(&mut m.source_workload, &mut m.destination_workload);
    std::mem::swap(&mut m.source_cluster_name, &mut m.destination_cluster_name);
    std::mem::swap(&mut m.source_port, &mut m.destination_port);
    std::mem::swap(&mut m.source_identity, &mut m.destination_identity);
    if m == *f {
        return None;
    }
    m.reply = vec![true];
    Some(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use observer_proto::flow::Verdict;

    #[test]
    fn a_side_gets_its_replies_mirrored_and_the_rest_is_kept() {
        let from = FlowFilter {
            source_pod: vec!["other/".into()],
            destination_port: vec!["8080".into()],
            verdict: vec![Verdict::Forwarded as i32],
            ..Default::default()
        };
        let neutral = FlowFilter {
            protocol: vec!["icmp".into()],
            ..Default::default()
        };
        let chosen = FlowFilter {
            source_pod: vec!["other/".into()],
            reply: vec![false],
            ..Default::default()
        };
        let out = with_reply_mirrors(vec![from.clone(), neutral.clone(), chosen.clone()]);
        assert_eq!(
            out,
            vec![
                from,
                neutral,
                chosen,
                FlowFilter {
                    destination_pod: vec!["other/".into()],
                    source_port: vec!["8080".into()],
                    verdict: vec![Verdict::Forwarded as i32],
                    reply: vec![true],
                    ..Default::default()
                },
            ]
        );
    }
}
